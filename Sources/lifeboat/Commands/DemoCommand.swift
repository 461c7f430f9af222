import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatPostgres

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "demo",
        abstract: "Run a complete disaster and point-in-time recovery on a throwaway local cluster and report.")
    @Flag(help: "Print JSON.") var json = false
    func run() async throws {
        throw LifeboatError(.internalError, "demo not implemented yet")
    }
}

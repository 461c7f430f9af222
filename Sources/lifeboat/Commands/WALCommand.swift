import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository

struct WALCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "wal", abstract: "WAL archive commands run by PostgreSQL.",
        subcommands: [WALPushCommand.self, WALFetchCommand.self])
}

struct WALPushCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "push",
        abstract: "Archive one WAL file: archive_command = 'lifeboat wal push --config FILE %p'.")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Path of the WAL file (%p).") var path: String

    func run() async throws {
        let settings = try Settings(global)
        let logger = settings.makeLogger()
        let repo = try await settings.openRepository(logger)
        _ = try await WALArchive(repository: repo, logger: logger).push(path: path)
    }
}

struct WALFetchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "fetch",
        abstract: "Restore one WAL file: restore_command = 'lifeboat wal fetch --config FILE %f %p'. Exits 6 if it is not archived.")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "WAL file name (%f).") var name: String
    @Argument(help: "Where to write it (%p).") var destination: String

    func run() async throws {
        let settings = try Settings(global)
        let logger = settings.makeLogger()
        let repo = try await settings.openRepository(logger)
        try await WALArchive(repository: repo, logger: logger).fetch(name: name, destination: destination)
    }
}

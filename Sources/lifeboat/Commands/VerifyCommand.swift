import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatRepository

struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "verify",
        abstract: "Authenticate every object, check every backup's chunks and WAL continuity. Exit 5 on any problem.")

    @OptionGroup var global: GlobalOptions
    @Option(help: "Objects checked at once.") var parallelism: Int?
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let context = try Context(global) { $0.parallelism = parallelism }
        let logger = context.makeLogger()
        let repo = try await context.openRepository(logger)
        var report = try await Verifier(repository: repo, parallelism: try context.settings.parallelism()).run()
        report.mirrors = await context.mirrors(logger).statuses(primary: repo)
        if json {
            try Output.json(report)
        } else {
            for m in report.mirrors { print(MirrorText.line(m)) }
            print("checked \(report.objectsChecked) objects (\(Output.bytes(UInt64(report.bytesChecked)))), \(report.backupsChecked) backups, \(report.walFilesChecked) WAL files")
            for note in report.notes { print("note: \(note)") }
            for p in report.problems { print("PROBLEM \(p.object): \(p.message)") }
            print(report.ok ? "ok: no problems found" : "\(report.problems.count) problem(s) found")
        }
        if !report.ok {
            throw LifeboatError(.integrity, "verify found \(report.problems.count) problem(s)",
                hint: "restore from an unaffected backup or repository copy; see the list above")
        }
    }
}

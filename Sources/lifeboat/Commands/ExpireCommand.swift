import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatRepository

struct ExpireCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "expire",
        abstract: "Apply retention: drop expired backups, then unreferenced chunks and WAL no backup needs.")

    @OptionGroup var global: GlobalOptions
    @Flag(name: .customLong("dry-run"), help: "Show what would be removed; change nothing.") var dryRun = false
    @Option(name: .customLong("recovery-window"), help: "Override retention.recovery_window, e.g. 7d.") var recoveryWindow: DurationArgument?
    @Option(name: .customLong("manual-retention"), help: "Override retention.manual for backups without their own, e.g. 30d.") var manualRetention: DurationArgument?
    @Option(name: .customLong("keep-last"), help: "Override retention.keep_last: the newest N automated backups stay whatever their age.") var keepLast: Int?
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        if let keepLast, keepLast < 0 { throw ValidationError("--keep-last must be 0 or more") }
    }

    func run() async throws {
        let context = try Context(global)
        let logger = context.makeLogger()
        let policy = try context.settings.retention(recoveryWindow: recoveryWindow?.seconds, manual: manualRetention?.seconds, keepLast: keepLast)
        let repo = try await context.openRepository(logger)
        let report = try await Expirer(repository: repo, policy: policy).run(dryRun: dryRun)
        if json {
            try Output.json(report)
            return
        }
        for d in report.backups { print("\(d.keep ? "keep  " : "expire") \(d.id) (\(d.kind.rawValue)): \(d.reason)") }
        let verb = dryRun ? "would remove" : "removed"
        if report.protectedObjects > 0 {
            print("\(report.protectedObjects) object(s) are locked and were left alone; the first becomes deletable at \(report.nextDeletableAt.map(Timestamp.format) ?? "?")")
        }
        print("\(verb) \(report.chunksRemoved) chunks (\(Output.bytes(UInt64(report.chunkBytesRemoved)))), \(report.walFilesRemoved) WAL files (\(Output.bytes(UInt64(report.walBytesRemoved))))")
        if report.partialWritesRemoved > 0 {
            print("removed \(report.partialWritesRemoved) partial file(s) of writes killed half way")
        }
    }
}

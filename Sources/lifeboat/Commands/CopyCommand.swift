import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatRepository

struct CopyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "copy",
        abstract: "Copy backups and their WAL into another repository, re-encrypted under its own key (idempotent, resumable, verified).")

    @OptionGroup var global: GlobalOptions
    @Option(name: .customLong("to-config"), help: "Configuration file of the target repository (its repo, key and s3 settings).") var toConfig: String?
    @Option(help: "Target repository location (with --to-key-file or LIFEBOAT_TO_PASSPHRASE).") var to: String?
    @Option(name: .customLong("to-key-file"), help: "Key file of the target repository.") var toKeyFile: String?
    @Flag(name: [.customLong("to-mirrors"), .customLong("to-replicas")],
        help: "Catch up every repository listed under mirrors in the configuration (--to-replicas: the old name).") var toMirrors = false
    @Option(help: "Copy this backup (repeatable).") var backup: [String] = []
    @Flag(help: "Copy every backup.") var all = false
    @Flag(name: .customLong("no-verify"), help: "Skip verifying the target afterwards.") var noVerify = false
    @Option(help: "Chunks copied at once.") var parallelism: Int?
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        guard all != !backup.isEmpty else { throw ValidationError("give --all or at least one --backup ID") }
        if !toMirrors, toConfig == nil, to == nil {
            throw ValidationError("no target repository: give --to-config FILE, --to REPO with --to-key-file, or --to-mirrors")
        }
    }

    func run() async throws {
        let context = try Context(global) { $0.parallelism = parallelism }
        let logger = context.makeLogger()
        let source = try await context.openRepository(logger)
        let parallel = try context.settings.parallelism()
        let ids = all ? nil : backup
        if toMirrors {
            var failed = 0
            for target in try await context.mirrors(logger).all() {
                let report = try await RepositoryCopier(source: source, target: target, parallelism: parallel, logger: logger)
                    .run(backupIDs: ids, verify: !noVerify)
                if json {
                    try Output.json(report)
                } else {
                    print("\(target.store.location): \(report.copiedBackups.count) backup(s) and \(report.walFilesCopied) WAL file(s) copied")
                }
                failed += report.verifyProblems?.count ?? 0
            }
            if failed > 0 { throw LifeboatError(.integrity, "mirrors have \(failed) problem(s) after the copy") }
            return
        }
        let targetContext = try Context.other(config: toConfig.map(context.absolute), repo: to.map(context.absolute),
            keyFile: toKeyFile.map(context.absolute))
        let targetKey: KeySource
        if !targetContext.settings.namesAKey, let pass = ProcessInfo.processInfo.environment["LIFEBOAT_TO_PASSPHRASE"], !pass.isEmpty {
            targetKey = .passphrase(pass)
        } else if targetContext.settings.namesAKey {
            targetKey = try targetContext.keySource()
        } else {
            throw LifeboatError(.invalidUsage, "no key for the target repository",
                hint: "give --to-key-file, key_file in --to-config, or LIFEBOAT_TO_PASSPHRASE; the target has a key of its own")
        }
        let target = try await Repository.open(store: try targetContext.store(), key: targetKey, logger: logger)
        let report = try await RepositoryCopier(source: source, target: target, parallelism: parallel, logger: logger)
            .run(backupIDs: ids, verify: !noVerify)
        if json {
            try Output.json(report)
        } else {
            print("copied \(report.copiedBackups.count) backup(s) to \(target.store.location), \(report.presentBackups.count) already there")
            print("  chunks: \(report.chunksCopied) copied, \(report.chunksPresent) present; WAL files: \(report.walFilesCopied) copied, \(report.walFilesPresent) present; \(Output.bytes(UInt64(report.bytesWritten))) written")
            if let problems = report.verifyProblems {
                print(problems.isEmpty ? "  target verified: no problems" : "  target verification found \(problems.count) problem(s)")
                for p in problems { print("  PROBLEM \(p.object): \(p.message)") }
            }
        }
        if let problems = report.verifyProblems, !problems.isEmpty {
            throw LifeboatError(.integrity, "the target repository has \(problems.count) problem(s) after the copy")
        }
    }
}

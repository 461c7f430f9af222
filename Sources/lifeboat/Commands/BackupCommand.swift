import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository

struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "backup",
        abstract: "Take a consistent base backup of a running cluster (needs WAL archiving to this repository).")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var connection: ConnectionOptions
    @Flag(help: "A manual snapshot: tagged, kept for its own retention.") var manual = false
    @Option(name: .customLong("tag"), help: "KEY=VALUE tag (repeatable), e.g. Purpose=pre-migration.") var tags: [Tag] = []
    @Option(help: "How long to keep a manual backup, e.g. 30d (default: retention.manual).") var retain: DurationArgument?
    @Option(help: "Files read and uploaded at once.") var parallelism: Int?
    @Option(name: .customLong("wal-timeout"), help: "How long to wait for the backup's WAL to be archived (default 10m).") var walTimeout: String?
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        if !manual, !tags.isEmpty || retain != nil {
            throw ValidationError("--tag and --retain apply to manual backups: add --manual")
        }
    }

    func run() async throws {
        let context = try Context(global) {
            connection.apply(to: &$0)
            $0.parallelism = parallelism
            $0.walTimeout = walTimeout
        }
        let logger = context.makeLogger()
        let pgdata = try context.pgdata() ?? ""
        let repo = try await context.openRepository(logger)
        let options = BackupOptions(pgdata: pgdata, endpoint: try context.endpoint(),
            kind: manual ? .manual : .automated, tags: Dictionary(tags.map { ($0.key, $0.value) }, uniquingKeysWith: { $1 }),
            retain: retain?.seconds, policy: try context.settings.retention(), parallelism: try context.settings.parallelism(),
            walTimeout: try context.settings.walTimeout())
        let result = try await BackupEngine(repository: repo, logger: logger).run(options)
        if json {
            try Output.json(result)
        } else {
            let b = result.backup
            print("backup \(b.id) (\(b.kind.rawValue)) completed in \(HumanDuration.format(result.durationSeconds))")
            print("  read \(Output.bytes(b.logicalBytes)) in \(b.fileCount) files, stored \(Output.bytes(b.newStoredBytes)) new (\(b.newChunks) of \(b.totalChunks) chunks new)")
            print("  lsn \(b.startLSN) .. \(b.stopLSN), timeline \(b.timeline)")
            if let until = b.retainUntil { print("  retained until \(Timestamp.format(until))") }
            if !b.tags.isEmpty { print("  tags " + b.tags.keys.sorted().map { "\($0)=\(b.tags[$0] ?? "")" }.joined(separator: " ")) }
        }
    }
}

/// `KEY=VALUE`, as `--tag` takes it.
struct Tag: ExpressibleByArgument {
    var key: String
    var value: String

    init?(argument: String) {
        let parts = argument.split(separator: "=", maxSplits: 1)
        guard parts.count == 2, !parts[0].isEmpty else { return nil }
        key = String(parts[0])
        value = String(parts[1])
    }

    static var defaultCompletionKind: CompletionKind { .default }
}

/// A duration option: `90s`, `15m`, `12h`, `7d`, `4w`.
struct DurationArgument: ExpressibleByArgument {
    var seconds: TimeInterval
    init?(argument: String) {
        guard let s = try? HumanDuration.parse(argument) else { return nil }
        seconds = s
    }
}

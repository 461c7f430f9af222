import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository

struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "backup",
        abstract: "Take a consistent base backup of a running cluster (needs WAL archiving to this repository).",
        discussion: """
            Against a standby, the files are read from the standby and the primary only switches WAL at the end so
            the backup's last segment is archived. The primary is the node the standby streams from (its
            pg_stat_wal_receiver), or --primary-host/--primary-port; it is reached with the same user, password and
            database. The primary archives (archive_mode = on), or the standby does (archive_mode = always). A standby
            promoted, or following a failover to a new timeline, during the backup fails it cleanly: nothing is committed.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var connection: ConnectionOptions
    @Flag(help: "A manual snapshot: tagged, kept for its own retention.") var manual = false
    @Option(name: .customLong("tag"), help: "KEY=VALUE tag (repeatable), e.g. Purpose=pre-migration.") var tags: [Tag] = []
    @Option(help: "How long to keep a manual backup, e.g. 30d (default: retention.manual).") var retain: DurationArgument?
    @Option(help: "Files read and uploaded at once.") var parallelism: Int?
    @Option(name: .customLong("wal-timeout"), help: "How long to wait for the backup's WAL to be archived (default 10m).") var walTimeout: String?
    @Option(name: .customLong("primary-host"), help: "Backing up a standby: its primary's host or socket directory (default: the node it streams from).")
    var primaryHost: String?
    @Option(name: .customLong("primary-port"), help: "Backing up a standby: its primary's port (default: the --pgport).") var primaryPort: Int?
    @Flag(name: .customLong("read-all-files"),
        help: "Read every file, also those whose size and modification time say they did not change since the newest backup.")
    var readAllFiles = false
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
        let endpoint = try context.endpoint()
        var primary: PostgresEndpoint?
        if primaryHost != nil || primaryPort != nil {
            primary = endpoint
            primary?.host = primaryHost ?? endpoint.host
            primary?.port = primaryPort ?? endpoint.port
        }
        var options = BackupOptions(pgdata: pgdata, endpoint: endpoint,
            kind: manual ? .manual : .automated, tags: Dictionary(tags.map { ($0.key, $0.value) }, uniquingKeysWith: { $1 }),
            retain: retain?.seconds, policy: try context.settings.retention(), parallelism: try context.settings.parallelism(),
            walTimeout: try context.settings.walTimeout(), primary: primary)
        options.readAllFiles = readAllFiles
        let result = try await BackupEngine(repository: repo, logger: logger).run(options)
        if json {
            try Output.json(result)
        } else {
            let b = result.backup
            print("backup \(b.id) (\(b.kind.rawValue)) completed in \(HumanDuration.format(result.durationSeconds))")
            print("  \(Output.bytes(b.logicalBytes)) in \(b.fileCount) files, stored \(Output.bytes(b.newStoredBytes)) new (\(b.newChunks) of \(b.totalChunks) chunks new)")
            if let unchanged = b.unchangedFiles, unchanged > 0 {
                print("  \(unchanged) files unchanged since the newest backup (by size and modification time) were taken over unread")
            }
            if let packs = b.newPacks, packs > 0 { print("  small files packed into \(packs) new pack objects") }
            print("  lsn \(b.startLSN) .. \(b.stopLSN), timeline \(b.timeline)")
            if let source = b.source, source.role == .standby {
                print("  read from the standby \(source.node)" + (source.primary.map { ", WAL switched on the primary \($0)" } ?? ""))
            }
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

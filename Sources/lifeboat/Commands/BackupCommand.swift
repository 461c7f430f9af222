import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository

struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "backup",
        abstract: "Take a consistent base backup of a running cluster (needs WAL archiving to this repository).")

    @OptionGroup var global: GlobalOptions
    @Option(help: "Data directory of the cluster (also PGDATA).") var pgdata: String?
    @Option(help: "Host or socket directory (also PGHOST).") var pghost: String?
    @Option(help: "Port (also PGPORT).") var pgport: Int?
    @Option(help: "User (also PGUSER).") var pguser: String?
    @Option(help: "Database to connect to (also PGDATABASE).") var pgdatabase: String?
    @Flag(help: "A manual snapshot: tagged, kept for its own retention.") var manual = false
    @Option(name: .customLong("tag"), help: "KEY=VALUE tag (repeatable), e.g. Purpose=pre-migration.") var tags: [String] = []
    @Option(help: "How long to keep a manual backup, e.g. 30d (default: retention.manual).") var retain: String?
    @Option(help: "Files read and uploaded at once.") var parallelism: Int?
    @Option(name: .customLong("wal-timeout"), help: "How long to wait for the backup's WAL to be archived (default 10m).") var walTimeout: String?
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let settings = try Settings(global)
        let logger = settings.makeLogger()
        guard let pgdata = pgdata ?? settings.string("pgdata", env: "PGDATA") else {
            throw LifeboatError(.invalidUsage, "no data directory given", hint: "pass --pgdata DIR or set PGDATA")
        }
        var tagMap: [String: String] = [:]
        for tag in tags {
            let parts = tag.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, !parts[0].isEmpty else {
                throw LifeboatError(.invalidUsage, "tag '\(tag)' is not KEY=VALUE", hint: "e.g. --tag Purpose=pre-migration")
            }
            tagMap[String(parts[0])] = String(parts[1])
        }
        if !manual, !tagMap.isEmpty || retain != nil {
            throw LifeboatError(.invalidUsage, "--tag and --retain apply to manual backups", hint: "add --manual")
        }
        let repo = try await settings.openRepository(logger)
        let options = BackupOptions(pgdata: pgdata,
            endpoint: try settings.endpoint(host: pghost, port: pgport, user: pguser, database: pgdatabase),
            kind: manual ? .manual : .automated, tags: tagMap, retain: try retain.map(HumanDuration.parse),
            policy: try settings.retention(), parallelism: try settings.parallelism(parallelism),
            walTimeout: try settings.walTimeout(walTimeout))
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

import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository

/// Entry points Patroni calls: `create_replica_methods` and `bootstrap.method`. Patroni passes the
/// method's own keys first as `--key=Value` (Python spelling: `--keep_data=False`), then its own
/// (`--scope`, `--role`, `--datadir`, `--connstring`); both spellings of a key are accepted here, and
/// an unknown key is an error naming it (a typo in the Patroni configuration must not pass silently).
struct PatroniCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "patroni",
        abstract: "Entry points for Patroni: build a replica, or bootstrap a new cluster, from the repository.",
        discussion: "See docs/ha.md for the Patroni configuration to copy.",
        subcommands: [PatroniCreateReplica.self, PatroniBootstrap.self])
}

/// A Patroni boolean as Python prints it (`True`, `False`) or as YAML users write it.
struct PatroniBool: ExpressibleByArgument {
    var value: Bool
    init?(argument: String) {
        switch argument.lowercased() {
        case "true", "yes", "on", "1": value = true
        case "false", "no", "off", "0", "none", "": value = false
        default: return nil
        }
    }
}

/// What Patroni passes to every method.
struct PatroniParameters: ParsableArguments {
    @Option(help: "Patroni's scope (the cluster name).") var scope: String?
    @Option(name: [.customLong("datadir"), .customLong("data_dir"), .customLong("data-dir")], help: "The node's data directory.")
    var datadir: String
    @Option(name: [.customLong("no_params"), .customLong("no-params")], help: .hidden) var noParams: PatroniBool?
    @Option(name: [.customLong("pg-bin"), .customLong("pg_bin"), .customLong("bin_dir")], help: "PostgreSQL bin directory (default: found from the backup's version).")
    var pgBin: String?
    @Option(help: "Files restored at once.") var parallelism: Int?
}

struct PatroniCreateReplica: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create-replica",
        abstract: "create_replica_methods: restore the newest backup into --datadir as a standby Patroni then starts.",
        discussion: """
            Restores the newest backup on the latest timeline (or --backup) into the node's empty data directory with \
            the standby's files only: Patroni writes primary_conninfo, restore_command and standby.signal itself when it \
            starts the node, and the replica streams the rest from the leader (or replays it from the archive). Tablespaces \
            go where the backup's cluster kept them. Exits non-zero, leaving nothing behind, when it cannot; Patroni then \
            tries the next method.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var patroni: PatroniParameters
    @Option(help: "Patroni: the role being created (replica).") var role: String?
    @Option(help: "Patroni: libpq connection string of the member to clone from (not used: Patroni configures streaming).")
    var connstring: String?
    @Option(name: [.customLong("keep_data"), .customLong("keep-data")], help: .hidden) var keepData: PatroniBool?
    @Option(name: [.customLong("no_leader"), .customLong("no-leader")], help: .hidden) var noLeader: PatroniBool?
    @Option(help: "Backup id (default: the newest on the latest timeline).") var backup: String?
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        if keepData?.value == true {
            throw ValidationError("keep_data: true cannot work with lifeboat: it restores only into an empty data directory; set keep_data: false")
        }
    }

    func run() async throws {
        let context = try Context(global) {
            $0.parallelism = patroni.parallelism
            $0.pgBin = patroni.pgBin
        }
        let logger = context.makeLogger()
        let repo = try await context.openRepository(logger)
        let options = RestoreOptions(destination: context.absolute(patroni.datadir), target: .latest, backupID: backup,
            invocation: context.invocation, parallelism: try context.settings.parallelism(), binDirectory: context.settings.pgBin,
            standby: StandbySettings(configuredByCaller: true))
        let report = try await RestoreEngine(repository: repo, logger: logger).run(options)
        if json {
            try Output.json(report)
        } else {
            print("replica data directory \(report.destination) restored from backup \(report.backupID) (timeline \(report.backupTimeline), \(report.files) files, \(Output.bytes(report.bytes)))")
            for t in report.tablespaces { print("  tablespace \(t.oid)\(t.name.map { " (\($0))" } ?? ""): \(t.directory)") }
            for change in report.configurationChanges { print("  configuration: \(change)") }
            print("  total: \(HumanDuration.format(report.totalSeconds)); Patroni starts it as a replica of \(patroni.scope ?? "its cluster")")
        }
    }
}

struct PatroniBootstrap: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bootstrap",
        abstract: "bootstrap.method: create a new cluster as a point-in-time copy of the repository's.",
        discussion: """
            Restores into --datadir, recovers to the target (default: the latest point), checks the point reached, promotes \
            and shuts the server down cleanly; Patroni then starts it as the new cluster's leader. Archiving is off during \
            that recovery run only, so the copy never adds a timeline to the source's archive; the new cluster archives as \
            its own Patroni configuration says, which must name a repository of its own (see docs/ha.md). Exits non-zero, \
            leaving nothing behind, when the target cannot be reached.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var patroni: PatroniParameters
    @Option(help: "Backup id (default: chosen for the target).") var backup: String?
    @Option(name: [.customLong("target-time"), .customLong("target_time")], help: "Recover to this time (ISO 8601 with zone).")
    var targetTime: String?
    @Option(name: [.customLong("target-lsn"), .customLong("target_lsn")], help: "Recover to this LSN.") var targetLSN: String?
    @Option(name: [.customLong("target-xid"), .customLong("target_xid")], help: "Recover to this transaction id.") var targetXid: UInt64?
    @Option(name: [.customLong("target-name"), .customLong("target_name")], help: "Recover to this restore point.") var targetName: String?
    @Option(name: [.customLong("target-timeline"), .customLong("target_timeline")], help: "latest (default), current, or a number.")
    var targetTimeline: TimelineChoice = .latest
    @Option(name: [.customLong("accept-wal-gap"), .customLong("accept_wal_gap")], help: "Recover up to a gap in the archive knowingly.")
    var acceptWALGap: PatroniBool?
    @Option(name: [.customLong("recovery-timeout"), .customLong("recovery_timeout")], help: "Give up after this long (default 1h).")
    var recoveryTimeout: DurationArgument?
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        let given = [targetTime != nil, targetLSN != nil, targetXid != nil, targetName != nil].filter { $0 }.count
        if given > 1 { throw ValidationError("give at most one of target_time, target_lsn, target_xid, target_name") }
        if let targetLSN, LSN(targetLSN) == nil { throw ValidationError("'\(targetLSN)' is not an LSN: write it as 0/3000060") }
        if let targetTime, (try? Timestamp.parse(targetTime)) == nil {
            throw ValidationError("'\(targetTime)' is not a time: write it as ISO 8601 with a zone, e.g. 2026-12-02T07:00:00Z")
        }
    }

    func run() async throws {
        let context = try Context(global) {
            $0.parallelism = patroni.parallelism
            $0.pgBin = patroni.pgBin
        }
        let logger = context.makeLogger()
        let repo = try await context.openRepository(logger)
        var target = RecoveryTarget.latest
        if let t = targetTime { target = .time(try Timestamp.parse(t)) }
        if let l = targetLSN, let lsn = LSN(l) { target = .lsn(lsn) }
        if let x = targetXid { target = .xid(x) }
        if let n = targetName { target = .name(n) }
        // The recovery run listens on a private socket directory only: the node's own port may be
        // configured but is nobody's business until Patroni starts it.
        let datadir = context.absolute(patroni.datadir)
        let socketDirectory = try RestoreEngine.privateSocketDirectory(for: datadir)
        defer { try? FileManager.default.removeItem(atPath: socketDirectory) }
        var options = RestoreOptions(destination: datadir, target: target, backupID: backup,
            invocation: context.invocation, archiveMode: .keep, targetTimeline: targetTimeline, acceptWALGap: acceptWALGap?.value ?? false,
            parallelism: try context.settings.parallelism(), start: true, port: 5432, socketDirectory: socketDirectory, listenAddresses: "",
            binDirectory: context.settings.pgBin, recoveryTimeout: recoveryTimeout?.seconds ?? 3600,
            walPrefetch: try context.settings.walPrefetch())
        options.recoveryRunSettings = ["archive_mode": "off"]
        options.stopAfterRecovery = true
        let report = try await RestoreEngine(repository: repo, logger: logger).run(options)
        if json {
            try Output.json(report)
        } else {
            print("new cluster \(patroni.scope ?? "") restored into \(report.destination) from backup \(report.backupID)")
            print("  target: \(report.target), timeline \(report.targetTimeline); promoted to timeline \(report.timeline ?? 0)")
            print("  recovered to: last transaction \(report.achievedTime.map(Timestamp.format) ?? "none replayed"), lsn \(report.achievedLSN ?? "?")")
            if let gap = report.walGap { print("  WAL GAP accepted: \(gap.firstMissing) is missing; recovery stopped at \(gap.lastReachableLSN)") }
            for change in report.configurationChanges { print("  configuration: \(change)") }
            print("  shut down cleanly; Patroni starts it (total \(HumanDuration.format(report.totalSeconds)))")
        }
    }
}

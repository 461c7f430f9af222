import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository

extension RestoreOptions.ArchiveMode: ExpressibleByArgument {}

/// `--target-timeline`: `latest`, `current` (the backup's) or a number.
extension TimelineChoice: ExpressibleByArgument {
    public init?(argument: String) { self.init(text: argument) }
}

/// `--tablespace-map OID=DIR` or `NAME=DIR`.
struct TablespaceMapping: ExpressibleByArgument {
    var tablespace: String
    var directory: String

    init?(argument: String) {
        let parts = argument.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, !parts[0].isEmpty, parts[1].hasPrefix("/") else { return nil }
        tablespace = parts[0]
        directory = parts[1]
    }

    static var defaultCompletionKind: CompletionKind { .directory }
}

struct RestoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "restore",
        abstract: "Restore a backup plus WAL into a new, empty data directory (point-in-time recovery).",
        discussion: """
            Before anything is written, the WAL from the backup to the target is checked: a gap in the archive is \
            refused (exit \(LifeboatError.Code.walGap.exitCode)) naming the first missing segment; --accept-wal-gap restores up to it \
            knowingly. With --start, the point reached is compared with the point asked for.

            --standby builds a replica instead of a promoted copy: standby.signal, restore_command (catching up from \
            the archive) and, with --primary-conninfo, streaming from the primary; tablespaces go where the backup's \
            cluster kept them unless mapped; archiving stays as configured (a promoted replica is production). With \
            --start it waits until the standby accepts connections.
            """)

    @OptionGroup var global: GlobalOptions
    @Option(help: "New or empty directory to restore into.") var to: String
    @Option(help: "Backup id (default: chosen for the target and its timeline).") var backup: String?
    @Option(name: .customLong("target-time"), help: "Recover to this time (ISO 8601 with zone).") var targetTime: String?
    @Option(name: .customLong("target-lsn"), help: "Recover to this LSN.") var targetLSN: String?
    @Option(name: .customLong("target-xid"), help: "Recover to this transaction id.") var targetXid: UInt64?
    @Option(name: .customLong("target-name"), help: "Recover to this restore point.") var targetName: String?
    @Flag(help: "Stop as soon as the backup is consistent.") var immediate = false
    @Option(name: .customLong("target-timeline"), help: "latest (default), current (the backup's), or a timeline number.")
    var targetTimeline: TimelineChoice = .latest
    @Option(name: .customLong("tablespace-map"),
        help: "Restore tablespace OID or NAME into DIR (repeatable); default: DIR-tablespaces/OID beside the data directory.")
    var tablespaceMap: [TablespaceMapping] = []
    @Flag(name: .customLong("accept-wal-gap"), help: "Restore up to a gap in the archive knowingly (the report says so).")
    var acceptWALGap = false
    @Flag(help: "Build a streaming standby (replica) rather than a promoted copy.") var standby = false
    @Option(name: .customLong("primary-conninfo"), help: "With --standby: primary_conninfo of the primary to stream from (default: archive only).")
    var primaryConnInfo: String?
    @Option(name: .customLong("primary-slot"), help: "With --standby: the replication slot on the primary.") var primarySlot: String?
    @Flag(help: "Start PostgreSQL, wait for recovery and promotion, report the point reached.") var start = false
    @Option(help: "Port for the started server (default 5432).") var port: Int?
    @Option(name: .customLong("socket-dir"), help: "Unix socket directory for the started server (default /tmp).") var socketDir: String?
    @Option(help: "listen_addresses for the started server (default 127.0.0.1).") var listen: String?
    @Option(name: .customLong("archive-mode"),
        help: "off (default): the restored cluster never archives; keep: it archives its new timeline into the repository once promoted (when it becomes production).")
    var archiveMode: RestoreOptions.ArchiveMode = .off
    @Option(name: .customLong("pg-bin"), help: "PostgreSQL bin directory (default: found from the backup's version).") var pgBin: String?
    @Option(help: "Files restored at once.") var parallelism: Int?
    @Option(name: .customLong("recovery-timeout"), help: "Give up waiting for recovery after this long (default 1h).") var recoveryTimeout: DurationArgument?
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        let given = [targetTime != nil, targetLSN != nil, targetXid != nil, targetName != nil, immediate].filter { $0 }.count
        if given > 1 { throw ValidationError("give at most one of --target-time, --target-lsn, --target-xid, --target-name, --immediate") }
        if let targetLSN, LSN(targetLSN) == nil { throw ValidationError("'\(targetLSN)' is not an LSN: write it as 0/3000060") }
        if port != nil || socketDir != nil || listen != nil, !start { throw ValidationError("--port, --socket-dir and --listen need --start") }
        if primaryConnInfo != nil || primarySlot != nil, !standby { throw ValidationError("--primary-conninfo and --primary-slot need --standby") }
        if standby, given > 0 { throw ValidationError("a standby follows its primary: it takes no recovery target") }
    }

    func target() throws -> RecoveryTarget {
        if let t = targetTime { return .time(try Timestamp.parse(t)) }
        if let l = targetLSN, let lsn = LSN(l) { return .lsn(lsn) }
        if let x = targetXid { return .xid(x) }
        if let n = targetName { return .name(n) }
        return immediate ? .immediate : .latest
    }

    func run() async throws {
        let context = try Context(global) {
            $0.parallelism = parallelism
            $0.pgBin = pgBin
        }
        let logger = context.makeLogger()
        let repo = try await context.openRepository(logger)
        let options = RestoreOptions(destination: context.absolute(to), target: try target(), backupID: backup,
            invocation: context.invocation, archiveMode: archiveMode, targetTimeline: targetTimeline,
            tablespaceMap: Dictionary(tablespaceMap.map { ($0.tablespace, $0.directory) }, uniquingKeysWith: { $1 }),
            acceptWALGap: acceptWALGap, parallelism: try context.settings.parallelism(), start: start, port: port ?? 5432,
            socketDirectory: socketDir ?? "/tmp", listenAddresses: listen ?? "127.0.0.1", binDirectory: context.settings.pgBin,
            recoveryTimeout: recoveryTimeout?.seconds ?? 3600, walPrefetch: try context.settings.walPrefetch(),
            standby: standby ? StandbySettings(primaryConnInfo: primaryConnInfo, primarySlotName: primarySlot) : nil)
        let report = try await RestoreEngine(repository: repo, logger: logger).run(options)
        if json {
            try Output.json(report)
            return
        }
        print("restored backup \(report.backupID) (timeline \(report.backupTimeline)) into \(report.destination) (\(report.files) files, \(Output.bytes(report.bytes)))")
        print("  target: \(report.target), timeline \(report.targetTimeline)")
        for t in report.tablespaces { print("  tablespace \(t.oid)\(t.name.map { " (\($0))" } ?? ""): \(t.directory)\(t.createdInWAL ? " (created after the backup, redirected)" : "")") }
        for change in report.configurationChanges { print("  configuration: \(change)") }
        if let gap = report.walGap {
            print("  WAL GAP accepted: \(gap.firstMissing) is missing; recovery stops at \(gap.lastReachableLSN) (\(gap.lastReachableTime.map(Timestamp.format) ?? "time unknown"))")
        }
        for phase in report.phases { print("  \(phase.name): \(HumanDuration.format(phase.seconds))") }
        if report.started, standby {
            print("  standby running on port \(report.port ?? 0)" + (primaryConnInfo == nil ? ", replaying from the archive" : ", streaming from its primary"))
        } else if report.started {
            print("  server promoted on port \(report.port ?? 0), timeline \(report.timeline ?? 0)")
            print("  recovered to: last transaction \(report.achievedTime.map(Timestamp.format) ?? "none replayed"), lsn \(report.achievedLSN ?? "?")")
        } else {
            print("  start it with: pg_ctl -D \(report.destination) start   (recovery settings are in postgresql.auto.conf; removed when recovery ends)")
            if let handoff = report.keyHandoff { print("  the repository key for recovery is in \(handoff) until recovery ends") }
        }
        print("  total: \(HumanDuration.format(report.totalSeconds))")
    }
}

import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository

struct RestoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "restore",
        abstract: "Restore a backup plus WAL into a new, empty data directory (point-in-time recovery).")

    @OptionGroup var global: GlobalOptions
    @Option(help: "New or empty directory to restore into.") var to: String
    @Option(help: "Backup id (default: chosen for the target).") var backup: String?
    @Option(name: .customLong("target-time"), help: "Recover to this time (ISO 8601 with zone).") var targetTime: String?
    @Option(name: .customLong("target-lsn"), help: "Recover to this LSN.") var targetLSN: String?
    @Option(name: .customLong("target-xid"), help: "Recover to this transaction id.") var targetXid: UInt64?
    @Option(name: .customLong("target-name"), help: "Recover to this restore point.") var targetName: String?
    @Flag(help: "Stop as soon as the backup is consistent.") var immediate = false
    @Flag(help: "Start PostgreSQL, wait for recovery and promotion, report the point reached.") var start = false
    @Option(help: "Port for the started server (default 5432).") var port: Int?
    @Option(name: .customLong("socket-dir"), help: "Unix socket directory for the started server (default /tmp).") var socketDir: String?
    @Option(help: "listen_addresses for the started server (default 127.0.0.1).") var listen: String?
    @Option(name: .customLong("archive-mode"), help: "off (default): the restored cluster never archives; keep: it archives its new timeline into the repository once promoted (use when it becomes production).") var archiveMode: String?
    @Option(name: .customLong("target-timeline"), help: "latest (default), current, or a timeline number.") var targetTimeline: String?
    @Option(name: .customLong("pg-bin"), help: "PostgreSQL bin directory (default: found from the backup's version).") var pgBin: String?
    @Option(help: "Files restored at once.") var parallelism: Int?
    @Option(name: .customLong("recovery-timeout"), help: "Give up waiting for recovery after this long (default 1h).") var recoveryTimeout: String?
    @Flag(help: "Print JSON.") var json = false

    func target() throws -> RecoveryTarget {
        var targets: [RecoveryTarget] = []
        if let t = targetTime { targets.append(.time(try Timestamp.parse(t))) }
        if let l = targetLSN {
            guard let lsn = LSN(l) else { throw LifeboatError(.invalidUsage, "'\(l)' is not an LSN", hint: "write it as 0/3000060") }
            targets.append(.lsn(lsn))
        }
        if let x = targetXid { targets.append(.xid(x)) }
        if let n = targetName { targets.append(.name(n)) }
        if immediate { targets.append(.immediate) }
        guard targets.count <= 1 else {
            throw LifeboatError(.invalidUsage, "give at most one of --target-time, --target-lsn, --target-xid, --target-name, --immediate")
        }
        return targets.first ?? .latest
    }

    func timeline() throws -> String {
        let t = targetTimeline ?? "latest"
        guard t == "latest" || t == "current" || UInt32(t) != nil else {
            throw LifeboatError(.invalidUsage, "--target-timeline must be latest, current or a number")
        }
        return t
    }

    func run() async throws {
        let settings = try Settings(global)
        let logger = settings.makeLogger()
        let recoveryTarget = try target()
        guard let mode = RestoreOptions.ArchiveMode(rawValue: archiveMode ?? "off") else {
            throw LifeboatError(.invalidUsage, "--archive-mode must be keep or off")
        }
        let repo = try await settings.openRepository(logger)
        let (fetch, serverEnv) = settings.restoreCommandAndEnvironment()
        let options = RestoreOptions(destination: Settings.absolute(to), target: recoveryTarget, backupID: backup,
            restoreCommand: fetch, archiveMode: mode, targetTimeline: try timeline(), parallelism: try settings.parallelism(parallelism), start: start,
            port: port ?? 5432, socketDirectory: socketDir ?? "/tmp", listenAddresses: listen ?? "127.0.0.1",
            binDirectory: pgBin ?? settings.string("pg_bin"), serverEnvironment: serverEnv,
            recoveryTimeout: try HumanDuration.parse(recoveryTimeout ?? "1h"), walPrefetch: try settings.walPrefetch(nil))
        let report = try await RestoreEngine(repository: repo, logger: logger).run(options)
        if json {
            try Output.json(report)
            return
        }
        print("restored backup \(report.backupID) into \(report.destination) (\(report.files) files, \(Output.bytes(report.bytes)))")
        print("  target: \(report.target)")
        for phase in report.phases { print("  \(phase.name): \(HumanDuration.format(phase.seconds))") }
        if report.started {
            print("  server promoted on port \(report.port ?? 0), timeline \(report.timeline ?? 0)")
            print("  recovered to: last transaction \(report.achievedTime.map(Timestamp.format) ?? "none replayed"), lsn \(report.achievedLSN ?? "?")")
        } else {
            print("  start it with: pg_ctl -D \(report.destination) start   (recovery settings are in postgresql.auto.conf)")
        }
        print("  total: \(HumanDuration.format(report.totalSeconds))")
    }
}

import ArgumentParser
import Dispatch
import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository
import LifeboatRunbooks
import LifeboatService

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "serve",
        abstract: "Run the daemon: automated backups in the backup window, expire, replica copy, verify and drills on schedule; /metrics, /healthz and /status over HTTP.",
        discussion: "Configured under serve: in the configuration file (see docs/user-guide.md). SIGTERM or Ctrl-C stops it; a job cut short leaves garbage at worst, never a broken backup.")

    @OptionGroup var global: GlobalOptions
    @Option(help: "HOST:PORT for /metrics, /healthz and /status (serve.listen; default 127.0.0.1:9187; 'off' for none).") var listen: String?
    @Option(name: .customLong("state-file"), help: "The daemon's job records (serve.state_file; default ~/.lifeboat/serve-state.json).") var stateFile: String?
    @Option(help: "Data directory of the cluster (also PGDATA); without one no backups are scheduled.") var pgdata: String?
    @Option(help: "Host or socket directory (also PGHOST).") var pghost: String?
    @Option(help: "Port (also PGPORT).") var pgport: Int?
    @Option(help: "User (also PGUSER).") var pguser: String?
    @Flag(help: "Run what is due now, once, and exit (for cron); exits 15 if a job failed.") var once = false

    func run() async throws {
        let settings = try Settings(global)
        let logger = settings.makeLogger(default: .notice)
        let serve = settings.file["serve"] as? [String: Any] ?? [:]
        func value(_ key: String) -> String? { serve[key].map { "\($0)" } }
        func duration(_ key: String, _ fallback: String?) throws -> TimeInterval? {
            guard let text = value(key) ?? fallback, !["off", "never", "false", "no"].contains(text.lowercased()) else { return nil }
            return try HumanDuration.parse(text)
        }
        func flag(_ key: String, _ fallback: Bool) throws -> Bool {
            guard let text = value(key) else { return fallback }
            switch text.lowercased() {
            case "true", "yes", "on": return true
            case "false", "no", "off": return false
            default: throw LifeboatError(.invalidUsage, "serve.\(key) must be true or false, not '\(text)'")
            }
        }

        let production = try settings.endpoint(host: pghost, port: pgport, user: pguser, database: nil)
        let dataDirectory = pgdata ?? settings.string("pgdata", env: "PGDATA")
        let window = try value("backup_window").map(BackupWindow.parse)
        let schedule = ServiceSchedule(backupWindow: window, backupEvery: try duration("backup_every", "1d"),
            verifyEvery: try duration("verify_every", "7d"), drillEvery: try duration("drill_every", "off"),
            retryAfter: try duration("retry_after", "10m") ?? 600)
        let policy = try settings.retention()
        var backup: BackupOptions?
        if let dataDirectory, schedule.backupEvery != nil {
            backup = BackupOptions(pgdata: dataDirectory, endpoint: production, kind: .automated, policy: policy,
                parallelism: try settings.parallelism(nil), walTimeout: try settings.walTimeout())
        } else if schedule.backupEvery != nil {
            logger.warning("no data directory (pgdata, PGDATA or --pgdata): serve will not take backups, only watch")
        }
        var drill: DrillOptions?
        if schedule.drillEvery != nil {
            guard let dataDirectory else {
                throw LifeboatError(.invalidUsage, "serve.drill_every needs the cluster's data directory", hint: "set pgdata or PGDATA")
            }
            let name = value("drill_scenario") ?? DrillScenario.snapshotRestore.rawValue
            guard let kind = DrillScenario(rawValue: name), !kind.runsARunbook else {
                throw LifeboatError(.invalidUsage, "serve.drill_scenario must be snapshot-restore or point-in-time, not '\(name)'",
                    hint: "runbook drills ask for confirmations: run them with `lifeboat drill run --scenario ... --runbook`")
            }
            drill = try settings.drillOptions(kind, objectives: try settings.drillObjectives(kind), pgdata: dataDirectory, production: production)
        }
        let home = ProcessInfo.processInfo.environment["HOME"] ?? "/tmp"
        let state = Settings.absolute(stateFile ?? value("state_file") ?? home + "/.lifeboat/serve-state.json")
        let configuration = ServiceConfiguration(schedule: schedule, backup: backup,
            expirePolicy: try flag("expire", true) ? policy : nil, copyToReplicas: try flag("copy_to_replicas", true),
            replicaCount: try settings.replicaConfigs.count,
            drill: drill, production: production, rpoObjective: try duration("rpo_objective", "5m") ?? 300, stateFile: state,
            tick: try duration("tick", "30s") ?? 30, refreshEvery: try duration("refresh", "5m") ?? 300,
            parallelism: try settings.parallelism(nil))
        let listenAddress = try Self.listenAddress(listen ?? value("listen") ?? "127.0.0.1:9187")

        let lock = try ServiceLock(stateFile: state)
        let repo = try await settings.openRepository(logger)
        let replicaConfigs = try settings.replicaConfigs
        let service = try BackupService(repository: repo, replicas: {
            var opened: [Repository] = []
            for path in replicaConfigs { opened.append(try await Settings.openReplica(path, logger: logger)) }
            return opened
        }, configuration: configuration, logger: logger)

        if once {
            await service.observeRepository()
            let ran = await service.runDueJobs(now: Date())
            let s = await service.snapshot()
            for job in ran {
                let r = s.jobs[job.rawValue]
                print("\(job.rawValue): \(r?.succeeded == true ? "ok" : "FAILED") (\(r?.reason ?? "")) \(r?.message ?? "")")
            }
            if ran.isEmpty { print("nothing due; next backup \(s.nextBackup.map(Timestamp.format) ?? "not scheduled")") }
            withExtendedLifetime(lock) {}
            if ran.contains(where: { s.jobs[$0.rawValue]?.succeeded == false }) {
                throw LifeboatError(.objectiveMissed, "a scheduled job failed", hint: "see the lines above and the log")
            }
            return
        }

        Self.say("lifeboat serve: repository \(repo.store.location), backups \(backup == nil ? "off" : window.map { "in \($0) UTC" } ?? "every \(HumanDuration.format(schedule.backupEvery ?? 0))"), state \(state)")
        let main = Task {
            await withDiscardingTaskGroup { group in
                if let (host, port) = listenAddress.map({ ($0.0, $0.1) }) {
                    group.addTask {
                        do {
                            try await StatusServer(host: host, port: port, logger: logger) { method, path in
                                await service.answer(method: method, path: path)
                            }.run { bound in Self.say("listening on http://\(host):\(bound) (/metrics, /healthz, /status)") }
                        } catch {
                            if Task.isCancelled { return }
                            logger.critical("the status server stopped", metadata: ["lifeboat.error": .string("\(error)")])
                            FileHandle.standardError.write(Data("\((error as? LifeboatError)?.description ?? "\(error)")\n".utf8))
                            Foundation.exit(LifeboatError.Code.io.exitCode)
                        }
                    }
                }
                group.addTask { await service.run() }
            }
        }
        var sources: [any DispatchSourceSignal] = []
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { main.cancel() }
            source.resume()
            sources.append(source)
        }
        await main.value
        sources.forEach { $0.cancel() }
        withExtendedLifetime(lock) {}
    }

    /// A line on stdout at once (stdout to a file is block-buffered; a daemon's log must not lag).
    static func say(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }

    /// "HOST:PORT", ":PORT" (loopback) or "off".
    static func listenAddress(_ text: String) throws -> (String, Int)? {
        if text.lowercased() == "off" { return nil }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw LifeboatError(.invalidUsage, "listen address '\(text)' is not HOST:PORT", hint: "e.g. 127.0.0.1:9187, or off")
        }
        let host = String(text[..<colon])
        return (host.isEmpty ? "127.0.0.1" : host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port)
    }
}

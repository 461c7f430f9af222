import ArgumentParser
import Dispatch
import Foundation
import LifeboatConfiguration
import LifeboatCore
import Logging
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
    @OptionGroup var connection: ConnectionOptions
    @Flag(help: "Run what is due now, once, and exit (for cron); exits 15 if a job failed.") var once = false

    func validate() throws {
        if let listen { _ = try ListenAddress(listen) }
    }

    func run() async throws {
        let context = try Context(global) { connection.apply(to: &$0) }
        let logger = context.makeLogger(default: .notice)
        let serve = context.settings.serve
        let production = try context.endpoint()
        let dataDirectory = try context.pgdata(required: false)
        let window = serve.backupWindow
        let schedule = ServiceSchedule(backupWindow: window, backupEvery: serve.resolvedBackupEvery, verifyEvery: serve.resolvedVerifyEvery,
            drillEvery: serve.resolvedDrillEvery, retryAfter: serve.resolvedRetryAfter)
        let policy = try context.settings.retention()
        var backup: BackupOptions?
        if let dataDirectory, schedule.backupEvery != nil {
            backup = BackupOptions(pgdata: dataDirectory, endpoint: production, kind: .automated, policy: policy,
                parallelism: try context.settings.parallelism(), walTimeout: try context.settings.walTimeout())
        } else if schedule.backupEvery != nil {
            logger.warning("no data directory (pgdata, PGDATA or --pgdata): serve will not take backups, only watch")
        }
        var drill: DrillOptions?
        if schedule.drillEvery != nil {
            guard let dataDirectory else {
                throw LifeboatError(.invalidUsage, "serve.drill_every needs the cluster's data directory", hint: "set pgdata or PGDATA")
            }
            let name = serve.resolvedDrillScenario
            guard let kind = DrillScenario(rawValue: name), !kind.runsARunbook else {
                throw LifeboatError(.invalidUsage, "serve.drill_scenario must be snapshot-restore or point-in-time, not '\(name)'",
                    hint: "runbook drills ask for confirmations: run them with `lifeboat drill run --scenario ... --runbook`")
            }
            drill = try context.drillOptions(kind, objectives: try context.drillObjectives(kind), pgdata: dataDirectory, production: production)
        }
        let home = ProcessInfo.processInfo.environment["HOME"] ?? "/tmp"
        let state = context.absolute(stateFile ?? serve.stateFile ?? home + "/.lifeboat/serve-state.json")
        let mirrors = context.mirrors(logger)
        var configuration = ServiceConfiguration(schedule: schedule, backup: backup,
            expirePolicy: serve.resolvedExpire ? policy : nil, copyToMirrors: serve.resolvedCopyToMirrors,
            drill: drill, production: production, rpoObjective: serve.resolvedRPOObjective, stateFile: state,
            tick: serve.resolvedTick, refreshEvery: serve.resolvedRefresh, parallelism: try context.settings.parallelism(),
            election: serve.ha.map {
                BackupNodeElection(patroniURL: $0.patroni, maxLagBytes: $0.maxLag?.bytes ?? Defaults.Serve.haMaxLag, preferLeader: $0.preferLeader ?? false)
            }, aws: try Self.awsJobs(context, logger: logger), awsDrill: try Self.awsDrill(context, logger: logger))
        let deployment = try context.settings.awsDeployment()
        var protected = ProtectedCluster(host: production.host, port: production.port, dataDirectory: dataDirectory,
            awsCluster: deployment.auroraCluster, awsRegion: deployment.region ?? context.settings.awsAccount.region)
        protected.secondCopies = mirrors.entries.map { "mirror \($0.name)" } + (deployment.secondRegion.map { ["aws region \($0)"] } ?? [])
        protected.rtoObjectiveSeconds = serve.resolvedRTOObjective
        protected.recoveryWindowTargetSeconds = policy.recoveryWindow
        configuration.protected = protected
        let listenAddress = try listen.map(ListenAddress.init) ?? serve.resolvedListen

        let lock = try ServiceLock(stateFile: state)
        let repo = try await context.openRepository(logger)
        let service = try BackupService(repository: repo, mirrors: mirrors, configuration: configuration, logger: logger)

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

        Self.say("lifeboat serve: repository \(repo.store.location), backups \(backup == nil ? "off" : window.map { "in \($0) UTC" } ?? "every \(HumanDuration.format(schedule.backupEvery ?? 0))")"
            + (serve.ha.map { ", on the node Patroni (\($0.patroni)) elects" } ?? "") + ", state \(state)")
        let main = Task {
            await withDiscardingTaskGroup { group in
                if case .address(let host, let port) = listenAddress {
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

    /// `aws.schedule.drill`: the Aurora drill (point-in-time unless the runbook says a snapshot).
    static func awsDrill(_ context: Context, logger: Logger) throws -> AWSDrillJob? {
        let d = try context.settings.awsDeployment()
        guard let every = d.schedule.drill else { return nil }
        let text = try BuiltinRunbooks.load(d.drillRunbook)
        let book = try Runbook(yaml: text)
        let scenario: DrillScenario = d.drillRunbook == "builtin:aws-restore-drill" ? .snapshotRestore : .pointInTime
        let vars = try RunbookOptions.overrides(d.drillVars.map { "\($0.key)=\($0.value)" }, for: book)
        let executor = try RunbookOptions.executor(context, yes: true, quiet: true)
        return AWSDrillJob(every: every, scenario: scenario, text: text, vars: vars, objectives: try context.drillObjectives(scenario),
            executor: executor)
    }

    /// The `aws:` section's jobs, when it describes a deployment (nil: no AWS job is scheduled).
    static func awsJobs(_ context: Context, logger: Logger) throws -> AWSProtection? {
        let d = try context.settings.awsDeployment()
        let s = d.schedule
        guard [s.check, s.snapshot, s.taskDefinitions, s.terraformState, s.configSnapshot, s.secrets, s.logs].contains(where: { $0 != nil }) else { return nil }
        return AWSProtection(deployment: d, account: context.awsOverrides, progress: { line in logger.info("aws: \(line)") })
    }
}

import Foundation
import LifeboatConfiguration
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository
import LifeboatRunbooks
import Logging

/// What `serve` does, built by the CLI from the configuration.
public struct ServiceConfiguration: Sendable {
    public var schedule: ServiceSchedule
    /// Automated backups (nil: the daemon only watches; backups come from elsewhere).
    public var backup: BackupOptions?
    /// Retention applied after every backup (nil: no expire).
    public var expirePolicy: RetentionPolicy?
    /// Catch the mirror repositories up after every backup.
    public var copyToMirrors: Bool
    /// The drill run every `schedule.drillEvery` (snapshot-restore or point-in-time).
    public var drill: DrillOptions?
    /// The cluster whose archiver is watched (nil: no live archive metrics).
    public var production: PostgresEndpoint?
    /// Archive lag above this makes the service unhealthy (the seed's RPO: 5 minutes).
    public var rpoObjective: TimeInterval
    /// Where the daemon keeps its job records.
    public var stateFile: String
    /// How often the schedule is looked at.
    public var tick: TimeInterval
    /// How often the repository is listed for metrics (a full listing: keep it minutes on S3).
    public var refreshEvery: TimeInterval
    public var parallelism: Int
    /// `serve` on every node of a Patroni cluster: who takes the scheduled backups (nil: this node).
    public var election: BackupNodeElection?
    /// The seed's AWS jobs for the `aws:` section's deployment (nil: none).
    public var aws: AWSProtection?
    /// The Aurora drill run every `aws.schedule.drill` (nil: none).
    public var awsDrill: AWSDrillJob?
    /// What the dashboard names as protected, and the objectives it shows.
    public var protected = ProtectedCluster()

    public init(schedule: ServiceSchedule, backup: BackupOptions?, expirePolicy: RetentionPolicy?, copyToMirrors: Bool,
        drill: DrillOptions?, production: PostgresEndpoint?, rpoObjective: TimeInterval = 300, stateFile: String,
        tick: TimeInterval = 30, refreshEvery: TimeInterval = 300, parallelism: Int = 4, election: BackupNodeElection? = nil,
        aws: AWSProtection? = nil, awsDrill: AWSDrillJob? = nil)
    {
        self.aws = aws
        self.awsDrill = awsDrill
        self.election = election
        self.schedule = schedule
        self.backup = backup
        self.expirePolicy = expirePolicy
        self.copyToMirrors = copyToMirrors
        self.drill = drill
        self.production = production
        self.rpoObjective = rpoObjective
        self.stateFile = stateFile
        self.tick = tick
        self.refreshEvery = refreshEvery
        self.parallelism = parallelism
    }
}

/// The Aurora drill serve runs on schedule: a runbook drill (`builtin:aws-pitr-drill` by default)
/// with its variables and objectives, run by an executor that answers its confirmations.
public struct AWSDrillJob: Sendable {
    public var every: TimeInterval
    public var scenario: DrillScenario
    public var text: String
    public var vars: [String: String]
    public var objectives: DrillObjectives
    public var executor: RunbookExecutor

    public init(every: TimeInterval, scenario: DrillScenario, text: String, vars: [String: String], objectives: DrillObjectives,
        executor: RunbookExecutor)
    {
        self.every = every
        self.scenario = scenario
        self.text = text
        self.vars = vars
        self.objectives = objectives
        self.executor = executor
    }
}

/// The daemon: runs due jobs one at a time (a backup, then expire and the mirror copy; verify;
/// drills), keeps their records in the state file, and observes the repository and the archiver for
/// /status, /metrics and /healthz. Cancelling `run()` stops it; a job cut short leaves what an
/// interrupted command leaves (garbage at worst, never a visible broken backup).
public actor BackupService {
    let repository: Repository
    /// The further repositories (each opened once: an open derives a key with scrypt).
    let mirrors: MirrorSet
    let configuration: ServiceConfiguration
    let logger: Logger
    var state: ServiceState
    var running: ServiceJob?
    var repositoryObservation: RepositoryObservation?
    var repositoryError: String?
    var lastDrill: DrillObservation?
    var drillHistory: [DrillObservation] = []
    var mirrorStatuses: [MirrorStatus] = []
    var archiver: ArchiverStatus?
    var archiverError: String?
    var archiverReadAt: Date = .distantPast
    /// The last election of the backup node (HA), and when.
    var backupNode: BackupNodeElection.Choice?

    public init(repository: Repository, mirrors: MirrorSet, configuration: ServiceConfiguration, logger: Logger) throws {
        self.repository = repository
        self.mirrors = mirrors
        self.configuration = configuration
        self.logger = logger
        state = try ServiceState.load(configuration.stateFile)
        // A job the previous daemon never finished (killed, host rebooted) counts as failed: it
        // shows in health and metrics instead of staying "running" forever.
        for job in ServiceJob.allCases {
            guard var record = state[job], record.finishedAt == nil else { continue }
            record.finishedAt = record.startedAt
            record.succeeded = false
            record.failures += 1
            record.lastFailureAt = record.startedAt
            record.message = "interrupted: the daemon stopped during the job (started \(Timestamp.format(record.startedAt)))"
            state[job] = record
        }
    }

    /// Runs the schedule until cancelled.
    public func run() async {
        await observeRepository()
        var observedAt = Date()
        while !Task.isCancelled {
            await runDueJobs(now: Date())
            if Date().timeIntervalSince(observedAt) >= configuration.refreshEvery {
                await observeRepository()
                observedAt = Date()
            }
            try? await Task.sleep(for: .seconds(configuration.tick))
        }
        logger.notice("lifeboat serve stopping")
    }

    /// Runs every job that is due now, in order; returns the jobs it ran.
    @discardableResult
    public func runDueJobs(now: Date) async -> [ServiceJob] {
        var ran: [ServiceJob] = []
        let schedule = configuration.schedule
        if let options = configuration.backup,
            let due = schedule.backupDue(lastStart: repositoryObservation?.newestAutomatedStart,
                lastFailure: state[.backup]?.lastFailureAt, now: now),
            await backsUpHere(due: due, now: now)
        {
            ran.append(.backup)
            let ok = await perform(.backup, reason: due.reason) {
                let result = try await BackupEngine(repository: self.repository, logger: self.logger).run(options)
                let b = result.backup
                return "backup \(b.id): \(b.logicalBytes) bytes read, \(b.newStoredBytes) stored new, in \(HumanDuration.format(result.durationSeconds))"
            }
            if ok, let policy = configuration.expirePolicy {
                ran.append(.expire)
                await perform(.expire, reason: "after the backup") {
                    let r = try await Expirer(repository: self.repository, policy: policy).run(dryRun: false)
                    return "\(r.backups.filter { !$0.keep }.count) backup(s) expired, \(r.chunksRemoved) chunks and \(r.walFilesRemoved) WAL files removed"
                }
            }
            if ok, configuration.copyToMirrors, !mirrors.isEmpty {
                ran.append(.copy)
                await perform(.copy, reason: "after the backup") {
                    var lines: [String] = []
                    var problems = 0
                    for target in try await self.mirrors.all() {
                        let r = try await RepositoryCopier(source: self.repository, target: target,
                            parallelism: self.configuration.parallelism, logger: self.logger).run(backupIDs: nil, verify: false)
                        lines.append("\(target.store.location): \(r.copiedBackups.count) backup(s), \(r.walFilesCopied) WAL file(s) copied")
                        problems += r.verifyProblems?.count ?? 0
                    }
                    if problems > 0 { throw LifeboatError(.integrity, "mirrors have \(problems) problem(s) after the copy") }
                    return lines.joined(separator: "; ")
                }
            }
            await observeRepository()
        }
        if let due = ServiceSchedule.periodicDue(every: schedule.verifyEvery, last: state[.verify]?.lastSuccessAt,
            lastFailure: state[.verify]?.lastFailureAt, retryAfter: schedule.retryAfter, now: now),
            await electedHere(now: now)
        {
            ran.append(.verify)
            await perform(.verify, reason: due.reason) {
                let r = try await Verifier(repository: self.repository, parallelism: self.configuration.parallelism).run()
                guard r.ok else {
                    throw LifeboatError(.integrity, "verify found \(r.problems.count) problem(s), first: \(r.problems[0].object): \(r.problems[0].message)",
                        hint: "run `lifeboat verify` for the full list")
                }
                return "\(r.objectsChecked) objects, \(r.backupsChecked) backups and \(r.walFilesChecked) WAL files checked"
            }
        }
        if let options = configuration.drill,
            let due = ServiceSchedule.periodicDue(every: schedule.drillEvery, last: lastDrill?.startedAt,
                lastFailure: state[.drill]?.lastFailureAt, retryAfter: schedule.retryAfter, now: now),
            await electedHere(now: now)
        {
            ran.append(.drill)
            await perform(.drill, reason: due.reason) {
                let report = try await Drill(repository: self.repository, logger: self.logger).run(options) { line in
                    self.logger.info("drill: \(line)")
                }
                guard report.passed else {
                    throw LifeboatError(.objectiveMissed, "drill \(report.id) failed: \(report.error ?? "a check failed or an objective was missed")",
                        hint: "`lifeboat drill history` and the report show which")
                }
                return "drill \(report.id) passed: RTO \(HumanDuration.format(report.rtoSeconds)), RPO \(report.rpoSeconds.map { String(format: "%.3f s", $0) } ?? "n/a")"
            }
            await observeRepository()
        }
        if let aws = configuration.aws, await electedHere(now: now) {
            ran += await runAWSJobs(aws, now: now)
        }
        if let drill = configuration.awsDrill,
            let due = ServiceSchedule.periodicDue(every: drill.every, last: state[.awsDrill]?.lastSuccessAt, lastFailure: state[.awsDrill]?.lastFailureAt,
                retryAfter: schedule.retryAfter, now: now),
            await electedHere(now: now)
        {
            ran.append(.awsDrill)
            await perform(.awsDrill, reason: due.reason) {
                let report = try await RunbookDrill(repository: self.repository, executor: drill.executor).run(scenario: drill.scenario,
                    runbook: try Runbook(yaml: drill.text), text: drill.text, vars: drill.vars, objectives: drill.objectives)
                guard report.passed else {
                    throw LifeboatError(.objectiveMissed, "drill \(report.id) failed: \(report.error ?? report.checks.filter { !$0.passed }.map { "\($0.name): \($0.detail)" }.joined(separator: "; "))",
                        hint: "`lifeboat drill history` and the report show which")
                }
                return "drill \(report.id) passed: RTO \(HumanDuration.format(report.rtoSeconds))\(report.rpoSeconds.map { String(format: ", RPO %.3f s", $0) } ?? "")"
            }
            await observeRepository()
        }
        return ran
    }

    /// The AWS jobs that are due: checks whenever due, the snapshot and the exports inside the AWS
    /// window (`aws.schedule.window`) unless a whole cycle was missed. A job whose outcome has
    /// problems (drift, a secret gone) is recorded as failed with them.
    func runAWSJobs(_ aws: AWSProtection, now: Date) async -> [ServiceJob] {
        let s = aws.deployment.schedule
        var ran: [ServiceJob] = []
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? .current
        /// A windowed job (the snapshot and the exports) runs inside the AWS window, and the weekly
        /// snapshot on its weekday, once `every` (less the window, as backups do: wherever in the
        /// window the last one fell) has passed; outside them only when the next chance was missed
        /// too (a late copy beats none).
        func due(_ job: ServiceJob, every: TimeInterval?, windowed: Bool) -> ServiceSchedule.Due? {
            guard let every else { return nil }
            let last = state[job]?.lastSuccessAt
            if let failed = state[job]?.lastFailureAt, failed > (last ?? .distantPast), now < failed.addingTimeInterval(configuration.schedule.retryAfter) {
                return nil
            }
            guard let last else { return ServiceSchedule.Due(reason: "never run") }
            let elapsed = now.timeIntervalSince(last)
            let weekday = job == .awsSnapshot ? s.snapshotWeekday : nil
            guard windowed, s.window != nil || weekday != nil else {
                return elapsed >= every ? ServiceSchedule.Due(reason: "every \(HumanDuration.format(every))") : nil
            }
            let inWindow = s.window.map { $0.occurrence(containing: now) != nil } ?? true
            let onDay = weekday.map { calendar.component(.weekday, from: now) == $0 } ?? true
            let slack = min(s.window?.lengthSeconds ?? 0, every / 2)
            if inWindow, onDay, elapsed >= every - slack {
                return ServiceSchedule.Due(reason: "every \(HumanDuration.format(every))" + (s.window.map { " in the AWS window \($0)" } ?? ""))
            }
            // The next chance: one window later, or a day later for a job on a weekday.
            let grace = weekday != nil ? 86400 : (s.window?.lengthSeconds ?? 0)
            if elapsed >= every + grace {
                return ServiceSchedule.Due(reason: "missed: the last run was \(HumanDuration.format(elapsed)) ago")
            }
            return nil
        }
        @Sendable func outcome(_ o: AWSJobOutcome) throws -> String {
            guard o.ok else { throw LifeboatError(.objectiveMissed, o.summary) }
            return o.lines.joined(separator: "; ")
        }
        let repository = self.repository
        let jobs: [(ServiceJob, TimeInterval?, Bool, @Sendable () async throws -> String)] = [
            (.awsCheck, s.check, false, { try outcome(try await aws.check(fix: false)) }),
            (.awsSnapshot, s.snapshot, true, {
                try outcome(try await aws.snapshot(purpose: "weekly", retentionDays: nil, copy: aws.deployment.copyToSecondRegion, wait: true).outcome)
            }),
            (.awsExpireSnapshots, s.snapshot.map { _ in 86400 }, true, { try outcome(try await aws.expireSnapshots(dryRun: false).outcome) }),
            (.awsTaskDefinitions, s.taskDefinitions, true, { try outcome(try await aws.exportTaskDefinitions(into: repository).outcome) }),
            (.awsTerraformState, s.terraformState, true, { try outcome(try await aws.backupTerraformState(into: repository)) }),
            (.awsConfigSnapshot, s.configSnapshot, true, { try outcome(try await aws.configSnapshot()) }),
            (.awsSecrets, s.secrets, true, { try outcome(try await aws.exportSecrets(into: repository)) }),
            (.awsLogs, s.logs, true, { try outcome(try await aws.exportLogs()) }),
        ]
        for (job, every, windowed, body) in jobs {
            guard !Task.isCancelled, let d = due(job, every: every, windowed: windowed) else { continue }
            ran.append(job)
            await perform(job, reason: d.reason, body)
        }
        return ran
    }

    /// With an election (HA): whether this node takes the due backup. The winner looks at the
    /// repository again first: another node that won a moment ago may have taken it already.
    func backsUpHere(due: ServiceSchedule.Due, now: Date) async -> Bool {
        guard let election = configuration.election else { return true }
        let choice = await election.elect(now: now)
        if choice != backupNode?.withTime(choice.checkedAt) {
            logger.notice("backup node elected", metadata: ["lifeboat.backup_node": .string(choice.backupNode ?? "none"),
                "lifeboat.this_node": .string(choice.thisNode ?? "?"), "lifeboat.reason": .string(choice.error ?? choice.reason)])
        }
        backupNode = choice
        guard choice.thisNodeBacksUp else { return false }
        await observeRepository()
        return configuration.schedule.backupDue(lastStart: repositoryObservation?.newestAutomatedStart,
            lastFailure: state[.backup]?.lastFailureAt, now: now) != nil
    }

    /// With an election (HA): whether this node is the backup node now, which also runs verify and
    /// drills (one node's work, not every node's). An election younger than 10 s is reused.
    func electedHere(now: Date) async -> Bool {
        guard let election = configuration.election else { return true }
        if let last = backupNode, now.timeIntervalSince(last.checkedAt) < 10 { return last.thisNodeBacksUp }
        let choice = await election.elect(now: now)
        backupNode = choice
        return choice.thisNodeBacksUp
    }

    /// Runs one job, records it before and after (the record survives a crash as "started").
    @discardableResult
    func perform(_ job: ServiceJob, reason: String, _ body: @Sendable () async throws -> String) async -> Bool {
        let started = Date()
        var record = state[job] ?? JobRecord(startedAt: started, reason: reason, message: "", runs: 0, failures: 0)
        record.startedAt = started
        record.finishedAt = nil
        record.succeeded = nil
        record.reason = reason
        record.message = "running"
        record.runs += 1
        state[job] = record
        saveState()
        running = job
        logger.notice("job started", metadata: ["lifeboat.job": .string(job.rawValue), "lifeboat.reason": .string(reason)])
        defer { running = nil }
        let outcome: Result<String, any Error>
        do {
            outcome = .success(try await body())
        } catch {
            outcome = .failure(error)
        }
        let finished = Date()
        record.finishedAt = finished
        switch outcome {
        case .success(let message):
            record.succeeded = true
            record.message = message
            record.lastSuccessAt = finished
            logger.notice("job succeeded", metadata: ["lifeboat.job": .string(job.rawValue), "lifeboat.result": .string(message)])
        case .failure(let error):
            record.succeeded = false
            record.failures += 1
            record.lastFailureAt = finished
            record.message = error is CancellationError || Task.isCancelled
                ? "interrupted: the daemon was stopped during the job"
                : (error as? LifeboatError)?.description ?? "\(error)"
            logger.error("job failed", metadata: ["lifeboat.job": .string(job.rawValue), "lifeboat.error": .string(record.message)])
        }
        state[job] = record
        saveState()
        return record.succeeded == true
    }

    func saveState() {
        do {
            try state.save(configuration.stateFile)
        } catch {
            logger.error("cannot save the service state", metadata: ["lifeboat.error": .string("\(error)")])
        }
    }

    /// Lists the repository (backups, WAL, drills) and measures how far each mirror lags.
    public func observeRepository() async {
        do {
            try await repository.checkPresent()
            let summary = try await RepositorySummary.make(repository)
            repositoryObservation = RepositoryObservation(summary, observedAt: Date())
            let scenario = configuration.drill?.scenario
            let all = try await DrillHistory.all(repository)
            let drills = all.filter { scenario == nil || $0.scenario == scenario }
            func observation(_ d: DrillReport) -> DrillObservation {
                DrillObservation(id: d.id, scenario: d.scenario.rawValue, startedAt: d.startedAt, passed: d.passed,
                    rtoSeconds: d.rtoSeconds, rtoObjectiveSeconds: d.objectives.rtoSeconds, rpoSeconds: d.rpoSeconds,
                    rpoObjectiveSeconds: d.objectives.rpoSeconds)
            }
            lastDrill = drills.last.map(observation)
            drillHistory = all.suffix(24).map(observation)
            repositoryError = nil
        } catch {
            repositoryError = (error as? LifeboatError)?.message ?? "\(error)"
            logger.error("cannot observe the repository", metadata: ["lifeboat.error": .string(repositoryError ?? "")])
        }
        mirrorStatuses = await mirrors.statuses(primary: repository)
    }

    /// Reads the cluster's archiver state (at most once a second; scrapes may come often).
    func observeArchiver() async {
        guard let endpoint = configuration.production, Date().timeIntervalSince(archiverReadAt) >= 1 else { return }
        archiverReadAt = Date()
        do {
            let session = try await PostgresSession.connect(endpoint, logger: logger)
            defer { Task { await session.close() } }
            archiver = try await ArchiverStatus.read(session)
            archiverError = nil
        } catch {
            archiver = nil
            archiverError = (error as? LifeboatError)?.message ?? "\(error)"
        }
    }

    /// Everything known now, the archiver read fresh.
    public func snapshot() async -> ServiceSnapshot {
        await observeArchiver()
        let now = Date()
        if let election = configuration.election, now.timeIntervalSince(backupNode?.checkedAt ?? .distantPast) >= 10 {
            backupNode = await election.elect(now: now)
        }
        var s = ServiceSnapshot(now: now, repositoryLocation: repository.store.location, schedule: configuration.schedule,
            rpoObjectiveSeconds: configuration.rpoObjective, repository: repositoryObservation, repositoryError: repositoryError,
            archiver: archiver, archiverError: archiverError, mirrors: mirrorStatuses, lastDrill: lastDrill, jobs: state.jobs,
            running: running?.rawValue, backupNode: backupNode,
            nextBackup: configuration.backup == nil ? nil
                : configuration.schedule.nextBackup(lastStart: repositoryObservation?.newestAutomatedStart, now: now))
        s.protected = configuration.protected
        s.drillHistory = drillHistory
        var due: [Date] = []
        if let every = configuration.schedule.drillEvery, configuration.drill != nil {
            due.append(lastDrill.map { $0.startedAt.addingTimeInterval(every) } ?? now)
        }
        if let aws = configuration.awsDrill {
            due.append(state[.awsDrill]?.lastSuccessAt.map { $0.addingTimeInterval(aws.every) } ?? now)
        }
        s.nextDrill = due.min()
        return s
    }

    /// The HTTP routes.
    public func answer(method: String, path: String) async -> HTTPAnswer {
        let s = await snapshot()
        switch path {
        case "/metrics":
            return HTTPAnswer(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: ServiceMetrics.render(s))
        case "/healthz", "/health":
            let h = s.health
            var body = h.healthy ? "ok\n" : h.problems.map { "- \($0)\n" }.joined()
            if let node = s.backupNode { body += "backup node: \(node.summary)\n" }
            return HTTPAnswer(status: h.healthy ? 200 : 503, body: body)
        case "/":
            return HTTPAnswer(status: 200, contentType: "text/html; charset=utf-8", body: ServiceDashboard.html(s))
        case "/status":
            let encoder = RepositoryJSON.encoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            struct Status: Encodable {
                var snapshot: ServiceSnapshot
                var health: HealthReport
            }
            let body = (try? encoder.encode(Status(snapshot: s, health: HealthReport(s)))).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
            return HTTPAnswer(status: 200, contentType: "application/json", body: body + "\n")
        default:
            return HTTPAnswer(status: 404, body: "not found: try /, /metrics, /healthz or /status\n")
        }
    }
}

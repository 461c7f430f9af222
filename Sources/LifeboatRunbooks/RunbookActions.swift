import AsyncHTTPClient
import Foundation
import LifeboatAWSCore
import LifeboatConfiguration
import LifeboatCore
import LifeboatFileSystem
import LifeboatPostgres
import LifeboatRepository
import Logging
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// What actions may use: the repository and production cluster from the user's configuration.
public struct RunbookContext: Sendable {
    public var repository: @Sendable () async throws -> Repository
    public var production: PostgresEndpoint
    public var pgdata: String?
    /// How restored clusters call Lifeboat back (`restore_command`).
    public var invocation: LifeboatInvocation
    public var binDirectory: String?
    /// The configuration's `aws:` section (region, endpoint, profile, credentials) for aws.* steps.
    public var aws: AWSAccountOverrides
    /// The deployment the `aws:` section describes (steps take their defaults from it).
    public var awsDeployment: AWSDeploymentSettings
    public var logger: Logger

    public init(repository: @escaping @Sendable () async throws -> Repository, production: PostgresEndpoint, pgdata: String?,
        invocation: LifeboatInvocation, binDirectory: String? = nil, aws: AWSAccountOverrides = AWSAccountOverrides(),
        awsDeployment: AWSDeploymentSettings = AWSDeploymentSettings(), logger: Logger)
    {
        self.aws = aws
        self.awsDeployment = awsDeployment
        self.repository = repository
        self.production = production
        self.pgdata = pgdata
        self.invocation = invocation
        self.binDirectory = binDirectory
        self.logger = logger
    }
}

/// One kind of step.
public struct RunbookAction: Sendable {
    public var name: String
    /// Changes production state (stopping services, switching endpoints): needs confirmation in a
    /// `production: true` runbook.
    public var destructive: Bool
    /// One line saying what the step will do, for plans and confirmations.
    public var describe: @Sendable (StepInputs) -> String
    /// Read-only checks made before a run changes anything (the restore window, target names free,
    /// subnet and security groups, KMS keys, images): one line per check done; throws on the first
    /// that fails, so the run stops with production untouched. Nil: nothing to check ahead.
    public var preflight: (@Sendable (StepInputs, RunbookContext) async throws -> [String])? = nil
    /// Outputs that record production's state before the step changed it (the counts a scale-down
    /// found): on a run after a failed one, the earliest unfinished run's values are used, never a
    /// state the failed attempt left behind.
    public var stateOutputs: Set<String> = []
    public var run: @Sendable (StepInputs, RunbookContext) async throws -> [String: String]
}

public enum RunbookActions {
    public static var names: Set<String> { Set(all.keys) }

    public static let all: [String: RunbookAction] = {
        var a: [String: RunbookAction] = [:]
        for action in [shell, backup, restore, postgresStart, postgresStop, verify, repositoryVerify, endpointSwitch, httpCheck, wait, notify]
            + services + AWSActions.all
        {
            a[action.name] = action
        }
        return a
    }()

    static func sh(_ command: String, timeout: TimeInterval? = nil) async throws -> String {
        let r = try await CommandRunner.runSeparately("/bin/sh", ["-c", command], check: false, timeout: timeout)
        guard r.status == 0 else {
            let tail = (r.output + r.errors).split(separator: "\n").suffix(5).joined(separator: "\n")
            throw LifeboatError(.externalCommand, "command failed with status \(r.status): \(command)", hint: tail.isEmpty ? nil : tail)
        }
        return r.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static let shell = RunbookAction(name: "shell", destructive: true, describe: { "run `\((try? $0.string("command")) ?? "?")`" }) { inputs, _ in
        ["stdout": try await sh(try inputs.string("command"))]
    }

    /// service.stop/start/restart/status/rollback through a controller: `command` (the user's own
    /// commands, given as inputs named after the verb) or `systemd` (`unit`).
    static let services: [RunbookAction] = ["stop", "start", "restart", "status", "rollback"].map { verb in
        RunbookAction(name: "service.\(verb)", destructive: verb != "status" && verb != "start",
            describe: { i in
                let controller = i.optional("controller") ?? "command"
                if controller == "systemd" { return "systemctl \(verb) \(i.optional("unit") ?? "?")" }
                return "\(verb): `\(i.optional(verb) ?? "?")`"
            }) { inputs, _ in
            let controller = inputs.optional("controller") ?? "command"
            switch controller {
            case "command":
                return ["stdout": try await sh(try inputs.string(verb))]
            case "systemd":
                let unit = try inputs.string("unit")
                let systemdVerb = verb == "rollback" ? "restart" : verb
                return ["stdout": try await sh("systemctl \(systemdVerb) \(ShellQuoting.quote(unit))")]
            default:
                throw LifeboatError(.invalidUsage, "step '\(inputs.step)': unknown controller '\(controller)'", hint: "use command or systemd")
            }
        }
    }

    static let backup = RunbookAction(name: "backup", destructive: false,
        describe: { "take a \($0.bool("manual", default: false) ? "manual" : "automated") backup \($0.map("tags").map { "\($0.key)=\($0.value)" }.sorted().joined(separator: " "))" }
    ) { inputs, ctx in
        guard let pgdata = inputs.optional("pgdata") ?? ctx.pgdata else {
            throw LifeboatError(.invalidUsage, "step '\(inputs.step)' needs pgdata (or pgdata in the configuration)")
        }
        let manual = inputs.bool("manual", default: false)
        let result = try await BackupEngine(repository: try await ctx.repository(), logger: ctx.logger).run(BackupOptions(pgdata: pgdata,
            endpoint: ctx.production, kind: manual ? .manual : .automated, tags: inputs.map("tags"),
            retain: try inputs.optional("retain").map(HumanDuration.parse)))
        return ["backup_id": result.backup.id, "stop_time": Timestamp.format(result.backup.stopTime)]
    }

    static func recoveryTarget(_ inputs: StepInputs) throws -> RecoveryTarget {
        switch inputs.optional("target") ?? "latest" {
        case "latest": return .latest
        case "immediate": return .immediate
        case "time": return .time(try Timestamp.parse(try inputs.string("time")))
        case "lsn":
            guard let l = LSN(try inputs.string("lsn")) else { throw LifeboatError(.invalidUsage, "step '\(inputs.step)': bad lsn") }
            return .lsn(l)
        case "xid":
            guard let x = UInt64(try inputs.string("xid")) else { throw LifeboatError(.invalidUsage, "step '\(inputs.step)': bad xid") }
            return .xid(x)
        case "name": return .name(try inputs.string("name"))
        case let other: throw LifeboatError(.invalidUsage, "step '\(inputs.step)': unknown target '\(other)'",
            hint: "use latest, immediate, time, lsn, xid or name")
        }
    }

    static func restoreOptions(_ inputs: StepInputs, _ ctx: RunbookContext) throws -> RestoreOptions {
        guard let mode = RestoreOptions.ArchiveMode(rawValue: inputs.optional("archive_mode") ?? "off") else {
            throw LifeboatError(.invalidUsage, "step '\(inputs.step)': archive_mode must be keep or off")
        }
        guard let timeline = TimelineChoice(text: inputs.optional("target_timeline") ?? "latest") else {
            throw LifeboatError(.invalidUsage, "step '\(inputs.step)': target_timeline must be latest, current or a number")
        }
        return RestoreOptions(destination: try inputs.string("to"), target: try recoveryTarget(inputs),
            backupID: inputs.optional("backup").flatMap { $0.isEmpty ? nil : $0 }, invocation: ctx.invocation, archiveMode: mode,
            targetTimeline: timeline, tablespaceMap: inputs.map("tablespace_map"), acceptWALGap: inputs.bool("accept_wal_gap", default: false),
            start: inputs.bool("start", default: true), port: try inputs.int("port"), socketDirectory: inputs.optional("socket_dir") ?? "/tmp",
            binDirectory: ctx.binDirectory)
    }

    static let restore = RunbookAction(name: "restore", destructive: false,
        describe: { i in "restore \(i.optional("backup") ?? "the right backup") to \(i.optional("target") ?? "latest")\(i.optional("time").map { " \($0)" } ?? "") into new directory \(i.optional("to") ?? "?") and start it on port \(i.optional("port") ?? "?")" },
        preflight: { inputs, ctx in
            // The whole plan: the backup on the timeline's history, the WAL to the target present and
            // continuous, the destination new or empty; nothing written.
            let options = try restoreOptions(inputs, ctx)
            let engine = RestoreEngine(repository: try await ctx.repository(), logger: ctx.logger)
            let plan = try await engine.plan(options)
            try RestoreEngine.checkNewOrEmpty(options.destination, what: "the destination")
            return ["backup \(plan.backup.id) on timeline \(plan.timeline)'s history; WAL to the target present and continuous"
                + (plan.gap.map { "; stops at the gap before \($0.firstMissing) (accepted)" } ?? ""),
                "\(options.destination) is new or empty"]
        }
    ) { inputs, ctx in
        let options = try restoreOptions(inputs, ctx)
        let r = try await RestoreEngine(repository: try await ctx.repository(), logger: ctx.logger).run(options)
        var out = ["data_dir": r.destination, "port": String(options.port), "socket_dir": options.socketDirectory, "backup_id": r.backupID]
        out["achieved_time"] = r.achievedTime.map(Timestamp.format) ?? ""
        out["achieved_lsn"] = r.achievedLSN ?? ""
        out["timeline"] = r.timeline.map(String.init) ?? ""
        if let gap = r.walGap { out["wal_gap"] = gap.firstMissing }
        return out
    }

    static func cluster(_ inputs: StepInputs, _ ctx: RunbookContext) throws -> LocalCluster {
        let dataDir = try inputs.string("data_dir")
        let major = (try? String(contentsOfFile: dataDir + "/PG_VERSION", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        return LocalCluster(dataDirectory: dataDir, port: try inputs.int("port", default: 5432),
            socketDirectory: inputs.optional("socket_dir") ?? "/tmp", binaries: try PostgresBinaries.locate(explicit: ctx.binDirectory,
                majorVersion: major), user: OSUser.forServer(dataDirectory: dataDir))
    }

    static let postgresStart = RunbookAction(name: "postgres.start", destructive: false,
        describe: { "start PostgreSQL on \($0.optional("data_dir") ?? "?") port \($0.optional("port") ?? "5432")" }
    ) { inputs, ctx in
        try await cluster(inputs, ctx).start(environment: ctx.invocation.environment)
        return [:]
    }

    static let postgresStop = RunbookAction(name: "postgres.stop", destructive: true,
        describe: { "stop PostgreSQL on \($0.optional("data_dir") ?? "?") (mode \($0.optional("mode") ?? "fast"))" }
    ) { inputs, ctx in
        try await cluster(inputs, ctx).stop(mode: inputs.optional("mode") ?? "fast")
        return [:]
    }

    static let verify = RunbookAction(name: "verify", destructive: false,
        describe: { "verify the cluster at \($0.optional("host") ?? "port \($0.optional("port") ?? "?")"): \($0.list("checks").count) SQL check(s), invariants, checksums" }
    ) { inputs, ctx in
        var checks: [DrillCheck] = []
        for (n, item) in inputs.list("checks").enumerated() {
            guard case .map(let m) = item, let sql = m["sql"]?.text else {
                throw LifeboatError(.invalidUsage, "check \(n + 1) of step '\(inputs.step)' needs sql")
            }
            checks.append(DrillCheck(name: m["name"]?.text ?? sql, sql: sql, expect: m["expect"]?.text,
                min: m["min"]?.text.flatMap(Double.init), max: m["max"]?.text.flatMap(Double.init)))
        }
        let verifier: DrillVerifier
        if let host = inputs.optional("host") {
            // A remote cluster (a restored Aurora cluster's endpoint): the password from the
            // environment variable named by password_env, never from the runbook or its journal.
            let password = inputs.optional("password_env").flatMap { ProcessInfo.processInfo.environment[$0] }
            verifier = DrillVerifier(endpoint: PostgresEndpoint(host: host, port: try inputs.int("port", default: 5432),
                user: inputs.optional("user") ?? "postgres", database: inputs.optional("database") ?? "postgres", password: password),
                logger: ctx.logger)
        } else {
            verifier = DrillVerifier(cluster: try cluster(inputs, ctx), logger: ctx.logger)
        }
        let results = try await verifier.run(checks, amcheck: inputs.bool("amcheck", default: true))
        let failed = results.filter { !$0.passed }
        guard failed.isEmpty else {
            throw LifeboatError(.objectiveMissed, "verification failed: " + failed.map { "\($0.name) (\($0.detail))" }.joined(separator: "; "))
        }
        return ["checks_passed": String(results.count)]
    }

    /// Atomically points an application at another database: rewrites `file` with `value` (temp
    /// file, fsync, rename) or re-points the symlink `link` at `target`.
    static let endpointSwitch = RunbookAction(name: "endpoint.switch", destructive: true,
        describe: { i in
            if let link = i.optional("link") { return "point symlink \(link) at \(i.optional("target") ?? "?")" }
            return "write '\(i.optional("value") ?? "?")' into \(i.optional("file") ?? "?")"
        }
    ) { inputs, _ in
        if let link = inputs.optional("link") {
            let target = try inputs.string("target")
            let previous = (try? FileManager.default.destinationOfSymbolicLink(atPath: link)) ?? ""
            let temp = link + ".lifeboat-new"
            unlink(temp)
            guard symlink(target, temp) == 0, rename(temp, link) == 0 else {
                throw FileIO.error("cannot switch the symlink", errno: errno, path: link)
            }
            return ["previous": previous]
        }
        let file = try inputs.string("file")
        let value = try inputs.string("value")
        let previous = (try? String(contentsOfFile: file, encoding: .utf8))?.trimmingCharacters(in: .newlines) ?? ""
        // The new file keeps the old one's mode and owner (the application must still read it).
        var st = stat()
        let existing = stat(file, &st) == 0
        try FileIO.replaceAtomically(file, with: Data((value + "\n").utf8), mode: existing ? st.st_mode & 0o7777 : 0o644,
            owner: existing ? FileIO.Owner(uid: st.st_uid, gid: st.st_gid) : nil)
        return ["previous": previous]
    }

    static let httpCheck = RunbookAction(name: "http.check", destructive: false,
        describe: { "GET \($0.optional("url") ?? "?") until it answers \($0.optional("expect_status") ?? "200")" }
    ) { inputs, _ in
        let url = try inputs.string("url")
        guard let u = URL(string: url) else { throw LifeboatError(.invalidUsage, "step '\(inputs.step)': bad url \(url)") }
        let want = try inputs.int("expect_status", default: 200)
        let body = inputs.optional("expect_body")
        let attempts = try inputs.int("attempts", default: 10)
        let interval = try inputs.duration("interval", default: 1)
        var last = "no answer"
        for attempt in 1...max(1, attempts) {
            if let (status, text) = try? await PlainHTTP.send("GET", u.absoluteString, timeout: 5) {
                if status == want, body.map({ text.contains($0) }) ?? true {
                    return ["status": String(status), "body": text.trimmingCharacters(in: .whitespacesAndNewlines), "attempts": String(attempt)]
                }
                last = "status \(status): \(text.prefix(200))"
            }
            if attempt < attempts { try await Task.sleep(for: .seconds(interval)) }
        }
        throw LifeboatError(.objectiveMissed, "\(url) is not healthy after \(attempts) attempts (last: \(last))")
    }

    static let repositoryVerify = RunbookAction(name: "repository.verify", destructive: false,
        describe: { _ in "authenticate every object of the repository and check backups and WAL are complete" }
    ) { _, ctx in
        let report = try await Verifier(repository: try await ctx.repository()).run()
        guard report.ok else {
            throw LifeboatError(.integrity, "the repository has \(report.problems.count) problem(s): "
                + report.problems.prefix(3).map { "\($0.object): \($0.message)" }.joined(separator: "; "))
        }
        return ["objects": String(report.objectsChecked), "backups": String(report.backupsChecked)]
    }

    static let wait = RunbookAction(name: "wait", destructive: false, describe: { "wait \($0.optional("duration") ?? "?")" }) { inputs, _ in
        try await Task.sleep(for: .seconds(try inputs.duration("duration", default: 1)))
        return [:]
    }

    static let notify = RunbookAction(name: "notify", destructive: false,
        describe: { "POST a notification to \($0.optional("url") ?? "?")" }
    ) { inputs, _ in
        let url = try inputs.string("url")
        guard URL(string: url) != nil else { throw LifeboatError(.invalidUsage, "step '\(inputs.step)': bad url \(url)") }
        let payload = try JSONSerialization.data(withJSONObject: ["text": inputs.optional("message") ?? "", "source": "lifeboat"])
        let (status, _) = try await PlainHTTP.send("POST", url, body: payload, contentType: "application/json", timeout: 10)
        guard (200..<300).contains(status) else { throw LifeboatError(.externalCommand, "notification to \(url) answered \(status)") }
        return ["status": String(status)]
    }
}

enum ShellQuoting {
    static func quote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }
}

/// Plain HTTP requests (not AWS) (runbook checks and notifications, Patroni's REST API), on the shared client.
public enum PlainHTTP {
    public static func send(_ method: String, _ url: String, body: Data? = nil, contentType: String? = nil, timeout: TimeInterval) async throws
        -> (status: Int, body: String)
    {
        var request = HTTPClientRequest(url: url)
        request.method = .init(rawValue: method)
        if let contentType { request.headers.add(name: "Content-Type", value: contentType) }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        do {
            let response = try await HTTPClient.shared.execute(request, timeout: .milliseconds(Int64(timeout * 1000)))
            let buffer = try await response.body.collect(upTo: 4 << 20)
            return (Int(response.status.code), String(buffer: buffer))
        } catch {
            throw LifeboatError(.externalCommand, "\(method) \(url) failed: \(error)", retryable: true)
        }
    }
}

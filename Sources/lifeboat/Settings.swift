/// The `lifeboat` executable: parses the command line, the config file and the environment into
/// library calls, prints results, and maps errors to documented exit codes. No logic of its own.
import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository
import LifeboatRunbooks
import Logging
import Yams

/// Options every command accepts.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "YAML configuration file (also LIFEBOAT_CONFIG).")
    var config: String?

    @Option(name: .long, help: "Repository location (also LIFEBOAT_REPO).")
    var repo: String?

    @Option(name: .customLong("key-file"), help: "File holding the repository passphrase (else LIFEBOAT_PASSPHRASE).")
    var keyFile: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning or error (also LIFEBOAT_LOG_LEVEL).")
    var logLevel: String?
}

/// Settings merged from, in order of precedence: command-line options, environment, config file.
struct Settings {
    static let knownKeys: Set<String> = [
        "repo", "key_file", "passphrase", "pgdata", "pghost", "pgport", "pguser", "pgdatabase", "pgpassword", "pg_bin",
        "parallelism", "compression", "compression_level", "chunk_size", "retention", "wal_timeout", "wal_prefetch", "log_level", "drill", "state_dir", "s3", "append_only", "replicas", "serve", "aws",
    ]
    static let knownS3Keys: Set<String> = [
        "region", "endpoint", "path_style", "profile", "access_key_id", "secret_access_key", "session_token",
        "object_lock_mode", "object_lock_retention",
    ]
    static let knownDrillKeys: Set<String> = ["scratch_dir", "report_dir", "objectives", "checks"]
    static let knownRetentionKeys: Set<String> = ["recovery_window", "manual", "keep_last"]
    static let knownServeKeys: Set<String> = [
        "listen", "backup_window", "backup_every", "expire", "copy_to_replicas", "verify_every", "drill_every", "drill_scenario",
        "rpo_objective", "state_file", "tick", "refresh", "retry_after",
    ]
    static let knownAWSKeys: Set<String> = ["region", "endpoint", "profile", "access_key_id", "secret_access_key", "session_token"]
    static let sections: [(String, Set<String>)] = [
        ("retention", knownRetentionKeys), ("s3", knownS3Keys), ("drill", knownDrillKeys), ("serve", knownServeKeys),
        ("aws", knownAWSKeys),
    ]

    var configPath: String?
    var file: [String: Any] = [:]
    var global: GlobalOptions
    let env = ProcessInfo.processInfo.environment

    init(_ global: GlobalOptions) throws {
        self.global = global
        configPath = global.config ?? env["LIFEBOAT_CONFIG"]
        if let path = configPath {
            configPath = Self.absolute(path)
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw LifeboatError(.invalidUsage, "cannot read configuration file \(path)")
            }
            let loaded: Any?
            do {
                loaded = try Yams.load(yaml: text)
            } catch {
                throw LifeboatError(.invalidUsage, "configuration file \(path) is not valid YAML", cause: error)
            }
            guard let dict = (loaded ?? [String: Any]()) as? [String: Any] else {
                throw LifeboatError(.invalidUsage, "configuration file \(path) must be a mapping of keys to values")
            }
            for key in dict.keys where !Self.knownKeys.contains(key) {
                throw LifeboatError(.invalidUsage, "unknown configuration key '\(key)' in \(path)",
                    hint: "valid keys: \(Self.knownKeys.sorted().joined(separator: ", "))")
            }
            for (section, known) in Self.sections {
                guard let value = dict[section] else { continue }
                guard let m = value as? [String: Any] else {
                    throw LifeboatError(.invalidUsage, "'\(section)' in \(path) must be a mapping (\(known.sorted().joined(separator: ", ")))")
                }
                for key in m.keys where !known.contains(key) {
                    throw LifeboatError(.invalidUsage, "unknown configuration key '\(section).\(key)' in \(path)",
                        hint: "valid keys under \(section): \(known.sorted().joined(separator: ", "))")
                }
            }
            file = dict
        }
    }

    /// Where runbook journals live: --state-dir, LIFEBOAT_STATE_DIR, state_dir, else ~/.lifeboat/runs.
    func stateDirectory(_ explicit: String?) -> String {
        Self.absolute(explicit ?? string("state_dir", env: "LIFEBOAT_STATE_DIR")
            ?? ((env["HOME"] ?? "/tmp") + "/.lifeboat/runs"))
    }

    /// The restore_command restored clusters use, and the environment that lets it open the repository.
    func restoreCommandAndEnvironment() -> (String, [String: String]) {
        let fetch = ([Self.executablePath, "wal", "fetch"] + passthroughArguments()).map(Self.shellQuote).joined(separator: " ") + " %f %p"
        var serverEnv: [String: String] = [:]
        for key in ["LIFEBOAT_REPO", "LIFEBOAT_PASSPHRASE", "LIFEBOAT_CONFIG"] {
            if let v = env[key] { serverEnv[key] = v }
        }
        return (fetch, serverEnv)
    }

    /// `replicas`: configuration files of further repositories for this cluster (relative paths
    /// are relative to this file). The first repository, this one, is the primary.
    var replicaConfigs: [String] {
        get throws {
            guard let raw = file["replicas"] else { return [] }
            guard let list = raw as? [Any] else { throw LifeboatError(.invalidUsage, "replicas must be a list of configuration files") }
            let base = configPath.map { ($0 as NSString).deletingLastPathComponent } ?? FileManager.default.currentDirectoryPath
            return list.map { "\($0)" }.map { $0.hasPrefix("/") ? $0 : base + "/" + $0 }
        }
    }

    /// Opens one replica from its configuration file.
    static func openReplica(_ path: String, logger: Logger) async throws -> Repository {
        let settings = try Settings(try GlobalOptions.parse(["--config", path]))
        return try await settings.openRepository(logger)
    }

    var drillSection: [String: Any] { file["drill"] as? [String: Any] ?? [:] }

    /// `drill.checks`: a list of {name, sql, expect | min | max}.
    func drillChecks() throws -> [DrillCheck] {
        guard let list = drillSection["checks"] else { return [] }
        guard let items = list as? [[String: Any]] else {
            throw LifeboatError(.invalidUsage, "drill.checks must be a list of {name, sql, expect|min|max}")
        }
        return try items.map { item in
            for key in item.keys where !["name", "sql", "expect", "min", "max"].contains(key) {
                throw LifeboatError(.invalidUsage, "unknown key '\(key)' in a drill check", hint: "use name, sql, expect, min, max")
            }
            guard let sql = item["sql"] as? String else { throw LifeboatError(.invalidUsage, "a drill check needs sql") }
            func number(_ k: String) throws -> Double? {
                guard let v = item[k] else { return nil }
                guard let d = Double("\(v)") else { throw LifeboatError(.invalidUsage, "drill check \(k) must be a number") }
                return d
            }
            return DrillCheck(name: item["name"].map { "\($0)" } ?? sql, sql: sql, expect: item["expect"].map { "\($0)" },
                min: try number("min"), max: try number("max"))
        }
    }

    /// `drill.objectives.<scenario>.rto|rpo`, over the seed's defaults.
    func drillObjectives(_ scenario: DrillScenario) throws -> DrillObjectives {
        var o = scenario.defaultObjectives
        if let all = drillSection["objectives"] as? [String: Any], let mine = all[scenario.rawValue] as? [String: Any] {
            if let rto = mine["rto"] { o.rtoSeconds = try HumanDuration.parse("\(rto)") }
            if let rpo = mine["rpo"] { o.rpoSeconds = try HumanDuration.parse("\(rpo)") }
        }
        return o
    }

    /// A restore drill (snapshot-restore or point-in-time) against a scratch cluster on this host.
    func drillOptions(_ kind: DrillScenario, objectives: DrillObjectives, pgdata: String, production: PostgresEndpoint,
        scratchDir: String? = nil, pgBin: String? = nil, keepBackup: Bool = false, keepScratch: Bool = false) throws -> DrillOptions
    {
        let (fetch, serverEnv) = restoreCommandAndEnvironment()
        let scratch = Self.absolute(scratchDir ?? (drillSection["scratch_dir"].map { "\($0)" }) ?? "/tmp")
        return DrillOptions(scenario: kind, production: production, pgdata: pgdata,
            scratchRoot: scratch, restoreCommand: fetch, serverEnvironment: serverEnv, binDirectory: pgBin ?? string("pg_bin"),
            objectives: objectives, checks: try drillChecks(), keepBackup: keepBackup, keepScratch: keepScratch,
            walTimeout: try walTimeout())
    }

    /// `wal_timeout`: how long a backup waits for its WAL (default 10m).
    func walTimeout(_ explicit: String? = nil) throws -> TimeInterval {
        try HumanDuration.parse(explicit ?? string("wal_timeout") ?? "10m")
    }

    static func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }

    func string(_ key: String, env envName: String? = nil) -> String? {
        if let envName, let v = env[envName], !v.isEmpty { return v }
        if let v = file[key] { return "\(v)" }
        return nil
    }

    func int(_ key: String, env envName: String? = nil) throws -> Int? {
        guard let text = string(key, env: envName) else { return nil }
        guard let v = Int(text) else { throw LifeboatError(.invalidUsage, "\(key) must be a whole number, not '\(text)'") }
        return v
    }

    func logLevel(default fallback: Logger.Level = .warning) -> Logger.Level {
        let text = global.logLevel ?? string("log_level", env: "LIFEBOAT_LOG_LEVEL") ?? fallback.rawValue
        return Logger.Level(rawValue: text.lowercased()) ?? fallback
    }

    /// The process's logger (stderr); commands log warnings and errors, the daemon `notice` too.
    func makeLogger(default fallback: Logger.Level = .warning) -> Logger {
        let level = logLevel(default: fallback)
        LoggingSetup.once(level: level)
        var logger = Logger(label: "lifeboat")
        logger.logLevel = level
        return logger
    }

    var repoLocation: String? { global.repo ?? string("repo", env: "LIFEBOAT_REPO") }

    func store() throws -> any ObjectStore {
        guard let location = repoLocation else {
            throw LifeboatError(.invalidUsage, "no repository given", hint: "pass --repo PATH, set LIFEBOAT_REPO, or put repo: in the config file")
        }
        if location.hasPrefix("s3://") {
            let section = (file["s3"] as? [String: Any]) ?? [:]
            var explicit = awsExplicit(section: "s3")
            if let v = section["path_style"] { explicit["path_style"] = "\(v)" }
            var lock: ObjectLockSettings?
            if let mode = section["object_lock_mode"] {
                guard let m = ObjectLockSettings.Mode(rawValue: "\(mode)".uppercased()) else {
                    throw LifeboatError(.invalidUsage, "s3.object_lock_mode must be COMPLIANCE or GOVERNANCE")
                }
                lock = ObjectLockSettings(mode: m, retention: try HumanDuration.parse("\(section["object_lock_retention"] ?? "35d")"))
            }
            let settings = try S3Settings.resolve(url: location, explicit: explicit, objectLock: lock)
            return RetryingStore(S3Store(settings: settings), logger: makeLogger())
        }
        let path = location.hasPrefix("file://") ? String(location.dropFirst("file://".count)) : location
        var store = FileStore(root: Self.absolute(path))
        if let retention = string("append_only") { store.appendOnlyRetention = try HumanDuration.parse(retention) }
        return store
    }

    /// The `aws:` section (runbook steps on AWS) or the `s3:` section (S3 repositories), named as the
    /// AWS CLI's files name them (the environment and ~/.aws fill in what it leaves out).
    func awsExplicit(section name: String = "aws") -> [String: String] {
        let section = (file[name] as? [String: Any]) ?? [:]
        let names = ["region": "region", "endpoint": "endpoint", "profile": "profile", "access_key_id": "aws_access_key_id",
            "secret_access_key": "aws_secret_access_key", "session_token": "aws_session_token"]
        var explicit: [String: String] = [:]
        for (key, name) in names { if let v = section[key] { explicit[name] = "\(v)" } }
        return explicit
    }

    var keyFilePath: String? { (global.keyFile ?? string("key_file")).map(Self.absolute) }

    func keySource() throws -> KeySource {
        if let path = keyFilePath { return .keyFile(path) }
        if let p = env["LIFEBOAT_PASSPHRASE"], !p.isEmpty { return .passphrase(p) }
        if let p = file["passphrase"] { return .passphrase("\(p)") }
        throw LifeboatError(.invalidUsage, "no repository key given",
            hint: "pass --key-file FILE, set LIFEBOAT_PASSPHRASE, or put key_file: in the config file")
    }

    func openRepository(_ logger: Logger) async throws -> Repository {
        try await Repository.open(store: try store(), key: try keySource(), logger: logger)
    }

    func endpoint(host: String?, port: Int?, user: String?, database: String?) throws -> PostgresEndpoint {
        var e = PostgresEndpoint()
        e.host = host ?? string("pghost", env: "PGHOST") ?? e.host
        e.port = try port ?? int("pgport", env: "PGPORT") ?? e.port
        e.user = user ?? string("pguser", env: "PGUSER") ?? e.user
        e.database = database ?? string("pgdatabase", env: "PGDATABASE") ?? e.database
        e.password = string("pgpassword", env: "PGPASSWORD")
        return e
    }

    func retention() throws -> RetentionPolicy {
        var policy = RetentionPolicy.seedDefault
        if let r = file["retention"] as? [String: Any] {
            if let w = r["recovery_window"] { policy.recoveryWindow = try HumanDuration.parse("\(w)") }
            if let m = r["manual"] { policy.manualRetention = try HumanDuration.parse("\(m)") }
            if let k = r["keep_last"] {
                guard let n = Int("\(k)"), n >= 0 else { throw LifeboatError(.invalidUsage, "retention.keep_last must be a whole number of backups, not '\(k)'") }
                policy.keepLast = n
            }
        }
        return policy
    }

    /// WAL segments fetched ahead during recovery (`wal_prefetch`, default 8).
    func walPrefetch(_ explicit: Int?) throws -> Int {
        let ahead = try explicit ?? int("wal_prefetch") ?? 8
        guard (0...64).contains(ahead) else {
            throw LifeboatError(.invalidUsage, "wal_prefetch must be between 0 and 64, not \(ahead)")
        }
        return ahead
    }

    func parallelism(_ explicit: Int?) throws -> Int {
        let p = try explicit ?? int("parallelism") ?? 4
        guard (1...64).contains(p) else { throw LifeboatError(.invalidUsage, "parallelism must be between 1 and 64") }
        return p
    }

    /// The absolute path of this executable, for archive_command and restore_command.
    static var executablePath: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// The repository options to repeat in a command PostgreSQL runs (`%f %p` appended by callers).
    func passthroughArguments() -> [String] {
        var args: [String] = []
        if let configPath { args += ["--config", configPath] }
        if let repo = global.repo { args += ["--repo", Self.absolute(repo)] }
        if let keyFile = global.keyFile { args += ["--key-file", Self.absolute(keyFile)] }
        return args
    }

    static func shellQuote(_ s: String) -> String {
        if s.allSatisfy({ $0.isLetter || $0.isNumber || "/-_.=%:".contains($0) }) { return s }
        return "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}

enum LoggingSetup {
    nonisolated(unsafe) private static var done = false
    private static let lock = NSLock()

    static func once(level: Logger.Level) {
        lock.withLock {
            guard !done else { return }
            done = true
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
        }
    }
}

/// Output helpers: human text, or JSON with `--json`.
enum Output {
    static func json<T: Encodable>(_ value: T) throws {
        let encoder = RepositoryJSON.encoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        print(String(decoding: try encoder.encode(value), as: UTF8.self))
    }

    static func bytes(_ n: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n)
        var i = 0
        while v >= 1024, i < units.count - 1 {
            v /= 1024
            i += 1
        }
        return i == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[i])
    }
}

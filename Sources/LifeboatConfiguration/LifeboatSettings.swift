import Foundation
import LifeboatCore

/// Every default and range in one table.
public enum Defaults {
    public static let parallelism = Bounded(key: "parallelism", defaultValue: 4, range: 1...64)
    public static let walPrefetch = Bounded(key: "wal_prefetch", defaultValue: 8, range: 0...64)
    public static let compressionLevel = Bounded(key: "compression_level", defaultValue: 3, range: 1...19)
    /// KiB.
    public static let chunkSize = Bounded(key: "chunk_size", defaultValue: 1024, range: 64...65536)
    public static let keepLast = Bounded(key: "retention.keep_last", defaultValue: 0, range: 0...10000)
    public static let walTimeout: TimeInterval = 600
    public static let recoveryWindow: TimeInterval = 7 * 86400
    public static let manualRetention: TimeInterval = 30 * 86400
    public static let objectLockRetention: TimeInterval = 35 * 86400
    public static let logLevel = LogLevelName.warning
    public static let recoveryTimeout: TimeInterval = 3600
    public static let restorePort = 5432
    public static let socketDirectory = "/tmp"
    public static let listenAddresses = "127.0.0.1"
    public static let scratchDirectory = "/tmp"

    public enum Serve {
        public static let listen = ListenAddress.address(host: "127.0.0.1", port: 9187)
        public static let backupEvery = Schedule.every(86400)
        public static let verifyEvery = Schedule.every(7 * 86400)
        public static let drillEvery = Schedule.off
        public static let drillScenario = "snapshot-restore"
        public static let rpoObjective: TimeInterval = 300
        public static let rtoObjective: TimeInterval = 4 * 3600
        public static let tick: TimeInterval = 30
        public static let refresh: TimeInterval = 300
        public static let retryAfter: TimeInterval = 600
        public static let expire = true
        public static let copyToMirrors = true
        /// `serve.ha.max_lag`: a replica further behind is not elected to back up.
        public static let haMaxLag: UInt64 = 64 << 20
    }

    /// The seed's AWS backup procedures.
    public enum AWS {
        public static let backupRetentionDays = 7
        public static let backupWindow = "03:00-04:00"
        public static let snapshotRetention: TimeInterval = 30 * 86400
        public static let keepImages = Bounded(key: "aws.ecr.keep_images", defaultValue: 20, range: 1...10000)
        public static let logsPrefix = "logs"
        public static let terraformBackupPrefix = "terraform-state"
        public static let databaseHostVariable = "DB_HOST"
        public static let deliveryChannel = "default"
        /// `aws.schedule`: how often each job runs when its part of the deployment is configured.
        public static let check = Schedule.every(3600)
        public static let snapshot = Schedule.every(7 * 86400)
        public static let daily = Schedule.every(86400)
        public static let drill = Schedule.off
    }
}

/// What the command line gave; nil where an option was not given.
public struct CommandLineValues: Sendable, Equatable {
    public var config: String?
    public var repo: String?
    public var keyFile: String?
    public var logLevel: LogLevelName?
    public var pgdata: String?
    public var pghost: String?
    public var pgport: Int?
    public var pguser: String?
    public var pgdatabase: String?
    public var pgBin: String?
    public var parallelism: Int?
    public var walTimeout: String?
    public var walPrefetch: Int?
    public var stateDir: String?

    public init(config: String? = nil, repo: String? = nil, keyFile: String? = nil, logLevel: LogLevelName? = nil) {
        self.config = config
        self.repo = repo
        self.keyFile = keyFile
        self.logLevel = logLevel
    }
}

/// Where a repository's key comes from.
public enum KeyChoice: Sendable, Equatable {
    case keyFile(String)
    case passphrase(String)
}

/// Where a repository is.
public enum RepositoryLocation: Sendable, Equatable {
    /// A directory; `appendOnly`: objects younger than this may not be deleted.
    case directory(String, appendOnly: TimeInterval?)
    /// An S3 bucket and prefix (`s3://BUCKET/PREFIX`) with the `s3:` section.
    case s3(url: String, account: AccountSection, pathStyle: Bool?, objectLock: (mode: ObjectLockModeName, retention: TimeInterval)?)

    public static func == (a: RepositoryLocation, b: RepositoryLocation) -> Bool {
        switch (a, b) {
        case let (.directory(p, r), .directory(q, s)): return p == q && r == s
        case let (.s3(u, x, ps, l), .s3(v, y, qs, m)):
            return u == v && x == y && ps == qs && l?.mode == m?.mode && l?.retention == m?.retention
        default: return false
        }
    }
}

/// How to reach PostgreSQL (libpq's variables, as the tools users know read them).
public struct ConnectionSettings: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var user: String
    public var database: String
    public var password: String?
}

/// A drill check, resolved.
public struct CheckSetting: Sendable, Equatable {
    public var name: String
    public var sql: String
    public var expect: String?
    public var min: Double?
    public var max: Double?
}

/// The configuration resolved: every value a command or the daemon needs, typed, with the
/// precedence command-line option > environment variable > configuration file > default, decided
/// here and nowhere else.
public struct LifeboatSettings: Sendable {
    public var options: CommandLineValues
    public var file: ConfigurationFile
    /// The configuration file's absolute path, if any.
    public var configPath: String?
    public var environment: [String: String]
    /// Relative paths in options are relative to this; in the file, to the file's directory.
    public var workingDirectory: String

    /// Reads the file named by `--config` or `LIFEBOAT_CONFIG` (none is fine).
    public init(options: CommandLineValues, environment: [String: String] = ProcessInfo.processInfo.environment,
        workingDirectory: String = FileManager.default.currentDirectoryPath) throws
    {
        self.options = options
        self.environment = environment
        self.workingDirectory = workingDirectory
        let path = options.config ?? Self.nonEmpty(environment["LIFEBOAT_CONFIG"])
        configPath = path.map { Self.absolute($0, in: workingDirectory) }
        file = try configPath.map(ConfigurationFile.load) ?? ConfigurationFile()
    }

    /// Settings from a parsed file (tests, and files read by other means).
    public init(options: CommandLineValues, file: ConfigurationFile, configPath: String?, environment: [String: String],
        workingDirectory: String)
    {
        self.options = options
        self.file = file
        self.configPath = configPath
        self.environment = environment
        self.workingDirectory = workingDirectory
    }

    static func nonEmpty(_ s: String?) -> String? { s.flatMap { $0.isEmpty ? nil : $0 } }

    public static func absolute(_ path: String, in directory: String) -> String {
        path.hasPrefix("/") ? path : directory + "/" + path
    }

    /// Paths in the file are relative to the file's directory.
    func fromFile(_ path: String) -> String {
        Self.absolute(path, in: configPath.map { ($0 as NSString).deletingLastPathComponent } ?? workingDirectory)
    }

    func fromOption(_ path: String) -> String { Self.absolute(path, in: workingDirectory) }

    /// option > environment > file: the one precedence rule.
    func pick<T>(_ option: T?, env name: String?, parse: (String) -> T?, _ fileValue: T?) -> T? {
        if let option { return option }
        if let name, let text = Self.nonEmpty(environment[name]), let value = parse(text) { return value }
        return fileValue
    }

    func pickText(_ option: String?, env name: String?, _ fileValue: String?) -> String? {
        pick(option, env: name, parse: { $0 }, fileValue)
    }

    // MARK: - repository

    public var repoLocationText: String? {
        pickText(options.repo.map(fromOption), env: "LIFEBOAT_REPO", file.repo)
    }

    /// The repository; `.invalidUsage` when none is given.
    public func repository() throws -> RepositoryLocation {
        guard let text = repoLocationText else {
            throw LifeboatError(.invalidUsage, "no repository given",
                hint: "pass --repo PATH, set LIFEBOAT_REPO, or put repo: in the config file")
        }
        if text.hasPrefix("s3://") {
            let s3 = file.s3 ?? S3Section.empty
            let lock = s3.objectLockMode.map { ($0, s3.objectLockRetention?.seconds ?? Defaults.objectLockRetention) }
            return .s3(url: text, account: s3.account, pathStyle: s3.pathStyle, objectLock: lock)
        }
        let path = text.hasPrefix("file://") ? String(text.dropFirst("file://".count)) : text
        // A path from the file is relative to the file; LIFEBOAT_REPO and --repo to the working directory.
        let resolved = options.repo == nil && Self.nonEmpty(environment["LIFEBOAT_REPO"]) == nil ? fromFile(path) : fromOption(path)
        return .directory(resolved, appendOnly: file.appendOnly?.seconds)
    }

    /// The key: `--key-file`, then `LIFEBOAT_PASSPHRASE`, then the file's `key_file`, then its `passphrase`.
    public func key() throws -> KeyChoice {
        if let option = options.keyFile { return .keyFile(fromOption(option)) }
        if let pass = Self.nonEmpty(environment["LIFEBOAT_PASSPHRASE"]) { return .passphrase(pass) }
        if let path = file.keyFile { return .keyFile(fromFile(path)) }
        if let pass = file.passphrase { return .passphrase(pass) }
        throw LifeboatError(.invalidUsage, "no repository key given",
            hint: "pass --key-file FILE, set LIFEBOAT_PASSPHRASE, or put key_file: in the config file")
    }

    /// Whether this configuration names a key of its own (a copy target must: it has its own key).
    public var namesAKey: Bool { options.keyFile != nil || file.keyFile != nil || file.passphrase != nil }

    /// Configuration files of the mirrors (`mirrors`, formerly `replicas`), absolute.
    public var mirrorConfigs: [String] { (file.mirrors ?? file.replicas ?? []).map(fromFile) }

    // MARK: - PostgreSQL

    public var pgdata: String? { pickText(options.pgdata.map(fromOption), env: "PGDATA", file.pgdata.map(fromFile)) }

    public func connection() throws -> ConnectionSettings {
        let port = pick(options.pgport, env: "PGPORT", parse: { Int($0) }, file.pgport) ?? 5432
        if let text = Self.nonEmpty(environment["PGPORT"]), options.pgport == nil, Int(text) == nil {
            throw LifeboatError(.invalidUsage, "PGPORT must be a port number, not '\(text)'")
        }
        return ConnectionSettings(host: pickText(options.pghost, env: "PGHOST", file.pghost) ?? "/var/run/postgresql", port: port,
            user: pickText(options.pguser, env: "PGUSER", file.pguser) ?? "postgres",
            database: pickText(options.pgdatabase, env: "PGDATABASE", file.pgdatabase) ?? "postgres",
            password: pickText(nil, env: "PGPASSWORD", file.pgpassword))
    }

    public var pgBin: String? { pickText(options.pgBin.map(fromOption), env: "LIFEBOAT_PG_BIN", file.pgBin.map(fromFile)) }

    // MARK: - tuning

    public func parallelism() throws -> Int {
        try Defaults.parallelism.resolve(options.parallelism ?? file.parallelism)
    }

    public func walPrefetch() throws -> Int { try Defaults.walPrefetch.resolve(options.walPrefetch ?? file.walPrefetch) }

    public func walTimeout() throws -> TimeInterval {
        if let text = options.walTimeout { return try HumanDuration.parse(text) }
        return file.walTimeout?.seconds ?? Defaults.walTimeout
    }

    public var logLevel: LogLevelName {
        pick(options.logLevel, env: "LIFEBOAT_LOG_LEVEL", parse: { LogLevelName(rawValue: $0.lowercased()) }, file.logLevel) ?? Defaults.logLevel
    }

    /// Whether the log level was set anywhere (the daemon's default differs from the commands').
    public var logLevelGiven: Bool {
        options.logLevel != nil || Self.nonEmpty(environment["LIFEBOAT_LOG_LEVEL"]) != nil || file.logLevel != nil
    }

    /// Where runbook journals live: `--state-dir`, `LIFEBOAT_STATE_DIR`, `state_dir`, else ~/.lifeboat/runs.
    public func stateDirectory(_ option: String? = nil) -> String {
        pickText((option ?? options.stateDir).map(fromOption), env: "LIFEBOAT_STATE_DIR", file.stateDir.map(fromFile))
            .map(fromOption) ?? ((environment["HOME"] ?? "/tmp") + "/.lifeboat/runs")
    }

    // MARK: - repository creation

    public func compression(_ option: CompressionAlgorithm?) -> CompressionAlgorithm { option ?? file.compression ?? .zstd }

    public func compressionLevel(_ option: Int?) throws -> Int {
        try Defaults.compressionLevel.resolve(option ?? file.compressionLevel)
    }

    /// Bytes.
    public func chunkSize(kib option: Int?) throws -> Int { try Defaults.chunkSize.resolve(option ?? file.chunkSize) * 1024 }

    // MARK: - retention

    /// The retention policy; command-line overrides (expire's options) win over the file.
    public func retention(recoveryWindow: TimeInterval? = nil, manual: TimeInterval? = nil, keepLast: Int? = nil) throws -> RetentionPolicy {
        let r = file.retention
        return RetentionPolicy(recoveryWindow: recoveryWindow ?? r?.recoveryWindow?.seconds ?? Defaults.recoveryWindow,
            manualRetention: manual ?? r?.manual?.seconds ?? Defaults.manualRetention,
            keepLast: try Defaults.keepLast.resolve(keepLast ?? r?.keepLast))
    }

    // MARK: - drills

    public func scratchDirectory(_ option: String? = nil) -> String {
        option.map(fromOption) ?? file.drill?.scratchDir.map(fromFile) ?? Defaults.scratchDirectory
    }

    public func reportDirectory(_ option: String? = nil) -> String? {
        option.map(fromOption) ?? file.drill?.reportDir.map(fromFile)
    }

    /// `drill.objectives.<scenario>`: the RTO and RPO given there (nil where not given).
    public func objectives(_ scenario: String) throws -> (rto: TimeInterval?, rpo: TimeInterval?) {
        let all = file.drill?.objectives ?? [:]
        for name in all.keys where !DrillSection.scenarios.contains(name) {
            throw LifeboatError(.invalidUsage, "drill.objectives.\(name) names no scenario",
                hint: "scenarios: \(DrillSection.scenarios.joined(separator: ", "))")
        }
        return (all[scenario]?.rto?.seconds, all[scenario]?.rpo?.seconds)
    }

    public var drillChecks: [CheckSetting] {
        (file.drill?.checks ?? []).map { CheckSetting(name: $0.name ?? $0.sql, sql: $0.sql, expect: $0.expect, min: $0.min, max: $0.max) }
    }

    // MARK: - AWS

    /// The `aws:` section's account (runbook steps on AWS).
    public var awsAccount: AccountSection { file.aws?.account ?? AccountSection() }

    /// The protected AWS deployment as the `aws:` section describes it, defaults applied.
    public func awsDeployment() throws -> AWSDeploymentSettings {
        let a = file.aws
        let s = a?.schedule
        func every(_ given: Schedule?, _ fallback: Schedule, configured: Bool) -> TimeInterval? {
            configured ? (given ?? fallback).interval : nil
        }
        var d = AWSDeploymentSettings()
        d.region = a?.region
        d.secondRegion = a?.secondRegion
        d.secondRegionKMSKey = a?.secondRegionKMSKey
        d.auroraCluster = a?.aurora?.cluster
        d.backupRetentionDays = a?.aurora?.backupRetentionDays ?? Defaults.AWS.backupRetentionDays
        d.backupWindow = a?.aurora?.backupWindow ?? Defaults.AWS.backupWindow
        d.snapshotRetention = a?.aurora?.snapshotRetention?.seconds ?? Defaults.AWS.snapshotRetention
        d.copyToSecondRegion = a?.aurora?.copyToSecondRegion ?? (a?.secondRegion != nil)
        d.ecsCluster = a?.ecs?.cluster
        d.ecsServices = a?.ecs?.services ?? []
        d.taskDefinitionFamilies = a?.ecs?.families
        d.databaseHostVariable = a?.ecs?.databaseHostVariable ?? Defaults.AWS.databaseHostVariable
        d.ecrRepositories = a?.ecr?.repositories ?? []
        d.keepImages = try Defaults.AWS.keepImages.resolve(a?.ecr?.keepImages)
        d.terraformState = a?.terraform?.state.map { $0.hasPrefix("s3://") ? $0 : fromFile($0) }
        d.terraformBackupBucket = a?.terraform?.backupBucket
        d.terraformBackupPrefix = a?.terraform?.backupPrefix ?? Defaults.AWS.terraformBackupPrefix
        d.terraformKMSKey = a?.terraform?.kmsKey
        d.secretPrefixes = a?.secrets?.prefixes ?? []
        d.masterPasswordSecret = a?.secrets?.masterPasswordSecret
        d.logGroups = a?.logs?.groups ?? []
        d.logsBucket = a?.logs?.bucket
        d.logsPrefix = a?.logs?.prefix ?? Defaults.AWS.logsPrefix
        d.configDeliveryChannel = a?.config?.deliveryChannel
        d.drillRunbook = a?.drill?.runbook ?? d.drillRunbook
        var drillVars = a?.drill?.vars ?? [:]
        if let region = a?.region, drillVars["region"] == nil { drillVars["region"] = region }
        if let cluster = d.auroraCluster, drillVars["db_cluster"] == nil { drillVars["db_cluster"] = cluster }
        d.drillVars = drillVars
        if d.copyToSecondRegion, d.secondRegion == nil {
            throw LifeboatError(.invalidUsage, "aws.aurora.copy_to_second_region is on but aws.second_region is not set",
                hint: "name the second region (and aws.second_region_kms_key, a key of that region)")
        }
        if !d.logGroups.isEmpty, d.logsBucket == nil {
            throw LifeboatError(.invalidUsage, "aws.logs.groups are listed but aws.logs.bucket is not set", hint: "name the archive bucket the exports go to")
        }
        d.schedule = AWSJobSchedule(
            check: every(s?.check, Defaults.AWS.check, configured: d.auroraCluster != nil || !d.ecrRepositories.isEmpty || d.terraformState != nil),
            snapshot: every(s?.snapshot, Defaults.AWS.snapshot, configured: d.auroraCluster != nil),
            taskDefinitions: every(s?.taskDefinitions, Defaults.AWS.daily, configured: d.ecsCluster != nil || d.taskDefinitionFamilies != nil),
            terraformState: every(s?.terraformState, Defaults.AWS.daily, configured: d.terraformState != nil),
            configSnapshot: every(s?.configSnapshot, Defaults.AWS.daily, configured: d.configDeliveryChannel != nil),
            secrets: every(s?.secrets, Defaults.AWS.daily, configured: !d.secretPrefixes.isEmpty),
            logs: every(s?.logs, Defaults.AWS.daily, configured: !d.logGroups.isEmpty),
            drill: every(s?.drill, Defaults.AWS.drill, configured: d.auroraCluster != nil),
            window: s?.window)
        if let day = s?.snapshotDay {
            guard let i = AWSJobSchedule.weekdays.firstIndex(of: day.lowercased()) else {
                throw LifeboatError(.invalidUsage, "aws.schedule.snapshot_day '\(day)' is not a weekday", hint: "e.g. sunday")
            }
            d.schedule.snapshotWeekday = i + 1
        }
        return d
    }

    // MARK: - serve

    public var serve: ServeSection { file.serve ?? ServeSection.none }

    /// Deprecation notices for the file.
    public var warnings: [String] { file.warnings }
}

extension ServeSection {
    public var resolvedListen: ListenAddress { listen ?? Defaults.Serve.listen }
    public var resolvedBackupEvery: TimeInterval? { (backupEvery ?? Defaults.Serve.backupEvery).interval }
    public var resolvedVerifyEvery: TimeInterval? { (verifyEvery ?? Defaults.Serve.verifyEvery).interval }
    public var resolvedDrillEvery: TimeInterval? { (drillEvery ?? Defaults.Serve.drillEvery).interval }
    public var resolvedDrillScenario: String { drillScenario ?? Defaults.Serve.drillScenario }
    public var resolvedRPOObjective: TimeInterval { rpoObjective?.seconds ?? Defaults.Serve.rpoObjective }
    public var resolvedRTOObjective: TimeInterval { rtoObjective?.seconds ?? Defaults.Serve.rtoObjective }
    public var resolvedTick: TimeInterval { tick?.seconds ?? Defaults.Serve.tick }
    public var resolvedRefresh: TimeInterval { refresh?.seconds ?? Defaults.Serve.refresh }
    public var resolvedRetryAfter: TimeInterval { retryAfter?.seconds ?? Defaults.Serve.retryAfter }
    public var resolvedExpire: Bool { expire ?? Defaults.Serve.expire }
    public var resolvedCopyToMirrors: Bool { copyToMirrors ?? copyToReplicas ?? Defaults.Serve.copyToMirrors }
}

/// The `lifeboat` executable: parses the command line into library calls, prints results, and maps
/// errors to documented exit codes. Configuration is resolved by LifeboatConfiguration; this file
/// only turns its typed values into the library objects commands use (stores, keys, endpoints).
import ArgumentParser
import Foundation
import LifeboatAWSCore
import LifeboatConfiguration
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository
import LifeboatRunbooks
import Logging

extension LogLevelName: ExpressibleByArgument {}
extension CompressionAlgorithm: ExpressibleByArgument {}

/// Options every command accepts.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "YAML configuration file (also LIFEBOAT_CONFIG).")
    var config: String?

    @Option(name: .long, help: "Repository location (also LIFEBOAT_REPO).")
    var repo: String?

    @Option(name: .customLong("key-file"), help: "File holding the repository passphrase (else LIFEBOAT_PASSPHRASE).")
    var keyFile: String?

    @Option(name: .customLong("log-level"), help: "Log level (also LIFEBOAT_LOG_LEVEL).")
    var logLevel: LogLevelName?

    var values: CommandLineValues { CommandLineValues(config: config, repo: repo, keyFile: keyFile, logLevel: logLevel) }
}

/// Connection options for commands that reach the production cluster.
struct ConnectionOptions: ParsableArguments {
    @Option(help: "Data directory of the cluster (also PGDATA).") var pgdata: String?
    @Option(help: "Host or socket directory (also PGHOST).") var pghost: String?
    @Option(help: "Port (also PGPORT).") var pgport: Int?
    @Option(help: "User (also PGUSER).") var pguser: String?
    @Option(help: "Database to connect to (also PGDATABASE).") var pgdatabase: String?

    func apply(to values: inout CommandLineValues) {
        values.pgdata = pgdata
        values.pghost = pghost
        values.pgport = pgport
        values.pguser = pguser
        values.pgdatabase = pgdatabase
    }
}

/// What a command works with: the resolved settings, turned into stores, keys, endpoints and loggers.
struct Context {
    let settings: LifeboatSettings

    init(_ global: GlobalOptions, _ configure: (inout CommandLineValues) -> Void = { _ in }) throws {
        var values = global.values
        configure(&values)
        settings = try LifeboatSettings(options: values)
        for warning in settings.warnings { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
    }

    init(settings: LifeboatSettings) { self.settings = settings }

    /// Settings for another configuration file (a mirror, a copy target), nothing else inherited.
    static func other(config: String?, repo: String? = nil, keyFile: String? = nil) throws -> Context {
        Context(settings: try LifeboatSettings(options: CommandLineValues(config: config, repo: repo, keyFile: keyFile)))
    }

    // MARK: - logging

    /// The process's logger (stderr); commands log warnings and errors, the daemon `notice` too.
    func makeLogger(default fallback: Logger.Level = .warning) -> Logger {
        let level = settings.logLevelGiven ? Logger.Level(rawValue: settings.logLevel.rawValue) ?? fallback : fallback
        LoggingSetup.once(level: level)
        var logger = Logger(label: "lifeboat")
        logger.logLevel = level
        return logger
    }

    // MARK: - repository

    func store() throws -> any ObjectStore {
        switch try settings.repository() {
        case .directory(let path, let appendOnly):
            var store = FileStore(root: path)
            store.appendOnlyRetention = appendOnly
            return store
        case .s3(let url, let account, let pathStyle, let lock):
            let s3 = try S3Settings.resolve(url: url, overrides: Self.overrides(account), pathStyle: pathStyle,
                objectLock: lock.map { ObjectLockSettings(mode: $0.mode == .compliance ? .compliance : .governance, retention: $0.retention) },
                environment: settings.environment)
            return try S3Store(settings: s3)
        }
    }

    func keySource() throws -> KeySource {
        switch try settings.key() {
        case .keyFile(let path): return .keyFile(path)
        case .passphrase(let pass): return .passphrase(pass)
        }
    }

    func openRepository(_ logger: Logger) async throws -> Repository {
        try await Repository.open(store: try store(), key: try keySource(), logger: logger)
    }

    /// The cluster's mirrors, each opened on first use from its own configuration file.
    func mirrors(_ logger: Logger) -> MirrorSet {
        MirrorSet(settings.mirrorConfigs.map { path in
            MirrorSet.Entry(name: path) { try await Context.other(config: path).openRepository(logger) }
        })
    }

    static func overrides(_ a: AccountSection) -> AWSAccountOverrides {
        AWSAccountOverrides(region: a.region, endpoint: a.endpoint, profile: a.profile, accessKeyID: a.accessKeyID,
            secretAccessKey: a.secretAccessKey, sessionToken: a.sessionToken)
    }

    /// The `aws:` section, for runbook steps on AWS.
    var awsOverrides: AWSAccountOverrides { Self.overrides(settings.awsAccount) }

    // MARK: - PostgreSQL

    func pgdata(required: Bool = true) throws -> String? {
        guard let dir = settings.pgdata else {
            if required { throw LifeboatError(.invalidUsage, "no data directory given", hint: "pass --pgdata DIR or set PGDATA") }
            return nil
        }
        return dir
    }

    func endpoint() throws -> PostgresEndpoint {
        let c = try settings.connection()
        return PostgresEndpoint(host: c.host, port: c.port, user: c.user, database: c.database, password: c.password)
    }

    /// How PostgreSQL calls this lifeboat back: this executable with the options that found the
    /// repository, and the environment variables that did.
    var invocation: LifeboatInvocation {
        var args: [String] = []
        if let config = settings.configPath { args += ["--config", config] }
        if let repo = settings.options.repo { args += ["--repo", LifeboatSettings.absolute(repo, in: settings.workingDirectory)] }
        if let keyFile = settings.options.keyFile { args += ["--key-file", LifeboatSettings.absolute(keyFile, in: settings.workingDirectory)] }
        var env: [String: String] = [:]
        for key in ["LIFEBOAT_REPO", "LIFEBOAT_CONFIG"] { if let v = settings.environment[key], !v.isEmpty { env[key] = v } }
        return LifeboatInvocation(executable: LifeboatInvocation.currentExecutable, arguments: args, environment: env)
    }

    func absolute(_ path: String) -> String { LifeboatSettings.absolute(path, in: settings.workingDirectory) }

    // MARK: - drills

    func drillObjectives(_ scenario: DrillScenario, rto: String? = nil, rpo: String? = nil) throws -> DrillObjectives {
        var o = scenario.defaultObjectives
        let given = try settings.objectives(scenario.rawValue)
        if let v = given.rto { o.rtoSeconds = v }
        if let v = given.rpo { o.rpoSeconds = v }
        if let rto { o.rtoSeconds = try HumanDuration.parse(rto) }
        if let rpo { o.rpoSeconds = try HumanDuration.parse(rpo) }
        return o
    }

    var drillChecks: [DrillCheck] {
        settings.drillChecks.map { DrillCheck(name: $0.name, sql: $0.sql, expect: $0.expect, min: $0.min, max: $0.max) }
    }

    /// A restore drill (snapshot-restore or point-in-time) against a scratch cluster on this host.
    func drillOptions(_ kind: DrillScenario, objectives: DrillObjectives, pgdata: String, production: PostgresEndpoint,
        scratchDir: String? = nil, keepBackup: Bool = false, keepScratch: Bool = false) throws -> DrillOptions
    {
        DrillOptions(scenario: kind, production: production, pgdata: pgdata, scratchRoot: settings.scratchDirectory(scratchDir),
            invocation: invocation, binDirectory: settings.pgBin, objectives: objectives, checks: drillChecks, keepBackup: keepBackup,
            keepScratch: keepScratch, walTimeout: try settings.walTimeout())
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

    static func bytes(_ n: UInt64) -> String { ByteCount.format(n) }
}

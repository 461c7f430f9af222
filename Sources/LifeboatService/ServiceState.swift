import Foundation
import LifeboatFileSystem
import LifeboatCore
import LifeboatRepository

/// The jobs `serve` runs.
public enum ServiceJob: String, Codable, Sendable, CaseIterable {
    case backup, expire, copy, verify, drill
    /// The seed's AWS procedures (the `aws:` section's deployment).
    case awsCheck = "aws.check"
    case awsSnapshot = "aws.snapshot"
    case awsExpireSnapshots = "aws.expire-snapshots"
    case awsTaskDefinitions = "aws.task-definitions"
    case awsTerraformState = "aws.terraform-state"
    case awsConfigSnapshot = "aws.config-snapshot"
    case awsSecrets = "aws.secrets"
    case awsLogs = "aws.logs"
    case awsDrill = "aws.drill"

    public var isAWS: Bool { rawValue.hasPrefix("aws.") }
}

/// The last run of one job, kept across restarts of the daemon.
public struct JobRecord: Codable, Sendable, Equatable {
    public var startedAt: Date
    public var finishedAt: Date?
    public var succeeded: Bool?
    public var reason: String
    public var message: String
    /// Runs and failures since the state file was created.
    public var runs: Int
    public var failures: Int
    public var lastSuccessAt: Date?
    public var lastFailureAt: Date?
    public var durationSeconds: Double? { finishedAt.map { $0.timeIntervalSince(startedAt) } }

    public init(startedAt: Date, finishedAt: Date? = nil, succeeded: Bool? = nil, reason: String, message: String, runs: Int,
        failures: Int, lastSuccessAt: Date? = nil, lastFailureAt: Date? = nil)
    {
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.succeeded = succeeded
        self.reason = reason
        self.message = message
        self.runs = runs
        self.failures = failures
        self.lastSuccessAt = lastSuccessAt
        self.lastFailureAt = lastFailureAt
    }
}

/// The daemon's own memory: a JSON file written atomically after every job.
public struct ServiceState: Codable, Sendable, Equatable {
    public var jobs: [String: JobRecord] = [:]

    public init() {}

    public subscript(job: ServiceJob) -> JobRecord? {
        get { jobs[job.rawValue] }
        set { jobs[job.rawValue] = newValue }
    }

    /// Reads the state file; a missing file is a fresh state, an unreadable one an error (never
    /// silently reset: it holds when verify last ran).
    public static func load(_ path: String) throws -> ServiceState {
        guard FileManager.default.fileExists(atPath: path) else { return ServiceState() }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw LifeboatError(.io, "cannot read the service state file \(path)", hint: "check its permissions")
        }
        do {
            return try RepositoryJSON.decoder().decode(ServiceState.self, from: data)
        } catch {
            throw LifeboatError(.invalidUsage, "the service state file \(path) is not valid",
                hint: "move it away to start with a fresh state (verify then runs at once)", cause: error)
        }
    }

    /// Writes the state file through a temporary file and a rename, fsynced.
    public func save(_ path: String) throws {
        let encoder = RepositoryJSON.encoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        let data = try encoder.encode(self)
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try FileIO.replaceAtomically(path, with: data, mode: 0o600)
    }
}

/// One daemon per state file: an exclusive flock held for the life of the process.
public final class ServiceLock: Sendable {
    let fd: Int32

    /// Takes the lock or says who holds it.
    public init(stateFile: String) throws {
        let path = stateFile + ".lock"
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileIO.error("cannot open the service lock", errno: errno, path: path) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let holder = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
            close(fd)
            throw LifeboatError(.locked, "another lifeboat serve (pid \(holder)) already uses \(stateFile)",
                hint: "stop it first, or give this one its own --state-file")
        }
        ftruncate(fd, 0)
        let pid = "\(getpid())\n"
        _ = pid.withCString { write(fd, $0, strlen($0)) }
        self.fd = fd
    }

    deinit { close(fd) }
}

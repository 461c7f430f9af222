/// LifeboatConfiguration owns Lifeboat's configuration: the YAML file as typed sections whose
/// declared keys are the only ones accepted (an unknown key is refused with its path), durations and
/// schedules as types, one table of defaults and ranges (`Defaults`), and the precedence
/// option > environment > file > default, implemented once (`LifeboatSettings`). It does no I/O beyond
/// reading the file and knows nothing of repositories or AWS: commands and the daemon get typed values.
import Foundation
import LifeboatCore
import Yams

/// The configuration file, section by section. Every field is optional: what is absent takes its
/// value from the environment or the default (see `LifeboatSettings`).
public struct ConfigurationFile: Decodable, Sendable, Equatable {
    public var repo: String?
    public var keyFile: String?
    public var passphrase: String?
    public var pgdata: String?
    public var pghost: String?
    public var pgport: Int?
    public var pguser: String?
    public var pgdatabase: String?
    public var pgpassword: String?
    public var pgBin: String?
    public var parallelism: Int?
    public var compression: CompressionAlgorithm?
    public var compressionLevel: Int?
    /// KiB.
    public var chunkSize: Int?
    public var retention: RetentionSection?
    public var walTimeout: ConfigDuration?
    public var walPrefetch: Int?
    public var logLevel: LogLevelName?
    public var drill: DrillSection?
    public var stateDir: String?
    public var s3: S3Section?
    public var appendOnly: ConfigDuration?
    /// Configuration files of further repositories of this cluster (the seed's second-region copies).
    public var mirrors: [String]?
    /// The old name of `mirrors` (it read as PostgreSQL replicas); accepted with a warning.
    public var replicas: [String]?
    public var serve: ServeSection?
    public var aws: AWSSection?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case repo, passphrase, pgdata, pghost, pgport, pguser, pgdatabase, pgpassword, parallelism, compression, retention, drill, s3
        case mirrors, replicas, serve, aws
        case keyFile = "key_file"
        case pgBin = "pg_bin"
        case compressionLevel = "compression_level"
        case chunkSize = "chunk_size"
        case walTimeout = "wal_timeout"
        case walPrefetch = "wal_prefetch"
        case logLevel = "log_level"
        case stateDir = "state_dir"
        case appendOnly = "append_only"
    }

    public init() {}

    /// Deprecation notices for keys accepted under old names.
    public var warnings: [String] {
        var w: [String] = []
        if replicas != nil { w.append("the configuration key 'replicas' is now 'mirrors' (further repositories, not PostgreSQL replicas); rename it") }
        if serve?.copyToReplicas != nil {
            w.append("the configuration key 'serve.copy_to_replicas' is now 'serve.copy_to_mirrors'; rename it")
        }
        return w
    }

    /// Parses YAML text; errors name the file and the key path.
    public static func parse(_ text: String, path: String) throws -> ConfigurationFile {
        if text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return ConfigurationFile() }
        do {
            let node = try Yams.compose(yaml: text)
            guard let node else { return ConfigurationFile() }
            guard node.mapping != nil else {
                throw LifeboatError(.invalidUsage, "configuration file \(path) must be a mapping of keys to values")
            }
            return try ConfigurationFile(from: StrictDecoder(base: YAMLDecoderBox.decoder(for: node)))
        } catch let error as LifeboatError {
            throw error
        } catch let error as UnknownConfigurationKey {
            let section = error.path.split(separator: ".").dropLast().joined(separator: ".")
            throw LifeboatError(.invalidUsage, "unknown configuration key '\(error.path)' in \(path)",
                hint: "valid keys\(section.isEmpty ? "" : " under \(section)"): \(error.known.joined(separator: ", "))")
        } catch let error as DecodingError {
            throw LifeboatError(.invalidUsage, "configuration file \(path): \(Self.describe(error))")
        } catch {
            throw LifeboatError(.invalidUsage, "configuration file \(path) is not valid YAML", cause: error)
        }
    }

    /// Reads and parses a file.
    public static func load(_ path: String) throws -> ConfigurationFile {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw LifeboatError(.invalidUsage, "cannot read configuration file \(path)", hint: "check the path and its permissions")
        }
        return try parse(text, path: path)
    }

    static func describe(_ error: DecodingError) -> String {
        switch error {
        case .typeMismatch(let type, let context):
            return "\(StrictDecoder.path(context.codingPath)) must be \(Self.kind(type))"
        case .valueNotFound(let type, let context):
            return "\(StrictDecoder.path(context.codingPath)) needs a value (\(Self.kind(type)))"
        case .keyNotFound(let key, let context):
            return "\(StrictDecoder.path(context.codingPath + [key])) is required"
        case .dataCorrupted(let context):
            let at = StrictDecoder.path(context.codingPath)
            var text = context.debugDescription
            if text.hasPrefix("Cannot initialize"), let type = text.split(separator: " ").dropFirst(2).first {
                text = "is not a valid \(type)"
            }
            return at.isEmpty ? text : "\(at): \(text)"
        @unknown default:
            return "\(error)"
        }
    }

    static func kind(_ type: Any.Type) -> String {
        switch type {
        case is Int.Type: return "a whole number"
        case is Double.Type: return "a number"
        case is Bool.Type: return "true or false"
        case is String.Type: return "text"
        default:
            let name = "\(type)"
            return name.hasPrefix("Array") ? "a list" : name.hasPrefix("Dictionary") ? "a mapping" : "a \(name)"
        }
    }
}

/// Yams' decoder for an already composed node (so the root can be checked for a mapping first).
enum YAMLDecoderBox {
    static func decoder(for node: Node) throws -> any Decoder {
        struct Capture: Decodable {
            let decoder: any Decoder
            init(from decoder: any Decoder) throws { self.decoder = decoder }
        }
        return try YAMLDecoder().decode(Capture.self, from: node).decoder
    }
}

/// `retention:`: the seed's automated-backup window and manual-snapshot retention.
public struct RetentionSection: Decodable, Sendable, Equatable {
    public var recoveryWindow: ConfigDuration?
    public var manual: ConfigDuration?
    public var keepLast: Int?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case manual
        case recoveryWindow = "recovery_window"
        case keepLast = "keep_last"
    }
}

/// `s3:`: how to reach an S3 repository; credentials fall back to the environment and the profile.
public struct S3Section: Decodable, Sendable, Equatable {
    public var region: String?
    public var endpoint: String?
    public var pathStyle: Bool?
    public var profile: String?
    public var accessKeyID: String?
    public var secretAccessKey: String?
    public var sessionToken: String?
    public var objectLockMode: ObjectLockModeName?
    public var objectLockRetention: ConfigDuration?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case region, endpoint, profile
        case pathStyle = "path_style"
        case accessKeyID = "access_key_id"
        case secretAccessKey = "secret_access_key"
        case sessionToken = "session_token"
        case objectLockMode = "object_lock_mode"
        case objectLockRetention = "object_lock_retention"
    }

    public var account: AccountSection {
        AccountSection(region: region, endpoint: endpoint, profile: profile, accessKeyID: accessKeyID, secretAccessKey: secretAccessKey,
            sessionToken: sessionToken)
    }

    static let empty = S3Section()
}

/// An AWS account as a section names it (what `aws:` and `s3:` share).
public struct AccountSection: Sendable, Equatable {
    public var region: String?
    public var endpoint: String?
    public var profile: String?
    public var accessKeyID: String?
    public var secretAccessKey: String?
    public var sessionToken: String?

    public init(region: String? = nil, endpoint: String? = nil, profile: String? = nil, accessKeyID: String? = nil,
        secretAccessKey: String? = nil, sessionToken: String? = nil)
    {
        self.region = region
        self.endpoint = endpoint
        self.profile = profile
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }
}

/// `aws:`: the account runbook steps on AWS use, and the protected deployment (the seed's Aurora
/// cluster, ECS services, ECR repositories, Terraform state, secrets, log groups) whose backups
/// `lifeboat aws` and `serve` take.
public struct AWSSection: Decodable, Sendable, Equatable {
    public var region: String?
    public var endpoint: String?
    public var profile: String?
    public var accessKeyID: String?
    public var secretAccessKey: String?
    public var sessionToken: String?
    public var secondRegion: String?
    public var secondRegionKMSKey: String?
    public var aurora: AuroraSection?
    public var ecs: ECSSection?
    public var ecr: ECRSection?
    public var terraform: TerraformSection?
    public var secrets: SecretsSection?
    public var logs: LogsSection?
    public var config: AWSConfigSection?
    public var schedule: AWSScheduleSection?
    public var drill: AWSDrillSection?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case region, endpoint, profile, aurora, ecs, ecr, terraform, secrets, logs, config, schedule, drill
        case accessKeyID = "access_key_id"
        case secretAccessKey = "secret_access_key"
        case sessionToken = "session_token"
        case secondRegion = "second_region"
        case secondRegionKMSKey = "second_region_kms_key"
    }

    public var account: AccountSection {
        AccountSection(region: region, endpoint: endpoint, profile: profile, accessKeyID: accessKeyID, secretAccessKey: secretAccessKey,
            sessionToken: sessionToken)
    }
}

/// `drill:`: where drills run, where reports go, objectives per scenario, checks on the restored copy.
public struct DrillSection: Decodable, Sendable, Equatable {
    public var scratchDir: String?
    public var reportDir: String?
    public var objectives: [String: ObjectiveSection]?
    public var checks: [CheckSection]?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case objectives, checks
        case scratchDir = "scratch_dir"
        case reportDir = "report_dir"
    }

    /// The scenarios objectives may be given for.
    public static let scenarios = ["snapshot-restore", "point-in-time", "service-restart", "full-rebuild"]
}

public struct ObjectiveSection: Decodable, Sendable, Equatable {
    public var rto: ConfigDuration?
    public var rpo: ConfigDuration?

    enum CodingKeys: String, CodingKey, CaseIterable { case rto, rpo }
}

/// One SQL check: its single value must equal `expect`, or lie within `min`...`max`.
public struct CheckSection: Decodable, Sendable, Equatable {
    public var name: String?
    public var sql: String
    public var expect: String?
    public var min: Double?
    public var max: Double?

    enum CodingKeys: String, CodingKey, CaseIterable { case name, sql, expect, min, max }
}

/// `serve:`: the daemon.
public struct ServeSection: Decodable, Sendable, Equatable {
    /// No `serve:` section: every default.
    public static let none = ServeSection()

    public var listen: ListenAddress?
    public var backupWindowSetting: WindowSetting?
    /// The daily backup window (UTC).
    public var backupWindow: BackupWindow? { backupWindowSetting?.window }
    public var backupEvery: Schedule?
    public var expire: Bool?
    public var copyToMirrors: Bool?
    /// The old name of `copy_to_mirrors`.
    public var copyToReplicas: Bool?
    public var verifyEvery: Schedule?
    public var drillEvery: Schedule?
    public var drillScenario: String?
    public var rpoObjective: ConfigDuration?
    /// The overall RTO objective the dashboard shows drills against (the seed's 4 hours).
    public var rtoObjective: ConfigDuration?
    public var stateFile: String?
    public var tick: ConfigDuration?
    public var refresh: ConfigDuration?
    public var retryAfter: ConfigDuration?
    /// Several nodes of an HA cluster each running `serve`: which one backs up.
    public var ha: HASection?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case listen, expire, tick, refresh, ha
        case backupWindowSetting = "backup_window"
        case backupEvery = "backup_every"
        case copyToMirrors = "copy_to_mirrors"
        case copyToReplicas = "copy_to_replicas"
        case verifyEvery = "verify_every"
        case drillEvery = "drill_every"
        case drillScenario = "drill_scenario"
        case rpoObjective = "rpo_objective"
        case rtoObjective = "rto_objective"
        case stateFile = "state_file"
        case retryAfter = "retry_after"
    }
}

/// `serve.ha:`: `serve` on every node of a Patroni cluster; one takes the scheduled backups.
public struct HASection: Decodable, Sendable, Equatable {
    /// This node's Patroni REST API, e.g. `http://127.0.0.1:8008`.
    public var patroni: String
    /// A replica further behind the leader than this is not chosen (default 64MB).
    public var maxLag: ConfigSize?
    /// Back up on the leader even when a healthy replica exists.
    public var preferLeader: Bool?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case patroni
        case maxLag = "max_lag"
        case preferLeader = "prefer_leader"
    }
}

import Foundation
import LifeboatCore

/// `aws.aurora`: the production Aurora cluster and the seed's snapshot policy.
public struct AuroraSection: Decodable, Sendable, Equatable {
    public var cluster: String?
    /// The automated backups the seed asks for (drift is reported when they differ).
    public var backupRetentionDays: Int?
    public var backupWindow: String?
    /// How long Lifeboat's own manual snapshots are kept (the seed: 30 days).
    public var snapshotRetention: ConfigDuration?
    /// Copy every scheduled snapshot to `aws.second_region` under `aws.second_region_kms_key`.
    public var copyToSecondRegion: Bool?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case cluster
        case backupRetentionDays = "backup_retention_days"
        case backupWindow = "backup_window"
        case snapshotRetention = "snapshot_retention"
        case copyToSecondRegion = "copy_to_second_region"
    }
}

/// `aws.ecs`: the ECS cluster, its services, and the task definition families to export.
public struct ECSSection: Decodable, Sendable, Equatable {
    public var cluster: String?
    public var services: [String]?
    /// Families to export (absent: every family with an ACTIVE revision).
    public var families: [String]?
    /// The environment variable of the task definitions that holds the database endpoint.
    public var databaseHostVariable: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case cluster, services, families
        case databaseHostVariable = "database_host_variable"
    }
}

/// `aws.ecr`: repositories and the seed's lifecycle rule ("keep last 20 images").
public struct ECRSection: Decodable, Sendable, Equatable {
    public var repositories: [String]?
    public var keepImages: Int?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case repositories
        case keepImages = "keep_images"
    }
}

/// `aws.terraform`: where the state is (a local file, or `s3://bucket/key` of the backend) and the
/// bucket its copies go to with SSE-KMS.
public struct TerraformSection: Decodable, Sendable, Equatable {
    public var state: String?
    public var backupBucket: String?
    public var backupPrefix: String?
    public var kmsKey: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case state
        case backupBucket = "backup_bucket"
        case backupPrefix = "backup_prefix"
        case kmsKey = "kms_key"
    }
}

/// `aws.secrets`: which secrets' metadata is exported, and the one holding the Aurora master password.
public struct SecretsSection: Decodable, Sendable, Equatable {
    public var prefixes: [String]?
    public var masterPasswordSecret: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case prefixes
        case masterPasswordSecret = "master_password_secret"
    }
}

/// `aws.logs`: the log groups exported to the archive bucket (`<prefix>/<group>/YYYY/MM`).
public struct LogsSection: Decodable, Sendable, Equatable {
    public var groups: [String]?
    public var bucket: String?
    public var prefix: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case groups, bucket, prefix
    }
}

/// `aws.config`: the AWS Config delivery channel whose snapshot is delivered.
public struct AWSConfigSection: Decodable, Sendable, Equatable {
    public var deliveryChannel: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case deliveryChannel = "delivery_channel"
    }
}

/// `aws.schedule`: which of the seed's AWS jobs `serve` runs and how often (`off` for none), and the
/// window the snapshot and exports run in.
public struct AWSScheduleSection: Decodable, Sendable, Equatable {
    public var check: Schedule?
    public var snapshot: Schedule?
    public var taskDefinitions: Schedule?
    public var terraformState: Schedule?
    public var configSnapshot: Schedule?
    public var secrets: Schedule?
    public var logs: Schedule?
    public var drill: Schedule?
    public var windowSetting: WindowSetting?
    public var window: BackupWindow? { windowSetting?.window }
    /// The weekday (UTC) the scheduled snapshot is taken on, e.g. `sunday` as in the seed.
    public var snapshotDay: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case check, snapshot, secrets, logs, drill
        case snapshotDay = "snapshot_day"
        case taskDefinitions = "task_definitions"
        case terraformState = "terraform_state"
        case configSnapshot = "config_snapshot"
        case windowSetting = "window"
    }
}

/// `aws.drill`: the Aurora drill `serve` runs every `aws.schedule.drill` (the seed's monthly test):
/// a runbook (default `builtin:aws-pitr-drill`) and its variables (subnet group, security groups,
/// the verification's user, database, SQL and password variable).
public struct AWSDrillSection: Decodable, Sendable, Equatable {
    public var runbook: String?
    public var vars: [String: String]?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case runbook, vars
    }
}

/// The protected AWS deployment with defaults applied (`LifeboatSettings.awsDeployment()`).
public struct AWSDeploymentSettings: Sendable, Equatable {
    public var region: String?
    public var secondRegion: String?
    public var secondRegionKMSKey: String?
    public var auroraCluster: String?
    public var backupRetentionDays = Defaults.AWS.backupRetentionDays
    public var backupWindow = Defaults.AWS.backupWindow
    public var snapshotRetention = Defaults.AWS.snapshotRetention
    public var copyToSecondRegion = false
    public var ecsCluster: String?
    public var ecsServices: [String] = []
    public var taskDefinitionFamilies: [String]?
    public var databaseHostVariable = Defaults.AWS.databaseHostVariable
    public var ecrRepositories: [String] = []
    public var keepImages = 20
    /// A local path (absolute) or `s3://bucket/key`.
    public var terraformState: String?
    public var terraformBackupBucket: String?
    public var terraformBackupPrefix = Defaults.AWS.terraformBackupPrefix
    public var terraformKMSKey: String?
    public var secretPrefixes: [String] = []
    public var masterPasswordSecret: String?
    public var logGroups: [String] = []
    public var logsBucket: String?
    public var logsPrefix = Defaults.AWS.logsPrefix
    public var configDeliveryChannel: String?
    /// The drill serve runs on `schedule.drill`, and its runbook variables (region and cluster added).
    public var drillRunbook = "builtin:aws-pitr-drill"
    public var drillVars: [String: String] = [:]
    public var schedule = AWSJobSchedule()

    public init() {}
}

/// How often `serve` runs each AWS job (nil: not at all), and the window the snapshot and exports
/// run in (checks run whenever due).
public struct AWSJobSchedule: Sendable, Equatable {
    public var check: TimeInterval?
    public var snapshot: TimeInterval?
    public var taskDefinitions: TimeInterval?
    public var terraformState: TimeInterval?
    public var configSnapshot: TimeInterval?
    public var secrets: TimeInterval?
    public var logs: TimeInterval?
    public var drill: TimeInterval?
    public var window: BackupWindow?
    /// 1 = Sunday ... 7 = Saturday (Gregorian, UTC); nil: any day.
    public var snapshotWeekday: Int?

    /// Weekday names as `aws.schedule.snapshot_day` takes them.
    public static let weekdays = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]

    public init(check: TimeInterval? = nil, snapshot: TimeInterval? = nil, taskDefinitions: TimeInterval? = nil,
        terraformState: TimeInterval? = nil, configSnapshot: TimeInterval? = nil, secrets: TimeInterval? = nil,
        logs: TimeInterval? = nil, drill: TimeInterval? = nil, window: BackupWindow? = nil)
    {
        self.check = check
        self.snapshot = snapshot
        self.taskDefinitions = taskDefinitions
        self.terraformState = terraformState
        self.configSnapshot = configSnapshot
        self.secrets = secrets
        self.logs = logs
        self.drill = drill
        self.window = window
    }
}

/// LifeboatAWS owns Lifeboat's calls to AWS control planes for the seed's deployment: Aurora/RDS
/// clusters, snapshots (and their lifecycle), renames and master passwords; ECS services and task
/// definitions; ECR images and lifecycle policies; Route 53; Secrets Manager; CloudWatch Logs exports;
/// AWS Config snapshots; VPC and load balancer diagnoses; Terraform state copies; S3 object versions;
/// and the read-only checks runbooks make before they change anything. Every call goes through
/// LifeboatAWSCore's one signed client.
import Foundation
import LifeboatAWSCore
import LifeboatCore

/// An Aurora (RDS) cluster as DescribeDBClusters shows it.
public struct AuroraCluster: Sendable, Equatable, Codable {
    public var identifier: String
    public var status: String
    public var engine: String?
    public var endpoint: String?
    public var readerEndpoint: String?
    public var earliestRestorableTime: Date?
    public var latestRestorableTime: Date?
    public var backupRetentionDays: Int?
    public var preferredBackupWindow: String?
    public var arn: String?
    /// Instances in the cluster.
    public var members: [String]
    /// The writer instance, if the cluster has one.
    public var writer: String?
    /// Serverless v2 capacity, when the cluster has it (instances of class db.serverless need it).
    public var serverlessMinCapacity: Double?
    public var serverlessMaxCapacity: Double?

    init(_ x: AWSXML) {
        members = x.all("DBClusterMember").compactMap { $0.child("DBInstanceIdentifier") }
        writer = x.all("DBClusterMember").first { $0.child("IsClusterWriter") == "true" }?.child("DBInstanceIdentifier")
        serverlessMinCapacity = x.first("ServerlessV2ScalingConfiguration")?.child("MinCapacity").flatMap(Double.init)
        serverlessMaxCapacity = x.first("ServerlessV2ScalingConfiguration")?.child("MaxCapacity").flatMap(Double.init)
        identifier = x.child("DBClusterIdentifier") ?? ""
        status = x.child("Status") ?? "unknown"
        engine = x.child("Engine")
        endpoint = x.child("Endpoint")
        readerEndpoint = x.child("ReaderEndpoint")
        earliestRestorableTime = x.child("EarliestRestorableTime").flatMap { try? Timestamp.parse($0) }
        latestRestorableTime = x.child("LatestRestorableTime").flatMap { try? Timestamp.parse($0) }
        backupRetentionDays = x.child("BackupRetentionPeriod").flatMap { Int($0) }
        preferredBackupWindow = x.child("PreferredBackupWindow")
        arn = x.child("DBClusterArn")
    }
}

/// A cluster snapshot.
public struct AuroraSnapshot: Sendable, Equatable, Codable {
    public var identifier: String
    public var cluster: String?
    public var status: String
    public var type: String?
    public var createdAt: Date?
    public var arn: String?
    /// The snapshot's tags (DescribeDBClusterSnapshots carries them as TagList).
    public var tags: [String: String]

    init(_ x: AWSXML) {
        var tags: [String: String] = [:]
        for tag in x.first("TagList")?.all("Tag") ?? [] {
            if let key = tag.child("Key") { tags[key] = tag.child("Value") ?? "" }
        }
        self.tags = tags
        identifier = x.child("DBClusterSnapshotIdentifier") ?? ""
        cluster = x.child("DBClusterIdentifier")
        status = x.child("Status") ?? "unknown"
        type = x.child("SnapshotType")
        createdAt = x.child("SnapshotCreateTime").flatMap { try? Timestamp.parse($0) }
        arn = x.child("DBClusterSnapshotArn")
    }
}

/// Where a restored cluster goes and what it is made of (the seed's restore flags).
public struct AuroraRestoreTarget: Sendable, Equatable {
    public var cluster: String
    public var securityGroupIDs: [String]
    public var subnetGroup: String?
    public var kmsKeyID: String?
    /// An instance to create in the restored cluster (a cluster has no compute without one), e.g.
    /// `db.serverless` as in the seed, or `db.r6g.large`.
    public var instanceClass: String?
    /// Serverless v2 capacity (the seed's `--serverless-v2-scaling-configuration`), given in the
    /// restore call itself: AWS refuses `ModifyDBCluster` while the new cluster is still `creating`,
    /// and refuses a `db.serverless` instance in a cluster without it.
    public var minCapacity: Double?
    public var maxCapacity: Double?

    public init(cluster: String, securityGroupIDs: [String] = [], subnetGroup: String? = nil, kmsKeyID: String? = nil,
        instanceClass: String? = nil, minCapacity: Double? = nil, maxCapacity: Double? = nil)
    {
        self.cluster = cluster
        self.securityGroupIDs = securityGroupIDs
        self.subnetGroup = subnetGroup
        self.kmsKeyID = kmsKeyID
        self.instanceClass = instanceClass
        self.minCapacity = minCapacity
        self.maxCapacity = maxCapacity
    }

    var parameters: [(String, String)] {
        // The mark that lets Lifeboat delete this cluster later (drill clean-up), and nothing else.
        var p: [(String, String)] = [("Tags.Tag.1.Key", AuroraClusters.creatorTag.key), ("Tags.Tag.1.Value", AuroraClusters.creatorTag.value)]
        p += securityGroupIDs.enumerated().map { ("VpcSecurityGroupIds.VpcSecurityGroupId.\($0.offset + 1)", $0.element) }
        if let subnetGroup { p.append(("DBSubnetGroupName", subnetGroup)) }
        if let kmsKeyID { p.append(("KmsKeyId", kmsKeyID)) }
        if minCapacity != nil || maxCapacity != nil {
            p.append(("ServerlessV2ScalingConfiguration.MinCapacity", String(minCapacity ?? 0.5)))
            p.append(("ServerlessV2ScalingConfiguration.MaxCapacity", String(maxCapacity ?? max(1, minCapacity ?? 1))))
        }
        return p
    }

    /// The instance made in the restored cluster.
    public var instanceIdentifier: String { "\(cluster)-instance-1" }

    /// What AWS would refuse, found before anything is created.
    public func validate() throws {
        if instanceClass == "db.serverless", minCapacity == nil || maxCapacity == nil {
            throw LifeboatError(.invalidUsage,
                "an instance of class db.serverless needs serverless v2 capacity: give min_capacity and max_capacity (the seed uses 0.5 and 1.0)",
                hint: "AWS refuses a db.serverless instance in a cluster without ServerlessV2ScalingConfiguration")
        }
        if let lo = minCapacity, let hi = maxCapacity, lo > hi || lo < 0.5 || hi > 256 {
            throw LifeboatError(.invalidUsage, "serverless capacity \(lo)-\(hi) ACU is outside 0.5-256 or inverted")
        }
    }
}

/// Aurora clusters and snapshots: the seed's `aws rds` commands, always restoring into a new cluster.
public struct AuroraClusters: Sendable {
    public let client: AWSClient
    static let version = "2014-10-31"

    /// Every cluster Lifeboat restores carries this tag; only such clusters can be deleted by it.
    public static let creatorTag = (key: "CreatedBy", value: "lifeboat")

    public init(client: AWSClient) { self.client = client }

    /// Deletes a cluster Lifeboat restored (a drill's, or a failed attempt), its instances first, with
    /// no final snapshot. Any other cluster is refused: production is never one call away.
    public func deleteRestoredCluster(_ cluster: String) async throws {
        let c = try await describe(cluster)
        guard let arn = c.arn else { throw LifeboatError(.externalCommand, "cluster \(cluster) has no ARN to check its tags") }
        let tags = try await client.query("ListTagsForResource", version: Self.version, [("ResourceName", arn)])
        guard tags.all("Tag").contains(where: { $0.child("Key") == Self.creatorTag.key && $0.child("Value") == Self.creatorTag.value }) else {
            throw LifeboatError(.invalidUsage, "cluster \(cluster) was not restored by Lifeboat (no tag \(Self.creatorTag.key)=\(Self.creatorTag.value)): refusing to delete it",
                hint: "Lifeboat deletes only clusters it restored; delete this one yourself if it must go")
        }
        for instance in c.members {
            _ = try await client.query("DeleteDBInstance", version: Self.version,
                [("DBInstanceIdentifier", instance), ("SkipFinalSnapshot", "true")])
        }
        _ = try await client.query("DeleteDBCluster", version: Self.version, [("DBClusterIdentifier", cluster), ("SkipFinalSnapshot", "true")])
    }

    public func describe(_ cluster: String) async throws -> AuroraCluster {
        let answer = try await Self.notFound(.dbClusterNotFound, "Aurora cluster \(cluster) not found in \(client.account.region)") {
            try await client.query("DescribeDBClusters", version: Self.version, [("DBClusterIdentifier", cluster)])
        }
        guard let found = answer.all("DBCluster").map(AuroraCluster.init).first(where: { $0.identifier == cluster }) else {
            throw LifeboatError(.notFound, "Aurora cluster \(cluster) not found in \(client.account.region)")
        }
        return found
    }

    /// The seed's `create-db-cluster-snapshot`, with tags (Purpose, CreatedBy, ...).
    public func createSnapshot(cluster: String, snapshot: String, tags: [String: String]) async throws -> AuroraSnapshot {
        var p: [(String, String)] = [("DBClusterSnapshotIdentifier", snapshot), ("DBClusterIdentifier", cluster)]
        for (i, key) in tags.keys.sorted().enumerated() {
            p += [("Tags.Tag.\(i + 1).Key", key), ("Tags.Tag.\(i + 1).Value", tags[key] ?? "")]
        }
        let answer = try await client.query("CreateDBClusterSnapshot", version: Self.version, p)
        return AuroraSnapshot(try Self.one("DBClusterSnapshot", in: answer, action: "CreateDBClusterSnapshot"))
    }

    public func snapshot(_ id: String) async throws -> AuroraSnapshot {
        let answer = try await Self.notFound(.dbClusterSnapshotNotFound, "cluster snapshot \(id) not found in \(client.account.region)") {
            try await client.query("DescribeDBClusterSnapshots", version: Self.version, [("DBClusterSnapshotIdentifier", id)])
        }
        guard let found = answer.all("DBClusterSnapshot").map(AuroraSnapshot.init).first(where: { $0.identifier == id }) else {
            throw LifeboatError(.notFound, "cluster snapshot \(id) not found in \(client.account.region)")
        }
        return found
    }

    /// The seed's `copy-db-cluster-snapshot` to this client's region, under `kmsKeyID` (a key of this
    /// region: the copy is re-encrypted under the second region's own key). From another region,
    /// the source is looked up there for its ARN and the request carries the presigned URL AWS
    /// needs for encrypted snapshots (what the AWS CLI's `--source-region` builds).
    public func copySnapshot(_ source: String, from sourceRegion: String?, to target: String, kmsKeyID: String?,
        tags: [String: String] = [:]) async throws -> AuroraSnapshot
    {
        var p: [(String, String)] = [("TargetDBClusterSnapshotIdentifier", target)]
        if let kmsKeyID { p.append(("KmsKeyId", kmsKeyID)) }
        if let region = sourceRegion, region != client.account.region {
            let remote = AuroraClusters(client: try client.inRegion(region))
            let arn = source.hasPrefix("arn:") ? source : try await remote.snapshot(source).arn ?? source
            p.insert(("SourceDBClusterSnapshotIdentifier", arn), at: 0)
            let presigned = remote.client.presignedQuery("CopyDBClusterSnapshot", version: Self.version,
                p + [("DestinationRegion", client.account.region)])
            p.append(("PreSignedUrl", presigned))
        } else {
            p.insert(("SourceDBClusterSnapshotIdentifier", source), at: 0)
        }
        if tags.isEmpty {
            p.append(("CopyTags", "true"))
        } else {
            for (i, key) in tags.keys.sorted().enumerated() {
                p += [("Tags.Tag.\(i + 1).Key", key), ("Tags.Tag.\(i + 1).Value", tags[key] ?? "")]
            }
        }
        let answer = try await client.query("CopyDBClusterSnapshot", version: Self.version, p)
        return AuroraSnapshot(try Self.one("DBClusterSnapshot", in: answer, action: "CopyDBClusterSnapshot"))
    }

    public func deleteSnapshot(_ id: String) async throws {
        _ = try await client.query("DeleteDBClusterSnapshot", version: Self.version, [("DBClusterSnapshotIdentifier", id)])
    }

    /// The seed's `restore-db-cluster-to-point-in-time` into a new cluster (never over the source);
    /// `time` nil restores to the latest restorable time. Then the instance and capacity, if asked.
    public func restoreToPointInTime(source: String, time: Date?, into target: AuroraRestoreTarget) async throws -> AuroraCluster {
        try target.validate()
        try await refuseExisting(target.cluster)
        var p: [(String, String)] = [("DBClusterIdentifier", target.cluster), ("SourceDBClusterIdentifier", source)]
        if let time {
            let cluster = try await describe(source)
            if let earliest = cluster.earliestRestorableTime, time < earliest {
                throw LifeboatError(.notFound, "\(Timestamp.format(time)) is before \(source)'s earliest restorable time \(Timestamp.format(earliest))",
                    hint: "restore from a manual snapshot instead, or pick a later time")
            }
            if let latest = cluster.latestRestorableTime, time > latest {
                throw LifeboatError(.notFound, "\(Timestamp.format(time)) is after \(source)'s latest restorable time \(Timestamp.format(latest))",
                    hint: "use the latest restorable time (omit the time) or wait for it to advance")
            }
            p.append(("RestoreToTime", Self.awsTime(time)))
        } else {
            p.append(("UseLatestRestorableTime", "true"))
        }
        let answer = try await client.query("RestoreDBClusterToPointInTime", version: Self.version, p + target.parameters)
        let restored = AuroraCluster(try Self.one("DBCluster", in: answer, action: "RestoreDBClusterToPointInTime"))
        try await finish(target, engine: restored.engine)
        return restored
    }

    /// `restore-db-cluster-from-snapshot` into a new cluster.
    public func restoreFromSnapshot(_ snapshot: String, engine: String, into target: AuroraRestoreTarget) async throws -> AuroraCluster {
        try target.validate()
        try await refuseExisting(target.cluster)
        let p: [(String, String)] = [("DBClusterIdentifier", target.cluster), ("SnapshotIdentifier", snapshot), ("Engine", engine)]
        let answer = try await client.query("RestoreDBClusterFromSnapshot", version: Self.version, p + target.parameters)
        let restored = AuroraCluster(try Self.one("DBCluster", in: answer, action: "RestoreDBClusterFromSnapshot"))
        try await finish(target, engine: restored.engine ?? engine)
        return restored
    }

    /// Polls until the cluster is `available` (the seed's `aws rds wait db-cluster-available`).
    public func waitAvailable(_ cluster: String, timeout: TimeInterval, poll: TimeInterval) async throws -> AuroraCluster {
        try await AWSWait.until(what: "cluster \(cluster) to become available", timeout: timeout, every: poll) {
            let c = try await describe(cluster)
            if ["failed", "inaccessible-encryption-credentials", "incompatible-restore", "incompatible-parameters"].contains(c.status) {
                throw LifeboatError(.externalCommand, "cluster \(cluster) is \(c.status)", hint: "see the RDS events of the cluster")
            }
            return c.status == "available" ? c : nil
        }
    }

    public func waitSnapshotAvailable(_ id: String, timeout: TimeInterval, poll: TimeInterval) async throws -> AuroraSnapshot {
        try await AWSWait.until(what: "snapshot \(id) to become available", timeout: timeout, every: poll) {
            let s = try await snapshot(id)
            if s.status == "failed" { throw LifeboatError(.externalCommand, "snapshot \(id) failed") }
            return s.status == "available" ? s : nil
        }
    }

    func refuseExisting(_ cluster: String) async throws {
        if let existing = try? await describe(cluster) {
            throw LifeboatError(.targetNotEmpty, "cluster \(cluster) already exists (\(existing.status)); a restore never overwrites",
                hint: "choose a new target cluster name, or delete that one yourself if it is a failed attempt")
        }
    }

    /// The instance of a restored cluster (its capacity was given in the restore call). AWS accepts
    /// the instance while the cluster is still `creating`; both are waited for afterwards.
    func finish(_ target: AuroraRestoreTarget, engine: String?) async throws {
        if let instanceClass = target.instanceClass {
            _ = try await client.query("CreateDBInstance", version: Self.version, [
                ("DBInstanceIdentifier", target.instanceIdentifier), ("DBClusterIdentifier", target.cluster),
                ("DBInstanceClass", instanceClass), ("Engine", engine ?? "aurora-postgresql"),
            ])
        }
    }

    /// An instance's status (`creating`, `available`, ...).
    public func instanceStatus(_ instance: String) async throws -> String {
        let answer = try await Self.notFound(.dbInstanceNotFound, "DB instance \(instance) not found in \(client.account.region)") {
            try await client.query("DescribeDBInstances", version: Self.version, [("DBInstanceIdentifier", instance)])
        }
        return answer.all("DBInstance").first { $0.child("DBInstanceIdentifier") == instance }?.child("DBInstanceStatus") ?? "unknown"
    }

    /// Polls until the cluster and every instance in it are `available`: an endpoint answers only
    /// once its writer instance is up (the seed's `wait db-cluster-available` covers the cluster alone).
    public func waitReady(_ cluster: String, timeout: TimeInterval, poll: TimeInterval) async throws -> AuroraCluster {
        let deadline = Date().addingTimeInterval(timeout)
        let c = try await waitAvailable(cluster, timeout: timeout, poll: poll)
        for instance in c.members {
            _ = try await AWSWait.until(what: "instance \(instance) of \(cluster) to become available",
                timeout: max(1, deadline.timeIntervalSinceNow), every: poll) {
                let status = try await instanceStatus(instance)
                if ["failed", "incompatible-parameters", "inaccessible-encryption-credentials"].contains(status) {
                    throw LifeboatError(.externalCommand, "instance \(instance) is \(status)", hint: "see the RDS events of the instance")
                }
                return status == "available" ? true : nil
            }
        }
        return try await describe(cluster)
    }

    /// The subnet group exists in this region.
    public func checkSubnetGroup(_ name: String) async throws {
        _ = try await Self.notFound(.dbSubnetGroupNotFound, "DB subnet group \(name) not found in \(client.account.region)") {
            try await client.query("DescribeDBSubnetGroups", version: Self.version, [("DBSubnetGroupName", name)])
        }
    }

    /// Read-only checks of a restore, before anything is created or stopped: the source (cluster,
    /// and the point within its restorable window, or the snapshot), the target's name free, the
    /// subnet group, and what AWS would refuse in the target's shape. One line per check.
    public func preflightRestore(source: String?, snapshot: String?, time: Date?, into target: AuroraRestoreTarget) async throws -> [String] {
        var done: [String] = []
        try target.validate()
        if let snapshot {
            let s = try await self.snapshot(snapshot)
            guard s.status == "available" else {
                throw LifeboatError(.invalidUsage, "snapshot \(snapshot) is \(s.status), not available: a restore from it would fail")
            }
            done.append("snapshot \(snapshot) is available")
        } else if let source {
            let c = try await describe(source)
            if let time {
                if let earliest = c.earliestRestorableTime, time < earliest {
                    throw LifeboatError(.notFound, "\(Timestamp.format(time)) is before \(source)'s earliest restorable time \(Timestamp.format(earliest))",
                        hint: "restore from a manual snapshot instead, or pick a later time")
                }
                if let latest = c.latestRestorableTime, time > latest {
                    throw LifeboatError(.notFound, "\(Timestamp.format(time)) is after \(source)'s latest restorable time \(Timestamp.format(latest))",
                        hint: "use the latest restorable time (omit the time) or wait for it to advance")
                }
                done.append("\(Timestamp.format(time)) is within \(source)'s restorable window")
            } else {
                done.append("\(source) exists (restore to its latest restorable time)")
            }
        }
        try await refuseExisting(target.cluster)
        done.append("the target cluster name \(target.cluster) is free")
        if let group = target.subnetGroup {
            try await checkSubnetGroup(group)
            done.append("subnet group \(group) exists")
        }
        return done
    }

    /// Turns AWS's "not found" fault into Lifeboat's not-found error (exit 6).
    static func notFound<T>(_ fault: AWSErrorCode, _ message: String, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let e as LifeboatError where e.awsCode == fault {
            throw LifeboatError(.notFound, message, hint: "check the name and the region")
        }
    }

    static func one(_ name: String, in answer: AWSXML, action: String) throws -> AWSXML {
        guard let x = answer.first(name) else {
            throw LifeboatError(.externalCommand, "AWS rds \(action): the answer has no \(name)")
        }
        return x
    }

    static func awsTime(_ date: Date) -> String {
        let text = Timestamp.format(date)  // 2026-11-29T03:00:00.000Z
        return text.hasSuffix(".000Z") ? String(text.dropLast(5)) + "Z" : text
    }
}

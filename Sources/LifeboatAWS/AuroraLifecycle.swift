import Foundation
import LifeboatAWSCore
import LifeboatCore

/// What an expiry of manual snapshots found: the ones deleted (or that would be, on a dry run) and
/// every other manual snapshot of the cluster with the reason it stays.
public struct SnapshotExpiry: Sendable, Equatable, Codable {
    public var region: String
    public var expired: [String]
    public var kept: [Kept]
    public var dryRun: Bool

    public struct Kept: Sendable, Equatable, Codable {
        public var snapshot: String
        public var reason: String
    }
}

/// A setting of the cluster's automated backups that differs from what the configuration asks.
public struct BackupSettingDrift: Sendable, Equatable, Codable {
    public var setting: String
    public var expected: String
    public var actual: String
}

/// The seed's snapshot lifecycle and the cluster changes a promotion needs: Lifeboat's own manual
/// snapshots (tagged, expired by age), the automated backup settings, renames, the master password.
extension AuroraClusters {
    /// The tag that makes a manual snapshot Lifeboat's: only snapshots carrying it are ever expired.
    public static let policyTag = (key: "lifeboat-policy", value: "snapshot-retention")
    /// A snapshot's own retention in days, overriding the configured one (`0`: keep forever).
    public static let retentionTag = "lifeboat-retention-days"

    /// The tags of a snapshot Lifeboat takes: `Purpose`, `CreatedBy`, the policy mark, and the retention.
    public static func snapshotTags(purpose: String, retentionDays: Int?, extra: [String: String] = [:]) -> [String: String] {
        var tags = extra
        tags["Purpose"] = purpose
        tags["CreatedBy"] = tags["CreatedBy"] ?? "lifeboat"
        tags[policyTag.key] = policyTag.value
        if let retentionDays { tags[retentionTag] = String(retentionDays) }
        return tags
    }

    /// Every manual snapshot of `cluster` (the automated ones are never asked for), with tags.
    public func manualSnapshots(of cluster: String) async throws -> [AuroraSnapshot] {
        var out: [AuroraSnapshot] = []
        var marker: String?
        repeat {
            var p: [(String, String)] = [("DBClusterIdentifier", cluster), ("SnapshotType", "manual"), ("MaxRecords", "100")]
            if let marker { p.append(("Marker", marker)) }
            let answer = try await Self.notFound(.dbClusterNotFound, "Aurora cluster \(cluster) not found in \(client.account.region)") {
                try await client.query("DescribeDBClusterSnapshots", version: Self.version, p)
            }
            out += answer.all("DBClusterSnapshot").map(AuroraSnapshot.init)
            marker = answer.text("Marker").flatMap { $0.isEmpty ? nil : $0 }
        } while marker != nil
        return out
    }

    /// Deletes the manual snapshots of `cluster` that Lifeboat's policy owns (tag
    /// `lifeboat-policy=snapshot-retention`) and that are older than their retention (the tag
    /// `lifeboat-retention-days`, else `retention`). Snapshots without the tag, automated snapshots,
    /// and snapshots not yet available are never touched.
    public func expireSnapshots(of cluster: String, retention: TimeInterval, dryRun: Bool, now: Date = Date()) async throws -> SnapshotExpiry {
        var report = SnapshotExpiry(region: client.account.region, expired: [], kept: [], dryRun: dryRun)
        for s in try await manualSnapshots(of: cluster).sorted(by: { ($0.createdAt ?? .distantPast) < ($1.createdAt ?? .distantPast) }) {
            func keep(_ reason: String) { report.kept.append(.init(snapshot: s.identifier, reason: reason)) }
            guard s.type == nil || s.type == "manual" else { keep("\(s.type ?? "?") snapshot"); continue }
            guard s.tags[Self.policyTag.key] == Self.policyTag.value else { keep("not Lifeboat's (no tag \(Self.policyTag.key)=\(Self.policyTag.value))"); continue }
            var limit = retention
            if let days = s.tags[Self.retentionTag] {
                guard let d = Double(days), d >= 0 else { keep("unreadable \(Self.retentionTag) '\(days)'"); continue }
                if d == 0 { keep("kept forever (\(Self.retentionTag)=0)"); continue }
                limit = d * 86400
            }
            guard let created = s.createdAt else { keep("no creation time"); continue }
            guard s.status == "available" else { keep("status \(s.status)"); continue }
            let age = now.timeIntervalSince(created)
            guard age > limit else { keep("\(HumanDuration.format(age)) old, retention \(HumanDuration.format(limit))"); continue }
            if !dryRun { try await deleteSnapshot(s.identifier) }
            report.expired.append(s.identifier)
        }
        return report
    }

    /// How the cluster's automated backups differ from the seed's settings (empty: no drift).
    public func backupDrift(_ cluster: String, retentionDays: Int, window: String) async throws -> [BackupSettingDrift] {
        let c = try await describe(cluster)
        var drift: [BackupSettingDrift] = []
        if c.backupRetentionDays != retentionDays {
            drift.append(.init(setting: "backup retention", expected: "\(retentionDays) days", actual: c.backupRetentionDays.map { "\($0) days" } ?? "unknown"))
        }
        if c.preferredBackupWindow != window {
            drift.append(.init(setting: "backup window", expected: window, actual: c.preferredBackupWindow ?? "unknown"))
        }
        return drift
    }

    /// Sets the automated backup retention and window (the fix for a drift). AWS refuses a
    /// modification while the cluster is not `available`; that refusal is passed on.
    public func setBackupSettings(_ cluster: String, retentionDays: Int, window: String) async throws {
        _ = try await client.query("ModifyDBCluster", version: Self.version, [("DBClusterIdentifier", cluster),
            ("BackupRetentionPeriod", String(retentionDays)), ("PreferredBackupWindow", window), ("ApplyImmediately", "true")])
    }

    /// Renames a cluster (`modify-db-cluster --new-db-cluster-identifier`) and waits until it answers
    /// under its new name. The new name must be free and the cluster `available`, as AWS requires.
    public func rename(_ cluster: String, to newName: String, timeout: TimeInterval, poll: TimeInterval) async throws -> AuroraCluster {
        let current = try await describe(cluster)
        guard current.status == "available" else {
            throw LifeboatError(.invalidUsage, "cluster \(cluster) is \(current.status): AWS renames only an available cluster",
                hint: "wait for it (`aws.rds.expect`) and run again")
        }
        if let existing = try? await describe(newName) {
            throw LifeboatError(.targetNotEmpty, "a cluster named \(newName) already exists (\(existing.status)); renaming \(cluster) to it would fail",
                hint: "rename that one out of the way first, or pick another name")
        }
        _ = try await client.query("ModifyDBCluster", version: Self.version, [("DBClusterIdentifier", cluster),
            ("NewDBClusterIdentifier", newName), ("ApplyImmediately", "true")])
        return try await waitAvailable(newName, timeout: timeout, poll: poll)
    }

    /// The seed's `modify-db-cluster --master-user-password`. The password is never logged; AWS
    /// refuses fewer than 8 characters and `/`, `"`, `@` or spaces, checked here first.
    public func setMasterPassword(_ cluster: String, password: String) async throws {
        try Self.checkMasterPassword(password)
        _ = try await client.query("ModifyDBCluster", version: Self.version, [("DBClusterIdentifier", cluster),
            ("MasterUserPassword", password), ("ApplyImmediately", "true")])
    }

    public static func checkMasterPassword(_ password: String) throws {
        guard (8...128).contains(password.count) else {
            throw LifeboatError(.invalidUsage, "the master password must have 8 to 128 characters (it has \(password.count))")
        }
        if password.contains(where: { "/\"@ ".contains($0) || !$0.isASCII }) {
            throw LifeboatError(.invalidUsage, "the master password contains a character Aurora refuses (/, \", @, a space or non-ASCII)")
        }
    }

    /// A random password Aurora accepts: 32 characters of letters, digits and safe punctuation.
    public static func generatePassword() -> String {
        let alphabet = Array("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789-_.~!#%^*")
        var rng = SystemRandomNumberGenerator()
        return String((0..<32).map { _ in alphabet[Int(rng.next(upperBound: UInt(alphabet.count)))] })
    }
}

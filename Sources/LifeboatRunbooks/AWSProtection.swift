import Foundation
import LifeboatAWS
import LifeboatAWSCore
import LifeboatConfiguration
import LifeboatCore
import LifeboatRepository

/// The outcome of one of the seed's AWS jobs: what was done, and what is wrong (drift, a secret
/// gone). A job with problems did its work but needs a human: the CLI exits non-zero, `serve`
/// counts it failed.
public struct AWSJobOutcome: Sendable, Equatable {
    public var job: String
    public var lines: [String] = []
    public var problems: [String] = []
    public var ok: Bool { problems.isEmpty }

    public init(job: String) { self.job = job }

    /// One line for a job record.
    public var summary: String {
        ok ? (lines.last ?? "done") : "\(problems.count) problem(s): " + problems.joined(separator: "; ")
    }
}

/// The seed's AWS backup and recovery procedures for the deployment the `aws:` section describes:
/// backup settings checked, Lifeboat's manual snapshots taken, copied and expired, the ECR lifecycle
/// rule, task definitions, Terraform state and secret metadata into the repository, the AWS Config
/// snapshot, CloudWatch Logs exports; and the recoveries (a task definition registered back, a
/// secret restored or recreated with the master password set, a restored cluster promoted).
public struct AWSProtection: Sendable {
    public let deployment: AWSDeploymentSettings
    public let account: AWSAccountOverrides
    public let progress: @Sendable (String) -> Void

    public init(deployment: AWSDeploymentSettings, account: AWSAccountOverrides, progress: @escaping @Sendable (String) -> Void = { _ in }) {
        self.deployment = deployment
        self.account = account
        self.progress = progress
    }

    func client(_ service: AWSService) throws -> AWSClient { try AWSClient(service, overrides: account) }

    var aurora: AuroraClusters { get throws { AuroraClusters(client: try client(.rds)) } }

    func required(_ value: String?, _ key: String) throws -> String {
        guard let value, !value.isEmpty else {
            throw LifeboatError(.invalidUsage, "aws.\(key) is not set in the configuration", hint: "see docs/aws.md for the aws: section")
        }
        return value
    }

    // MARK: - checks

    /// Drift of everything the seed sets once and expects to stay: the automated backups' retention
    /// and window, the ECR lifecycle rule, versioning of the Terraform state bucket, a second-region
    /// copy configured. `fix` sets the backup settings and the lifecycle rule back.
    public func check(fix: Bool) async throws -> AWSJobOutcome {
        var out = AWSJobOutcome(job: "check")
        if let cluster = deployment.auroraCluster {
            let rds = try aurora
            let drift = try await rds.backupDrift(cluster, retentionDays: deployment.backupRetentionDays, window: deployment.backupWindow)
            if drift.isEmpty {
                out.lines.append("\(cluster): automated backups kept \(deployment.backupRetentionDays) days, window \(deployment.backupWindow)")
            } else if fix {
                try await rds.setBackupSettings(cluster, retentionDays: deployment.backupRetentionDays, window: deployment.backupWindow)
                let after = try await rds.backupDrift(cluster, retentionDays: deployment.backupRetentionDays, window: deployment.backupWindow)
                for d in drift { out.lines.append("\(cluster): \(d.setting) was \(d.actual), set to \(d.expected)") }
                for d in after { out.problems.append("\(cluster): \(d.setting) is still \(d.actual) after the fix (expected \(d.expected))") }
            } else {
                for d in drift { out.problems.append("\(cluster): \(d.setting) is \(d.actual), expected \(d.expected)") }
            }
            if deployment.secondRegion == nil {
                out.problems.append("\(cluster): no second region is configured (aws.second_region): a regional outage loses every snapshot")
            }
        }
        if !deployment.ecrRepositories.isEmpty {
            let ecr = ContainerRegistry(client: try client(.ecr))
            for repository in deployment.ecrRepositories {
                if let drift = try await ecr.drift(repository, keep: deployment.keepImages) {
                    if fix {
                        try await ecr.applyKeepLast(repository, keep: deployment.keepImages)
                        if let still = try await ecr.drift(repository, keep: deployment.keepImages) { out.problems.append(still) } else {
                            out.lines.append("\(drift); applied \"keep last \(deployment.keepImages) images\"")
                        }
                    } else {
                        out.problems.append(drift)
                    }
                } else {
                    out.lines.append("\(repository): lifecycle policy keeps the last \(deployment.keepImages) images")
                }
            }
        }
        if let state = deployment.terraformState, state.hasPrefix("s3://") {
            let (bucket, _) = try S3Bucket.resolve(url: state, overrides: account)
            if try await S3Client(bucket).versioningEnabled() {
                out.lines.append("Terraform state bucket \(bucket.name) keeps versions")
            } else {
                out.problems.append("Terraform state bucket \(bucket.name) does not keep versions: a destroyed or corrupted state cannot be restored from it")
            }
        }
        if out.lines.isEmpty, out.problems.isEmpty {
            throw LifeboatError(.invalidUsage, "the aws: section names nothing to check", hint: "set aws.aurora.cluster, aws.ecr.repositories or aws.terraform.state")
        }
        return out
    }

    // MARK: - snapshots

    /// The seed's manual snapshot (before a change, or the weekly one): tagged with its purpose, the
    /// creator, Lifeboat's policy mark and its retention; waited for; copied to the second region
    /// when asked. Returns the snapshot id.
    public func snapshot(purpose: String, retentionDays: Int?, copy: Bool, wait: Bool, timeout: TimeInterval = 3600, poll: TimeInterval = 15,
        now: Date = Date()) async throws -> (outcome: AWSJobOutcome, snapshot: String)
    {
        var out = AWSJobOutcome(job: "snapshot")
        let cluster = try required(deployment.auroraCluster, "aurora.cluster")
        let safePurpose = String(purpose.lowercased().map { $0.isLetter || $0.isNumber ? $0 : "-" })
        // Time to the second and a random suffix: two snapshots in one second do not collide.
        let id = "\(cluster)-\(safePurpose)-\(TimestampID.make(now))"
        let rds = try aurora
        let days = retentionDays ?? Int(deployment.snapshotRetention / 86400)
        _ = try await rds.createSnapshot(cluster: cluster, snapshot: id, tags: AuroraClusters.snapshotTags(purpose: purpose, retentionDays: days))
        progress("snapshot \(id) of \(cluster) started (purpose \(purpose), kept \(days) days)")
        var status = "creating"
        if wait || copy {
            status = try await rds.waitSnapshotAvailable(id, timeout: timeout, poll: poll).status
            progress("snapshot \(id) is \(status)")
        }
        out.lines.append("snapshot \(id) of \(cluster): \(status)")
        if copy {
            let region = try required(deployment.secondRegion, "second_region")
            let remote = AuroraClusters(client: try client(.rds).inRegion(region))
            let copied = try await remote.copySnapshot(id, from: try client(.rds).account.region, to: id, kmsKeyID: deployment.secondRegionKMSKey)
            progress("copy \(copied.identifier) to \(region) started under \(deployment.secondRegionKMSKey ?? "the default key")")
            let done = wait ? try await remote.waitSnapshotAvailable(copied.identifier, timeout: timeout, poll: poll).status : copied.status
            out.lines.append("copy \(copied.identifier) in \(region): \(done)")
        }
        return (out, id)
    }

    /// Expires Lifeboat's manual snapshots past their retention, here and in the second region.
    public func expireSnapshots(dryRun: Bool, now: Date = Date()) async throws -> (outcome: AWSJobOutcome, reports: [SnapshotExpiry]) {
        var out = AWSJobOutcome(job: "expire-snapshots")
        let cluster = try required(deployment.auroraCluster, "aurora.cluster")
        var reports = [try await aurora.expireSnapshots(of: cluster, retention: deployment.snapshotRetention, dryRun: dryRun, now: now)]
        if let region = deployment.secondRegion {
            let remote = AuroraClusters(client: try client(.rds).inRegion(region))
            // The copies keep the source cluster's identifier; a region without the cluster has none.
            do {
                reports.append(try await remote.expireSnapshots(of: cluster, retention: deployment.snapshotRetention, dryRun: dryRun, now: now))
            } catch let e as LifeboatError where e.code == .notFound {
                progress("\(region): \(e.message)")
            }
        }
        for r in reports {
            out.lines.append("\(r.region): \(r.expired.count) snapshot(s) \(dryRun ? "would be " : "")expired, \(r.kept.count) kept"
                + (r.expired.isEmpty ? "" : " (\(r.expired.joined(separator: ", ")))"))
        }
        return (out, reports)
    }

    // MARK: - ECR

    public func applyLifecycle() async throws -> AWSJobOutcome {
        var out = AWSJobOutcome(job: "ecr-lifecycle")
        guard !deployment.ecrRepositories.isEmpty else { throw LifeboatError(.invalidUsage, "aws.ecr.repositories is empty") }
        let ecr = ContainerRegistry(client: try client(.ecr))
        for repository in deployment.ecrRepositories {
            try await ecr.applyKeepLast(repository, keep: deployment.keepImages)
            if let drift = try await ecr.drift(repository, keep: deployment.keepImages) { out.problems.append(drift) } else {
                out.lines.append("\(repository): keeps the last \(deployment.keepImages) images")
            }
        }
        return out
    }

    // MARK: - exports into the repository

    /// Every ACTIVE revision of every family (or the configured families) into the repository.
    public func exportTaskDefinitions(into repository: Repository) async throws -> (outcome: AWSJobOutcome, artifact: ArtifactWrite) {
        var out = AWSJobOutcome(job: "task-definitions")
        let ecs = TaskDefinitions(client: try client(.ecs))
        var families = deployment.taskDefinitionFamilies ?? []
        if deployment.taskDefinitionFamilies == nil { families = try await ecs.families() }
        var items: [(name: String, data: Data)] = []
        for family in families {
            let revisions = try await ecs.activeRevisions(family)
            if revisions.isEmpty, deployment.taskDefinitionFamilies != nil { out.problems.append("task definition family \(family) has no ACTIVE revision") }
            for arn in revisions {
                let tail = arn.split(separator: "/").last.map(String.init) ?? arn
                items.append((tail + ".json", try await ecs.document(arn)))
            }
        }
        guard !items.isEmpty else { throw LifeboatError(.notFound, "no ACTIVE task definition to export in \(try client(.ecs).account.region)") }
        let write = try await repository.putArtifact(kind: "ecs-task-definitions", items: items,
            metadata: ["region": try client(.ecs).account.region, "families": families.joined(separator: ",")])
        out.lines.append("\(items.count) task definition revision(s) of \(families.count) famil\(families.count == 1 ? "y" : "ies") exported as \(write.record.id) (\(write.newItems) new)")
        return (out, write)
    }

    /// Registers a revision kept in the repository back into ECS (a new revision of its family).
    public func registerTaskDefinition(from repository: Repository, artifact reference: String, item name: String) async throws -> String {
        let record = try await repository.artifact(reference)
        guard record.kind == "ecs-task-definitions" else { throw LifeboatError(.invalidUsage, "artifact \(record.id) holds \(record.kind), not task definitions") }
        let wanted = name.hasSuffix(".json") ? name : name + ".json"
        guard let item = record.items.first(where: { $0.name == wanted }) else {
            throw LifeboatError(.notFound, "artifact \(record.id) has no task definition \(name)",
                hint: "it holds: " + record.items.map { String($0.name.dropLast(5)) }.joined(separator: ", "))
        }
        return try await TaskDefinitions(client: try client(.ecs)).register(try await repository.artifactContent(item))
    }

    /// The Terraform state into the repository and, when a backup bucket is set, to it with SSE-KMS.
    public func backupTerraformState(into repository: Repository, now: Date = Date()) async throws -> AWSJobOutcome {
        var out = AWSJobOutcome(job: "terraform-state")
        let source = try required(deployment.terraformState, "terraform.state")
        let copies = TerraformStateCopies(overrides: account)
        let (data, versioned) = try await copies.read(source)
        let serial = try TerraformStateCopies.serial(data)
        let write = try await repository.putArtifact(kind: "terraform-state", items: [("terraform.tfstate", data)],
            metadata: ["source": source, "serial": String(serial)], now: now)
        out.lines.append("state \(source) (serial \(serial), \(data.count) bytes) stored as \(write.record.id)\(write.newItems == 0 ? " (unchanged)" : "")")
        if versioned == false { out.problems.append("the state bucket of \(source) does not keep versions") }
        if let bucket = deployment.terraformBackupBucket {
            let url = try await copies.copy(data, bucket: bucket, prefix: deployment.terraformBackupPrefix, kmsKey: deployment.terraformKMSKey, now: now)
            out.lines.append("copied to \(url) with SSE-KMS")
        }
        return out
    }

    /// Secret metadata (never values) into the repository; secrets present in the previous export
    /// and gone now, or scheduled for deletion, are problems.
    public func exportSecrets(into repository: Repository) async throws -> AWSJobOutcome {
        var out = AWSJobOutcome(job: "secrets")
        let list = try await SecretsManager(client: try client(.secretsManager)).inventory(prefixes: deployment.secretPrefixes)
        let previous = try await repository.artifacts(kind: "secrets-metadata").last
        var before: [SecretMetadata] = []
        if let previous, let item = previous.items.first {
            before = (try? RepositoryJSON.decoder().decode([SecretMetadata].self, from: try await repository.artifactContent(item))) ?? []
        }
        let encoder = RepositoryJSON.encoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        let write = try await repository.putArtifact(kind: "secrets-metadata", items: [("secrets.json", try encoder.encode(list))],
            metadata: ["region": try client(.secretsManager).account.region, "prefixes": deployment.secretPrefixes.joined(separator: ",")])
        let now = Set(list.map(\.name))
        for gone in before.map(\.name) where !now.contains(gone) {
            out.problems.append("secret \(gone) existed at the previous export (\(previous.map { Timestamp.format($0.created) } ?? "?")) and is gone")
        }
        for s in list {
            if let deleted = s.deletedDate {
                out.problems.append("secret \(s.name) is scheduled for deletion (since \(Timestamp.format(deleted))): `lifeboat aws recover-secret \(s.name)` restores it")
            }
        }
        out.lines.append("metadata of \(list.count) secret(s) exported as \(write.record.id)")
        return out
    }

    // MARK: - AWS Config and logs

    public func configSnapshot() async throws -> AWSJobOutcome {
        var out = AWSJobOutcome(job: "config-snapshot")
        let channel = deployment.configDeliveryChannel ?? Defaults.AWS.deliveryChannel
        let config = ConfigSnapshots(client: try client(.config))
        let id = try await config.deliver(channel: channel)
        out.lines.append("AWS Config snapshot \(id) requested on delivery channel \(channel)")
        if let last = try? await config.lastDelivery(channel: channel), let status = last.status {
            out.lines.append("last delivery: \(status)\(last.time.map { " at \(Timestamp.format($0))" } ?? "")")
            if status == "Failure" { out.problems.append("AWS Config's last snapshot delivery failed: \(last.error ?? "no message")") }
        }
        return out
    }

    /// Each log group's events in [from, to) (default: the previous UTC day) to the archive bucket.
    public func exportLogs(from: Date? = nil, to: Date? = nil, timeout: TimeInterval = 3600, poll: TimeInterval = 10, now: Date = Date())
        async throws -> AWSJobOutcome
    {
        var out = AWSJobOutcome(job: "logs")
        guard !deployment.logGroups.isEmpty else { throw LifeboatError(.invalidUsage, "aws.logs.groups is empty") }
        let bucket = try required(deployment.logsBucket, "logs.bucket")
        let day = LogExports.previousDay(now)
        let range = (from ?? day.from, to ?? day.to)
        guard range.0 < range.1 else { throw LifeboatError(.invalidUsage, "the export range ends before it starts") }
        let logs = LogExports(client: try client(.logs))
        for group in deployment.logGroups {
            let prefix = LogExports.destinationPrefix(deployment.logsPrefix, group: group, day: range.0)
            let e = try await logs.export(group: group, from: range.0, to: range.1, bucket: bucket, prefix: prefix, timeout: timeout, poll: poll,
                progress: progress)
            out.lines.append("\(group): \(Timestamp.format(e.from)) .. \(Timestamp.format(e.to)) exported to \(e.destination) (task \(e.taskID))")
        }
        return out
    }

    // MARK: - recoveries

    /// The seed's secret recovery: a secret scheduled for deletion is restored; one that is gone is
    /// created anew with `value` (or a generated password) and, when `masterPassword` is set, the
    /// Aurora cluster's master password is set to it. The value never appears in any output.
    public func recoverSecret(_ name: String, value: String?, setMasterPassword: Bool, kmsKeyID: String? = nil) async throws -> AWSJobOutcome {
        var out = AWSJobOutcome(job: "recover-secret")
        let sm = SecretsManager(client: try client(.secretsManager))
        let state = try await sm.exists(name)
        if state.exists, state.deletedDate != nil {
            _ = try await sm.restore(name)
            out.lines.append("secret \(name) was scheduled for deletion: restored (its value is the one it had)")
            if setMasterPassword {
                let cluster = try required(deployment.auroraCluster, "aurora.cluster")
                try await aurora.setMasterPassword(cluster, password: try await sm.value(name))
                out.lines.append("master password of \(cluster) set to the restored secret's value")
            }
            return out
        }
        if state.exists {
            guard setMasterPassword else {
                out.lines.append("secret \(name) exists and is not scheduled for deletion: nothing to recover")
                return out
            }
            let cluster = try required(deployment.auroraCluster, "aurora.cluster")
            try await aurora.setMasterPassword(cluster, password: try await sm.value(name))
            out.lines.append("secret \(name) exists; master password of \(cluster) set to its value")
            return out
        }
        let secret = value ?? AuroraClusters.generatePassword()
        if setMasterPassword { try AuroraClusters.checkMasterPassword(secret) }
        _ = try await sm.create(name, value: secret, description: "recreated by lifeboat", kmsKeyID: kmsKeyID, tags: ["CreatedBy": "lifeboat"])
        out.lines.append("secret \(name) was gone: created anew with \(value == nil ? "a generated value" : "the given value")")
        if setMasterPassword {
            let cluster = try required(deployment.auroraCluster, "aurora.cluster")
            try await aurora.setMasterPassword(cluster, password: secret)
            out.lines.append("master password of \(cluster) set to the new secret's value")
        }
        return out
    }
}

import Foundation
import LifeboatAWS
import LifeboatAWSCore
import LifeboatCore

/// Runbook actions for the seed's AWS deployment: Aurora snapshots and restores (always into a new
/// cluster), ECS scaling, redeployments and rollbacks, Secrets Manager restores. Each step's
/// `region`, `endpoint` and `profile` inputs override the configuration's `aws:` section.
enum AWSActions {
    static var all: [RunbookAction] {
        [rdsStatus, rdsSnapshot, rdsCopySnapshot, rdsRestore, rdsDeleteCluster, rdsDeleteSnapshot, ecsStatus, ecsScale, ecsRedeploy, ecsRollback, route53Switch, secretsRestore, secretsPut,
         StateActions.restoreVersion]
    }

    static func client(_ service: AWSService, _ inputs: StepInputs, _ ctx: RunbookContext) throws -> AWSClient {
        try AWSClient(service, overrides: account(inputs, ctx))
    }

    /// The configuration's `aws:` section with the step's `region`, `endpoint` and `profile` over it.
    static func account(_ inputs: StepInputs, _ ctx: RunbookContext) -> AWSAccountOverrides {
        func given(_ key: String) -> String? { inputs.optional(key).flatMap { $0.isEmpty ? nil : $0 } }
        return ctx.aws.merging(AWSAccountOverrides(region: given("region"), endpoint: given("endpoint"), profile: given("profile")))
    }

    static func wait(_ inputs: StepInputs, timeout: TimeInterval) throws -> (wait: Bool, timeout: TimeInterval, poll: TimeInterval) {
        (inputs.bool("wait", default: true), try inputs.duration("timeout", default: timeout), try inputs.duration("poll", default: 15))
    }

    /// `services: [a, b]`, `services: "a,b"` or `service: a`.
    static func services(_ inputs: StepInputs) throws -> [String] {
        let listed = inputs.list("services").compactMap(\.text)
        if !listed.isEmpty { return listed }
        if let text = inputs.optional("services") {
            return text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        return [try inputs.string("service")]
    }

    static func cluster(_ c: AuroraCluster) -> [String: String] {
        var out = ["cluster": c.identifier, "status": c.status]
        out["endpoint"] = c.endpoint
        out["reader_endpoint"] = c.readerEndpoint
        out["earliest_restorable_time"] = c.earliestRestorableTime.map(Timestamp.format)
        out["latest_restorable_time"] = c.latestRestorableTime.map(Timestamp.format)
        out["backup_retention_days"] = c.backupRetentionDays.map(String.init)
        out["backup_window"] = c.preferredBackupWindow
        return out
    }

    static let rdsStatus = RunbookAction(name: "aws.rds.status", destructive: false,
        describe: { "describe Aurora cluster \($0.optional("cluster") ?? "?")" }
    ) { inputs, ctx in
        cluster(try await AuroraClusters(client: try client(.rds, inputs, ctx)).describe(try inputs.string("cluster")))
    }

    static let rdsSnapshot = RunbookAction(name: "aws.rds.snapshot", destructive: false,
        describe: { "snapshot Aurora cluster \($0.optional("cluster") ?? "?") as \($0.optional("snapshot") ?? "<cluster>-lifeboat-<time>")" }
    ) { inputs, ctx in
        let name = try inputs.string("cluster")
        let id = inputs.optional("snapshot") ?? "\(name)-lifeboat-\(TimestampID.make(Date()).prefix(15).replacingOccurrences(of: "-", with: ""))"
        let rds = AuroraClusters(client: try client(.rds, inputs, ctx))
        var snapshot = try await rds.createSnapshot(cluster: name, snapshot: id, tags: inputs.map("tags"))
        let w = try wait(inputs, timeout: 3600)
        if w.wait { snapshot = try await rds.waitSnapshotAvailable(id, timeout: w.timeout, poll: w.poll) }
        var out = ["snapshot_id": snapshot.identifier, "status": snapshot.status]
        out["snapshot_arn"] = snapshot.arn
        return out
    }

    static let rdsRestore = RunbookAction(name: "aws.rds.restore", destructive: false,
        describe: { i in
            let from = i.optional("snapshot").map { "snapshot \($0)" }
                ?? "\(i.optional("source_cluster") ?? "?") at \(i.optional("time") ?? i.optional("minutes_ago").map { "\($0) minutes ago" } ?? "the latest restorable time")"
            return "restore \(from) into the new cluster \(i.optional("target_cluster") ?? "?")"
        }
    ) { inputs, ctx in
        // Empty inputs (a runbook var left "") mean "not given".
        func given(_ key: String) -> String? { inputs.optional(key).flatMap { $0.isEmpty ? nil : $0 } }
        let target = AuroraRestoreTarget(cluster: try inputs.string("target_cluster"),
            securityGroupIDs: (inputs.list("security_groups").compactMap(\.text)
                + (inputs.optional("security_groups")?.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } ?? []))
                .filter { !$0.isEmpty },
            subnetGroup: given("subnet_group"), kmsKeyID: given("kms_key_id"), instanceClass: given("instance_class"),
            minCapacity: given("min_capacity").flatMap(Double.init), maxCapacity: given("max_capacity").flatMap(Double.init))
        let rds = AuroraClusters(client: try client(.rds, inputs, ctx))
        var restored: AuroraCluster
        var point = "latest restorable time"
        if let snapshot = given("snapshot") {
            restored = try await rds.restoreFromSnapshot(snapshot, engine: inputs.optional("engine") ?? "aurora-postgresql", into: target)
            point = "snapshot \(snapshot)"
        } else {
            var time: Date?
            if let text = given("time") { time = try Timestamp.parse(text) }
            if let minutes = given("minutes_ago") {
                guard let m = Double(minutes) else { throw LifeboatError(.invalidUsage, "minutes_ago of step '\(inputs.step)' must be a number") }
                time = Date().addingTimeInterval(-m * 60)
            }
            if let time { point = Timestamp.format(time) }
            restored = try await rds.restoreToPointInTime(source: try inputs.string("source_cluster"), time: time, into: target)
        }
        let w = try wait(inputs, timeout: 7200)
        if w.wait { restored = try await rds.waitAvailable(target.cluster, timeout: w.timeout, poll: w.poll) }
        return cluster(restored).merging(["restored_to": point]) { $1 }
    }

    /// The seed's cross-region snapshot copy: into `region` under that region's own `kms_key_id`.
    static let rdsCopySnapshot = RunbookAction(name: "aws.rds.copy-snapshot", destructive: false,
        describe: { i in
            "copy snapshot \(i.optional("snapshot") ?? "?") from \(i.optional("source_region") ?? "this region") to \(i.optional("region") ?? "the configured region") as \(i.optional("target_snapshot") ?? "?")\(i.optional("kms_key_id").map { " under key \($0)" } ?? "")"
        }
    ) { inputs, ctx in
        let rds = AuroraClusters(client: try client(.rds, inputs, ctx))
        let target = try inputs.string("target_snapshot")
        var copy = try await rds.copySnapshot(try inputs.string("snapshot"), from: inputs.optional("source_region"), to: target,
            kmsKeyID: inputs.optional("kms_key_id").flatMap { $0.isEmpty ? nil : $0 }, tags: inputs.map("tags"))
        let w = try wait(inputs, timeout: 4 * 3600)
        if w.wait { copy = try await rds.waitSnapshotAvailable(target, timeout: w.timeout, poll: w.poll) }
        var out = ["snapshot_id": copy.identifier, "status": copy.status]
        out["snapshot_arn"] = copy.arn
        return out
    }

    /// Clean-up of a restored cluster (a drill's): only clusters Lifeboat restored (tagged) are deleted.
    static let rdsDeleteCluster = RunbookAction(name: "aws.rds.delete-cluster", destructive: true,
        describe: { "delete the restored cluster \($0.optional("cluster") ?? "?") and its instances (only clusters Lifeboat restored)" }
    ) { inputs, ctx in
        try await AuroraClusters(client: try client(.rds, inputs, ctx)).deleteRestoredCluster(try inputs.string("cluster"))
        return [:]
    }

    static let rdsDeleteSnapshot = RunbookAction(name: "aws.rds.delete-snapshot", destructive: true,
        describe: { "delete cluster snapshot \($0.optional("snapshot") ?? "?")" }
    ) { inputs, ctx in
        try await AuroraClusters(client: try client(.rds, inputs, ctx)).deleteSnapshot(try inputs.string("snapshot"))
        return [:]
    }

    static func service(_ s: ECSService) -> [String: String] {
        ["desired_count": String(s.desiredCount), "running_count": String(s.runningCount), "task_definition": s.taskDefinition,
         "steady": String(s.steady)]
    }

    static let ecsStatus = RunbookAction(name: "aws.ecs.status", destructive: false,
        describe: { "describe ECS service \($0.optional("service") ?? "?") in \($0.optional("cluster") ?? "?")" }
    ) { inputs, ctx in
        service(try await ECSServices(client: try client(.ecs, inputs, ctx)).describe(cluster: try inputs.string("cluster"),
            service: try inputs.string("service")))
    }

    /// The seed's "stop all write operations (scale services to 0)" and the later scale back up.
    /// `previous_counts` ("api=2,web=3") is what to scale back to.
    static let ecsScale = RunbookAction(name: "aws.ecs.scale", destructive: true,
        describe: { i in "scale ECS service(s) \((try? services(i))?.joined(separator: ", ") ?? "?") in \(i.optional("cluster") ?? "?") to \(i.optional("desired_count") ?? "?")" }
    ) { inputs, ctx in
        let ecs = ECSServices(client: try client(.ecs, inputs, ctx))
        let cluster = try inputs.string("cluster")
        let names = try services(inputs)
        var previous: [String] = []
        for name in names {
            let before = try await ecs.describe(cluster: cluster, service: name)
            previous.append("\(name)=\(before.desiredCount)")
            let count: Int
            if let counts = inputs.optional("counts") {
                // Scale back to what an earlier step recorded: "api=2,web=3".
                let pairs = Dictionary(counts.split(separator: ",").compactMap { p -> (String, Int)? in
                    let kv = p.split(separator: "=")
                    return kv.count == 2 ? (String(kv[0]).trimmingCharacters(in: .whitespaces), Int(kv[1]) ?? 0) : nil
                }, uniquingKeysWith: { $1 })
                guard let c = pairs[name] else { throw LifeboatError(.invalidUsage, "counts of step '\(inputs.step)' has no count for \(name)") }
                count = c
            } else {
                count = try inputs.int("desired_count")
            }
            try await ecs.update(cluster: cluster, service: name, desiredCount: count,
                forceNewDeployment: inputs.bool("force_new_deployment", default: false))
        }
        let w = try wait(inputs, timeout: 1800)
        if w.wait { for name in names { _ = try await ecs.waitStable(cluster: cluster, service: name, timeout: w.timeout, poll: w.poll) } }
        return ["previous_counts": previous.joined(separator: ","), "services": names.joined(separator: ",")]
    }

    /// The seed's "force new deployment".
    static let ecsRedeploy = RunbookAction(name: "aws.ecs.redeploy", destructive: true,
        describe: { i in "force a new deployment of \((try? services(i))?.joined(separator: ", ") ?? "?") in \(i.optional("cluster") ?? "?")" }
    ) { inputs, ctx in
        let ecs = ECSServices(client: try client(.ecs, inputs, ctx))
        let cluster = try inputs.string("cluster")
        let names = try services(inputs)
        for name in names { try await ecs.update(cluster: cluster, service: name, forceNewDeployment: true) }
        let w = try wait(inputs, timeout: 1800)
        if w.wait { for name in names { _ = try await ecs.waitStable(cluster: cluster, service: name, timeout: w.timeout, poll: w.poll) } }
        return ["services": names.joined(separator: ",")]
    }

    /// The seed's "rollback task definitions": to `task_definition`, or the previous revision.
    static let ecsRollback = RunbookAction(name: "aws.ecs.rollback", destructive: true,
        describe: { "roll \($0.optional("service") ?? "?") back to \($0.optional("task_definition") ?? "the previous task definition revision")" }
    ) { inputs, ctx in
        let ecs = ECSServices(client: try client(.ecs, inputs, ctx))
        let cluster = try inputs.string("cluster")
        let name = try inputs.string("service")
        let current = try await ecs.describe(cluster: cluster, service: name).taskDefinition
        var target = inputs.optional("task_definition") ?? ""
        if target.isEmpty { target = try await ecs.previousTaskDefinition(cluster: cluster, service: name) }
        // A rollback to an image the registry no longer has fails only once deployed: check first.
        if inputs.bool("check_images", default: true) {
            let registry = ContainerImages(client: try client(.ecr, inputs, ctx))
            for image in try await ecs.images(of: target) where try await registry.exists(image) == false {
                throw LifeboatError(.notFound, "cannot roll \(name) back to \(target): its image \(image) is no longer in ECR",
                    hint: "a lifecycle rule (such as \"keep last 20 images\") removed it: roll back to a newer revision, or rebuild and push that image")
            }
        }
        try await ecs.update(cluster: cluster, service: name, taskDefinition: target)
        let w = try wait(inputs, timeout: 1800)
        if w.wait { _ = try await ecs.waitStable(cluster: cluster, service: name, timeout: w.timeout, poll: w.poll) }
        return ["task_definition": target, "previous_task_definition": current]
    }

    /// Points a DNS name at another target (the seed's "update DNS to point to the new region").
    static let route53Switch = RunbookAction(name: "aws.route53.switch", destructive: true,
        describe: { "point \($0.optional("name") ?? "?") (\($0.optional("type") ?? "CNAME")) at \($0.optional("value") ?? "?")" }
    ) { inputs, ctx in
        let dns = Route53Records(client: try client(.route53, inputs, ctx))
        let zone = try inputs.string("zone_id")
        let name = try inputs.string("name")
        let type = inputs.optional("type") ?? "CNAME"
        let previous = try await dns.record(zone: zone, name: name, type: type)
        let values = try inputs.string("value").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let change = try await dns.upsert(zone: zone, record: DNSRecord(name: name, type: type, ttl: try inputs.int("ttl", default: 60),
            values: values), comment: "lifeboat runbook step \(inputs.step)")
        let w = try wait(inputs, timeout: 600)
        if w.wait { try await dns.waitInSync(change, timeout: w.timeout, poll: w.poll) }
        return ["previous": previous?.values.joined(separator: ",") ?? "", "change_id": change]
    }

    static let secretsRestore = RunbookAction(name: "aws.secrets.restore", destructive: true,
        describe: { "cancel the scheduled deletion of secret \($0.optional("secret") ?? "?")" }
    ) { inputs, ctx in
        let sm = SecretsManager(client: try client(.secretsManager, inputs, ctx))
        let secret = try inputs.string("secret")
        let arn = try await sm.restore(secret)
        let state = try await sm.describe(secret)
        guard state.deletedDate == nil else { throw LifeboatError(.externalCommand, "secret \(secret) is still scheduled for deletion") }
        return ["arn": arn, "version_id": state.currentVersion ?? ""]
    }

    /// Writes a secret's value from a file (a backup of it): the value never enters the journal.
    static let secretsPut = RunbookAction(name: "aws.secrets.put", destructive: true,
        describe: { "write secret \($0.optional("secret") ?? "?") from \($0.optional("value_file") ?? "?")" }
    ) { inputs, ctx in
        let file = try inputs.string("value_file")
        guard let value = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw LifeboatError(.notFound, "cannot read \(file) for step '\(inputs.step)'")
        }
        let version = try await SecretsManager(client: try client(.secretsManager, inputs, ctx))
            .put(try inputs.string("secret"), value: value.trimmingCharacters(in: .newlines))
        return ["version_id": version]
    }
}

/// Infrastructure state kept in a versioned S3 bucket (Terraform's S3 backend): the seed's
/// "restore Terraform state from backup" after an accidental `terraform destroy`.
enum StateActions {
    static let restoreVersion = RunbookAction(name: "s3.restore-version", destructive: true,
        describe: { i in
            "make \(i.optional("url") ?? "?") what it was \(i.optional("version_id").map { "at version \($0)" } ?? "before \(i.optional("before") ?? "?")")"
        }
    ) { inputs, ctx in
        let url = try inputs.string("url")
        guard url.hasPrefix("s3://"), let slash = url.dropFirst(5).firstIndex(of: "/") else {
            throw LifeboatError(.invalidUsage, "url of step '\(inputs.step)' must be s3://BUCKET/KEY, not \(url)")
        }
        let bucket = String(url[url.index(url.startIndex, offsetBy: 5)..<slash])
        let key = String(url[url.index(after: slash)...])
        let store = S3Versions(try S3Client(try S3Bucket.resolve(url: "s3://\(bucket)", overrides: AWSActions.account(inputs, ctx)).bucket))
        guard try await store.versioningEnabled() else {
            throw LifeboatError(.notFound, "bucket \(bucket) does not keep versions: there is no earlier state of \(key) to restore",
                hint: "enable versioning on state buckets (Terraform's S3 backend docs ask for it); look for a copy elsewhere")
        }
        let history = try await store.versions(of: key)
        guard let latest = history.first else { throw LifeboatError(.notFound, "\(url) has no versions") }
        let chosen: ObjectVersion
        if let id = inputs.optional("version_id") {
            guard let v = history.first(where: { $0.versionID == id }), !v.isDeleteMarker else {
                throw LifeboatError(.notFound, "\(url) has no version \(id)", hint: "versions: " + history.prefix(5).map(\.versionID).joined(separator: ", "))
            }
            chosen = v
        } else {
            let before = try Timestamp.parse(try inputs.string("before"))
            guard let v = history.first(where: { !$0.isDeleteMarker && $0.modified < before }) else {
                throw LifeboatError(.notFound, "\(url) has no version written before \(Timestamp.format(before))",
                    hint: "the oldest is from \(history.last.map { Timestamp.format($0.modified) } ?? "?")")
            }
            chosen = v
        }
        var out = ["restored_version": chosen.versionID, "restored_time": Timestamp.format(chosen.modified),
                   "previous_version": latest.versionID, "bytes": String(chosen.size)]
        if latest.versionID == chosen.versionID {
            out["changed"] = "false"
            return out
        }
        let wanted = try await store.get(key, versionID: chosen.versionID)
        out["new_version"] = try await store.restoreVersion(key, versionID: chosen.versionID)
        guard try await store.get(key) == wanted else {
            throw LifeboatError(.integrity, "\(url) does not hold version \(chosen.versionID)'s content after the restore",
                hint: "previous current version: \(latest.versionID)")
        }
        out["changed"] = "true"
        return out
    }
}

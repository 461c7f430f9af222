import Foundation
import LifeboatAWS
import LifeboatAWSCore
import LifeboatCore

/// Runbook actions for the seed's AWS deployment: Aurora snapshots and restores (always into a new
/// cluster), ECS scaling, redeployments and rollbacks, Secrets Manager restores. Each step's
/// `region`, `endpoint` and `profile` inputs override the configuration's `aws:` section.
enum AWSActions {
    static var all: [RunbookAction] {
        [rdsStatus, rdsExpect, rdsSnapshot, rdsCopySnapshot, rdsRestore, rdsDeleteCluster, rdsDeleteSnapshot, ecsStatus, ecsExpect, ecsScale,
         ecsRedeploy, ecsRollback, route53Switch, secretsRestore, secretsPut, StateActions.restoreVersion, StateActions.terraformOutput] + AWSRecoveryActions.all
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

    /// A post-condition: the cluster and its instances are available (waiting up to `timeout`).
    static let rdsExpect = RunbookAction(name: "aws.rds.expect", destructive: false,
        describe: { "expect Aurora cluster \($0.optional("cluster") ?? "?") and its instances available" }
    ) { inputs, ctx in
        let w = try wait(inputs, timeout: 1800)
        return cluster(try await AuroraClusters(client: try client(.rds, inputs, ctx)).waitReady(try inputs.string("cluster"),
            timeout: w.timeout, poll: w.poll))
    }

    static let rdsSnapshot = RunbookAction(name: "aws.rds.snapshot", destructive: false,
        describe: { "snapshot Aurora cluster \($0.optional("cluster") ?? "?") as \($0.optional("snapshot") ?? "<cluster>-lifeboat-<time>")" },
        preflight: { inputs, ctx in
            let name = try inputs.string("cluster")
            let rds = AuroraClusters(client: try client(.rds, inputs, ctx))
            if inputs.bool("if_exists", default: false), (try? await rds.describe(name)) == nil { return ["\(name) does not exist: no snapshot"] }
            let c = try await rds.describe(name)
            return ["cluster \(name) exists (\(c.status))"]
        }
    ) { inputs, ctx in
        let name = try inputs.string("cluster")
        let id = inputs.optional("snapshot") ?? "\(name)-lifeboat-\(TimestampID.make(Date()).prefix(15).replacingOccurrences(of: "-", with: ""))"
        let rds = AuroraClusters(client: try client(.rds, inputs, ctx))
        // `if_exists: true`: a cluster already renamed away by an earlier attempt is not an error.
        if inputs.bool("if_exists", default: false), (try? await rds.describe(name)) == nil {
            return ["snapshot_id": "", "status": "skipped: \(name) does not exist"]
        }
        var snapshot = try await rds.createSnapshot(cluster: name, snapshot: id, tags: inputs.map("tags"))
        let w = try wait(inputs, timeout: 3600)
        if w.wait { snapshot = try await rds.waitSnapshotAvailable(id, timeout: w.timeout, poll: w.poll) }
        var out = ["snapshot_id": snapshot.identifier, "status": snapshot.status]
        out["snapshot_arn"] = snapshot.arn
        return out
    }

    /// Empty inputs (a runbook var left "") mean "not given".
    static func given(_ inputs: StepInputs, _ key: String) -> String? { inputs.optional(key).flatMap { $0.isEmpty ? nil : $0 } }

    static func restoreTarget(_ inputs: StepInputs) throws -> AuroraRestoreTarget {
        func number(_ key: String) throws -> Double? {
            guard let text = given(inputs, key) else { return nil }
            guard let v = Double(text) else { throw LifeboatError(.invalidUsage, "\(key) of step '\(inputs.step)' must be a number") }
            return v
        }
        return AuroraRestoreTarget(cluster: try inputs.string("target_cluster"), securityGroupIDs: securityGroups(inputs),
            subnetGroup: given(inputs, "subnet_group"), kmsKeyID: given(inputs, "kms_key_id"), instanceClass: given(inputs, "instance_class"),
            minCapacity: try number("min_capacity"), maxCapacity: try number("max_capacity"))
    }

    static func securityGroups(_ inputs: StepInputs) -> [String] {
        (inputs.list("security_groups").compactMap(\.text)
            + (inputs.optional("security_groups")?.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } ?? []))
            .filter { !$0.isEmpty }
    }

    /// The point in time a restore step asks for: `time`, `minutes_ago` (empty: the latest restorable time).
    static func restoreTime(_ inputs: StepInputs) throws -> Date? {
        if let text = given(inputs, "time") { return try Timestamp.parse(text) }
        if let minutes = given(inputs, "minutes_ago") {
            guard let m = Double(minutes) else { throw LifeboatError(.invalidUsage, "minutes_ago of step '\(inputs.step)' must be a number") }
            return Date().addingTimeInterval(-m * 60)
        }
        return nil
    }

    static let rdsRestore = RunbookAction(name: "aws.rds.restore", destructive: false,
        describe: { i in
            let from = i.optional("snapshot").flatMap { $0.isEmpty ? nil : "snapshot \($0)" }
                ?? "\(i.optional("source_cluster") ?? "?") at \(given(i, "time") ?? given(i, "minutes_ago").map { "\($0) minutes ago" } ?? "the latest restorable time")"
            return "restore \(from) into the new cluster \(i.optional("target_cluster") ?? "?")"
                + (given(i, "instance_class").map { " with a \($0) instance" } ?? "")
                + (given(i, "min_capacity").map { " (\($0)-\(given(i, "max_capacity") ?? "?") ACU)" } ?? "")
        },
        preflight: { inputs, ctx in
            let target = try restoreTarget(inputs)
            let rds = AuroraClusters(client: try client(.rds, inputs, ctx))
            var done = try await rds.preflightRestore(source: given(inputs, "source_cluster"), snapshot: given(inputs, "snapshot"),
                time: try restoreTime(inputs), into: target)
            let checks = ResourceChecks(ec2: try client(.ec2, inputs, ctx), kms: try client(.kms, inputs, ctx))
            if !target.securityGroupIDs.isEmpty {
                try await checks.checkSecurityGroups(target.securityGroupIDs)
                done.append("security group(s) \(target.securityGroupIDs.joined(separator: ", ")) exist")
            }
            if let key = target.kmsKeyID {
                try await checks.checkKey(key)
                done.append("KMS key \(key) exists in the region")
            }
            return done
        }
    ) { inputs, ctx in
        let target = try restoreTarget(inputs)
        let rds = AuroraClusters(client: try client(.rds, inputs, ctx))
        var restored: AuroraCluster
        var point = "latest restorable time"
        var extra: [String: String] = [:]
        if let snapshot = given(inputs, "snapshot") {
            restored = try await rds.restoreFromSnapshot(snapshot, engine: inputs.optional("engine") ?? "aurora-postgresql", into: target)
            point = "snapshot \(snapshot)"
        } else {
            let time = try restoreTime(inputs)
            if let time { point = Timestamp.format(time) }
            let source = try inputs.string("source_cluster")
            // The point the restore reaches, read when it is asked: for the latest restorable time,
            // how far it trails now is the data a disaster now would lose (the drill's RPO).
            let asked = Date()
            var reached = time
            if time == nil { reached = try await rds.describe(source).latestRestorableTime }
            restored = try await rds.restoreToPointInTime(source: source, time: time, into: target)
            if time == nil, let reached {
                extra["restored_point"] = Timestamp.format(reached)
                extra["rpo_seconds"] = String(format: "%.3f", max(0, asked.timeIntervalSince(reached)))
            }
        }
        let w = try wait(inputs, timeout: 7200)
        // The endpoint answers once the writer instance is up: wait for the cluster and its instances.
        if w.wait { restored = try await rds.waitReady(target.cluster, timeout: w.timeout, poll: w.poll) }
        return cluster(restored).merging(["restored_to": point]) { $1 }.merging(extra) { $1 }
    }

    /// The seed's cross-region snapshot copy: into `region` under that region's own `kms_key_id`.
    static let rdsCopySnapshot = RunbookAction(name: "aws.rds.copy-snapshot", destructive: false,
        describe: { i in
            "copy snapshot \(i.optional("snapshot") ?? "?") from \(i.optional("source_region") ?? "this region") to \(i.optional("region") ?? "the configured region") as \(i.optional("target_snapshot") ?? "?")\(i.optional("kms_key_id").map { " under key \($0)" } ?? "")"
        },
        preflight: { inputs, ctx in
            var done: [String] = []
            let here = try client(.rds, inputs, ctx)
            let source = try inputs.string("snapshot")
            let sourceRDS = AuroraClusters(client: try given(inputs, "source_region").map { try here.inRegion($0) } ?? here)
            if !source.hasPrefix("arn:") {
                _ = try await sourceRDS.snapshot(source)
                done.append("snapshot \(source) exists in \(sourceRDS.client.account.region)")
            }
            let target = try inputs.string("target_snapshot")
            if (try? await AuroraClusters(client: here).snapshot(target)) != nil {
                throw LifeboatError(.targetNotEmpty, "snapshot \(target) already exists in \(here.account.region)",
                    hint: "choose a new target_snapshot name")
            }
            done.append("snapshot name \(target) is free in \(here.account.region)")
            if let key = given(inputs, "kms_key_id") {
                try await ResourceChecks(ec2: try client(.ec2, inputs, ctx), kms: try client(.kms, inputs, ctx)).checkKey(key)
                done.append("KMS key \(key) exists in \(here.account.region)")
            }
            return done
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
        describe: { "describe ECS service \($0.optional("service") ?? "?") in \($0.optional("cluster") ?? "?")" },
        preflight: { inputs, ctx in try await checkServices(inputs, ctx) }
    ) { inputs, ctx in
        service(try await ECSServices(client: try client(.ecs, inputs, ctx)).describe(cluster: try inputs.string("cluster"),
            service: try inputs.string("service")))
    }

    /// The cluster and every named service exist.
    static func checkServices(_ inputs: StepInputs, _ ctx: RunbookContext) async throws -> [String] {
        let ecs = ECSServices(client: try client(.ecs, inputs, ctx))
        let cluster = try inputs.string("cluster")
        var done: [String] = []
        for name in try services(inputs) {
            let s = try await ecs.describe(cluster: cluster, service: name)
            done.append("service \(name) in \(cluster): \(s.desiredCount) desired, \(s.runningCount) running")
        }
        return done
    }

    /// "api=2,web=3" as a mapping.
    static func parseCounts(_ text: String) -> [String: Int] {
        Dictionary(text.split(separator: ",").compactMap { p -> (String, Int)? in
            let kv = p.split(separator: "=")
            guard kv.count == 2, let n = Int(kv[1].trimmingCharacters(in: .whitespaces)) else { return nil }
            return (String(kv[0]).trimmingCharacters(in: .whitespaces), n)
        }, uniquingKeysWith: { $1 })
    }

    /// The count a service is to have: from `counts` (what an earlier step found, "api=2,web=3"),
    /// where that is above 0, else `desired_count` (the runbook's declared desired state). A count
    /// of 0 found by a stop is never what a restart restores.
    static func wantedCount(_ name: String, _ inputs: StepInputs) throws -> Int {
        let fallback = given(inputs, "desired_count").flatMap(Int.init)
        if let counts = given(inputs, "counts") {
            let found = parseCounts(counts)[name]
            if let n = found, n > 0 { return n }
            guard let fallback else {
                throw LifeboatError(.invalidUsage, "counts of step '\(inputs.step)' have \(found.map { "\($0)" } ?? "no count") for \(name), and no desired_count says what it should run",
                    hint: "declare the desired count (the seed's 2) in desired_count")
            }
            return fallback
        }
        guard let fallback else { throw LifeboatError(.invalidUsage, "step '\(inputs.step)' needs desired_count or counts") }
        return fallback
    }

    /// The seed's "stop all write operations (scale services to 0)" and the later scale back up.
    /// `previous_counts` ("api=2,web=3") records what the services had before: a state output, so a
    /// run after a failed one restores the counts the *first* attempt found.
    static let ecsScale = RunbookAction(name: "aws.ecs.scale", destructive: true,
        describe: { i in
            let to = given(i, "counts").map { "their counts (\($0); \(given(i, "desired_count") ?? "?") where none)" } ?? i.optional("desired_count") ?? "?"
            return "scale ECS service(s) \((try? services(i))?.joined(separator: ", ") ?? "?") in \(i.optional("cluster") ?? "?") to \(to)"
        },
        preflight: { inputs, ctx in try await checkServices(inputs, ctx) },
        stateOutputs: ["previous_counts"]
    ) { inputs, ctx in
        let ecs = ECSServices(client: try client(.ecs, inputs, ctx))
        let cluster = try inputs.string("cluster")
        let names = try services(inputs)
        var previous: [String] = []
        var set: [String] = []
        for name in names {
            let before = try await ecs.describe(cluster: cluster, service: name)
            previous.append("\(name)=\(before.desiredCount)")
            let count = try wantedCount(name, inputs)
            set.append("\(name)=\(count)")
            try await ecs.update(cluster: cluster, service: name, desiredCount: count,
                forceNewDeployment: inputs.bool("force_new_deployment", default: false))
        }
        let w = try wait(inputs, timeout: 1800)
        if w.wait { for name in names { _ = try await ecs.waitStable(cluster: cluster, service: name, timeout: w.timeout, poll: w.poll) } }
        return ["previous_counts": previous.joined(separator: ","), "counts": set.joined(separator: ","), "services": names.joined(separator: ",")]
    }

    /// A post-condition: every service at the count it should have (as `aws.ecs.scale` computes it)
    /// and steady, waiting up to `timeout`.
    static let ecsExpect = RunbookAction(name: "aws.ecs.expect", destructive: false,
        describe: { i in "expect ECS service(s) \((try? services(i))?.joined(separator: ", ") ?? "?") at their desired count and steady" }
    ) { inputs, ctx in
        let ecs = ECSServices(client: try client(.ecs, inputs, ctx))
        let cluster = try inputs.string("cluster")
        let w = try wait(inputs, timeout: 900)
        var seen: [String] = []
        let declared = given(inputs, "counts") != nil || given(inputs, "desired_count") != nil
        for name in try services(inputs) {
            // Without counts, the service's own desired count, which must not be 0.
            let want = declared ? try wantedCount(name, inputs) : nil
            let s = try await AWSWait.until(what: "service \(name) to run \(want.map(String.init) ?? "its") task(s) steadily", timeout: w.timeout,
                every: w.poll) {
                let s = try await ecs.describe(cluster: cluster, service: name)
                return s.desiredCount == (want ?? max(1, s.desiredCount)) && s.steady ? s : nil
            }
            seen.append("\(name)=\(s.runningCount)")
        }
        return ["running": seen.joined(separator: ",")]
    }

    /// The seed's "force new deployment".
    static let ecsRedeploy = RunbookAction(name: "aws.ecs.redeploy", destructive: true,
        describe: { i in "force a new deployment of \((try? services(i))?.joined(separator: ", ") ?? "?") in \(i.optional("cluster") ?? "?")" },
        preflight: { inputs, ctx in try await checkServices(inputs, ctx) }
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
    /// The task definition a rollback goes to, and the images it runs are still in ECR.
    static func rollbackTarget(_ inputs: StepInputs, _ ctx: RunbookContext) async throws -> (target: String, current: String) {
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
        return (target, current)
    }

    /// The seed's "rollback task definitions": to `task_definition`, or the previous revision.
    static let ecsRollback = RunbookAction(name: "aws.ecs.rollback", destructive: true,
        describe: { "roll \($0.optional("service") ?? "?") back to \($0.optional("task_definition") ?? "the previous task definition revision")" },
        preflight: { inputs, ctx in
            let (target, current) = try await rollbackTarget(inputs, ctx)
            return ["\(try inputs.string("service")) can roll back from \(current) to \(target); its images are in ECR"]
        }
    ) { inputs, ctx in
        let ecs = ECSServices(client: try client(.ecs, inputs, ctx))
        let cluster = try inputs.string("cluster")
        let name = try inputs.string("service")
        let (target, current) = try await rollbackTarget(inputs, ctx)
        try await ecs.update(cluster: cluster, service: name, taskDefinition: target)
        let w = try wait(inputs, timeout: 1800)
        if w.wait { _ = try await ecs.waitStable(cluster: cluster, service: name, timeout: w.timeout, poll: w.poll) }
        return ["task_definition": target, "previous_task_definition": current]
    }

    /// Points a DNS name at another target (the seed's "update DNS to point to the new region").
    static let route53Switch = RunbookAction(name: "aws.route53.switch", destructive: true,
        describe: { "point \($0.optional("name") ?? "?") (\($0.optional("type") ?? "CNAME")) at \($0.optional("value") ?? "?")" },
        preflight: { inputs, ctx in
            let dns = Route53Records(client: try client(.route53, inputs, ctx))
            let zone = try inputs.string("zone_id")
            let current = try await dns.record(zone: zone, name: try inputs.string("name"), type: inputs.optional("type") ?? "CNAME")
            return ["hosted zone \(zone) answers; \(try inputs.string("name")) now points at \(current?.values.joined(separator: ",") ?? "nothing")"]
        }
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
    /// The versioned state object a step names, and the version it wants back.
    static func chooseVersion(_ inputs: StepInputs, _ ctx: RunbookContext) async throws
        -> (store: S3Versions, key: String, chosen: ObjectVersion, latest: ObjectVersion)
    {
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
        if let id = inputs.optional("version_id"), !id.isEmpty {
            guard let v = history.first(where: { $0.versionID == id }), !v.isDeleteMarker else {
                throw LifeboatError(.notFound, "\(url) has no version \(id)", hint: "versions: " + history.prefix(5).map(\.versionID).joined(separator: ", "))
            }
            return (store, key, v, latest)
        }
        let before = try Timestamp.parse(try inputs.string("before"))
        guard let v = history.first(where: { !$0.isDeleteMarker && $0.modified < before }) else {
            throw LifeboatError(.notFound, "\(url) has no version written before \(Timestamp.format(before))",
                hint: "the oldest is from \(history.last.map { Timestamp.format($0.modified) } ?? "?")")
        }
        return (store, key, v, latest)
    }

    static let restoreVersion = RunbookAction(name: "s3.restore-version", destructive: true,
        describe: { i in
            "make \(i.optional("url") ?? "?") what it was \(i.optional("version_id").map { "at version \($0)" } ?? "before \(i.optional("before") ?? "?")")"
        },
        preflight: { inputs, ctx in
            let (_, _, chosen, latest) = try await chooseVersion(inputs, ctx)
            return ["the bucket keeps versions; version \(chosen.versionID) of \(Timestamp.format(chosen.modified)) is there (current: \(latest.versionID))"]
        }
    ) { inputs, ctx in
        let url = try inputs.string("url")
        let (store, key, chosen, latest) = try await chooseVersion(inputs, ctx)
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

    /// `terraform output -json` of a working directory: every output as this step's output, so the
    /// steps after an apply take the ids the apply made (a recreated security group has a new id).
    static let terraformOutput = RunbookAction(name: "terraform.output", destructive: false,
        describe: { "read the outputs of the Terraform configuration in \($0.optional("dir") ?? "?")" }
    ) { inputs, _ in
        let dir = try inputs.string("dir")
        let binary = inputs.optional("terraform") ?? "terraform"
        let text = try await RunbookActions.sh("\(ShellQuoting.quote(binary)) -chdir=\(ShellQuoting.quote(dir)) output -json")
        guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw LifeboatError(.externalCommand, "terraform output -json in \(dir) did not print a JSON object")
        }
        var out: [String: String] = [:]
        for (name, entry) in object {
            guard let value = (entry as? [String: Any])?["value"] else { continue }
            switch value {
            case let s as String: out[name] = s
            case let n as NSNumber: out[name] = n.stringValue
            default:
                if let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed]) {
                    out[name] = String(decoding: data, as: UTF8.self)
                }
            }
        }
        return out
    }
}

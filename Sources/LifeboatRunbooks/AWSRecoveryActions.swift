import Foundation
import LifeboatAWS
import LifeboatAWSCore
import LifeboatConfiguration
import LifeboatCore

/// Runbook actions for the seed's promotions and the scenarios without a restore: a restored cluster
/// takes production's name (by renames), or the task definitions are pointed at its endpoint; the
/// master password set from a secret; a secret recovered; the network and the load balancer
/// diagnosed; logs exported; the AWS Config snapshot. Each is safe to run again.
enum AWSRecoveryActions {
    static var all: [RunbookAction] {
        [rdsPromote, rdsSetMasterPassword, ecsPointDatabase, ecsSetTaskDefinitions, secretsRecover, networkDiagnose, loadBalancerDiagnose,
         logsExport, configSnapshot, ecrLifecycle]
    }

    static func client(_ service: AWSService, _ inputs: StepInputs, _ ctx: RunbookContext) throws -> AWSClient {
        try AWSActions.client(service, inputs, ctx)
    }

    static func exists(_ rds: AuroraClusters, _ name: String) async throws -> Bool {
        do {
            _ = try await rds.describe(name)
            return true
        } catch let e as LifeboatError where e.code == .notFound {
            return false
        }
    }

    /// The restored cluster takes production's name: production is renamed to `retired_name`, then
    /// the restored cluster to production's name (applications keep their endpoint). Read from where
    /// the clusters are, so a run after one that stopped between the renames finishes the job, and a
    /// finished promotion is recognised. `undo: true` swaps them back the same way.
    static let rdsPromote = RunbookAction(name: "aws.rds.promote", destructive: true,
        describe: { i in
            let undo = i.bool("undo", default: false)
            let p = i.optional("production") ?? "?", r = i.optional("restored") ?? "?", o = i.optional("retired_name") ?? "?"
            return undo ? "undo the promotion: \(p) back to \(r), \(o) back to \(p)" : "rename \(p) to \(o), then \(r) to \(p)"
        },
        preflight: { inputs, ctx in
            let rds = AuroraClusters(client: try client(.rds, inputs, ctx))
            let names = (try inputs.string("production"), try inputs.string("restored"), try inputs.string("retired_name"))
            let found = (try await exists(rds, names.0), try await exists(rds, names.1), try await exists(rds, names.2))
            return ["clusters: \(names.0) \(found.0 ? "exists" : "absent"), \(names.1) \(found.1 ? "exists" : "absent"), \(names.2) \(found.2 ? "exists" : "absent")"]
        }
    ) { inputs, ctx in
        let rds = AuroraClusters(client: try client(.rds, inputs, ctx))
        let production = try inputs.string("production")
        var restored = try inputs.string("restored")
        var retired = try inputs.string("retired_name")
        let undo = inputs.bool("undo", default: false)
        // Undo is the same two renames with the roles swapped: what is production goes back to its
        // restored name, the retired cluster back to production's name.
        if undo { swap(&restored, &retired) }
        let w = try AWSActions.wait(inputs, timeout: 1800)
        var p = try await exists(rds, production)
        var r = try await exists(rds, restored)
        var o = try await exists(rds, retired)
        var done: [String] = []
        if p, r, !o {
            _ = try await rds.rename(production, to: retired, timeout: w.timeout, poll: w.poll)
            done.append("\(production) → \(retired)")
            (p, o) = (false, true)
        }
        if !p, r, o {
            _ = try await rds.rename(restored, to: production, timeout: w.timeout, poll: w.poll)
            done.append("\(restored) → \(production)")
            (p, r) = (true, false)
        }
        guard p, !r, o else {
            throw LifeboatError(.invalidUsage,
                "cannot \(undo ? "undo the promotion" : "promote"): \(production) \(p ? "exists" : "is absent"), \(restored) \(r ? "exists" : "is absent"), \(retired) \(o ? "exists" : "is absent")",
                hint: "a promotion needs \(production) and \(restored) with \(retired) free (or a promotion stopped half way); look at the clusters and rename by hand")
        }
        let c = try await rds.waitAvailable(production, timeout: w.timeout, poll: w.poll)
        return ["renamed": done.isEmpty ? "nothing (already done)" : done.joined(separator: ", "), "endpoint": c.endpoint ?? "",
                "production": production, "retired": retired]
    }

    /// The seed's `modify-db-cluster --master-user-password`, the value read from a secret (never
    /// from the runbook or the journal).
    static let rdsSetMasterPassword = RunbookAction(name: "aws.rds.set-master-password", destructive: true,
        describe: { "set the master password of \($0.optional("cluster") ?? "?") to the value of secret \($0.optional("secret") ?? "?")" }
    ) { inputs, ctx in
        let value = try await SecretsManager(client: try client(.secretsManager, inputs, ctx)).value(try inputs.string("secret"))
        let rds = AuroraClusters(client: try client(.rds, inputs, ctx))
        let cluster = try inputs.string("cluster")
        try await rds.setMasterPassword(cluster, password: value)
        return ["cluster": cluster]
    }

    /// The seed's "Update ECS task definitions with this endpoint": for each service, a new revision
    /// of its task definition with `variable` set to `database_endpoint`, and the service moved to it
    /// (`endpoint` is the AWS endpoint every aws.* step takes, not the database's). A
    /// service already on such a revision is left alone. `previous_task_definitions` is a state
    /// output, so `aws.ecs.set-task-definitions` can put the first attempt's revisions back.
    static let ecsPointDatabase = RunbookAction(name: "aws.ecs.point-database", destructive: true,
        describe: { i in "point \((try? AWSActions.services(i))?.joined(separator: ", ") ?? "?") at the database \(i.optional("database_endpoint") ?? "?") (\(i.optional("variable") ?? "DB_HOST"))" },
        preflight: { inputs, ctx in try await AWSActions.checkServices(inputs, ctx) },
        stateOutputs: ["previous_task_definitions"]
    ) { inputs, ctx in
        let ecs = ECSServices(client: try client(.ecs, inputs, ctx))
        let defs = TaskDefinitions(client: try client(.ecs, inputs, ctx))
        let cluster = try inputs.string("cluster")
        let endpoint = try inputs.string("database_endpoint")
        let variable = inputs.optional("variable").flatMap { $0.isEmpty ? nil : $0 } ?? "DB_HOST"
        var previous: [String] = []
        var now: [String] = []
        for name in try AWSActions.services(inputs) {
            let current = try await ecs.describe(cluster: cluster, service: name).taskDefinition
            previous.append("\(name)=\(current)")
            if try await defs.environmentValue(current, variable: variable) == endpoint {
                now.append("\(name)=\(current)")
                continue
            }
            let arn = try await defs.register(try await defs.document(current), environment: [variable: endpoint])
            try await ecs.update(cluster: cluster, service: name, taskDefinition: arn)
            now.append("\(name)=\(arn)")
        }
        return ["previous_task_definitions": previous.joined(separator: ","), "task_definitions": now.joined(separator: ",")]
    }

    /// Moves services to given task definitions (`api=arn,web=arn`): the undo of a point-database.
    static let ecsSetTaskDefinitions = RunbookAction(name: "aws.ecs.set-task-definitions", destructive: true,
        describe: { "move services to task definitions \($0.optional("task_definitions") ?? "?")" }
    ) { inputs, ctx in
        let ecs = ECSServices(client: try client(.ecs, inputs, ctx))
        let cluster = try inputs.string("cluster")
        var set: [String] = []
        for pair in try inputs.string("task_definitions").split(separator: ",") {
            let parts = pair.split(separator: "=", maxSplits: 1).map { String($0).trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw LifeboatError(.invalidUsage, "task_definitions of step '\(inputs.step)' must be service=task-definition pairs, not '\(pair)'")
            }
            try await ecs.update(cluster: cluster, service: parts[0], taskDefinition: parts[1])
            set.append("\(parts[0])=\(parts[1])")
        }
        return ["task_definitions": set.joined(separator: ",")]
    }

    static let secretsRecover = RunbookAction(name: "aws.secrets.recover", destructive: true,
        describe: { i in "recover secret \(i.optional("secret") ?? "?")" + (i.bool("set_master_password", default: false) ? " and set the master password of \(i.optional("cluster") ?? "?") to it" : "") }
    ) { inputs, ctx in
        var deployment = ctx.awsDeployment
        if let cluster = AWSActions.given(inputs, "cluster") { deployment.auroraCluster = cluster }
        let protection = AWSProtection(deployment: deployment, account: AWSActions.account(inputs, ctx))
        let outcome = try await protection.recoverSecret(try inputs.string("secret"), value: nil,
            setMasterPassword: inputs.bool("set_master_password", default: false))
        return ["result": outcome.lines.joined(separator: "; ")]
    }

    static func diagnosis(_ d: NetworkDiagnosis, _ inputs: StepInputs) throws -> [String: String] {
        let out = ["facts": d.facts.joined(separator: "; "), "problems": d.problems.joined(separator: "; "), "healthy": d.healthy ? "true" : "false"]
        if inputs.bool("fail_on_problems", default: false), !d.healthy {
            throw LifeboatError(.objectiveMissed, "\(d.problems.count) problem(s): \(d.problems.joined(separator: "; "))")
        }
        return out
    }

    static let networkDiagnose = RunbookAction(name: "aws.network.diagnose", destructive: false,
        describe: { "diagnose VPC \($0.optional("vpc") ?? "?"): gateways, NAT, route tables, security groups" }
    ) { inputs, ctx in
        let checks = NetworkChecks(ec2: try client(.ec2, inputs, ctx), elb: try client(.elasticLoadBalancing, inputs, ctx))
        return try diagnosis(try await checks.diagnoseVPC(try inputs.string("vpc")), inputs)
    }

    static let loadBalancerDiagnose = RunbookAction(name: "aws.elb.diagnose", destructive: false,
        describe: { "diagnose load balancer \($0.optional("name") ?? "?"): state, listeners, target health" }
    ) { inputs, ctx in
        let checks = NetworkChecks(ec2: try client(.ec2, inputs, ctx), elb: try client(.elasticLoadBalancing, inputs, ctx))
        return try diagnosis(try await checks.diagnoseLoadBalancer(try inputs.string("name")), inputs)
    }

    static let logsExport = RunbookAction(name: "aws.logs.export", destructive: false,
        describe: { "export log group(s) \($0.optional("groups") ?? "?") to s3://\($0.optional("bucket") ?? "?")" }
    ) { inputs, ctx in
        var deployment = ctx.awsDeployment
        deployment.logGroups = inputs.optional("groups").map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } } ?? deployment.logGroups
        if let bucket = AWSActions.given(inputs, "bucket") { deployment.logsBucket = bucket }
        if let prefix = AWSActions.given(inputs, "prefix") { deployment.logsPrefix = prefix }
        let protection = AWSProtection(deployment: deployment, account: AWSActions.account(inputs, ctx))
        let w = try AWSActions.wait(inputs, timeout: 3600)
        let outcome = try await protection.exportLogs(from: try AWSActions.given(inputs, "from").map(Timestamp.parse),
            to: try AWSActions.given(inputs, "to").map(Timestamp.parse), timeout: w.timeout, poll: w.poll)
        return ["exports": outcome.lines.joined(separator: "; ")]
    }

    static let configSnapshot = RunbookAction(name: "aws.config.snapshot", destructive: false,
        describe: { "deliver an AWS Config snapshot on channel \($0.optional("channel") ?? "default")" }
    ) { inputs, ctx in
        let id = try await ConfigSnapshots(client: try client(.config, inputs, ctx)).deliver(channel: inputs.optional("channel") ?? "default")
        return ["snapshot_id": id]
    }

    static let ecrLifecycle = RunbookAction(name: "aws.ecr.lifecycle", destructive: true,
        describe: { "apply \"keep last \($0.optional("keep") ?? "20") images\" to \($0.optional("repositories") ?? "?")" }
    ) { inputs, ctx in
        let ecr = ContainerRegistry(client: try client(.ecr, inputs, ctx))
        let keep = try inputs.int("keep", default: 20)
        let repos = try inputs.string("repositories").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        for r in repos { try await ecr.applyKeepLast(r, keep: keep) }
        return ["repositories": repos.joined(separator: ","), "keep": String(keep)]
    }
}

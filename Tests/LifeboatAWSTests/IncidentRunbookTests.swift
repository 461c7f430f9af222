import Foundation
import LifeboatAWS
import LifeboatAWSCore
import LifeboatCore
import LifeboatPostgres
import LifeboatRunbooks
import LifeboatTesting
import Testing

/// Runbooks as an incident goes, against AWS as it behaves (moto behind the strict proxy): the
/// first attempt fails half way, the operator runs it again or resumes it with a fixed variable;
/// questions and outputs are whole; checks run before anything changes.
@Suite(.serialized) struct IncidentRunbookTests {
    let p = "AmazonEC2ContainerServiceV20141113."

    func account(_ region: String) async throws -> AWSAccountOverrides {
        MotoServer.overrides(try await StrictAWS.shared.url(), region: region)
    }

    /// The seed's deployment: the Aurora cluster, a subnet group and a security group, the api/web/worker
    /// services at 2 tasks each.
    func seedDeployment(_ explicit: AWSAccountOverrides) async throws -> (rds: AWSClient, ecs: ECSServices, securityGroup: String) {
        let rds = try AWSClient(.rds, overrides: explicit)
        let ec2 = try AWSClient(.ec2, overrides: explicit)
        let vpc = try #require(try await ec2.query("CreateVpc", version: "2016-11-15", [("CidrBlock", "10.0.0.0/16")]).text("vpcId"))
        let subnet = try #require(try await ec2.query("CreateSubnet", version: "2016-11-15",
            [("VpcId", vpc), ("CidrBlock", "10.0.1.0/24"), ("AvailabilityZone", explicit.region.map { $0 + "a" } ?? "us-east-1a")]).text("subnetId"))
        let sg = try #require(try await ec2.query("CreateSecurityGroup", version: "2016-11-15",
            [("GroupName", "aurora"), ("GroupDescription", "aurora"), ("VpcId", vpc)]).text("groupId"))
        _ = try await rds.query("CreateDBSubnetGroup", version: "2014-10-31", [("DBSubnetGroupName", "omnirapeutic-production-aurora-subnet-group"),
            ("DBSubnetGroupDescription", "aurora"), ("SubnetIds.SubnetIdentifier.1", subnet)])
        _ = try await rds.query("CreateDBCluster", version: "2014-10-31", [
            ("DBClusterIdentifier", "omnirapeutic-production"), ("Engine", "aurora-postgresql"), ("MasterUsername", "postgres"),
            ("MasterUserPassword", "a-long-password"), ("BackupRetentionPeriod", "7"), ("PreferredBackupWindow", "03:00-04:00"),
        ])
        let ecsClient = try AWSClient(.ecs, overrides: explicit)
        _ = try await ecsClient.json(p + "CreateCluster", ["clusterName": "omnirapeutic-production"])
        _ = try await ecsClient.json(p + "RegisterTaskDefinition", ["family": "app",
            "containerDefinitions": [["name": "app", "image": "app:1.0", "memory": 256]]])
        for service in ["api", "web", "worker"] {
            _ = try await ecsClient.json(p + "CreateService", ["cluster": "omnirapeutic-production",
                "serviceName": "omnirapeutic-production-\(service)", "taskDefinition": "app:1", "desiredCount": 2])
        }
        // The strict proxy keeps a new cluster "creating" for a moment, as AWS does.
        _ = try await AuroraClusters(client: rds).waitAvailable("omnirapeutic-production", timeout: 30, poll: 0.5)
        return (rds, ECSServices(client: ecsClient), sg)
    }

    func counts(_ ecs: ECSServices) async throws -> [Int] {
        var out: [Int] = []
        for s in ["api", "web", "worker"] {
            out.append(try await ecs.describe(cluster: "omnirapeutic-production", service: "omnirapeutic-production-\(s)").desiredCount)
        }
        return out
    }

    /// The built-in failover with two adaptations for a test: the verify step reaches a local
    /// PostgreSQL (a moto endpoint is no database) and retries quickly.
    func failoverText(_ pg: TestPostgres) throws -> String {
        try BuiltinRunbooks.load("builtin:aws-emergency-failover")
            .replacingOccurrences(of: "host: \"${steps.restore.endpoint}\"", with: "host: \"\(pg.cluster.socketDirectory)\"")
            .replacingOccurrences(of: "retries: 20", with: "retries: 1").replacingOccurrences(of: "retry_delay: 15s", with: "retry_delay: 0.2s")
    }

    func vars(_ pg: TestPostgres, _ sg: String, cluster: String, sql: String = "SELECT count(*) FROM accounts") -> [String: String] {
        ["region": "ap-northeast-1", "services": "omnirapeutic-production-api,omnirapeutic-production-web,omnirapeutic-production-worker",
         "failover_cluster": cluster, "security_groups": sg, "minutes_ago": "", "db_port": String(pg.port), "db_user": pg.cluster.superuser,
         "verify_sql": sql]
    }

    final class Transcript: @unchecked Sendable {
        private let lock = NSLock()
        private var _lines: [String] = []
        private var _questions: [String] = []
        func line(_ s: String) { lock.withLock { _lines.append(s) } }
        func question(_ s: String) { lock.withLock { _questions.append(s) } }
        var lines: [String] { lock.withLock { _lines } }
        var questions: [String] { lock.withLock { _questions } }
    }

    func executor(_ explicit: AWSAccountOverrides, _ sandbox: TestSandbox, _ t: Transcript) -> RunbookExecutor {
        let context = RunbookContext(repository: { throw LifeboatError(.invalidUsage, "no repository in this test") },
            production: PostgresEndpoint(), pgdata: nil, invocation: LifeboatInvocation(executable: "/bin/false"), aws: explicit,
            logger: TestSandbox.logger())
        return RunbookExecutor(context: context, stateDirectory: sandbox.path("runs"), assumeYes: false,
            confirm: { q in t.question(q); return true }, output: { t.line($0) })
    }

    /// The first attempt fails after the services were stopped (the restored database does not pass
    /// its check); a new run, and a resume with a fixed variable, each end with every service back at
    /// 2 and steady, never at the 0 the failed attempt left.
    @Test func aFailoverThatFailedHalfWayRestoresTheServicesWhenRunAgain() async throws {
        let sandbox = try TestSandbox("incident-rerun")
        defer { Task { await sandbox.remove() } }
        let explicit = try await account("ap-northeast-1")
        let (rds, ecs, sg) = try await seedDeployment(explicit)
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: nil)
        _ = try await pg.query("CREATE TABLE accounts AS SELECT generate_series(1, 100) AS id")
        let text = try failoverText(pg)
        let book = try Runbook(yaml: text)
        let transcript = Transcript()
        let run = executor(explicit, sandbox, transcript)

        // Attempt 1: the check on the restored database fails; the services are at 0.
        let first = try await run.run(book, text: text, vars: vars(pg, sg, cluster: "omni-failover-1", sql: "SELECT count(*) FROM no_such_table"))
        #expect(first.status == .failed && first.steps.last?.name == "verify-restored", "\(first.steps.map { "\($0.name) \($0.status)" })")
        #expect(try await counts(ecs) == [0, 0, 0])

        // Attempt 2, a fresh run with the check fixed and a new cluster name: it finds 0/0/0 but
        // restores what the first attempt found.
        let second = try await run.run(book, text: text, vars: vars(pg, sg, cluster: "omni-failover-2"))
        #expect(second.status == .succeeded, "\(second.steps.map { "\($0.name) \($0.status) \($0.error ?? "")" })")
        #expect(try await counts(ecs) == [2, 2, 2], "every service back at 2")
        #expect(second.steps.first { $0.name == "stop-application" }?.outputs["previous_counts"]
            == "omnirapeutic-production-api=2,omnirapeutic-production-web=2,omnirapeutic-production-worker=2")
        #expect(transcript.lines.contains { $0.contains("state before the first attempt") })
        #expect(second.steps.contains { $0.name == "services-running" && $0.status == .ok }, "the post-condition was checked")
        #expect(second.steps.contains { $0.name == "failover-cluster-available" && $0.status == .ok })
        for s in ["api", "web", "worker"] {
            #expect(try await ecs.describe(cluster: "omnirapeutic-production", service: "omnirapeutic-production-\(s)").steady)
        }
        // The first run is marked finished by the second: a later incident does not inherit its counts.
        let firstEvents = try RunJournal(directory: sandbox.path("runs"), runID: first.runID).events()
        #expect(RunJournal.isFinished(firstEvents))

        // Every question showed its values; the endpoint was printed whole.
        #expect(!transcript.questions.isEmpty && transcript.questions.allSatisfy { !$0.contains("${") }, "\(transcript.questions)")
        let endpoint = try #require(second.steps.first { $0.name == "restore" }?.outputs["endpoint"])
        #expect(transcript.questions.contains { $0.contains(endpoint) })
        #expect(transcript.lines.contains { $0.contains("endpoint = \(endpoint)") })

        // Attempt 3 fails the same way and is resumed with the variable fixed: same outcome.
        let third = try await run.run(book, text: text, vars: vars(pg, sg, cluster: "omni-failover-3", sql: "SELECT count(*) FROM no_such_table"))
        let afterThird = try await counts(ecs)
        #expect(third.status == .failed && afterThird == [0, 0, 0])
        let resumed = try await run.resume(runID: third.runID, vars: ["verify_sql": "SELECT count(*) FROM accounts"])
        #expect(resumed.status == .succeeded, "\(resumed.steps.map { "\($0.name) \($0.status) \($0.error ?? "")" })")
        #expect(resumed.steps.first { $0.name == "restore" }?.fromEarlierRun == true, "the restore was not repeated")
        #expect(try await counts(ecs) == [2, 2, 2])
        let events = try RunJournal(directory: sandbox.path("runs"), runID: third.runID).events()
        #expect(events.contains { $0.event == .varsChanged && $0.vars?["verify_sql"] == "SELECT count(*) FROM accounts" })
        #expect(try await AuroraClusters(client: rds).describe("omni-failover-3").status == "available")
        try await pg.stop()
    }

    /// A restore point outside the restorable window, or a security group that does not exist, is
    /// found by the preflight: the run stops before the services are touched. `--dry-run` makes the
    /// same checks against the real APIs.
    @Test func preflightFailuresLeaveProductionUntouched() async throws {
        let sandbox = try TestSandbox("incident-preflight")
        defer { Task { await sandbox.remove() } }
        let explicit = try await account("ap-northeast-2")
        let (_, ecs, sg) = try await seedDeployment(explicit)
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: nil)
        let text = try failoverText(pg)
        let book = try Runbook(yaml: text)
        var v = vars(pg, sg, cluster: "omni-failover")
        v["region"] = "ap-northeast-2"
        v["minutes_ago"] = "15"  // the cluster is a minute old: before its earliest restorable time
        let transcript = Transcript()
        let run = executor(explicit, sandbox, transcript)
        let tooEarly = try await run.run(book, text: text, vars: v)
        #expect(tooEarly.status == .failed && tooEarly.preflightFailed)
        #expect(tooEarly.steps.first?.error?.contains("earliest restorable time") == true, "\(tooEarly.steps.first?.error ?? "")")
        #expect(try await counts(ecs) == [2, 2, 2], "nothing was stopped")
        #expect(transcript.questions.isEmpty, "no question was asked before the checks passed")

        v["minutes_ago"] = ""
        v["security_groups"] = "sg-00000000000000000"
        let badGroup = try await run.run(book, text: text, vars: v)
        #expect(badGroup.preflightFailed && badGroup.steps.first?.error?.contains("sg-00000000000000000") == true,
            "\(badGroup.steps.first?.error ?? "")")
        #expect(try await counts(ecs) == [2, 2, 2])

        // Through the binary: --dry-run makes the checks and fails the same way; an empty --var is accepted.
        let config = try sandbox.file("aws.yaml", """
            aws:
              endpoint: \(explicit.endpoint ?? "")
              region: ap-northeast-2
              access_key_id: \(MotoServer.accessKey)
              secret_access_key: \(MotoServer.secretKey)

            """)
        let file = try sandbox.file("failover.yaml", text)
        var args = ["runbook", "run", file, "--config", config, "--state-dir", sandbox.path("cli-runs"), "--dry-run"]
        for (k, value) in v { args += ["--var", "\(k)=\(value)"] }
        let dry = try await LifeboatCLI.run(args)
        #expect(dry.status == LifeboatError.Code.objectiveMissed.exitCode && dry.output.contains("✗ restore"), "\(dry.status) \(dry.output) \(dry.errors)")
        #expect(dry.output.contains("asks: \"Scale omnirapeutic-production-api,"), "the plan shows the question filled in")
        args = args.map { $0 == "security_groups=sg-00000000000000000" ? "security_groups=\(sg)" : $0 }
        let fine = try await LifeboatCLI.run(args)
        #expect(fine.status == 0 && fine.output.contains("✓ restore: the target cluster name omni-failover is free"), "\(fine.output) \(fine.errors)")
        #expect(try await counts(ecs) == [2, 2, 2])
        try await pg.stop()
    }

    /// What moto accepts and AWS refuses, refused by the strict proxy; the restore action gives the
    /// capacity in the restore call and waits for the writer instance.
    @Test func theStrictProxyRefusesWhatAWSRefuses() async throws {
        let explicit = try await account("eu-north-1")
        let rds = try AWSClient(.rds, overrides: explicit)
        _ = try await rds.query("CreateDBCluster", version: "2014-10-31", [("DBClusterIdentifier", "fresh"), ("Engine", "aurora-postgresql"),
            ("MasterUsername", "postgres"), ("MasterUserPassword", "a-long-password")])
        #expect(try await AuroraClusters(client: rds).describe("fresh").status == "creating")
        await #expect {
            _ = try await rds.query("ModifyDBCluster", version: "2014-10-31", [("DBClusterIdentifier", "fresh"),
                ("ServerlessV2ScalingConfiguration.MinCapacity", "0.5"), ("ServerlessV2ScalingConfiguration.MaxCapacity", "1"), ("ApplyImmediately", "true")])
        } throws: { ($0 as? LifeboatError)?.awsCode == .invalidDBClusterState }
        await #expect {
            _ = try await rds.query("CreateDBInstance", version: "2014-10-31", [("DBInstanceIdentifier", "fresh-1"), ("DBClusterIdentifier", "fresh"),
                ("DBInstanceClass", "db.serverless"), ("Engine", "aurora-postgresql")])
        } throws: { ($0 as? LifeboatError)?.awsCode == .invalidParameterCombination }
        let aurora = AuroraClusters(client: rds)
        _ = try await aurora.waitAvailable("fresh", timeout: 30, poll: 0.5)
        await #expect {
            _ = try await aurora.restoreToPointInTime(source: "fresh", time: nil,
                into: AuroraRestoreTarget(cluster: "nowhere", subnetGroup: "no-such-group", instanceClass: "db.r6g.large"))
        } throws: { ($0 as? LifeboatError)?.awsCode == .dbSubnetGroupNotFound }
        // A serverless instance without capacity is refused before AWS is asked.
        await #expect {
            _ = try await aurora.restoreToPointInTime(source: "fresh", time: nil, into: AuroraRestoreTarget(cluster: "x", instanceClass: "db.serverless"))
        } throws: { ($0 as? LifeboatError)?.message.contains("needs serverless v2 capacity") == true }
        // Done right: capacity in the restore call, the instance made while the cluster is creating,
        // both waited for.
        let restored = try await aurora.restoreToPointInTime(source: "fresh", time: nil,
            into: AuroraRestoreTarget(cluster: "restored", instanceClass: "db.serverless", minCapacity: 0.5, maxCapacity: 1))
        #expect(restored.status == "creating")
        let ready = try await aurora.waitReady("restored", timeout: 30, poll: 0.3)
        #expect(ready.status == "available" && ready.serverlessMinCapacity == 0.5)
        #expect(try await aurora.instanceStatus("restored-instance-1") == "available")
    }
}

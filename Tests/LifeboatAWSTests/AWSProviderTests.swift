import Foundation
import LifeboatAWS
import LifeboatAWSCore
import LifeboatCore
import LifeboatPostgres
import LifeboatRunbooks
import LifeboatTesting
import Testing

/// The AWS providers against a real AWS API server (moto, on loopback): signed requests, the
/// seed's calls, and answers parsed from the real wire formats (Query/XML and JSON 1.1).
@Suite(.serialized) struct AWSProviderTests {
    /// Credentials and endpoint for moto, under a region of the test's own so tests do not share state.
    func account(_ region: String) async throws -> AWSAccountOverrides {
        MotoServer.overrides(try await StrictAWS.shared.url(), region: region)
    }

    /// An Aurora cluster, available (the strict proxy keeps a new one `creating` for a moment, as
    /// AWS does), with the seed's subnet group in its region.
    func makeCluster(_ rds: AWSClient, _ id: String) async throws {
        let ec2 = try AWSClient(.ec2, account: rds.account)
        let vpc = try #require(try await ec2.query("CreateVpc", version: "2016-11-15", [("CidrBlock", "10.1.0.0/16")]).text("vpcId"))
        let subnet = try #require(try await ec2.query("CreateSubnet", version: "2016-11-15",
            [("VpcId", vpc), ("CidrBlock", "10.1.1.0/24"), ("AvailabilityZone", rds.account.region + "a")]).text("subnetId"))
        for group in ["omnirapeutic-production-aurora-subnet-group"] where (try? await AuroraClusters(client: rds).checkSubnetGroup(group)) == nil {
            _ = try await rds.query("CreateDBSubnetGroup", version: "2014-10-31", [("DBSubnetGroupName", group),
                ("DBSubnetGroupDescription", "aurora"), ("SubnetIds.SubnetIdentifier.1", subnet)])
        }
        _ = try await rds.query("CreateDBCluster", version: "2014-10-31", [
            ("DBClusterIdentifier", id), ("Engine", "aurora-postgresql"), ("MasterUsername", "postgres"),
            ("MasterUserPassword", "a-long-password"), ("BackupRetentionPeriod", "7"), ("PreferredBackupWindow", "03:00-04:00"),
        ])
        _ = try await AuroraClusters(client: rds).waitAvailable(id, timeout: 30, poll: 0.3)
    }

    /// A security group in the region, by id.
    func makeSecurityGroup(_ rds: AWSClient, _ name: String) async throws -> String {
        let ec2 = try AWSClient(.ec2, account: rds.account)
        return try #require(try await ec2.query("CreateSecurityGroup", version: "2016-11-15",
            [("GroupName", name), ("GroupDescription", name)]).text("groupId"))
    }

    func makeService(_ ecs: AWSClient, cluster: String, service: String, desired: Int) async throws {
        let p = "AmazonEC2ContainerServiceV20141113."
        _ = try await ecs.json(p + "CreateCluster", ["clusterName": cluster])
        for image in ["app:1.0", "app:1.1"] {
            _ = try await ecs.json(p + "RegisterTaskDefinition", ["family": "app",
                "containerDefinitions": [["name": "app", "image": image, "memory": 256]]])
        }
        _ = try await ecs.json(p + "CreateService", ["cluster": cluster, "serviceName": service, "taskDefinition": "app:2",
            "desiredCount": desired])
    }

    @Test func auroraSnapshotsAndRestoresIntoNewClustersOnly() async throws {
        let client = try AWSClient(.rds, overrides: try await account("eu-west-1"))
        let rds = AuroraClusters(client: client)
        try await makeCluster(client, "prod")
        let prod = try await rds.describe("prod")
        #expect(prod.status == "available" && prod.engine == "aurora-postgresql")
        #expect(prod.backupRetentionDays == 7 && prod.preferredBackupWindow == "03:00-04:00")

        let snapshot = try await rds.createSnapshot(cluster: "prod", snapshot: "prod-pre-migration",
            tags: ["Purpose": "pre-migration", "CreatedBy": "test"])
        #expect(snapshot.cluster == "prod")
        let ready = try await rds.waitSnapshotAvailable("prod-pre-migration", timeout: 30, poll: 0.2)
        #expect(ready.status == "available")
        let tags = try await client.query("ListTagsForResource", version: "2014-10-31", [("ResourceName", try #require(ready.arn))])
        let tagPairs = Dictionary(uniqueKeysWithValues: tags.all("Tag").compactMap { t in t.child("Key").map { ($0, t.child("Value") ?? "") } })
        #expect(tagPairs == ["Purpose": "pre-migration", "CreatedBy": "test"])

        // Point in time (latest) into a new cluster, with the seed's serverless instance.
        let target = AuroraRestoreTarget(cluster: "prod-failover", securityGroupIDs: ["sg-123"], instanceClass: "db.serverless",
            minCapacity: 0.5, maxCapacity: 1)
        _ = try await rds.restoreToPointInTime(source: "prod", time: nil, into: target)
        let failover = try await rds.waitAvailable("prod-failover", timeout: 30, poll: 0.2)
        #expect(failover.identifier == "prod-failover" && failover.endpoint?.isEmpty == false)
        let instances = try await client.query("DescribeDBInstances", version: "2014-10-31", [("DBInstanceIdentifier", "prod-failover-instance-1")])
        #expect(instances.first("DBInstance")?.child("DBClusterIdentifier") == "prod-failover")
        #expect(instances.first("DBInstance")?.child("DBInstanceClass") == "db.serverless")

        // A time outside the cluster's restorable window is refused before anything is created.
        do {
            _ = try await rds.restoreToPointInTime(source: "prod", time: Date().addingTimeInterval(-3600),
                into: AuroraRestoreTarget(cluster: "prod-too-early"))
            Issue.record("a restore before the earliest restorable time was accepted")
        } catch let e as LifeboatError {
            #expect(e.code == .notFound && e.message.contains("earliest restorable time"), "\(e)")
        }
        await #expect(throws: LifeboatError.self) { _ = try await rds.describe("prod-too-early") }
        // Never over an existing cluster: not production, not an earlier attempt.
        for existing in ["prod", "prod-failover"] {
            await #expect(throws: LifeboatError.self) {
                _ = try await rds.restoreToPointInTime(source: "prod", time: nil, into: AuroraRestoreTarget(cluster: existing))
            }
        }
        // From the snapshot, into a third cluster.
        _ = try await rds.restoreFromSnapshot("prod-pre-migration", engine: "aurora-postgresql", into: AuroraRestoreTarget(cluster: "prod-from-snap"))
        #expect(try await rds.describe("prod-from-snap").identifier == "prod-from-snap")
        try await rds.deleteSnapshot("prod-pre-migration")
        await #expect(throws: LifeboatError.self) { _ = try await rds.snapshot("prod-pre-migration") }
        // A cluster that does not exist: a named error, exit code "not found".
        do {
            _ = try await rds.describe("nope")
            Issue.record("describe of a missing cluster succeeded")
        } catch let e as LifeboatError {
            #expect(e.code == .notFound, "\(e)")
        }
    }

    @Test func ecsScalingWaitsForStabilityAndRollsBack() async throws {
        let client = try AWSClient(.ecs, overrides: try await account("eu-west-2"))
        let ecs = ECSServices(client: client)
        try await makeService(client, cluster: "prod", service: "api", desired: 2)
        var api = try await ecs.describe(cluster: "prod", service: "api")
        #expect(api.desiredCount == 2 && api.taskDefinition.hasSuffix("app:2"))
        // Tasks still pending: waiting gives up at its deadline, with a timeout error.
        #expect(!api.steady)
        do {
            _ = try await ecs.waitStable(cluster: "prod", service: "api", timeout: 0.5, poll: 0.1)
            Issue.record("an unstable service was reported stable")
        } catch let e as LifeboatError {
            #expect(e.code == .timeout)
        }
        api = try await ecs.update(cluster: "prod", service: "api", desiredCount: 3)
        #expect(try await ecs.waitStable(cluster: "prod", service: "api", timeout: 5, poll: 0.1).runningCount == 3)
        #expect(try await ecs.previousTaskDefinition(cluster: "prod", service: "api").hasSuffix("task-definition/app:1"))
        await #expect(throws: LifeboatError.self) { _ = try await ecs.describe(cluster: "prod", service: "missing") }

        // Scenario 2's built-in runbook (redeploy, wait for stability), then a rollback step.
        let sandbox = try TestSandbox("aws-ecs")
        defer { Task { await sandbox.remove() } }
        let explicit = try await account("eu-west-2")
        let executor = awsExecutor(explicit, sandbox: sandbox)
        let outage = try BuiltinRunbooks.load("builtin:aws-service-outage")
        let redeployed = try await executor.run(try Runbook(yaml: outage), text: outage,
            vars: ["region": "eu-west-2", "ecs_cluster": "prod", "service": "api", "stable_timeout": "5s"])
        #expect(redeployed.status == .succeeded, "\(redeployed.steps.map { "\($0.name): \($0.error ?? "ok")" })")
        #expect(redeployed.steps.first { $0.name == "status" }?.outputs["desired_count"] == "3")
        let rollbackText = """
            name: roll-back
            steps:
              - name: rollback
                action: aws.ecs.rollback
                with: { cluster: prod, service: api, poll: 0.1s, timeout: 5s }
            """
        let rolled = try await executor.run(try Runbook(yaml: rollbackText), text: rollbackText, vars: [:])
        #expect(rolled.status == .succeeded)
        #expect(rolled.steps.first?.outputs["task_definition"]?.hasSuffix("app:1") == true)
        #expect(rolled.steps.first?.outputs["previous_task_definition"]?.hasSuffix("app:2") == true)
        #expect(try await ecs.describe(cluster: "prod", service: "api").taskDefinition.hasSuffix("app:1"))
    }

    @Test func deletedSecretsAreRestoredAndValuesWrittenBack() async throws {
        let client = try AWSClient(.secretsManager, overrides: try await account("eu-west-3"))
        let sm = SecretsManager(client: client)
        _ = try await client.json("secretsmanager.CreateSecret", ["Name": "db-password", "SecretString": "first"])
        _ = try await client.json("secretsmanager.DeleteSecret", ["SecretId": "db-password", "RecoveryWindowInDays": 7])
        #expect(try await sm.describe("db-password").deletedDate != nil)
        _ = try await sm.restore("db-password")
        #expect(try await sm.describe("db-password").deletedDate == nil)
        #expect(try await sm.value("db-password") == "first")
        let version = try await sm.put("db-password", value: "second")
        let written = try await sm.value("db-password")
        #expect(!version.isEmpty && written == "second")
        #expect(try await sm.describe("db-password").currentVersion == version)
    }

    /// The seed's emergency failover runbook, run for real: ECS services scaled to 0 and back to the
    /// counts they had with a new deployment, the damaged cluster snapshotted and tagged, its latest
    /// restorable point restored into a new cluster with its instance, the restored database verified
    /// with SQL. The only change to the built-in text: moto's cluster endpoint is no database, so the
    /// verify step connects to a local PostgreSQL instead.
    @Test func theSeedsEmergencyFailoverRunbookRunsOnAWS() async throws {
        let sandbox = try TestSandbox("aws-failover")
        defer { Task { await sandbox.remove() } }
        let explicit = try await account("ap-south-1")
        let rds = try AWSClient(.rds, overrides: explicit)
        let ecsClient = try AWSClient(.ecs, overrides: explicit)
        try await makeCluster(rds, "omni")
        try await makeService(ecsClient, cluster: "omni-ecs", service: "omni-api", desired: 2)
        _ = try await ecsClient.json("AmazonEC2ContainerServiceV20141113.CreateService",
            ["cluster": "omni-ecs", "serviceName": "omni-web", "taskDefinition": "app:2", "desiredCount": 3])
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: nil)
        _ = try await pg.query("CREATE TABLE accounts AS SELECT generate_series(1, 100) AS id")

        var text = try BuiltinRunbooks.load("builtin:aws-emergency-failover")
        text = text.replacingOccurrences(of: "host: \"${steps.restore.endpoint}\"", with: "host: \"\(pg.cluster.socketDirectory)\"")
        let book = try Runbook(yaml: text)
        let executor = awsExecutor(explicit, sandbox: sandbox)
        let result = try await executor.run(book, text: text, vars: [
            "region": "ap-south-1", "ecs_cluster": "omni-ecs", "services": "omni-api,omni-web", "db_cluster": "omni",
            "failover_cluster": "omni-failover", "security_groups": "\(try await makeSecurityGroup(rds, "one")),\(try await makeSecurityGroup(rds, "two"))",
            "kms_key_id": "",
            // The cluster was made a moment ago: 15 minutes back is before its earliest restorable
            // time (refused, as AWS would); the latest restorable time instead.
            "minutes_ago": "",
            "db_port": String(pg.port), "db_user": pg.cluster.superuser, "verify_sql": "SELECT count(*) FROM accounts",
        ])
        #expect(result.status == .succeeded, "\(result.steps.map { "\($0.name): \($0.status) \($0.error ?? "")" })")
        #expect(result.steps.map(\.name) == ["stop-application", "snapshot-current", "restore", "verify-restored", "point-application",
            "restart-application", "services-running", "failover-cluster-available"])

        let aurora = AuroraClusters(client: rds)
        #expect(try await aurora.describe("omni-failover").status == "available")
        let snapshots = try await rds.query("DescribeDBClusterSnapshots", version: "2014-10-31", [("DBClusterIdentifier", "omni")])
        let manual = snapshots.all("DBClusterSnapshot").filter { $0.child("SnapshotType") == "manual" }
        #expect(manual.count == 1)
        let tags = try await rds.query("ListTagsForResource", version: "2014-10-31",
            [("ResourceName", try #require(manual.first?.child("DBClusterSnapshotArn")))])
        #expect(tags.all("Tag").contains { $0.child("Key") == "Purpose" && $0.child("Value") == "emergency-failover" })
        let ecs = ECSServices(client: ecsClient)
        #expect(try await ecs.describe(cluster: "omni-ecs", service: "omni-api").desiredCount == 2, "back to its own count")
        #expect(try await ecs.describe(cluster: "omni-ecs", service: "omni-web").desiredCount == 3)
        let stop = try #require(result.steps.first { $0.name == "stop-application" })
        #expect(stop.outputs["previous_counts"] == "omni-api=2,omni-web=3")
        let restore = try #require(result.steps.first { $0.name == "restore" })
        #expect(restore.outputs["cluster"] == "omni-failover" && restore.outputs["restored_to"] == "latest restorable time")
        try await pg.stop()
    }
}

extension AWSProviderTests {
    /// A rollback to an image an ECR lifecycle rule removed is refused before anything changes; once
    /// the image is back, the same rollback goes through.
    @Test func rollbackRefusesAnImageECRNoLongerHas() async throws {
        let sandbox = try TestSandbox("aws-ecr")
        defer { Task { await sandbox.remove() } }
        let explicit = try await account("ca-central-1")
        let ecsClient = try AWSClient(.ecs, overrides: explicit)
        let ecr = try AWSClient(.ecr, overrides: explicit)
        let registry = "AmazonEC2ContainerRegistry_V20150921."
        _ = try await ecr.json(registry + "CreateRepository", ["repositoryName": "shop"])
        func push(_ tag: String) async throws {
            let manifest = #"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":7023,"digest":"sha256:"# + String(repeating: tag == "1.0" ? "a" : "b", count: 64) + #""},"layers":[]}"#
            _ = try await ecr.json(registry + "PutImage", ["repositoryName": "shop", "imageManifest": manifest, "imageTag": tag])
        }
        try await push("1.1")
        let p = "AmazonEC2ContainerServiceV20141113."
        _ = try await ecsClient.json(p + "CreateCluster", ["clusterName": "prod"])
        for tag in ["1.0", "1.1"] {
            _ = try await ecsClient.json(p + "RegisterTaskDefinition", ["family": "shop",
                "containerDefinitions": [["name": "shop", "image": "123456789012.dkr.ecr.ca-central-1.amazonaws.com/shop:\(tag)", "memory": 256]]])
        }
        _ = try await ecsClient.json(p + "CreateService", ["cluster": "prod", "serviceName": "shop", "taskDefinition": "shop:2", "desiredCount": 1])
        let ecs = ECSServices(client: ecsClient)
        _ = try await ecs.update(cluster: "prod", service: "shop", desiredCount: 2)

        let yaml = """
            name: roll-back
            steps:
              - name: rollback
                action: aws.ecs.rollback
                with: { region: ca-central-1, cluster: prod, service: shop, poll: 0.1s, timeout: 5s }
            """
        let executor = awsExecutor(explicit, sandbox: sandbox)
        let refused = try await executor.run(try Runbook(yaml: yaml), text: yaml, vars: [:])
        #expect(refused.status == .failed && refused.steps.first?.error?.contains("is no longer in ECR") == true, "\(refused.steps.first?.error ?? "")")
        #expect(try await ecs.describe(cluster: "prod", service: "shop").taskDefinition.hasSuffix("shop:2"), "nothing changed")

        try await push("1.0")
        let done = try await executor.run(try Runbook(yaml: yaml), text: yaml, vars: [:])
        #expect(done.status == .succeeded, "\(done.steps.first?.error ?? "")")
        #expect(try await ecs.describe(cluster: "prod", service: "shop").taskDefinition.hasSuffix("shop:1"))
        #expect(ContainerImages.parse("nginx:1.25") == nil)
        #expect(ContainerImages.parse("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/api@sha256:abc")?.digest == "sha256:abc")
    }

    /// The seed's monthly restore test on Aurora as a drill: timed against the 30-minute objective,
    /// clean-up outside the RTO, nothing left behind, the report in the drill history; and the
    /// clean-up action refuses any cluster Lifeboat did not restore.
    @Test func auroraRestoreDrillIsTimedAndCleansUp() async throws {
        let sandbox = try TestSandbox("aws-drill")
        defer { Task { await sandbox.remove() } }
        let explicit = try await account("sa-east-1")
        let rdsClient = try AWSClient(.rds, overrides: explicit)
        try await makeCluster(rdsClient, "omni")
        let repo = try await TestRepository.make(in: sandbox)
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: nil)
        _ = try await pg.query("CREATE TABLE accounts AS SELECT generate_series(1, 100) AS id")

        var text = try BuiltinRunbooks.load("builtin:aws-restore-drill")
        text = text.replacingOccurrences(of: "host: \"${steps.restore.endpoint}\"", with: "host: \"\(pg.cluster.socketDirectory)\"")
        let context = RunbookContext(repository: { try await repo.reopen() }, production: PostgresEndpoint(), pgdata: nil,
            invocation: LifeboatInvocation(executable: "/bin/false"), aws: explicit, logger: TestSandbox.logger())
        let executor = RunbookExecutor(context: context, stateDirectory: sandbox.path("runs"), assumeYes: true)
        let report = try await RunbookDrill(repository: try await repo.reopen(), executor: executor).run(scenario: .snapshotRestore,
            runbook: try Runbook(yaml: text), text: text,
            vars: ["region": "sa-east-1", "db_cluster": "omni", "drill_cluster": "omni-drill", "db_port": String(pg.port),
                   "db_user": pg.cluster.superuser, "verify_sql": "SELECT count(*) FROM accounts"],
            objectives: DrillScenario.snapshotRestore.defaultObjectives)
        #expect(report.passed && report.rtoMet, "\(report.checks.filter { !$0.passed })")
        #expect(report.objectives.rtoSeconds == 1800)
        let cleanup = report.phases.filter { !$0.countsTowardRTO }.map(\.name)
        #expect(cleanup == ["drop-drill-cluster (aws.rds.delete-cluster)", "drop-snapshot (aws.rds.delete-snapshot)"])
        let counted = report.phases.filter(\.countsTowardRTO).reduce(0) { $0 + $1.seconds }
        #expect(report.rtoSeconds >= counted && report.rtoSeconds < report.phases.reduce(0) { $0 + $1.seconds } + 1)

        // Nothing left behind: no drill cluster, no drill snapshot; production untouched.
        let aurora = AuroraClusters(client: rdsClient)
        await #expect(throws: LifeboatError.self) { _ = try await aurora.describe("omni-drill") }
        let snapshots = try await rdsClient.query("DescribeDBClusterSnapshots", version: "2014-10-31", [("DBClusterIdentifier", "omni")])
        #expect(snapshots.all("DBClusterSnapshot").filter { $0.child("SnapshotType") == "manual" }.isEmpty)
        do {
            try await aurora.deleteRestoredCluster("omni")
            Issue.record("production was deleted")
        } catch let e as LifeboatError {
            #expect(e.message.contains("not restored by Lifeboat"), "\(e)")
        }
        #expect(try await aurora.describe("omni").status == "available")
        let history = try await DrillHistory.all(try await repo.reopen())
        #expect(history.map(\.runbook) == ["aws-restore-drill"] && history.first?.scenario == .snapshotRestore)
        try await pg.stop()
    }

    /// The monthly point-in-time drill on Aurora: the latest restorable point restored into a new
    /// cluster, verified, cleaned up; its RPO is measured (how far that point trailed the request)
    /// and held to the objective. A runbook that restores a snapshot measures no RPO: as a
    /// point-in-time drill it fails instead of passing without one.
    @Test func auroraPointInTimeDrillMeasuresItsRPO() async throws {
        let sandbox = try TestSandbox("aws-pitr-drill")
        defer { Task { await sandbox.remove() } }
        let explicit = try await account("eu-west-1")
        let rdsClient = try AWSClient(.rds, overrides: explicit)
        try await makeCluster(rdsClient, "omni")
        let repo = try await TestRepository.make(in: sandbox)
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: nil)
        _ = try await pg.query("CREATE TABLE accounts AS SELECT generate_series(1, 100) AS id")
        let context = RunbookContext(repository: { try await repo.reopen() }, production: PostgresEndpoint(), pgdata: nil,
            invocation: LifeboatInvocation(executable: "/bin/false"), aws: explicit, logger: TestSandbox.logger())
        let executor = RunbookExecutor(context: context, stateDirectory: sandbox.path("runs"), assumeYes: true)
        let vars = ["region": "eu-west-1", "db_cluster": "omni", "drill_cluster": "omni-pitr", "db_port": String(pg.port),
                    "db_user": pg.cluster.superuser, "verify_sql": "SELECT count(*) FROM accounts"]
        func local(_ name: String) throws -> String {
            try BuiltinRunbooks.load(name).replacingOccurrences(of: "host: \"${steps.restore.endpoint}\"", with: "host: \"\(pg.cluster.socketDirectory)\"")
        }
        let text = try local("builtin:aws-pitr-drill")
        let report = try await RunbookDrill(repository: try await repo.reopen(), executor: executor).run(scenario: .pointInTime,
            runbook: try Runbook(yaml: text), text: text, vars: vars, objectives: DrillScenario.pointInTime.defaultObjectives)
        #expect(report.passed, "\(report.checks.filter { !$0.passed }) \(report.error ?? "")")
        let rpo = try #require(report.rpoSeconds)
        #expect(rpo >= 0 && rpo < 60 && report.rpoMet == true, "RPO \(rpo)")
        #expect(report.phases.filter { !$0.countsTowardRTO }.map(\.name) == ["drop-drill-cluster (aws.rds.delete-cluster)"])
        await #expect(throws: LifeboatError.self) { _ = try await AuroraClusters(client: rdsClient).describe("omni-pitr") }

        let snapshotText = try local("builtin:aws-restore-drill")
        let none = try await RunbookDrill(repository: try await repo.reopen(), executor: executor).run(scenario: .pointInTime,
            runbook: try Runbook(yaml: snapshotText), text: snapshotText,
            vars: ["region": "eu-west-1", "db_cluster": "omni", "drill_cluster": "omni-snap", "db_port": String(pg.port),
                   "db_user": pg.cluster.superuser],
            objectives: DrillScenario.pointInTime.defaultObjectives)
        #expect(!none.passed && none.rpoSeconds == nil && none.rpoMet == false)
        #expect(none.checks.contains { $0.name == "RPO measured" && !$0.passed })
        let history = try await DrillHistory.all(try await repo.reopen())
        #expect(history.count == 2 && history.allSatisfy { $0.scenario == .pointInTime })
        try await pg.stop()
    }
}

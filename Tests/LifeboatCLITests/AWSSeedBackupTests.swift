import Crypto
import Foundation
import LifeboatAWS
import LifeboatAWSCore
import LifeboatCore
import LifeboatPostgres
import LifeboatRunbooks
import LifeboatTesting
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The seed's AWS backup procedures through the binary (`lifeboat aws ...`), against moto behind the
/// strict proxy, each effect read back with an AWS API call. Every test has its own region: moto's
/// state is shared by the test process.
@Suite(.serialized) struct AWSSeedBackupTests {
    static let ecsPrefix = "AmazonEC2ContainerServiceV20141113."
    static let ecrPrefix = "AmazonEC2ContainerRegistry_V20150921."

    struct Setup {
        let sandbox: TestSandbox
        let endpoint: String
        let region: String
        let repo: TestRepository
        var account: AWSAccountOverrides { AWSAccountOverrides(region: region, endpoint: endpoint, accessKeyID: MotoServer.accessKey, secretAccessKey: MotoServer.secretKey) }
        /// The binary sees no AWS_* variables: everything comes from the configuration file.
        var env: [String: String] { ["AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_ENDPOINT_URL": "", "HOME": sandbox.root] }

        func run(_ args: [String], config: String? = nil) async throws -> CommandResult {
            try await LifeboatCLI.run(["aws"] + args + ["--config", config ?? repo.configFile], environment: env)
        }

        func client(_ service: AWSService, region: String? = nil) throws -> AWSClient {
            let c = try AWSClient(service, overrides: account)
            return try region.map { try c.inRegion($0) } ?? c
        }
    }

    /// A repository whose configuration has an `aws:` section for `region` with `deployment` under it.
    func setup(_ name: String, region: String, deployment: String, endpoint: String? = nil) async throws -> Setup {
        let sandbox = try TestSandbox("aws-\(name)")
        var url = endpoint ?? ""
        if endpoint == nil { url = try await StrictAWS.shared.url().absoluteString }
        let repo = try await TestRepository.make(in: sandbox, extraConfig: """
            aws:
              endpoint: \(url)
              region: \(region)
              access_key_id: \(MotoServer.accessKey)
              secret_access_key: \(MotoServer.secretKey)
            \(deployment.split(separator: "\n", omittingEmptySubsequences: false).map { "  " + $0 }.joined(separator: "\n"))

            """)
        return Setup(sandbox: sandbox, endpoint: url, region: region, repo: repo)
    }

    func createCluster(_ rds: AWSClient, _ name: String, retention: Int = 7, window: String = "03:00-04:00") async throws {
        _ = try await rds.query("CreateDBCluster", version: "2014-10-31", [("DBClusterIdentifier", name), ("Engine", "aurora-postgresql"),
            ("MasterUsername", "postgres"), ("MasterUserPassword", "a-long-password"), ("BackupRetentionPeriod", String(retention)),
            ("PreferredBackupWindow", window)])
        _ = try await AuroraClusters(client: rds).waitAvailable(name, timeout: 30, poll: 0.3)
    }

    func snapshots(_ rds: AWSClient, _ cluster: String) async throws -> [String: AuroraSnapshot] {
        Dictionary(uniqueKeysWithValues: try await AuroraClusters(client: rds).manualSnapshots(of: cluster).map { ($0.identifier, $0) })
    }

    /// Backup settings drift reported and fixed; tagged manual snapshots taken, copied to the second
    /// region under its key, and expired by age only when Lifeboat's policy owns them.
    @Test func snapshotLifecycleIsOwnedByTag() async throws {
        let kms2 = try AWSClient(.kms, overrides: MotoServer.overrides(try await StrictAWS.shared.url(), region: "sa-east-1"))
        let key = try #require(((try await kms2.json("TrentService.CreateKey", ["Description": "second region"]))["KeyMetadata"] as? [String: Any])?["Arn"] as? String)
        let s = try await setup("snapshots", region: "ca-central-1", deployment: """
            second_region: sa-east-1
            second_region_kms_key: \(key)
            aurora:
              cluster: prod
              snapshot_retention: 30d
            """)
        defer { Task { await s.sandbox.remove() } }
        let rds = try s.client(.rds)
        try await createCluster(rds, "prod", retention: 1, window: "05:00-06:00")

        // Drift: reported with exit 15 (an objective missed), fixed only when asked, read back from RDS.
        let drift = try await s.run(["check"])
        #expect(drift.status == 15, "\(drift.output)\(drift.errors)")
        #expect(drift.output.contains("backup retention is 1 days, expected 7 days") && drift.output.contains("backup window is 05:00-06:00, expected 03:00-04:00"),
            "\(drift.output)")
        let fixed = try await s.run(["check", "--fix", "--yes"])
        #expect(fixed.status == 0, "\(fixed.output)\(fixed.errors)")
        let after = try await AuroraClusters(client: rds).describe("prod")
        #expect(after.backupRetentionDays == 7 && after.preferredBackupWindow == "03:00-04:00")

        // A snapshot before a migration: tagged, waited for.
        let pre = try await s.run(["snapshot", "--purpose", "pre-migration", "--poll", "0.2s"])
        #expect(pre.status == 0, "\(pre.output)\(pre.errors)")
        var all = try await snapshots(rds, "prod")
        let ours = try #require(all.values.first { $0.tags["Purpose"] == "pre-migration" })
        #expect(ours.status == "available" && ours.tags["CreatedBy"] == "lifeboat" && ours.tags["lifeboat-policy"] == "snapshot-retention"
            && ours.tags["lifeboat-retention-days"] == "30")

        // The weekly one, copied to the second region under that region's key.
        let weekly = try await s.run(["snapshot", "--purpose", "weekly", "--copy", "--poll", "0.2s"])
        #expect(weekly.status == 0, "\(weekly.output)\(weekly.errors)")
        all = try await snapshots(rds, "prod")
        let weeklyID = try #require(all.values.first { $0.tags["Purpose"] == "weekly" }?.identifier)
        let copyAnswer = try await s.client(.rds, region: "sa-east-1").query("DescribeDBClusterSnapshots", version: "2014-10-31",
            [("DBClusterSnapshotIdentifier", weeklyID)])
        #expect(copyAnswer.first("DBClusterSnapshot")?.child("KmsKeyId") == key, "the copy is under the second region's key")

        // Someone else's manual snapshot, and one of ours kept forever; all made to look 40 days old.
        _ = try await AuroraClusters(client: rds).createSnapshot(cluster: "prod", snapshot: "theirs-before-upgrade", tags: ["Purpose": "manual"])
        _ = try await AuroraClusters(client: rds).createSnapshot(cluster: "prod", snapshot: "ours-forever",
            tags: AuroraClusters.snapshotTags(purpose: "audit", retentionDays: 0))
        for id in [weeklyID, "theirs-before-upgrade", "ours-forever"] { try await StrictAWS.shared.control(["age_snapshot": ["id": id, "days": 40]], region: s.region) }

        let dry = try await s.run(["expire-snapshots", "--dry-run"])
        #expect(dry.status == 0, "\(dry.output)\(dry.errors)")
        #expect(dry.output.contains("ca-central-1: would expire \(weeklyID)"), "\(dry.output)")
        #expect(dry.output.contains("keep theirs-before-upgrade: not Lifeboat's"), "\(dry.output)")
        #expect(try await snapshots(rds, "prod").count == 4, "a dry run deletes nothing")

        let refused = try await LifeboatCLI.run(["aws", "expire-snapshots", "--config", s.repo.configFile], environment: s.env)
        #expect(refused.status != 0 && refused.errors.contains("not confirmed"), "no deletion without confirmation: \(refused.errors)")
        let expired = try await s.run(["expire-snapshots", "--yes"])
        #expect(expired.status == 0, "\(expired.output)\(expired.errors)")
        let left = try await snapshots(rds, "prod")
        #expect(Set(left.keys) == [ours.identifier, "theirs-before-upgrade", "ours-forever"], "only the aged snapshot Lifeboat owns is gone: \(left.keys)")
        #expect(try await AuroraClusters(client: rds).describe("prod").status == "available", "production untouched")
    }

    /// The ECR lifecycle rule applied and checked; every ACTIVE task definition revision exported into
    /// the repository (deduplicated), listed by `info`, and registered back from it.
    @Test func ecrLifecycleAndTaskDefinitionsRoundTrip() async throws {
        let s = try await setup("ecs", region: "ap-northeast-3", deployment: """
            ecs:
              cluster: prod
            ecr:
              repositories: [api, web]
              keep_images: 20
            """)
        defer { Task { await s.sandbox.remove() } }
        let ecr = try s.client(.ecr)
        for r in ["api", "web"] { _ = try await ecr.json(Self.ecrPrefix + "CreateRepository", ["repositoryName": r]) }
        _ = try await ContainerRegistry(client: ecr).applyKeepLast("web", keep: 50)
        let drift = try await s.run(["check"])
        #expect(drift.status == 15 && drift.output.contains("api: no lifecycle policy") && drift.output.contains("web: the lifecycle policy keeps the last 50 images"),
            "\(drift.output)\(drift.errors)")
        let applied = try await s.run(["ecr-lifecycle", "--yes"])
        #expect(applied.status == 0, "\(applied.output)\(applied.errors)")
        for r in ["api", "web"] {
            let text = try #require(try await ContainerRegistry(client: ecr).lifecyclePolicy(r))
            let rule = try #require(((try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])?["rules"] as? [[String: Any]])?.first)
            #expect((rule["selection"] as? [String: Any])?["countNumber"] as? Int == 20 && (rule["action"] as? [String: Any])?["type"] as? String == "expire")
        }
        #expect(try await s.run(["check"]).status == 0)

        let ecs = try s.client(.ecs)
        for image in ["app:1", "app:2", "app:3"] {
            _ = try await ecs.json(Self.ecsPrefix + "RegisterTaskDefinition", ["family": "app", "containerDefinitions": [[
                "name": "app", "image": image, "memory": 256, "environment": [["name": "DB_HOST", "value": "prod.cluster"]]]]])
        }
        _ = try await ecs.json(Self.ecsPrefix + "RegisterTaskDefinition", ["family": "worker", "containerDefinitions": [["name": "w", "image": "w:1", "memory": 128]]])
        _ = try await ecs.json(Self.ecsPrefix + "DeregisterTaskDefinition", ["taskDefinition": "app:1"])

        let export = try await s.run(["export-task-definitions"])
        #expect(export.status == 0 && export.output.contains("3 task definition revision(s) of 2 families"), "\(export.output)\(export.errors)")
        let again = try await s.run(["export-task-definitions"])
        #expect(again.status == 0 && again.output.contains("(0 new)"), "an unchanged export stores no document again: \(again.output)")
        let artifacts = try await s.repo.reopen().artifacts(kind: "ecs-task-definitions")
        #expect(artifacts.count == 2 && Set(artifacts[0].items.map(\.name)) == ["app:2.json", "app:3.json", "worker:1.json"], "\(artifacts)")
        let info = try await LifeboatCLI.run(["info", "--config", s.repo.configFile], environment: s.env)
        #expect(info.output.contains("ecs-task-definitions: 2"), "\(info.output)")
        // Nothing readable in the repository's files: they are encrypted.
        let raw = try FileManager.default.subpathsOfDirectory(atPath: s.repo.path).compactMap { FileManager.default.contents(atPath: s.repo.path + "/" + $0) }
        #expect(!raw.contains { String(decoding: $0, as: UTF8.self).contains("prod.cluster") })

        // app:3 lost (deregistered): registered back from the repository as a new revision, same content.
        _ = try await ecs.json(Self.ecsPrefix + "DeregisterTaskDefinition", ["taskDefinition": "app:3"])
        let back = try await s.run(["register-task-definition", "app:3"])
        #expect(back.status == 0 && back.output.contains("task-definition/app:4"), "\(back.output)\(back.errors)")
        let restored = try await ecs.json(Self.ecsPrefix + "DescribeTaskDefinition", ["taskDefinition": "app:4"])
        let container = try #require(((restored["taskDefinition"] as? [String: Any])?["containerDefinitions"] as? [[String: Any]])?.first)
        #expect(container["image"] as? String == "app:3")
        #expect((container["environment"] as? [[String: Any]])?.first?["value"] as? String == "prod.cluster")
        let missing = try await s.run(["register-task-definition", "app:9"])
        #expect(missing.status == 6 && missing.errors.contains("it holds: app:2, app:3, worker:1"), "\(missing.errors)")

        // verify checks the artifacts too: a lost document is reported against its artifact.
        let clean = try await LifeboatCLI.run(["verify", "--config", s.repo.configFile], environment: s.env)
        #expect(clean.status == 0, "\(clean.output)\(clean.errors)")
        let blob = try #require(artifacts[0].items.first { $0.name == "worker:1.json" }?.blob)
        try FileManager.default.removeItem(atPath: s.repo.path + "/records/artifact-blob/" + blob)
        let broken = try await LifeboatCLI.run(["verify", "--config", s.repo.configFile], environment: s.env)
        #expect(broken.status != 0 && (broken.output + broken.errors).contains("misses 1 document(s), first: worker:1.json"), "\(broken.output)\(broken.errors)")
    }

    /// The Terraform state into the repository and to a bucket with SSE-KMS; versioning of the state
    /// bucket checked; the state written back from the repository, never over an existing file.
    @Test func terraformStateIsKeptEncryptedTwice() async throws {
        let kms = try AWSClient(.kms, overrides: MotoServer.overrides(try await StrictAWS.shared.url(), region: "eu-west-3"))
        let key = try #require(((try await kms.json("TrentService.CreateKey", ["Description": "state"]))["KeyMetadata"] as? [String: Any])?["KeyId"] as? String)
        let s = try await setup("state", region: "eu-west-3", deployment: """
            terraform:
              state: s3://tfstate-lifeboat-test/production/terraform.tfstate
              backup_bucket: tfstate-backup-lifeboat-test
              kms_key: \(key)
            """)
        defer { Task { await s.sandbox.remove() } }
        let state = try S3Client(try S3Bucket.resolve(url: "s3://tfstate-lifeboat-test/", overrides: s.account).bucket)
        let backup = try S3Client(try S3Bucket.resolve(url: "s3://tfstate-backup-lifeboat-test/", overrides: s.account).bucket)
        try await state.createBucket()
        let content = Data(#"{"version": 4, "serial": 17, "lineage": "abc", "resources": [{"type": "aws_vpc", "name": "main"}]}"#.utf8)
        try await state.put("production/terraform.tfstate", data: content)

        let missingBucket = try await s.run(["backup-state"])
        #expect(missingBucket.status != 0 && missingBucket.errors.contains("NoSuchBucket"), "a missing backup bucket fails clearly: \(missingBucket.output)\(missingBucket.errors)")
        try await backup.createBucket()

        let unversioned = try await s.run(["check"])
        #expect(unversioned.status == 15 && unversioned.output.contains("does not keep versions"), "\(unversioned.output)")
        try await state.setVersioning(true)
        #expect(try await s.run(["check"]).status == 0)

        let done = try await s.run(["backup-state"])
        #expect(done.status == 0 && done.output.contains("serial 17") && done.output.contains("with SSE-KMS"), "\(done.output)\(done.errors)")
        let copies = try await backup.listPage(prefix: "terraform-state/", continuation: nil).objects
        #expect(copies.count == 1)
        let copy = try await backup.get(try #require(copies.first?.key))
        #expect(copy.body == content)
        #expect(copy.headers["x-amz-server-side-encryption"] == "aws:kms")
        #expect(copy.headers["x-amz-server-side-encryption-aws-kms-key-id"]?.hasSuffix(key) == true, "\(copy.headers)")

        let out = s.sandbox.path("restored.tfstate")
        let get = try await s.run(["artifact-get", "latest:terraform-state", "--output", out])
        #expect(get.status == 0 && FileManager.default.contents(atPath: out) == content, "\(get.errors)")
        let over = try await s.run(["artifact-get", "latest:terraform-state", "--output", out])
        #expect(over.status == 9 && over.errors.contains("refusing to overwrite"))

        // A state that is not one is refused before anything is stored.
        try await state.put("production/terraform.tfstate", data: Data("<html>oops</html>".utf8))
        let bad = try await s.run(["backup-state"])
        #expect(bad.status == 5 && bad.errors.contains("not a state file"), "\(bad.errors)")
        // Two kept: the one stored before the backup bucket was found missing (the command failed),
        // and the complete one; both hold the one document, stored once.
        let kept = try await s.repo.reopen().artifacts(kind: "terraform-state")
        #expect(kept.count == 2 && Set(kept.flatMap(\.items).map(\.blob)).count == 1)
    }

    /// Secret metadata exported daily (never a value), a vanished or doomed secret reported; the
    /// seed's recovery: restore within the window, or create anew and set the master password.
    @Test func secretsAreInventoriedAndRecoveredWithoutShowingValues() async throws {
        let s = try await setup("secrets", region: "eu-south-1", deployment: """
            aurora:
              cluster: prod
            second_region: eu-south-2
            secrets:
              prefixes: [prod/]
            """)
        defer { Task { await s.sandbox.remove() } }
        let rds = try s.client(.rds)
        try await createCluster(rds, "prod")
        let sm = try s.client(.secretsManager)
        let values = ["prod/db/master": "Original-Master-Password-1", "prod/api/key": "Api-Key-Value-XYZ", "other/thing": "Not-Ours-Value"]
        for (name, value) in values { _ = try await sm.json("secretsmanager.CreateSecret", ["Name": name, "SecretString": value]) }

        let first = try await s.run(["export-secrets"])
        #expect(first.status == 0 && first.output.contains("metadata of 2 secret(s)"), "\(first.output)\(first.errors)")
        let record = try #require(try await s.repo.reopen().artifacts(kind: "secrets-metadata").last)
        let doc = try await s.repo.reopen().artifactContent(try #require(record.items.first))
        let names = (try JSONSerialization.jsonObject(with: doc) as? [[String: Any]])?.compactMap { $0["name"] as? String }
        #expect(names == ["prod/api/key", "prod/db/master"])

        _ = try await sm.json("secretsmanager.DeleteSecret", ["SecretId": "prod/api/key", "ForceDeleteWithoutRecovery": true])
        _ = try await sm.json("secretsmanager.DeleteSecret", ["SecretId": "prod/db/master", "RecoveryWindowInDays": 7])
        let second = try await s.run(["export-secrets"])
        #expect(second.status == 15, "\(second.output)")
        #expect(second.output.contains("secret prod/api/key existed at the previous export"), "\(second.output)")
        #expect(second.output.contains("secret prod/db/master is scheduled for deletion"), "\(second.output)")

        // Within its window: restored, value as it was.
        let restore = try await s.run(["recover-secret", "prod/db/master"])
        #expect(restore.status == 0 && restore.output.contains("restored"), "\(restore.output)\(restore.errors)")
        #expect(try await SecretsManager(client: sm).value("prod/db/master") == values["prod/db/master"])

        // Gone for good: created anew with a generated value, the master password set to it.
        let refused = try await LifeboatCLI.run(["aws", "recover-secret", "prod/api/key", "--set-master-password", "--config", s.repo.configFile],
            environment: s.env)
        #expect(refused.status != 0 && refused.errors.contains("not confirmed"), "\(refused.errors)")
        let recreate = try await s.run(["recover-secret", "prod/api/key", "--set-master-password", "--yes"])
        #expect(recreate.status == 0 && recreate.output.contains("created anew") && recreate.output.contains("master password of prod set"),
            "\(recreate.output)\(recreate.errors)")
        let newValue = try await SecretsManager(client: sm).value("prod/api/key")
        #expect(newValue.count == 32 && newValue != values["prod/api/key"])
        #expect(try await StrictAWS.shared.masterPasswordDigest("prod", region: s.region) == SHA256Hex.of(newValue), "Aurora's master password is the new secret's value")

        // Everything the section configures at once: the check and the export, both clean now.
        let all = try await s.run(["backup"])
        #expect(all.status == 0, "\(all.output)\(all.errors)")
        #expect(all.output.contains("check: prod: automated backups kept 7 days") && all.output.contains("secrets: metadata of 2 secret(s)"), "\(all.output)")

        // No value anywhere in what the commands printed or stored in clear.
        let printed = [first, second, restore, recreate, all].map { $0.output + $0.errors }.joined()
        for v in Array(values.values) + [newValue] { #expect(!printed.contains(v)) }
    }

    /// CloudWatch Logs exports, one task at a time as AWS allows, polled to completion, written under
    /// `<prefix>/<group>/YYYY/MM`; a missing bucket fails clearly.
    @Test func logGroupsAreExportedOneTaskAtATime() async throws {
        let s = try await setup("logs", region: "us-west-1", deployment: """
            logs:
              groups: [/ecs/api, /ecs/web]
              bucket: logs-archive-lifeboat-test
              prefix: logs
            """)
        defer { Task { await s.sandbox.remove() } }
        let logs = try s.client(.logs)
        let now = Date()
        for group in ["/ecs/api", "/ecs/web"] {
            _ = try await logs.json("Logs_20140328.CreateLogGroup", ["logGroupName": group])
            _ = try await logs.json("Logs_20140328.CreateLogStream", ["logGroupName": group, "logStreamName": "task-1"])
            _ = try await logs.json("Logs_20140328.PutLogEvents", ["logGroupName": group, "logStreamName": "task-1",
                "logEvents": [["timestamp": Int64(now.timeIntervalSince1970 * 1000) - 3_600_000, "message": "hello from \(group)"]]])
        }
        let from = Timestamp.format(now.addingTimeInterval(-7200))
        let to = Timestamp.format(now)
        let noBucket = try await s.run(["export-logs", "--from", from, "--to", to, "--poll", "0.2s"])
        #expect(noBucket.status != 0 && noBucket.errors.contains("bucket"), "\(noBucket.output)\(noBucket.errors)")

        let archive = try S3Client(try S3Bucket.resolve(url: "s3://logs-archive-lifeboat-test/", overrides: s.account).bucket)
        try await archive.createBucket()
        // Someone else's export is running: AWS allows one per account and region, so Lifeboat waits.
        // The clock starts before it is created: it finishes creatingSeconds after its creation, and a
        // loaded machine may spend part of that before Lifeboat even starts.
        let started = Date()
        let foreign = try #require(try await logs.json("Logs_20140328.CreateExportTask", ["logGroupName": "/ecs/api",
            "from": Int64(now.timeIntervalSince1970 * 1000) - 7_200_000, "to": Int64(now.timeIntervalSince1970 * 1000),
            "destination": "logs-archive-lifeboat-test", "destinationPrefix": "other"])["taskId"] as? String)
        await #expect {
            _ = try await logs.json("Logs_20140328.CreateExportTask", ["logGroupName": "/ecs/web", "from": 0, "to": 1,
                "destination": "logs-archive-lifeboat-test", "destinationPrefix": "other"])
        } throws: { ($0 as? LifeboatError)?.awsCode == .limitExceeded }
        let run = try await s.run(["export-logs", "--from", from, "--to", to, "--poll", "0.2s"])
        #expect(run.status == 0, "\(run.output)\(run.errors)")
        #expect(run.errors.contains("waiting for export task \(foreign) to finish (one export at a time)"), "\(run.errors)")
        #expect(Date().timeIntervalSince(started) >= 3 * StrictAWS.creatingSeconds - 0.5, "the foreign task, then each of ours, ran to completion in turn")
        let month = String(from.prefix(7)).replacingOccurrences(of: "-", with: "/")
        for group in ["ecs/api", "ecs/web"] {
            let objects = try await archive.listPage(prefix: "logs/\(group)/\(month)/", continuation: nil).objects
            #expect(!objects.isEmpty, "events of /\(group) are in s3://logs-archive-lifeboat-test/logs/\(group)/\(month)/")
        }
        let ids = run.output.split(separator: "\n").compactMap { line in line.range(of: "(task ").map { String(line[$0.upperBound...].dropLast()) } }
        #expect(ids.count == 2)
        for id in ids { #expect(try await LogExports(client: logs).status(id).code == "COMPLETED") }
    }

    /// AWS Config's snapshot: moto lacks DeliverConfigSnapshot, so the call fails clearly against it;
    /// against the proxy's stand-in for that one call, the delivery channel is checked.
    @Test func configSnapshotIsDeliveredOrFailsClearly() async throws {
        let strict = try await setup("config", region: "eu-central-2", deployment: "config:\n  delivery_channel: default")
        defer { Task { await strict.sandbox.remove() } }
        let config = try strict.client(.config)
        let missing = try await strict.run(["config-snapshot"])
        #expect(missing.status == 6 && missing.errors.contains("no delivery channel default"), "\(missing.output)\(missing.errors)")
        let s3 = try S3Client(try S3Bucket.resolve(url: "s3://config-lifeboat-test/", overrides: strict.account).bucket)
        try await s3.createBucket()
        _ = try await config.json("StarlingDoveService.PutConfigurationRecorder", ["ConfigurationRecorder": ["name": "default",
            "roleARN": "arn:aws:iam::123456789012:role/config"]])
        _ = try await config.json("StarlingDoveService.PutDeliveryChannel", ["DeliveryChannel": ["name": "default", "s3BucketName": "config-lifeboat-test"]])
        let delivered = try await strict.run(["config-snapshot"])
        #expect(delivered.status == 0 && delivered.output.contains("AWS Config snapshot"), "\(delivered.output)\(delivered.errors)")

        let bare = try await setup("config-moto", region: "eu-central-2", deployment: "config:\n  delivery_channel: default",
            endpoint: try await MotoServer.shared.url().absoluteString)
        defer { Task { await bare.sandbox.remove() } }
        let unsupported = try await bare.run(["config-snapshot"])
        #expect(unsupported.status == 13 && unsupported.errors.contains("does not implement AWS Config's DeliverConfigSnapshot"), "\(unsupported.errors)")
    }

    /// AccessDenied is reported at once with a hint; throttling is retried and the job completes.
    @Test func accessDeniedAndThrottling() async throws {
        let s = try await setup("faults", region: "me-south-1", deployment: "aurora:\n  cluster: prod\nsecond_region: me-central-1\nsecrets:\n  prefixes: [prod/]")
        defer { Task { await s.sandbox.remove() } }
        try await createCluster(try s.client(.rds), "prod")
        try await StrictAWS.shared.control(["fault": ["action": "ListSecrets", "code": "AccessDeniedException", "status": 400, "times": 1,
            "message": "User is not authorized to perform: secretsmanager:ListSecrets"]], region: s.region)
        let denied = try await s.run(["export-secrets"])
        #expect(denied.status == 13 && denied.errors.contains("AccessDeniedException") && denied.errors.contains("secretsmanager:ListSecrets"), "\(denied.errors)")
        #expect(try await s.repo.reopen().artifacts().isEmpty, "nothing half-stored")

        try await StrictAWS.shared.control(["fault": ["action": "DescribeDBClusters", "code": "Throttling", "status": 400, "times": 2,
            "message": "Rate exceeded"]], region: s.region)
        let throttled = try await s.run(["check"])
        #expect(throttled.status == 0, "throttling is retried: \(throttled.output)\(throttled.errors)")
    }

    func get(_ url: String) async -> (status: Int, body: String)? {
        guard let u = URL(string: url), let (data, response) = try? await URLSession.shared.data(from: u) else { return nil }
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    /// `serve` runs the AWS jobs the `aws:` section configures: drift fails `aws.check` (in the job
    /// table, /metrics and /healthz) until it is fixed; the weekly snapshot and the exports run and
    /// are not repeated before they are due.
    @Test func serveSchedulesTheAWSJobs() async throws {
        let port = TestSandbox.freePort()
        // The monthly Aurora drill: the built-in point-in-time drill, verifying against a local
        // PostgreSQL (a moto endpoint is no database).
        let db = try TestSandbox("aws-serve-db")
        defer { Task { await db.remove() } }
        let pg = try await TestPostgres.start(in: db, archiveTo: nil)
        _ = try await pg.query("CREATE TABLE accounts AS SELECT generate_series(1, 10) AS id")
        let shown = try await LifeboatCLI.run(["runbook", "show", "builtin:aws-pitr-drill"])
        let drillBook = try db.file("pitr-drill.yaml", shown.output
            .replacingOccurrences(of: "host: \"${steps.restore.endpoint}\"", with: "host: \"\(pg.cluster.socketDirectory)\"")
            .replacingOccurrences(of: "retries: 20", with: "retries: 1").replacingOccurrences(of: "retry_delay: 15s", with: "retry_delay: 0.2s"))
        let s = try await setup("serve", region: "ap-southeast-3", deployment: """
            second_region: ap-southeast-4
            aurora:
              cluster: prod
            ecs:
              cluster: prod
            secrets:
              prefixes: [prod/]
            schedule:
              check: 1s
              drill: 30d
            drill:
              runbook: \(drillBook)
              vars: { db_port: "\(pg.port)", db_user: \(pg.cluster.superuser), verify_sql: "SELECT count(*) FROM accounts", subnet_group: "" }
            """)
        defer { Task { await s.sandbox.remove() } }
        let config = s.sandbox.path("serve.yaml")
        let text = try String(contentsOfFile: s.repo.configFile, encoding: .utf8) + """
            serve:
              listen: 127.0.0.1:\(port)
              backup_every: "off"
              verify_every: "off"
              retry_after: 1s
              tick: 0.2s
              state_file: \(s.sandbox.path("state/serve.json"))

            """
        try text.write(toFile: config, atomically: true, encoding: .utf8)
        let rds = try s.client(.rds)
        try await createCluster(rds, "prod", retention: 3)
        _ = try await s.client(.ecs).json(Self.ecsPrefix + "RegisterTaskDefinition", ["family": "app", "containerDefinitions": [["name": "a", "image": "a:1", "memory": 64]]])
        _ = try await s.client(.secretsManager).json("secretsmanager.CreateSecret", ["Name": "prod/db", "SecretString": "Serve-Test-Value-1"])

        let once = try await LifeboatCLI.run(["serve", "--once", "--config", config], environment: s.env, timeout: 300)
        #expect(once.status == 15, "the drift fails the run: \(once.output)\(once.errors)")
        #expect(once.output.contains("aws.check: FAILED") && once.output.contains("backup retention is 3 days, expected 7 days"), "\(once.output)")
        for job in ["aws.snapshot", "aws.expire-snapshots", "aws.task-definitions", "aws.secrets", "aws.drill"] {
            #expect(once.output.contains("\(job): ok"), "\(job): \(once.output)")
        }
        let drills = try await DrillHistory.all(try await s.repo.reopen())
        #expect(drills.count == 1 && drills.first?.scenario == .pointInTime && drills.first?.passed == true)
        #expect(drills.first?.rpoSeconds != nil && drills.first?.rpoMet == true, "the Aurora drill's RPO is measured")
        #expect(await !AuroraClusterExists.check(rds, "omnirapeutic-production-pitr-drill"), "the drill cluster is gone")
        #expect(try await snapshots(rds, "prod").values.contains { $0.tags["Purpose"] == "weekly" })
        #expect(try await s.repo.reopen().artifacts().map(\.kind).sorted() == ["ecs-task-definitions", "secrets-metadata"])

        try await AuroraClusters(client: rds).setBackupSettings("prod", retentionDays: 7, window: "03:00-04:00")
        let daemon = try CommandRunner.spawn(TestSandbox.lifeboatBinary, ["serve", "--config", config], environment: s.env,
            outputPath: s.sandbox.path("serve.log"))
        defer { daemon.signal(SIGTERM) }
        var metrics = ""
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, daemon.poll() == nil {
            if let m = await get("http://127.0.0.1:\(port)/metrics"), m.body.contains("lifeboat_job_last_success{job=\"aws.check\"} 1.0") {
                metrics = m.body
                break
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        let log = (try? String(contentsOfFile: s.sandbox.path("serve.log"), encoding: .utf8)) ?? ""
        #expect(metrics.contains("lifeboat_job_last_success{job=\"aws.check\"} 1.0"), "fixed drift passes the next check: \(log)")
        #expect(metrics.contains("lifeboat_job_failures_total{job=\"aws.check\"} 1"), "\(metrics)")
        #expect(metrics.contains("lifeboat_job_runs_total{job=\"aws.snapshot\"} 1"), "the weekly snapshot is not taken again: \(metrics)")
        let health = await get("http://127.0.0.1:\(port)/healthz")
        #expect(health?.body.contains("aws.") == false, "no AWS job is failing any more: \(String(describing: health))")
        let page = await get("http://127.0.0.1:\(port)/")
        #expect(page?.body.contains("aws.task-definitions") == true)
        daemon.signal(SIGTERM)
        #expect(try await daemon.wait(timeout: 20) == 0, "\(log)")
        #expect(try await snapshots(rds, "prod").values.filter { $0.tags["Purpose"] == "weekly" }.count == 1)
    }
}

enum AuroraClusterExists {
    static func check(_ rds: AWSClient, _ name: String) async -> Bool { (try? await AuroraClusters(client: rds).describe(name)) != nil }
}

/// SHA-256 in hex, as the strict proxy reports the master password it saw.
enum SHA256Hex {
    static func of(_ text: String) -> String {
        SHA256.hash(data: Data(text.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}

import Foundation
import LifeboatAWS
import LifeboatAWSCore
import LifeboatCore
import LifeboatPostgres
import LifeboatRunbooks
import LifeboatTesting
import Testing

/// Terraform with the hashicorp/aws provider from the image's local mirror; the test says so when
/// either is missing (Debian has no Terraform package, so a CI machine may lack it).
enum Terraform {
    static let mirror = "/opt/tf-plugins"
    static var available: Bool {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map { "\($0)/terraform" }
        return path.contains { FileManager.default.isExecutableFile(atPath: $0) }
            && FileManager.default.fileExists(atPath: mirror + "/registry.terraform.io/hashicorp/aws")
    }
}

/// Scenario 4 for real: Terraform state in a versioned bucket, `terraform destroy` by accident, and
/// the built-in runbook bringing it back. The recreated security group has a new id; the database
/// is restored into that one (read with `terraform output` after the apply), not the destroyed one.
@Suite(.serialized) struct TerraformDestroyTests {
    @Test(.enabled(if: Terraform.available, "needs terraform on PATH and the hashicorp/aws provider in /opt/tf-plugins"))
    func anAccidentalDestroyIsUndoneAndTheDatabaseLandsInTheNewGroup() async throws {
        let sandbox = try TestSandbox("tf-destroy")
        defer { Task { await sandbox.remove() } }
        let endpoint = try await StrictAWS.shared.url().absoluteString
        let explicit = MotoServer.overrides(URL(string: endpoint) ?? URL(fileURLWithPath: "/"), region: "us-east-2")
        let bucket = "tfstate-\(UUID().uuidString.prefix(8).lowercased())"
        let s3 = try S3Client(try S3Bucket.resolve(url: "s3://\(bucket)", overrides: explicit, environment: [:]).bucket)
        try await s3.createBucket()
        try await s3.setVersioning(true)

        // The database and its snapshot, the subnet group the runbook names.
        let rds = try AWSClient(.rds, overrides: explicit)
        let ec2 = try AWSClient(.ec2, overrides: explicit)
        let vpc = try #require(try await ec2.query("CreateVpc", version: "2016-11-15", [("CidrBlock", "10.2.0.0/16")]).text("vpcId"))
        let subnet = try #require(try await ec2.query("CreateSubnet", version: "2016-11-15",
            [("VpcId", vpc), ("CidrBlock", "10.2.1.0/24"), ("AvailabilityZone", "us-east-2a")]).text("subnetId"))
        _ = try await rds.query("CreateDBSubnetGroup", version: "2014-10-31", [("DBSubnetGroupName", "omnirapeutic-production-aurora-subnet-group"),
            ("DBSubnetGroupDescription", "aurora"), ("SubnetIds.SubnetIdentifier.1", subnet)])
        _ = try await rds.query("CreateDBCluster", version: "2014-10-31", [("DBClusterIdentifier", "omni"), ("Engine", "aurora-postgresql"),
            ("MasterUsername", "postgres"), ("MasterUserPassword", "a-long-password")])
        let aurora = AuroraClusters(client: rds)
        _ = try await aurora.waitAvailable("omni", timeout: 30, poll: 0.3)
        _ = try await aurora.createSnapshot(cluster: "omni", snapshot: "omni-nightly", tags: [:])

        // The Terraform configuration: a security group, its id as an output, state in the bucket.
        let tf = try sandbox.directory("infra")
        let cli = try sandbox.file("terraform.rc", """
            provider_installation {
              filesystem_mirror {
                path    = "\(Terraform.mirror)"
                include = ["registry.terraform.io/*/*"]
              }
              direct { exclude = ["registry.terraform.io/*/*"] }
            }
            """)
        try sandbox.file("infra/main.tf", """
            terraform {
              backend "s3" {
                bucket = "\(bucket)"
                key = "production/terraform.tfstate"
                region = "us-east-2"
                endpoints = { s3 = "\(endpoint)" }
                use_path_style = true
                skip_credentials_validation = true
                skip_region_validation = true
                skip_requesting_account_id = true
                skip_s3_checksum = true
                access_key = "\(MotoServer.accessKey)"
                secret_key = "\(MotoServer.secretKey)"
              }
            }
            provider "aws" {
              region = "us-east-2"
              access_key = "\(MotoServer.accessKey)"
              secret_key = "\(MotoServer.secretKey)"
              skip_credentials_validation = true
              skip_requesting_account_id = true
              skip_metadata_api_check = true
              endpoints {
                ec2 = "\(endpoint)"
                sts = "\(endpoint)"
              }
            }
            resource "aws_security_group" "aurora" {
              name        = "aurora"
              description = "aurora"
              vpc_id      = "\(vpc)"
            }
            output "aurora_security_group_id" { value = aws_security_group.aurora.id }
            """)
        setenv("TF_CLI_CONFIG_FILE", cli, 1)
        setenv("TF_IN_AUTOMATION", "1", 1)
        func terraform(_ args: String) async throws -> String {
            try await RunbookActionsForTests.sh("terraform -chdir=\(tf) \(args)")
        }
        _ = try await terraform("init -input=false -no-color")
        _ = try await terraform("apply -input=false -auto-approve -no-color")
        let original = try await terraform("output -raw aurora_security_group_id")
        try await Task.sleep(for: .milliseconds(1100))
        let beforeDestroy = Date()
        try await Task.sleep(for: .milliseconds(1100))
        _ = try await terraform("destroy -input=false -auto-approve -no-color")

        let pg = try await TestPostgres.start(in: sandbox, archiveTo: nil)
        _ = try await pg.query("CREATE TABLE accounts AS SELECT generate_series(1, 100) AS id")
        let text = try BuiltinRunbooks.load("builtin:terraform-destroy")
            .replacingOccurrences(of: "host: \"${steps.restore-database.endpoint}\"", with: "host: \"\(pg.cluster.socketDirectory)\"")
            .replacingOccurrences(of: "init -input=false", with: "init -input=false -no-color")
            .replacingOccurrences(of: "-out=lifeboat-recreate.plan", with: "-no-color -out=lifeboat-recreate.plan")
        let lines = LockedLines()
        let context = RunbookContext(repository: { throw LifeboatError(.invalidUsage, "no repository") }, production: PostgresEndpoint(),
            pgdata: nil, invocation: LifeboatInvocation(executable: "/bin/false"), aws: explicit, logger: TestSandbox.logger())
        let executor = RunbookExecutor(context: context, stateDirectory: sandbox.path("runs"),
            confirm: { q in lines.add("QUESTION " + q); return true }, output: { lines.add($0) })
        let result = try await executor.run(try Runbook(yaml: text), text: text, vars: [
            "region": "us-east-2", "state_url": "s3://\(bucket)/production/terraform.tfstate", "destroyed_at": Timestamp.format(beforeDestroy),
            "tf_dir": tf, "db_snapshot": "omni-nightly", "restored_cluster": "omni-restored", "db_port": String(pg.port),
            "db_user": pg.cluster.superuser, "verify_sql": "SELECT count(*) FROM accounts",
        ])
        #expect(result.status == .succeeded, "\(result.steps.map { "\($0.name) \($0.status) \($0.error ?? "")" })")
        let recreated = try #require(result.steps.first { $0.name == "terraform-outputs" }?.outputs["aurora_security_group_id"])
        #expect(recreated != original, "Terraform recreated the group with a new id")
        let restored = try await rds.query("DescribeDBClusters", version: "2014-10-31", [("DBClusterIdentifier", "omni-restored")])
        let groups = restored.all("VpcSecurityGroupId").map(\.value)
        #expect(groups == [recreated], "the database is in the group the apply made, not the destroyed \(original): \(groups)")
        // The plan was shown whole before its apply was asked for.
        let transcript = lines.all
        let planShown = transcript.firstIndex { $0.contains("Plan: 1 to add") }
        let applyAsked = transcript.firstIndex { $0.hasPrefix("QUESTION Apply the plan above") }
        #expect(planShown != nil && applyAsked != nil && (planShown ?? 0) < (applyAsked ?? 0), "\(transcript.suffix(40))")
        try await pg.stop()
    }
}

final class LockedLines: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func add(_ s: String) { lock.withLock { lines.append(s) } }
    var all: [String] { lock.withLock { lines } }
}

/// A shell for test setup, with the output the runbooks' shell action gives.
enum RunbookActionsForTests {
    static func sh(_ command: String) async throws -> String {
        let r = try await CommandRunner.runSeparately("/bin/sh", ["-c", command], check: false, timeout: 600)
        guard r.status == 0 else { throw LifeboatError(.externalCommand, "\(command) failed: \(r.output)\(r.errors)") }
        return r.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

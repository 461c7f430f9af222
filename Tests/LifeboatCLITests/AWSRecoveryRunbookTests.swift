import Foundation
import LifeboatAWS
import LifeboatAWSCore
import LifeboatCore
import LifeboatPostgres
import LifeboatTesting
import Testing

/// terraform on PATH (the network and ALB runbooks' repair is a `terraform apply -target`).
enum TerraformBinary {
    static var path: String? {
        (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map { "\($0)/terraform" }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }
    static var available: Bool { path != nil }
}

/// The seed's recoveries as built-in runbooks through the binary: a restored cluster promoted by
/// rename (run again after a stop half way, and undone) or by endpoint (new task definition
/// revisions, undone), the master password set from a secret, and the VPC and ALB scenarios
/// (diagnose, `terraform apply -target`, verify).
@Suite(.serialized) struct AWSRecoveryRunbookTests {
    static let ecsPrefix = "AmazonEC2ContainerServiceV20141113."

    struct Setup {
        let sandbox: TestSandbox
        let repo: TestRepository
        let account: AWSAccountOverrides
        var env: [String: String] { ["AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_ENDPOINT_URL": "", "HOME": sandbox.root] }

        func runbook(_ name: String, _ vars: [String: String], extra: [String] = []) async throws -> CommandResult {
            try await LifeboatCLI.run(["runbook", "run", name, "--yes", "--json", "--config", repo.configFile, "--state-dir", sandbox.path("runs")]
                + vars.sorted { $0.key < $1.key }.flatMap { ["--var", "\($0.key)=\($0.value)"] } + extra, environment: env, timeout: 600)
        }

        func client(_ service: AWSService) throws -> AWSClient { try AWSClient(service, overrides: account) }
    }

    func setup(_ name: String, region: String) async throws -> Setup {
        let sandbox = try TestSandbox("aws-rec-\(name)")
        let url = try await StrictAWS.shared.url().absoluteString
        let repo = try await TestRepository.make(in: sandbox, extraConfig: """
            aws:
              endpoint: \(url)
              region: \(region)
              access_key_id: \(MotoServer.accessKey)
              secret_access_key: \(MotoServer.secretKey)

            """)
        return Setup(sandbox: sandbox, repo: repo, account: MotoServer.overrides(URL(string: url) ?? URL(fileURLWithPath: "/"), region: region))
    }

    func resourceID(_ rds: AWSClient, _ cluster: String) async throws -> String? {
        try await rds.query("DescribeDBClusters", version: "2014-10-31", [("DBClusterIdentifier", cluster)]).first("DBCluster")?.child("DbClusterResourceId")
    }

    func exists(_ rds: AWSClient, _ cluster: String) async -> Bool { (try? await AuroraClusters(client: rds).describe(cluster)) != nil }

    func steps(_ r: CommandResult) throws -> [String: [String: String]] {
        let list = try #require(try LifeboatCLI.json(r)["steps"] as? [[String: Any]])
        var out: [String: [String: String]] = [:]
        for s in list { if let name = s["name"] as? String { out[name] = s["outputs"] as? [String: String] ?? [:] } }
        return out
    }

    /// Production renamed out of the way, the restored cluster into its name; the same run again
    /// after a stop between the renames finishes it; a finished promotion is recognised; undo
    /// swaps them back. Identity is read from the clusters' resource ids, which a rename keeps.
    @Test func promotionByRenameIsResumableAndReversible() async throws {
        let s = try await setup("rename", region: "af-south-1")
        defer { Task { await s.sandbox.remove() } }
        let rds = try s.client(.rds)
        for c in ["prod", "prod-restored"] {
            _ = try await rds.query("CreateDBCluster", version: "2014-10-31", [("DBClusterIdentifier", c), ("Engine", "aurora-postgresql"),
                ("MasterUsername", "postgres"), ("MasterUserPassword", "a-long-password")])
            _ = try await AuroraClusters(client: rds).waitAvailable(c, timeout: 30, poll: 0.3)
        }
        let original = try #require(try await resourceID(rds, "prod"))
        let restored = try #require(try await resourceID(rds, "prod-restored"))
        let vars = ["region": "af-south-1", "production": "prod", "restored": "prod-restored", "retired_name": "prod-failed"]

        let run = try await s.runbook("builtin:aws-promote-rename", vars)
        #expect(run.status == 0, "\(run.output)\(run.errors)")
        #expect(try await resourceID(rds, "prod") == restored)
        #expect(try await resourceID(rds, "prod-failed") == original)
        #expect(await !exists(rds, "prod-restored"))
        #expect(try steps(run)["promote"]?["renamed"] == "prod → prod-failed, prod-restored → prod")
        let final = try #require(try steps(run)["final-snapshot"]?["snapshot_id"])
        #expect(try await AuroraClusters(client: rds).snapshot(final).cluster == "prod", "a final snapshot of production before the renames")

        let again = try await s.runbook("builtin:aws-promote-rename", vars)
        #expect(again.status == 0, "\(again.output)\(again.errors)")
        #expect(try steps(again)["promote"]?["renamed"] == "nothing (already done)")

        let undo = try await s.runbook("builtin:aws-promote-rename", vars.merging(["undo": "true"]) { $1 })
        #expect(undo.status == 0, "\(undo.output)\(undo.errors)")
        #expect(try await resourceID(rds, "prod") == original)
        #expect(try await resourceID(rds, "prod-restored") == restored)
        #expect(await !exists(rds, "prod-failed"))

        // A first attempt stopped after production was renamed: the run finishes the job.
        _ = try await AuroraClusters(client: rds).rename("prod", to: "prod-failed", timeout: 30, poll: 0.3)
        let finish = try await s.runbook("builtin:aws-promote-rename", vars)
        #expect(finish.status == 0, "\(finish.output)\(finish.errors)")
        #expect(try steps(finish)["promote"]?["renamed"] == "prod-restored → prod")
        #expect(try steps(finish)["final-snapshot"]?["status"]?.hasPrefix("skipped") == true, "production was already renamed away")
        #expect(try await resourceID(rds, "prod") == restored)

        // Names that make no promotion: refused, nothing renamed.
        let wrong = try await s.runbook("builtin:aws-promote-rename", vars.merging(["restored": "no-such-cluster", "retired_name": "other"]) { $1 })
        #expect(wrong.status != 0 && wrong.errors.contains("cannot promote"), "\(wrong.errors)")
        #expect(try await resourceID(rds, "prod") == restored)
        #expect(try await resourceID(rds, "prod-failed") == original)
    }

    /// New task definition revisions carrying the restored cluster's endpoint, the services moved to
    /// them; a second run registers nothing; the previous revisions put back with
    /// aws.ecs.set-task-definitions. The master password is set from a secret, its value in no output
    /// and no journal.
    @Test func promotionByEndpointAndMasterPasswordFromASecret() async throws {
        let s = try await setup("endpoint", region: "ap-east-1")
        defer { Task { await s.sandbox.remove() } }
        let rds = try s.client(.rds)
        _ = try await rds.query("CreateDBCluster", version: "2014-10-31", [("DBClusterIdentifier", "prod-restored"), ("Engine", "aurora-postgresql"),
            ("MasterUsername", "postgres"), ("MasterUserPassword", "a-long-password")])
        let endpoint = try #require(try await AuroraClusters(client: rds).waitAvailable("prod-restored", timeout: 30, poll: 0.3).endpoint)
        let ecs = try s.client(.ecs)
        _ = try await ecs.json(Self.ecsPrefix + "CreateCluster", ["clusterName": "prod"])
        _ = try await ecs.json(Self.ecsPrefix + "RegisterTaskDefinition", ["family": "app", "containerDefinitions": [[
            "name": "app", "image": "app:1", "memory": 256, "environment": [["name": "DB_HOST", "value": "old.cluster"], ["name": "MODE", "value": "prod"]]]]])
        for svc in ["api", "web"] {
            _ = try await ecs.json(Self.ecsPrefix + "CreateService", ["cluster": "prod", "serviceName": svc, "taskDefinition": "app:1", "desiredCount": 1])
            // moto starts a service's tasks on its first update.
            _ = try await ECSServices(client: ecs).update(cluster: "prod", service: svc, desiredCount: 1)
        }
        let vars = ["region": "ap-east-1", "ecs_cluster": "prod", "services": "api,web", "restored": "prod-restored"]
        let run = try await s.runbook("builtin:aws-promote-endpoint", vars)
        #expect(run.status == 0, "\(run.output)\(run.errors)")
        let services = ECSServices(client: ecs)
        for svc in ["api", "web"] {
            let td = try await services.describe(cluster: "prod", service: svc).taskDefinition
            #expect(!td.hasSuffix("app:1"))
            #expect(try await TaskDefinitions(client: ecs).environmentValue(td, variable: "DB_HOST") == endpoint)
            #expect(try await TaskDefinitions(client: ecs).environmentValue(td, variable: "MODE") == "prod", "other variables kept")
        }
        let previous = try #require(try steps(run)["point"]?["previous_task_definitions"])
        #expect(previous.contains("api=") && previous.contains("app:1"))
        let revisions = try await TaskDefinitions(client: ecs).activeRevisions("app").count
        let again = try await s.runbook("builtin:aws-promote-endpoint", vars)
        #expect(again.status == 0, "\(again.output)\(again.errors)")
        #expect(try await TaskDefinitions(client: ecs).activeRevisions("app").count == revisions, "nothing registered twice")

        let undoBook = try s.sandbox.file("undo.yaml", """
            name: undo-endpoint
            production: true
            steps:
              - name: back
                action: aws.ecs.set-task-definitions
                with: { region: ap-east-1, cluster: prod, task_definitions: "\(previous)" }
            """)
        let undo = try await s.runbook(undoBook, [:])
        #expect(undo.status == 0, "\(undo.output)\(undo.errors)")
        for svc in ["api", "web"] { #expect(try await services.describe(cluster: "prod", service: svc).taskDefinition.hasSuffix("app:1")) }

        // The master password from a secret.
        let value = "Rotated-Master-Password-42"
        _ = try await s.client(.secretsManager).json("secretsmanager.CreateSecret", ["Name": "prod/aurora/master", "SecretString": value])
        let pwBook = try s.sandbox.file("pw.yaml", """
            name: set-master-password
            production: true
            steps:
              - name: password
                action: aws.rds.set-master-password
                with: { region: ap-east-1, cluster: prod-restored, secret: prod/aurora/master }
            """)
        let pw = try await s.runbook(pwBook, [:])
        #expect(pw.status == 0, "\(pw.output)\(pw.errors)")
        #expect(try await StrictAWS.shared.masterPasswordDigest("prod-restored", region: "ap-east-1") == SHA256Hex.of(value))
        #expect(!(pw.output + pw.errors).contains(value))
        let journals = try FileManager.default.subpathsOfDirectory(atPath: s.sandbox.path("runs"))
            .compactMap { FileManager.default.contents(atPath: s.sandbox.path("runs") + "/" + $0) }
        #expect(!journals.isEmpty && !journals.contains { String(decoding: $0, as: UTF8.self).contains(value) }, "the value is in no journal")
    }

    /// A Terraform root whose `module.<name>` runs `repair` (a Python script against the proxy) on apply.
    func terraformRoot(_ s: Setup, _ name: String, module: String, repair: String) throws -> String {
        let dir = try s.sandbox.directory("tf-\(name)")
        try FileManager.default.createDirectory(atPath: dir + "/\(module)", withIntermediateDirectories: true)
        let script = try s.sandbox.file("repair-\(name).py", repair)
        _ = try s.sandbox.file("tf-\(name)/main.tf", "module \"\(module)\" {\n  source = \"./\(module)\"\n}\n")
        _ = try s.sandbox.file("tf-\(name)/\(module)/main.tf", """
            resource "terraform_data" "repair" {
              provisioner "local-exec" {
                command = "\(MotoServer.python()) \(script)"
              }
            }
            """)
        return dir
    }

    /// A built-in runbook as `runbook show` prints it, its post-conditions retried quickly (a test
    /// cannot wait 15 s between attempts).
    func quickRetries(_ s: Setup, _ name: String) async throws -> String {
        let shown = try await LifeboatCLI.run(["runbook", "show", name])
        #expect(shown.status == 0 && shown.output.contains("retry_delay:"))
        let text = shown.output.replacingOccurrences(of: #"retries: \d+"#, with: "retries: 2", options: .regularExpression)
            .replacingOccurrences(of: #"retry_delay: \w+"#, with: "retry_delay: 0.3s", options: .regularExpression)
        return try s.sandbox.file(name.replacingOccurrences(of: "builtin:", with: "") + ".yaml", text)
    }

    func boto(_ s: Setup, _ service: String) -> String {
        "import boto3\nc = boto3.client('\(service)', region_name='\(s.account.region ?? "")', endpoint_url='\(s.account.endpoint ?? "")', aws_access_key_id='\(MotoServer.accessKey)', aws_secret_access_key='\(MotoServer.secretKey)')\n"
    }

    /// Scenario "VPC/networking failure": the NAT gateway the private route goes to is gone; the
    /// runbook finds it, applies `-target=module.vpc` (here: a new NAT gateway, the route moved to
    /// it), and its post-condition sees the network whole.
    @Test(.enabled(if: TerraformBinary.available, "needs terraform on PATH"))
    func networkFailureIsDiagnosedRepairedAndVerified() async throws {
        let s = try await setup("vpc", region: "eu-west-2")
        defer { Task { await s.sandbox.remove() } }
        let ec2 = try s.client(.ec2)
        let v = "2016-11-15"
        let vpc = try #require(try await ec2.query("CreateVpc", version: v, [("CidrBlock", "10.9.0.0/16"),
            ("TagSpecification.1.ResourceType", "vpc"), ("TagSpecification.1.Tag.1.Key", "Name"), ("TagSpecification.1.Tag.1.Value", "prod-vpc")]).text("vpcId"))
        let subnet = try #require(try await ec2.query("CreateSubnet", version: v, [("VpcId", vpc), ("CidrBlock", "10.9.1.0/24"),
            ("AvailabilityZone", "eu-west-2a")]).text("subnetId"))
        let igw = try #require(try await ec2.query("CreateInternetGateway", version: v, []).text("internetGatewayId"))
        _ = try await ec2.query("AttachInternetGateway", version: v, [("InternetGatewayId", igw), ("VpcId", vpc)])
        let eip = try #require(try await ec2.query("AllocateAddress", version: v, [("Domain", "vpc")]).text("allocationId"))
        let nat = try #require(try await ec2.query("CreateNatGateway", version: v, [("SubnetId", subnet), ("AllocationId", eip)]).text("natGatewayId"))
        let table = try #require(try await ec2.query("CreateRouteTable", version: v, [("VpcId", vpc)]).text("routeTableId"))
        _ = try await ec2.query("CreateRoute", version: v, [("RouteTableId", table), ("DestinationCidrBlock", "0.0.0.0/0"), ("NatGatewayId", nat)])
        let checks = NetworkChecks(ec2: ec2, elb: try s.client(.elasticLoadBalancing))
        #expect(try await checks.diagnoseVPC("prod-vpc").healthy)
        _ = try await ec2.query("DeleteNatGateway", version: v, [("NatGatewayId", nat)])
        let broken = try await checks.diagnoseVPC("prod-vpc")
        #expect(broken.problems.contains { $0.contains("NAT gateway \(nat), which is deleted") }, "\(broken.problems)")

        let dir = try terraformRoot(s, "vpc", module: "vpc", repair: boto(s, "ec2") + """
            eip = c.allocate_address(Domain='vpc')['AllocationId']
            nat = c.create_nat_gateway(SubnetId='\(subnet)', AllocationId=eip)['NatGateway']['NatGatewayId']
            c.replace_route(RouteTableId='\(table)', DestinationCidrBlock='0.0.0.0/0', NatGatewayId=nat)
            """)
        let ecs = try s.client(.ecs)
        _ = try await ecs.json(Self.ecsPrefix + "CreateCluster", ["clusterName": "prod"])
        _ = try await ecs.json(Self.ecsPrefix + "RegisterTaskDefinition", ["family": "app", "containerDefinitions": [["name": "app", "image": "app:1", "memory": 128]]])
        _ = try await ecs.json(Self.ecsPrefix + "CreateService", ["cluster": "prod", "serviceName": "api", "taskDefinition": "app:1", "desiredCount": 1])
        // moto starts a service's tasks on its first update.
        _ = try await ECSServices(client: ecs).update(cluster: "prod", service: "api", desiredCount: 1)
        let run = try await s.runbook(try await quickRetries(s, "builtin:aws-network-failure"), ["region": "eu-west-2", "vpc": "prod-vpc", "tf_dir": dir, "ecs_cluster": "prod",
            "services": "api"])
        #expect(run.status == 0, "\(run.output)\(run.errors)")
        let out = try steps(run)
        #expect(out["diagnose"]?["problems"]?.contains("NAT gateway \(nat)") == true)
        #expect(out["network-whole"]?["healthy"] == "true")
        #expect(try await checks.diagnoseVPC("prod-vpc").healthy)
    }

    /// Scenario "ALB failure": no healthy target; the runbook finds it, applies `-target=module.alb`
    /// (here: the target registered again), and waits until the targets are healthy. Without the
    /// repair, the post-condition fails the run instead of reporting success.
    @Test(.enabled(if: TerraformBinary.available, "needs terraform on PATH"))
    func albFailureIsDiagnosedRepairedAndVerified() async throws {
        let s = try await setup("alb", region: "ap-southeast-1")
        defer { Task { await s.sandbox.remove() } }
        let ec2 = try s.client(.ec2)
        let elb = try s.client(.elasticLoadBalancing)
        let v = "2016-11-15"
        let vpc = try #require(try await ec2.query("CreateVpc", version: v, [("CidrBlock", "10.8.0.0/16")]).text("vpcId"))
        var subnets: [String] = []
        for (i, az) in ["ap-southeast-1a", "ap-southeast-1b"].enumerated() {
            subnets.append(try #require(try await ec2.query("CreateSubnet", version: v, [("VpcId", vpc), ("CidrBlock", "10.8.\(i + 1).0/24"),
                ("AvailabilityZone", az)]).text("subnetId")))
        }
        let ev = "2015-12-01"
        let lb = try await elb.query("CreateLoadBalancer", version: ev, [("Name", "prod-alb"), ("Subnets.member.1", subnets[0]), ("Subnets.member.2", subnets[1])])
        let lbARN = try #require(lb.text("LoadBalancerArn"))
        let tg = try #require(try await elb.query("CreateTargetGroup", version: ev, [("Name", "prod-api"), ("Protocol", "HTTP"), ("Port", "80"),
            ("VpcId", vpc), ("TargetType", "ip")]).text("TargetGroupArn"))
        _ = try await elb.query("CreateListener", version: ev, [("LoadBalancerArn", lbARN), ("Protocol", "HTTP"), ("Port", "80"),
            ("DefaultActions.member.1.Type", "forward"), ("DefaultActions.member.1.TargetGroupArn", tg)])
        let checks = NetworkChecks(ec2: ec2, elb: elb)
        let broken = try await checks.diagnoseLoadBalancer("prod-alb")
        #expect(broken.problems.contains { $0.contains("prod-api: no healthy target") }, "\(broken)")

        // Without a repair (a module that changes nothing), the run fails on its post-condition.
        let book = try await quickRetries(s, "builtin:aws-alb-failure")
        let noop = try terraformRoot(s, "alb-noop", module: "alb", repair: "print('nothing')\n")
        let failed = try await s.runbook(book, ["region": "ap-southeast-1", "load_balancer": "prod-alb", "tf_dir": noop])
        #expect(failed.status != 0, "targets still unhealthy: the runbook must not report success: \(failed.output)")

        let dir = try terraformRoot(s, "alb", module: "alb", repair: boto(s, "elbv2") + """
            c.register_targets(TargetGroupArn='\(tg)', Targets=[{'Id': '10.8.1.10'}])
            """)
        let run = try await s.runbook(book, ["region": "ap-southeast-1", "load_balancer": "prod-alb", "tf_dir": dir])
        #expect(run.status == 0, "\(run.output)\(run.errors)")
        #expect(try steps(run)["targets-healthy"]?["healthy"] == "true")
        #expect(try await checks.diagnoseLoadBalancer("prod-alb").healthy)
    }
}

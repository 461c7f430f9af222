import Foundation
import LifeboatAWSCore
import LifeboatAWS
import LifeboatCore
import LifeboatTesting
import Testing

/// AWS runbooks from the command line: the configuration's `aws:` section reaches the steps.
@Suite(.serialized) struct AWSRunbookCLITests {
    @Test func awsSectionDrivesTheServiceOutageRunbook() async throws {
        let sandbox = try TestSandbox("aws-cli")
        defer { Task { await sandbox.remove() } }
        let endpoint = try await StrictAWS.shared.url().absoluteString
        let repo = try await TestRepository.make(in: sandbox, extraConfig: """
            aws:
              endpoint: \(endpoint)
              region: eu-north-1
              access_key_id: \(MotoServer.accessKey)
              secret_access_key: \(MotoServer.secretKey)

            """)
        let ecs = try AWSClient(.ecs, overrides: AWSAccountOverrides(region: "eu-north-1", endpoint: endpoint,
            accessKeyID: MotoServer.accessKey, secretAccessKey: MotoServer.secretKey))
        let p = "AmazonEC2ContainerServiceV20141113."
        _ = try await ecs.json(p + "CreateCluster", ["clusterName": "prod"])
        _ = try await ecs.json(p + "RegisterTaskDefinition", ["family": "web", "containerDefinitions": [["name": "web", "image": "web:1", "memory": 128]]])
        _ = try await ecs.json(p + "CreateService", ["cluster": "prod", "serviceName": "web", "taskDefinition": "web:1", "desiredCount": 1])
        _ = try await ECSServices(client: ecs).update(cluster: "prod", service: "web", desiredCount: 2)
        // No AWS_* variables: everything comes from the configuration file.
        let env = ["AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_ENDPOINT_URL": "", "HOME": sandbox.root]
        let common = ["--config", repo.configFile, "--state-dir", sandbox.path("runs")]

        let plan = try await LifeboatCLI.run(["runbook", "run", "builtin:aws-service-outage", "--dry-run", "--var", "region=eu-north-1",
            "--var", "ecs_cluster=prod", "--var", "service=web"] + common, environment: env)
        #expect(plan.status == 0 && plan.output.contains("force a new deployment of web in prod"), "\(plan.output)\(plan.errors)")

        let run = try await LifeboatCLI.run(["runbook", "run", "builtin:aws-service-outage", "--yes", "--json", "--var", "region=eu-north-1",
            "--var", "ecs_cluster=prod", "--var", "service=web", "--var", "stable_timeout=10s"] + common, environment: env)
        #expect(run.status == 0, "\(run.output)\(run.errors)")
        let steps = try #require(try LifeboatCLI.json(run)["steps"] as? [[String: Any]])
        #expect(steps.map { $0["name"] as? String ?? "" } == ["status", "redeploy", "service-steady"], "the post-condition ran last")
        #expect((steps.first?["outputs"] as? [String: String])?["desired_count"] == "2")

        // A service that does not exist: the step fails with AWS's reason, exit 15, resumable.
        let missing = try await LifeboatCLI.run(["runbook", "run", "builtin:aws-service-outage", "--yes", "--var", "region=eu-north-1",
            "--var", "ecs_cluster=prod", "--var", "service=nope"] + common, environment: env)
        #expect(missing.status == 15 && missing.errors.contains("runbook resume"), "\(missing.errors)")

        let bad = try await TestRepository.make(in: sandbox, name: "bad", extraConfig: "aws:\n  regoin: eu-north-1\n")
        let refused = try await LifeboatCLI.run(["runbook", "run", "builtin:aws-service-outage", "--dry-run", "--config", bad.configFile])
        #expect(refused.status == 2 && refused.errors.contains("unknown configuration key 'aws.regoin'"))
    }
}

import Foundation
import LifeboatAWS
import LifeboatAWSCore
import LifeboatCore
import LifeboatPostgres
import LifeboatRunbooks
import LifeboatTesting
import Testing

/// The seed's "update DNS to point to the new region", through the REST-XML API on a real server.
@Suite(.serialized) struct Route53Tests {
    @Test func dnsIsSwitchedAndThePreviousTargetKept() async throws {
        let sandbox = try TestSandbox("route53")
        defer { Task { await sandbox.remove() } }
        let explicit = MotoServer.overrides(try await StrictAWS.shared.url(), region: "eu-west-1")
        let client = try AWSClient(.route53, overrides: explicit)
        let created = try await client.rest("POST", "/2013-04-01/hostedzone", body: Data("""
            <CreateHostedZoneRequest xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Name>omni.example.</Name><CallerReference>\(UUID().uuidString)</CallerReference></CreateHostedZoneRequest>
            """.utf8), action: "CreateHostedZone")
        let zone = try #require(created.first("HostedZone")?.child("Id"))
        let dns = Route53Records(client: client)
        _ = try await dns.upsert(zone: zone, record: DNSRecord(name: "api.omni.example", type: "CNAME", ttl: 300,
            values: ["omni-alb.us-east-1.elb.amazonaws.com"]), comment: "initial")
        #expect(try await dns.record(zone: zone, name: "api.omni.example", type: "CNAME")?.values == ["omni-alb.us-east-1.elb.amazonaws.com"])

        let yaml = """
            name: switch-region
            steps:
              - name: switch-dns
                action: aws.route53.switch
                with: { zone_id: "\(zone)", name: api.omni.example, value: omni-alb.us-west-2.elb.amazonaws.com, ttl: "60", poll: 0.1s, timeout: 10s }
            """
        let result = try await runAWSRunbook(yaml, explicit: explicit, sandbox: sandbox)
        #expect(result.status == .succeeded, "\(result.steps.first?.error ?? "")")
        #expect(result.steps.first?.outputs["previous"] == "omni-alb.us-east-1.elb.amazonaws.com", "kept for switching back")
        let now = try #require(try await dns.record(zone: zone, name: "api.omni.example", type: "CNAME"))
        #expect(now.values == ["omni-alb.us-west-2.elb.amazonaws.com"] && now.ttl == 60)
        // A zone that does not exist: the AWS fault named.
        do {
            _ = try await dns.record(zone: "ZNOPE", name: "api.omni.example", type: "CNAME")
            Issue.record("a missing zone answered")
        } catch let e as LifeboatError {
            #expect(e.message.contains("NoSuchHostedZone"), "\(e)")
        }
    }
}

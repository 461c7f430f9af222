import Foundation
import LifeboatAWSCore
import LifeboatCore

/// What a diagnosis of the network or of a load balancer found: facts, and the problems among them.
public struct NetworkDiagnosis: Sendable, Equatable, Codable {
    public var facts: [String] = []
    public var problems: [String] = []
    public var healthy: Bool { problems.isEmpty }
}

/// Read-only diagnoses for the seed's "VPC/networking failure" and "ALB failure" scenarios: the VPC's
/// state, internet and NAT gateways, route tables (blackhole routes, no default route), security
/// groups; a load balancer's state, listeners, target groups and target health.
public struct NetworkChecks: Sendable {
    public let ec2: AWSClient
    public let elb: AWSClient
    static let ec2Version = "2016-11-15"
    static let elbVersion = "2015-12-01"

    public init(ec2: AWSClient, elb: AWSClient) {
        self.ec2 = ec2
        self.elb = elb
    }

    /// The VPC given by id, or by its `Name` tag.
    public func vpcID(_ nameOrID: String) async throws -> String {
        if nameOrID.hasPrefix("vpc-") { return nameOrID }
        let answer = try await ec2.query("DescribeVpcs", version: Self.ec2Version, [("Filter.1.Name", "tag:Name"), ("Filter.1.Value.1", nameOrID)])
        guard let id = answer.all("item").compactMap({ $0.child("vpcId") }).first else {
            throw LifeboatError(.notFound, "no VPC named \(nameOrID) in \(ec2.account.region)", hint: "give the VPC id, or check the region")
        }
        return id
    }

    public func diagnoseVPC(_ nameOrID: String) async throws -> NetworkDiagnosis {
        var d = NetworkDiagnosis()
        let vpc = try await vpcID(nameOrID)
        let vpcs = try await ec2.query("DescribeVpcs", version: Self.ec2Version, [("VpcId.1", vpc)])
        guard let state = vpcs.all("item").first(where: { $0.child("vpcId") == vpc })?.child("state") else {
            d.problems.append("VPC \(vpc) does not exist in \(ec2.account.region)")
            return d
        }
        (state == "available" ? { d.facts.append("VPC \(vpc) is available") } : { d.problems.append("VPC \(vpc) is \(state)") })()
        let filter: [(String, String)] = [("Filter.1.Name", "vpc-id"), ("Filter.1.Value.1", vpc)]
        let igws = try await ec2.query("DescribeInternetGateways", version: Self.ec2Version, [("Filter.1.Name", "attachment.vpc-id"), ("Filter.1.Value.1", vpc)])
        let igwIDs = igws.all("item").compactMap { $0.child("internetGatewayId") }
        if igwIDs.isEmpty { d.problems.append("no internet gateway attached to \(vpc)") } else { d.facts.append("internet gateway \(igwIDs.joined(separator: ", ")) attached") }
        let nats = try await ec2.query("DescribeNatGateways", version: Self.ec2Version, [("Filter.1.Name", "vpc-id"), ("Filter.1.Value.1", vpc)])
        var natState: [String: String] = [:]
        for nat in nats.all("item") where nat.child("natGatewayId") != nil {
            let id = nat.child("natGatewayId") ?? "?"
            let s = nat.child("state") ?? "unknown"
            natState[id] = s
            if s == "available" { d.facts.append("NAT gateway \(id) available") } else if s != "deleted" { d.problems.append("NAT gateway \(id) is \(s)") }
        }
        let tables = try await ec2.query("DescribeRouteTables", version: Self.ec2Version, filter)
        for table in tables.children(named: "routeTableSet").flatMap({ $0.children(named: "item") }) {
            let id = table.child("routeTableId") ?? "?"
            let routes = table.children(named: "routeSet").flatMap { $0.children(named: "item") }
            for r in routes {
                let destination = r.child("destinationCidrBlock") ?? "?"
                if r.child("state") == "blackhole" {
                    d.problems.append("route table \(id): route to \(destination) is a blackhole (its target \(r.child("natGatewayId") ?? r.child("gatewayId") ?? r.child("networkInterfaceId") ?? "?") is gone)")
                } else if let nat = r.child("natGatewayId"), natState[nat] != "available" {
                    // AWS marks such a route blackhole after a while; the gateway's own state says it at once.
                    d.problems.append("route table \(id): route to \(destination) goes to NAT gateway \(nat), which is \(natState[nat] ?? "gone")")
                } else if let gateway = r.child("gatewayId"), gateway.hasPrefix("igw-"), !igwIDs.contains(gateway) {
                    d.problems.append("route table \(id): route to \(destination) goes to internet gateway \(gateway), which is not attached to \(vpc)")
                }
            }
            d.facts.append("route table \(id): \(routes.count) route(s)")
        }
        let groups = try await ec2.query("DescribeSecurityGroups", version: Self.ec2Version, filter)
        d.facts.append("\(groups.all("item").filter { $0.child("groupId") != nil }.count) security group(s) in \(vpc)")
        return d
    }

    public func diagnoseLoadBalancer(_ name: String) async throws -> NetworkDiagnosis {
        var d = NetworkDiagnosis()
        let lbs: AWSXML
        do {
            lbs = try await elb.query("DescribeLoadBalancers", version: Self.elbVersion, [("Names.member.1", name)])
        } catch let e as LifeboatError where e.awsCode?.rawValue == "LoadBalancerNotFound" {
            d.problems.append("load balancer \(name) does not exist in \(elb.account.region)")
            return d
        }
        guard let lb = lbs.all("member").first(where: { $0.child("LoadBalancerName") == name }), let arn = lb.child("LoadBalancerArn") else {
            d.problems.append("load balancer \(name) does not exist in \(elb.account.region)")
            return d
        }
        let state = lb.first("State")?.child("Code") ?? "unknown"
        if state == "active" { d.facts.append("load balancer \(name) is active (\(lb.child("DNSName") ?? "no DNS name"))") } else { d.problems.append("load balancer \(name) is \(state)") }
        let listeners = try await elb.query("DescribeListeners", version: Self.elbVersion, [("LoadBalancerArn", arn)])
        let ports = listeners.all("member").compactMap { m -> String? in m.child("Port").map { "\(m.child("Protocol") ?? "?"):\($0)" } }
        if ports.isEmpty { d.problems.append("load balancer \(name) has no listener") } else { d.facts.append("listeners \(ports.joined(separator: ", "))") }
        let groups = try await elb.query("DescribeTargetGroups", version: Self.elbVersion, [("LoadBalancerArn", arn)])
        let groupARNs = groups.all("member").compactMap { $0.child("TargetGroupArn") }
        if groupARNs.isEmpty { d.problems.append("load balancer \(name) has no target group") }
        for g in groupARNs {
            let health = try await elb.query("DescribeTargetHealth", version: Self.elbVersion, [("TargetGroupArn", g)])
            let states = health.all("TargetHealth").compactMap { $0.child("State") }
            let healthy = states.filter { $0 == "healthy" }.count
            let short = g.split(separator: "/").dropLast().last.map(String.init) ?? g
            if healthy == 0 { d.problems.append("target group \(short): no healthy target (\(states.count) registered: \(states.joined(separator: ", ")))") }
            else { d.facts.append("target group \(short): \(healthy) of \(states.count) target(s) healthy") }
        }
        return d
    }
}

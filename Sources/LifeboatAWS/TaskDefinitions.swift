import Foundation
import LifeboatAWSCore
import LifeboatCore

/// ECS task definitions as documents: every ACTIVE revision of every family read out (for the
/// repository), registered back from such a document, and new revisions whose database endpoint is
/// a restored cluster's (the seed's "Update ECS task definitions with this endpoint").
public struct TaskDefinitions: Sendable {
    public let client: AWSClient
    static let prefix = "AmazonEC2ContainerServiceV20141113."

    /// Fields AWS fills in and refuses (or ignores) on RegisterTaskDefinition.
    static let readOnly: Set<String> = ["taskDefinitionArn", "revision", "status", "requiresAttributes", "compatibilities",
        "registeredAt", "registeredBy", "deregisteredAt"]

    public init(client: AWSClient) { self.client = client }

    /// Families with an ACTIVE revision.
    public func families() async throws -> [String] {
        try await paged("ListTaskDefinitionFamilies", ["status": "ACTIVE"], key: "families")
    }

    /// ARNs of the ACTIVE revisions of `family`, oldest first.
    public func activeRevisions(_ family: String) async throws -> [String] {
        try await paged("ListTaskDefinitions", ["familyPrefix": family, "status": "ACTIVE", "sort": "ASC"], key: "taskDefinitionArns")
            .filter { Self.family(of: $0) == family }
    }

    func paged(_ action: String, _ body: [String: Any], key: String) async throws -> [String] {
        var out: [String] = []
        var token: String?
        repeat {
            var b = body
            if let token { b["nextToken"] = token }
            let answer = try await client.json(Self.prefix + action, b)
            out += answer[key] as? [String] ?? []
            token = (answer["nextToken"] as? String).flatMap { $0.isEmpty ? nil : $0 }
        } while token != nil
        return out
    }

    /// `family` of `arn:...:task-definition/family:3` or `family:3`.
    public static func family(of reference: String) -> String {
        let tail = reference.split(separator: "/").last.map(String.init) ?? reference
        return tail.split(separator: ":").first.map(String.init) ?? tail
    }

    /// One revision as JSON (the `taskDefinition` object, its tags under `tags`), keys sorted.
    public func document(_ reference: String) async throws -> Data {
        let answer = try await client.json(Self.prefix + "DescribeTaskDefinition", ["taskDefinition": reference, "include": ["TAGS"]])
        guard var definition = answer["taskDefinition"] as? [String: Any] else {
            throw LifeboatError(.notFound, "task definition \(reference) not found in \(client.account.region)")
        }
        if let tags = answer["tags"] as? [Any], !tags.isEmpty { definition["tags"] = tags }
        return try JSONSerialization.data(withJSONObject: definition, options: [.sortedKeys, .prettyPrinted])
    }

    /// Registers a document (from `document(_:)` or the repository) as a new revision of its family;
    /// `environment` replaces or adds those variables in every container. Returns the new ARN.
    public func register(_ document: Data, environment: [String: String] = [:]) async throws -> String {
        guard var body = try JSONSerialization.jsonObject(with: document) as? [String: Any], body["family"] is String else {
            throw LifeboatError(.integrity, "the task definition document is not an ECS task definition (no family)")
        }
        for key in Self.readOnly { body.removeValue(forKey: key) }
        if !environment.isEmpty {
            let containers = (body["containerDefinitions"] as? [[String: Any]] ?? []).map { container -> [String: Any] in
                var c = container
                var env = (c["environment"] as? [[String: Any]] ?? []).filter { environment[$0["name"] as? String ?? ""] == nil }
                for (name, value) in environment.sorted(by: { $0.key < $1.key }) { env.append(["name": name, "value": value]) }
                c["environment"] = env
                return c
            }
            body["containerDefinitions"] = containers
        }
        let answer = try await client.json(Self.prefix + "RegisterTaskDefinition", body)
        guard let arn = (answer["taskDefinition"] as? [String: Any])?["taskDefinitionArn"] as? String else {
            throw LifeboatError(.externalCommand, "AWS ecs RegisterTaskDefinition: the answer has no taskDefinitionArn")
        }
        return arn
    }

    /// The value of an environment variable in a task definition's containers (the first that sets it).
    public func environmentValue(_ reference: String, variable: String) async throws -> String? {
        let data = try await document(reference)
        let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
        for container in object["containerDefinitions"] as? [[String: Any]] ?? [] {
            for entry in container["environment"] as? [[String: Any]] ?? [] where entry["name"] as? String == variable {
                return entry["value"] as? String
            }
        }
        return nil
    }
}

import Foundation
import LifeboatAWSCore
import LifeboatCore

/// An ECS service as DescribeServices shows it.
public struct ECSService: Sendable, Equatable, Codable {
    public var name: String
    public var status: String
    public var desiredCount: Int
    public var runningCount: Int
    public var pendingCount: Int
    public var taskDefinition: String
    /// Deployments in progress; 1 when the service is steady.
    public var deployments: Int

    init(_ o: [String: Any]) {
        name = o["serviceName"] as? String ?? ""
        status = o["status"] as? String ?? "UNKNOWN"
        desiredCount = o["desiredCount"] as? Int ?? 0
        runningCount = o["runningCount"] as? Int ?? 0
        pendingCount = o["pendingCount"] as? Int ?? 0
        taskDefinition = o["taskDefinition"] as? String ?? ""
        deployments = (o["deployments"] as? [Any])?.count ?? 0
    }

    /// Steady: one deployment, as many tasks running as desired.
    public var steady: Bool { deployments <= 1 && runningCount == desiredCount && pendingCount == 0 }
}

/// ECS services: the seed's `aws ecs update-service` for scaling, forced redeployments and rollbacks.
public struct ECSServices: Sendable {
    public let client: AWSClient
    static let prefix = "AmazonEC2ContainerServiceV20141113."

    public init(client: AWSClient) { self.client = client }

    public func describe(cluster: String, service: String) async throws -> ECSService {
        let answer = try await client.json(Self.prefix + "DescribeServices", ["cluster": cluster, "services": [service]])
        guard let found = (answer["services"] as? [[String: Any]])?.map(ECSService.init).first(where: { $0.name == service }) else {
            let reason = ((answer["failures"] as? [[String: Any]])?.first?["reason"] as? String) ?? "not found"
            throw LifeboatError(.notFound, "ECS service \(service) in cluster \(cluster): \(reason)",
                hint: "check the cluster and service names and the region (\(client.account.region))")
        }
        return found
    }

    /// `update-service` with any of: a desired count, a task definition, a forced new deployment.
    @discardableResult
    public func update(cluster: String, service: String, desiredCount: Int? = nil, taskDefinition: String? = nil,
        forceNewDeployment: Bool = false) async throws -> ECSService
    {
        var body: [String: Any] = ["cluster": cluster, "service": service]
        if let desiredCount { body["desiredCount"] = desiredCount }
        if let taskDefinition { body["taskDefinition"] = taskDefinition }
        if forceNewDeployment { body["forceNewDeployment"] = true }
        let answer = try await client.json(Self.prefix + "UpdateService", body)
        guard let s = answer["service"] as? [String: Any] else {
            throw LifeboatError(.externalCommand, "AWS ecs UpdateService: the answer has no service")
        }
        return ECSService(s)
    }

    /// The revision before the service's current task definition (`family:N` → `family:N-1`, the
    /// newest older ACTIVE revision).
    public func previousTaskDefinition(cluster: String, service: String) async throws -> String {
        let current = try await describe(cluster: cluster, service: service).taskDefinition
        let name = current.split(separator: "/").last.map(String.init) ?? current
        let parts = name.split(separator: ":")
        guard parts.count == 2, let revision = Int(parts[1]) else {
            throw LifeboatError(.externalCommand, "cannot read the revision of task definition \(current)")
        }
        let family = String(parts[0])
        let answer = try await client.json(Self.prefix + "ListTaskDefinitions", ["familyPrefix": family, "status": "ACTIVE", "sort": "DESC"])
        let older = (answer["taskDefinitionArns"] as? [String] ?? []).compactMap { arn -> (Int, String)? in
            let tail = arn.split(separator: "/").last.map(String.init) ?? arn
            let p = tail.split(separator: ":")
            guard p.count == 2, String(p[0]) == family, let r = Int(p[1]), r < revision else { return nil }
            return (r, arn)
        }
        guard let previous = older.max(by: { $0.0 < $1.0 }) else {
            throw LifeboatError(.notFound, "no ACTIVE revision of \(family) older than \(revision) to roll back to",
                hint: "give the task definition to roll back to explicitly")
        }
        return previous.1
    }

    /// The container images a task definition runs.
    public func images(of taskDefinition: String) async throws -> [String] {
        let answer = try await client.json(Self.prefix + "DescribeTaskDefinition", ["taskDefinition": taskDefinition])
        let containers = (answer["taskDefinition"] as? [String: Any])?["containerDefinitions"] as? [[String: Any]] ?? []
        return containers.compactMap { $0["image"] as? String }
    }

    /// Polls until the service is steady (`aws ecs wait services-stable`).
    public func waitStable(cluster: String, service: String, timeout: TimeInterval, poll: TimeInterval) async throws -> ECSService {
        try await AWSWait.until(what: "service \(service) to become stable", timeout: timeout, every: poll) {
            let s = try await describe(cluster: cluster, service: service)
            return s.steady ? s : nil
        }
    }
}

/// Secrets Manager: undo a scheduled deletion, read a version's id, write a value back.
public struct SecretsManager: Sendable {
    public let client: AWSClient
    public init(client: AWSClient) { self.client = client }

    /// Cancels a scheduled deletion (`restore-secret`).
    public func restore(_ secret: String) async throws -> String {
        let answer = try await client.json("secretsmanager.RestoreSecret", ["SecretId": secret])
        return answer["ARN"] as? String ?? secret
    }

    /// Whether the secret is scheduled for deletion, and its current version.
    public func describe(_ secret: String) async throws -> (deletedDate: Date?, currentVersion: String?) {
        let answer = try await client.json("secretsmanager.DescribeSecret", ["SecretId": secret])
        let deleted = (answer["DeletedDate"] as? Double).map { Date(timeIntervalSince1970: $0) }
        let stages = answer["VersionIdsToStages"] as? [String: [String]] ?? [:]
        return (deleted, stages.first { $0.value.contains("AWSCURRENT") }?.key)
    }

    /// The value of a version (default AWSCURRENT). The caller must not log it.
    public func value(_ secret: String, versionStage: String? = nil) async throws -> String {
        var body: [String: Any] = ["SecretId": secret]
        if let versionStage { body["VersionStage"] = versionStage }
        let answer = try await client.json("secretsmanager.GetSecretValue", body)
        guard let text = answer["SecretString"] as? String else {
            throw LifeboatError(.externalCommand, "secret \(secret) has no string value")
        }
        return text
    }

    /// Writes a new current version; returns its id.
    public func put(_ secret: String, value: String) async throws -> String {
        let answer = try await client.json("secretsmanager.PutSecretValue", ["SecretId": secret, "SecretString": value])
        return answer["VersionId"] as? String ?? ""
    }
}

/// ECR images: whether the image a rollback needs still exists (a lifecycle rule such as the seed's
/// "keep last 20 images" may have removed it, and a rollback to it would fail at deployment).
public struct ContainerImages: Sendable {
    public let client: AWSClient
    public init(client: AWSClient) { self.client = client }

    /// The parts of an ECR image URI, or nil for an image elsewhere (Docker Hub, ...).
    public static func parse(_ image: String) -> (registry: String, region: String, repository: String, tag: String?, digest: String?)? {
        guard let slash = image.firstIndex(of: "/") else { return nil }
        let host = image[..<slash].split(separator: ".")
        guard host.count >= 6, host[1] == "dkr", host[2] == "ecr" else { return nil }
        var rest = String(image[image.index(after: slash)...])
        var digest: String?
        var tag: String?
        if let at = rest.firstIndex(of: "@") {
            digest = String(rest[rest.index(after: at)...])
            rest = String(rest[..<at])
        } else if let colon = rest.lastIndex(of: ":") {
            tag = String(rest[rest.index(after: colon)...])
            rest = String(rest[..<colon])
        }
        return (String(host[0]), String(host[3]), rest, digest == nil ? (tag ?? "latest") : nil, digest)
    }

    /// True or false for an ECR image; nil when the image is not in ECR (it cannot be checked here).
    public func exists(_ image: String) async throws -> Bool? {
        guard let ref = Self.parse(image) else { return nil }
        let id: [String: String] = ref.digest.map { ["imageDigest": $0] } ?? ["imageTag": ref.tag ?? "latest"]
        do {
            let answer = try await client.inRegion(ref.region).json("AmazonEC2ContainerRegistry_V20150921.DescribeImages",
                ["registryId": ref.registry, "repositoryName": ref.repository, "imageIds": [id]])
            return !((answer["imageDetails"] as? [Any]) ?? []).isEmpty
        } catch let e as LifeboatError where e.awsCode == .imageNotFound || e.awsCode == .repositoryNotFound {
            return false
        }
    }
}

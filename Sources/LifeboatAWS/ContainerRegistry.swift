import Foundation
import LifeboatAWSCore
import LifeboatCore

/// ECR lifecycle policies: the seed's "keep last 20 images" rule, applied and checked for drift.
public struct ContainerRegistry: Sendable {
    public let client: AWSClient
    static let prefix = "AmazonEC2ContainerRegistry_V20150921."

    public init(client: AWSClient) { self.client = client }

    /// The seed's rule as ECR's policy text: expire images beyond the newest `keep`, whatever their tag.
    public static func keepLastPolicy(_ keep: Int) -> String {
        let policy: [String: Any] = ["rules": [[
            "rulePriority": 1, "description": "Keep last \(keep) images (lifeboat)",
            "selection": ["tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": keep],
            "action": ["type": "expire"],
        ] as [String: Any]]]
        let data = (try? JSONSerialization.data(withJSONObject: policy, options: [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    /// The repository's lifecycle policy text, nil when it has none.
    public func lifecyclePolicy(_ repository: String) async throws -> String? {
        do {
            let answer = try await client.json(Self.prefix + "GetLifecyclePolicy", ["repositoryName": repository])
            return answer["lifecyclePolicyText"] as? String
        } catch let e as LifeboatError where e.awsCode == .lifecyclePolicyNotFound {
            return nil
        } catch let e as LifeboatError where e.awsCode == .repositoryNotFound {
            throw LifeboatError(.notFound, "ECR repository \(repository) not found in \(client.account.region)", hint: "check aws.ecr.repositories")
        }
    }

    /// Why the repository's policy does not keep the last `keep` images (nil: it does). A policy
    /// that keeps fewer, or none at all, is drift; one that also has other rules is fine if one of
    /// them is the count rule with at least `keep`.
    public func drift(_ repository: String, keep: Int) async throws -> String? {
        guard let text = try await lifecyclePolicy(repository) else { return "\(repository): no lifecycle policy (the seed keeps the last \(keep) images)" }
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
            let rules = object["rules"] as? [[String: Any]]
        else { return "\(repository): the lifecycle policy is not readable JSON" }
        let counts = rules.compactMap { rule -> Int? in
            let selection = rule["selection"] as? [String: Any] ?? [:]
            guard selection["countType"] as? String == "imageCountMoreThan", selection["tagStatus"] as? String == "any" else { return nil }
            return selection["countNumber"] as? Int
        }
        guard let kept = counts.min() else { return "\(repository): the lifecycle policy has no \"keep last N images\" rule for all tags" }
        return kept == keep ? nil : "\(repository): the lifecycle policy keeps the last \(kept) images, the configuration asks \(keep)"
    }

    /// Applies the seed's policy (`put-lifecycle-policy`); returns the policy text now in place.
    @discardableResult
    public func applyKeepLast(_ repository: String, keep: Int) async throws -> String {
        let text = Self.keepLastPolicy(keep)
        do {
            _ = try await client.json(Self.prefix + "PutLifecyclePolicy", ["repositoryName": repository, "lifecyclePolicyText": text])
        } catch let e as LifeboatError where e.awsCode == .repositoryNotFound {
            throw LifeboatError(.notFound, "ECR repository \(repository) not found in \(client.account.region)", hint: "check aws.ecr.repositories")
        }
        return text
    }
}

import Foundation
import LifeboatAWSCore
import LifeboatCore

/// What Secrets Manager says about a secret, never its value (the seed's daily metadata backup).
public struct SecretMetadata: Sendable, Equatable, Codable {
    public var name: String
    public var arn: String?
    public var description: String?
    public var kmsKeyID: String?
    public var rotationEnabled: Bool
    public var lastChanged: Date?
    /// Set when the secret is scheduled for deletion (it can be restored until then + the window).
    public var deletedDate: Date?
    public var tags: [String: String]
    public var versionStages: [String: [String]]
}

extension SecretsManager {
    /// The metadata of every secret whose name starts with one of `prefixes` (all secrets when
    /// empty), those scheduled for deletion included. Values are never read.
    public func inventory(prefixes: [String]) async throws -> [SecretMetadata] {
        var out: [SecretMetadata] = []
        var token: String?
        repeat {
            var body: [String: Any] = ["IncludePlannedDeletion": true, "MaxResults": 100]
            if !prefixes.isEmpty { body["Filters"] = [["Key": "name", "Values": prefixes]] }
            if let token { body["NextToken"] = token }
            let answer = try await client.json("secretsmanager.ListSecrets", body)
            for s in answer["SecretList"] as? [[String: Any]] ?? [] {
                guard let name = s["Name"] as? String else { continue }
                if !prefixes.isEmpty, !prefixes.contains(where: { name.hasPrefix($0) }) { continue }
                var tags: [String: String] = [:]
                for t in s["Tags"] as? [[String: Any]] ?? [] { if let k = t["Key"] as? String { tags[k] = t["Value"] as? String ?? "" } }
                out.append(SecretMetadata(name: name, arn: s["ARN"] as? String, description: s["Description"] as? String,
                    kmsKeyID: s["KmsKeyId"] as? String, rotationEnabled: s["RotationEnabled"] as? Bool ?? false,
                    lastChanged: (s["LastChangedDate"] as? Double).map { Date(timeIntervalSince1970: $0) },
                    deletedDate: (s["DeletedDate"] as? Double).map { Date(timeIntervalSince1970: $0) }, tags: tags,
                    versionStages: s["SecretVersionsToStages"] as? [String: [String]] ?? [:]))
            }
            token = (answer["NextToken"] as? String).flatMap { $0.isEmpty ? nil : $0 }
        } while token != nil
        return out.sorted { $0.name < $1.name }
    }

    /// Creates a secret with a value (the seed's recovery when the secret is gone for good). The
    /// value is sent once and never logged.
    public func create(_ name: String, value: String, description: String?, kmsKeyID: String?, tags: [String: String]) async throws -> String {
        var body: [String: Any] = ["Name": name, "SecretString": value, "ClientRequestToken": UUID().uuidString]
        if let description { body["Description"] = description }
        if let kmsKeyID { body["KmsKeyId"] = kmsKeyID }
        if !tags.isEmpty { body["Tags"] = tags.sorted { $0.key < $1.key }.map { ["Key": $0.key, "Value": $0.value] } }
        do {
            let answer = try await client.json("secretsmanager.CreateSecret", body)
            return answer["ARN"] as? String ?? name
        } catch let e as LifeboatError where e.awsCode == .resourceExists {
            throw LifeboatError(.targetNotEmpty, "secret \(name) already exists", hint: "restore or update it instead of creating it")
        }
    }

    /// Whether the secret exists (scheduled for deletion or not); nil deleted date: it is live.
    public func exists(_ name: String) async throws -> (exists: Bool, deletedDate: Date?) {
        do {
            let d = try await describe(name)
            return (true, d.deletedDate)
        } catch let e as LifeboatError where e.awsCode == .resourceNotFound {
            return (false, nil)
        }
    }
}

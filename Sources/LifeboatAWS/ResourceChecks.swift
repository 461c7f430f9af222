import Foundation
import LifeboatAWSCore
import LifeboatCore

/// Read-only lookups of the account's resources a runbook names (security groups, KMS keys), so a
/// run stops before it changes anything when one does not exist in the region it will be used in.
public struct ResourceChecks: Sendable {
    public let ec2: AWSClient
    public let kms: AWSClient

    public init(ec2: AWSClient, kms: AWSClient) {
        self.ec2 = ec2
        self.kms = kms
    }

    /// Every security group exists (EC2 `DescribeSecurityGroups`).
    public func checkSecurityGroups(_ ids: [String]) async throws {
        guard !ids.isEmpty else { return }
        var p: [(String, String)] = []
        for (i, id) in ids.enumerated() { p.append(("GroupId.\(i + 1)", id)) }
        do {
            let answer = try await ec2.query("DescribeSecurityGroups", version: "2016-11-15", p)
            let found = Set(answer.all("item").compactMap { $0.child("groupId") })
            if let missing = ids.first(where: { !found.contains($0) }) {
                throw LifeboatError(.notFound, "security group \(missing) does not exist in \(ec2.account.region)")
            }
        } catch let e as LifeboatError where e.awsCode?.rawValue == "InvalidGroup.NotFound" {
            throw LifeboatError(.notFound, "security group(s) \(ids.joined(separator: ", ")) not found in \(ec2.account.region): \(e.message)",
                hint: "a destroyed group gets a new id when Terraform recreates it: take the id from `terraform output` after the apply")
        }
    }

    /// The KMS key exists in this client's region and is enabled (a snapshot copy or an encrypted
    /// restore under a key of another region fails).
    public func checkKey(_ key: String) async throws {
        do {
            let answer = try await kms.json("TrentService.DescribeKey", ["KeyId": key])
            let meta = answer["KeyMetadata"] as? [String: Any] ?? [:]
            if let state = meta["KeyState"] as? String, state != "Enabled" {
                throw LifeboatError(.invalidUsage, "KMS key \(key) in \(kms.account.region) is \(state), not Enabled")
            }
        } catch let e as LifeboatError where e.awsCode == .resourceNotFound || e.awsCode?.rawValue == "NotFoundException" {
            throw LifeboatError(.notFound, "KMS key \(key) does not exist in \(kms.account.region)",
                hint: "each region has its own keys: give a key of \(kms.account.region)")
        }
    }
}

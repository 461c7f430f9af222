import Foundation
import LifeboatAWSCore
import LifeboatCore

/// AWS Config: the seed's `deliver-config-snapshot` (the account's resource configuration, delivered
/// by AWS Config to its S3 bucket) and the delivery channel's last status.
public struct ConfigSnapshots: Sendable {
    public let client: AWSClient
    static let prefix = "StarlingDoveService."

    public init(client: AWSClient) { self.client = client }

    /// Asks AWS Config to deliver a snapshot; returns its id.
    public func deliver(channel: String) async throws -> String {
        do {
            let answer = try await client.json(Self.prefix + "DeliverConfigSnapshot", ["deliveryChannelName": channel])
            guard let id = answer["configSnapshotId"] as? String else {
                throw LifeboatError(.externalCommand, "AWS config DeliverConfigSnapshot: the answer has no configSnapshotId")
            }
            return id
        } catch let e as LifeboatError where e.awsCode == .noSuchDeliveryChannel {
            throw LifeboatError(.notFound, "AWS Config has no delivery channel \(channel) in \(client.account.region)",
                hint: "set up AWS Config (a recorder and a delivery channel) or fix aws.config.delivery_channel")
        } catch let e as LifeboatError where e.message.contains("not been implemented") || (e.awsCode == nil && e.message.contains("HTTP 50")) {
            throw LifeboatError(.externalCommand, "the AWS endpoint does not implement AWS Config's DeliverConfigSnapshot (\(client.account.endpoint ?? "AWS"))",
                hint: "moto lacks this call; on AWS it needs config:DeliverConfigSnapshot", cause: e)
        }
    }

    /// The delivery channel's last snapshot delivery: status (`Success`, `Failure`, `Not_Applicable`) and time.
    public func lastDelivery(channel: String) async throws -> (status: String?, time: Date?, error: String?) {
        let answer = try await client.json(Self.prefix + "DescribeDeliveryChannelStatus", ["DeliveryChannelNames": [channel]])
        let info = ((answer["DeliveryChannelsStatus"] as? [[String: Any]])?.first?["configSnapshotDeliveryInfo"]) as? [String: Any] ?? [:]
        return (info["lastStatus"] as? String, (info["lastSuccessfulTime"] as? Double).map { Date(timeIntervalSince1970: $0) },
            info["lastErrorMessage"] as? String)
    }
}

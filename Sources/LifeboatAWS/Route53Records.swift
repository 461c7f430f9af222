import Foundation
import LifeboatAWSCore
import LifeboatCore

/// One DNS record set.
public struct DNSRecord: Sendable, Equatable, Codable {
    public var name: String
    public var type: String
    public var ttl: Int
    public var values: [String]

    public init(name: String, type: String, ttl: Int, values: [String]) {
        self.name = name
        self.type = type
        self.ttl = ttl
        self.values = values
    }
}

/// Route 53 records: the seed's "update DNS to point to the new region" (and back).
public struct Route53Records: Sendable {
    public let client: AWSClient
    static let api = "/2013-04-01"

    public init(client: AWSClient) { self.client = client }

    static func zonePath(_ zone: String) -> String {
        zone.hasPrefix("/hostedzone/") ? String(zone.dropFirst("/hostedzone/".count)) : zone
    }

    static func fqdn(_ name: String) -> String { name.hasSuffix(".") ? name : name + "." }

    /// The record set `name`/`type` in the zone, if there is one.
    public func record(zone: String, name: String, type: String) async throws -> DNSRecord? {
        let answer = try await client.rest("GET", "\(Self.api)/hostedzone/\(Self.zonePath(zone))/rrset",
            query: [("name", Self.fqdn(name)), ("type", type), ("maxitems", "1")], action: "ListResourceRecordSets")
        guard let set = answer.all("ResourceRecordSet").first,
            set.child("Name").map(Self.fqdn) == Self.fqdn(name), set.child("Type") == type
        else { return nil }
        return DNSRecord(name: Self.fqdn(name), type: type, ttl: set.child("TTL").flatMap { Int($0) } ?? 0,
            values: set.all("ResourceRecord").compactMap { $0.child("Value") })
    }

    /// Creates or replaces the record set; returns the change id.
    public func upsert(zone: String, record: DNSRecord, comment: String) async throws -> String {
        func esc(_ t: String) -> String {
            t.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
        }
        let values = record.values.map { "<ResourceRecord><Value>\(esc($0))</Value></ResourceRecord>" }.joined()
        let body = """
            <?xml version="1.0" encoding="UTF-8"?>
            <ChangeResourceRecordSetsRequest xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><ChangeBatch><Comment>\(esc(comment))</Comment><Changes><Change><Action>UPSERT</Action><ResourceRecordSet><Name>\(esc(Self.fqdn(record.name)))</Name><Type>\(esc(record.type))</Type><TTL>\(record.ttl)</TTL><ResourceRecords>\(values)</ResourceRecords></ResourceRecordSet></Change></Changes></ChangeBatch></ChangeResourceRecordSetsRequest>
            """
        let answer = try await client.rest("POST", "\(Self.api)/hostedzone/\(Self.zonePath(zone))/rrset/", body: Data(body.utf8),
            action: "ChangeResourceRecordSets")
        guard let id = answer.text("Id") else { throw LifeboatError(.externalCommand, "AWS route53 ChangeResourceRecordSets: no change id") }
        return id
    }

    /// Polls until the change is INSYNC (served by every Route 53 name server).
    public func waitInSync(_ change: String, timeout: TimeInterval, poll: TimeInterval) async throws {
        let id = change.hasPrefix("/change/") ? String(change.dropFirst("/change/".count)) : change
        _ = try await AWSWait.until(what: "DNS change \(id) to reach every name server", timeout: timeout, every: poll) {
            let answer = try await client.rest("GET", "\(Self.api)/change/\(id)", action: "GetChange")
            return answer.text("Status") == "INSYNC" ? true : nil
        }
    }
}

import Foundation
import LifeboatCore
import LifeboatRunbooks

/// Which node of an HA cluster takes the scheduled backups when `serve` runs on every node.
///
/// The choice is made from Patroni's view of the cluster (`GET /cluster` on the node's own REST
/// API): every node reads the same member list from the same DCS, applies the same rule, and so
/// agrees without a lock of our own. A lock in the repository would need conditional writes and
/// leases on every store (clock skew, a crashed holder) and would still have to ask someone which
/// replica is healthy; Patroni already holds that consensus. The rule: the first healthy replica by
/// name (streaming or running, lag known and within `maxLagBytes`, no `nobackup` tag), else the
/// leader. A node that cannot reach its Patroni does not back up (the others elect among themselves).
public struct BackupNodeElection: Sendable {
    /// One member as Patroni reports it.
    public struct Member: Codable, Sendable, Equatable {
        public var name: String
        public var role: String
        public var state: String
        public var lagBytes: UInt64?
        public var noBackup: Bool

        public init(name: String, role: String, state: String, lagBytes: UInt64?, noBackup: Bool = false) {
            self.name = name
            self.role = role
            self.state = state
            self.lagBytes = lagBytes
            self.noBackup = noBackup
        }

        var isLeader: Bool { role == "leader" || role == "standby_leader" }
    }

    /// The outcome, for /status, /healthz and the dashboard.
    public struct Choice: Codable, Sendable, Equatable {
        public var thisNode: String?
        public var backupNode: String?
        public var reason: String
        public var checkedAt: Date
        /// Set when Patroni could not be asked: this node then does not back up.
        public var error: String?
        public var thisNodeBacksUp: Bool { error == nil && thisNode != nil && thisNode == backupNode }

        /// `node2 (this node): the first healthy replica by name (...)`.
        public var summary: String {
            if let error { return "unknown (\(error)); this node does not back up" }
            let who = backupNode.map { $0 + ($0 == thisNode ? " (this node)" : "") } ?? "none"
            return "\(who): \(reason)"
        }

        func withTime(_ date: Date) -> Choice {
            var copy = self
            copy.checkedAt = date
            return copy
        }
    }

    public var patroniURL: String
    public var maxLagBytes: UInt64
    /// Prefer the leader over replicas (for clusters whose replicas are too small to read a backup).
    public var preferLeader: Bool

    public init(patroniURL: String, maxLagBytes: UInt64 = 64 << 20, preferLeader: Bool = false) {
        self.patroniURL = patroniURL.hasSuffix("/") ? String(patroniURL.dropLast()) : patroniURL
        self.maxLagBytes = maxLagBytes
        self.preferLeader = preferLeader
    }

    /// The rule, on a member list: the same list gives the same answer on every node.
    public static func choose(_ members: [Member], maxLagBytes: UInt64, preferLeader: Bool) -> (name: String?, reason: String) {
        let sorted = members.sorted { $0.name < $1.name }
        let leader = sorted.first { $0.isLeader && $0.state == "running" && !$0.noBackup }
        let healthy = sorted.filter {
            !$0.isLeader && !$0.noBackup && ["streaming", "running"].contains($0.state) && ($0.lagBytes.map { $0 <= maxLagBytes } ?? false)
        }
        if preferLeader, let leader { return (leader.name, "the leader (prefer_leader)") }
        if let replica = healthy.first {
            return (replica.name, "the first healthy replica by name (\(replica.state), \(replica.lagBytes ?? 0) bytes behind)")
        }
        if let leader { return (leader.name, "the leader: no replica is healthy (streaming, within \(maxLagBytes) bytes)") }
        return (nil, "no member is healthy: nobody backs up")
    }

    /// Asks this node's Patroni who it is and who is in the cluster, then applies the rule.
    public func elect(now: Date = Date()) async -> Choice {
        do {
            let me = try await fetch("/patroni", as: PatroniJSON.self, acceptUnavailable: true)
            let cluster = try await fetch("/cluster", as: ClusterJSON.self, acceptUnavailable: false)
            let name = me.patroni?.name
            if cluster.pause == true {
                return Choice(thisNode: name, backupNode: nil, reason: "the cluster is paused (maintenance mode): nobody backs up", checkedAt: now)
            }
            let members = cluster.members.map {
                Member(name: $0.name, role: $0.role ?? "", state: $0.state ?? "", lagBytes: $0.lag?.bytes, noBackup: $0.tags?["nobackup"]?.isTrue == true)
            }
            let chosen = Self.choose(members, maxLagBytes: maxLagBytes, preferLeader: preferLeader)
            return Choice(thisNode: name, backupNode: chosen.name, reason: chosen.reason, checkedAt: now)
        } catch {
            return Choice(thisNode: nil, backupNode: nil, reason: "Patroni could not be asked: this node does not back up", checkedAt: now,
                error: (error as? LifeboatError)?.message ?? "\(error)")
        }
    }

    private func fetch<T: Decodable>(_ path: String, as type: T.Type, acceptUnavailable: Bool) async throws -> T {
        let answer = try await PlainHTTP.send("GET", patroniURL + path, timeout: 5)
        // /patroni answers 503 on a node whose PostgreSQL is not running; the body still names the node.
        guard answer.status == 200 || (acceptUnavailable && answer.status == 503) else {
            throw LifeboatError(.externalCommand, "GET \(patroniURL)\(path) answered \(answer.status)")
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(answer.body.utf8))
        } catch {
            throw LifeboatError(.externalCommand, "GET \(patroniURL)\(path) answered what is not Patroni's JSON: \(error)")
        }
    }

    struct PatroniJSON: Decodable {
        struct Identity: Decodable { var name: String? }
        var patroni: Identity?
    }

    struct ClusterJSON: Decodable {
        var members: [MemberJSON]
        var pause: Bool?
    }

    struct MemberJSON: Decodable {
        var name: String
        var role: String?
        var state: String?
        var lag: Lag?
        var tags: [String: TagValue]?
    }

    /// Bytes behind the leader, or `"unknown"`.
    struct Lag: Decodable {
        var bytes: UInt64?
        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            bytes = try? c.decode(UInt64.self)
        }
    }

    /// A tag's value: YAML lets users write true, "true" or 1.
    struct TagValue: Decodable {
        var isTrue: Bool
        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let b = try? c.decode(Bool.self) {
                isTrue = b
            } else if let s = try? c.decode(String.self) {
                isTrue = ["true", "yes", "on", "1"].contains(s.lowercased())
            } else {
                isTrue = ((try? c.decode(Int.self)) ?? 0) != 0
            }
        }
    }
}

import Foundation
import LifeboatCore
import Logging

/// What a backup read from a standby needs from the primary: finding it (given, or the node the
/// standby's WAL receiver streams from, following cascades), checking it is the same cluster on the
/// same timeline and that someone archives, and the WAL switch that lets the backup's last segment
/// be archived. The files themselves come from the standby; the primary only answers a few queries.
struct StandbyUpstream: Sendable {
    /// What the primary said about itself.
    struct Primary: Sendable {
        var endpoint: PostgresEndpoint
        var systemIdentifier: String
        var timeline: UInt32
        var archives: Bool
    }

    var logger: Logger

    /// The primary of `standby`: `explicit` when given; otherwise the sender of the standby's WAL
    /// receiver, and its sender while that is a standby too (cascading replication). Connects with
    /// `credentials`' user, password and database. Nil when the standby streams from nobody (it
    /// replays from the archive only) and no primary was given.
    func locate(standby: PostgresSession, credentials: PostgresEndpoint, explicit: PostgresEndpoint?) async throws -> Primary? {
        if let explicit {
            let primary = try await inspect(explicit)
            guard !primary.inRecovery else {
                throw LifeboatError(.invalidUsage, "the primary given, \(explicit.display), is itself a standby",
                    hint: "give the cluster's current primary with --primary-host/--primary-port, or omit them to follow the standby's own primary_conninfo")
            }
            return primary.state
        }
        var session = standby
        var opened: PostgresSession?
        defer { if let opened { Task { await opened.close() } } }
        for _ in 0..<4 {
            guard let row = try await session.query("SELECT coalesce(sender_host, ''), coalesce(sender_port, 0)::text, status FROM pg_stat_wal_receiver").first,
                row.count == 3, let host = row[0] ?? nil, !host.isEmpty, let portText = row[1] ?? nil, let port = Int(portText), port > 0
            else { return nil }
            var endpoint = credentials
            endpoint.host = host
            endpoint.port = port
            let upstream = try await inspect(endpoint)
            if !upstream.inRecovery { return upstream.state }
            // A cascading standby: ask it for its own sender.
            if let opened { await opened.close() }
            let next = try await PostgresSession.connect(endpoint, logger: logger)
            opened = next
            session = next
        }
        throw LifeboatError(.invalidUsage, "no primary found within four cascading standbys of the backed-up standby",
            hint: "give the primary with --primary-host/--primary-port")
    }

    private func inspect(_ endpoint: PostgresEndpoint) async throws -> (state: Primary, inRecovery: Bool) {
        let session: PostgresSession
        do {
            session = try await PostgresSession.connect(endpoint, logger: logger)
        } catch let error as LifeboatError {
            throw LifeboatError(.postgres, "cannot reach the primary \(endpoint.display) of the standby being backed up: \(error.message)",
                hint: "the backup's files come from the standby, but the primary must archive and switch WAL; give it with --primary-host/--primary-port, and credentials that work on it")
        }
        defer { Task { await session.close() } }
        guard let row = try await session.query("""
            SELECT (SELECT system_identifier::text FROM pg_control_system()), pg_is_in_recovery()::text,
                   CASE WHEN pg_is_in_recovery() THEN '0' ELSE substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) END,
                   current_setting('archive_mode'), current_setting('archive_command')
            """).first, row.count == 5
        else { throw LifeboatError(.postgres, "unexpected answer from the primary \(endpoint.display)") }
        let command = row[4] ?? ""
        let archives = row[3] != "off" && !command.isEmpty && command != "(disabled)"
        return (Primary(endpoint: endpoint, systemIdentifier: row[0] ?? "", timeline: UInt32(row[2] ?? "", radix: 16) ?? 0, archives: archives),
            row[1] == "true")
    }

    /// After the standby's backup stopped at `stop` (timeline `timeline`): checks the primary is
    /// still on that timeline, then switches WAL on it when its current segment is the stop
    /// segment, so that segment becomes complete and is archived.
    func switchWAL(on primary: PostgresEndpoint, stop: WALSegment, systemIdentifier: String) async throws {
        let session = try await PostgresSession.connect(primary, logger: logger)
        defer { Task { await session.close() } }
        guard let row = try await session.query("""
            SELECT pg_is_in_recovery()::text, (SELECT system_identifier::text FROM pg_control_system()),
                   CASE WHEN pg_is_in_recovery() THEN '' ELSE pg_walfile_name(pg_current_wal_lsn()) END
            """).first, row.count == 3
        else { throw LifeboatError(.postgres, "unexpected answer from the primary \(primary.display)") }
        guard row[0] == "false" else {
            throw LifeboatError(.postgres, "the primary \(primary.display) became a standby during the backup (a failover); the backup was not committed",
                hint: "run the backup again once the cluster has a new primary")
        }
        guard row[1] == systemIdentifier else {
            throw LifeboatError(.invalidUsage, "\(primary.display) is another cluster (system identifier \(row[1] ?? "?"), the standby's is \(systemIdentifier))")
        }
        guard let segment = (row[2] ?? nil).flatMap({ WALSegment(name: $0) }) else {
            throw LifeboatError(.postgres, "the primary \(primary.display) did not report its WAL position")
        }
        guard segment.timeline == stop.timeline else {
            throw LifeboatError(.postgres,
                "the primary \(primary.display) writes timeline \(segment.timeline), the standby's backup ran on timeline \(stop.timeline): a failover happened during the backup; the backup was not committed",
                hint: "run the backup again")
        }
        if segment.name == stop.name {
            _ = try await session.value("SELECT pg_switch_wal()::text")
            logger.info("switched WAL on the primary so the backup's last segment is archived",
                metadata: ["lifeboat.segment": .string(stop.name), "lifeboat.primary": .string(primary.display)])
        }
    }
}

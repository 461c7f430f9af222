import Foundation
import LifeboatCore
import Logging

/// The live state of a running cluster's WAL archiving, read from the server itself: what is not in
/// the archive yet is what a disaster right now would lose (the live RPO).
public struct ArchiverStatus: Codable, Sendable, Equatable {
    /// When the server answered.
    public var observedAt: Date
    public var inRecovery: Bool
    /// Completed segments (and history files) waiting for archive_command.
    public var readyFiles: Int
    /// How long the oldest of them has waited: the archive lag (0 when none waits).
    public var lagSeconds: Double
    /// WAL written but not archived yet: the waiting segments plus the part of the current segment
    /// written so far (which leaves only at a segment switch: archive_timeout bounds its age).
    public var unarchivedBytes: UInt64
    /// `archive_timeout` in seconds (0: off, the current segment may wait indefinitely).
    public var archiveTimeoutSeconds: Double
    public var archivedCount: Int64
    public var failedCount: Int64
    public var lastArchivedTime: Date?
    public var lastFailedWAL: String?
    public var lastFailedTime: Date?

    /// Archiving is failing now: the last attempt failed after the last success.
    public var failing: Bool {
        guard let failed = lastFailedTime else { return false }
        return failed > (lastArchivedTime ?? .distantPast) && readyFiles > 0
    }

    /// The most a disaster now could lose, in seconds: the lag plus the current segment's age bound.
    /// Nil when archive_timeout is off (the current segment then has no time bound).
    public var rpoBoundSeconds: Double? {
        archiveTimeoutSeconds > 0 ? lagSeconds + archiveTimeoutSeconds : nil
    }

    public init(observedAt: Date, inRecovery: Bool, readyFiles: Int, lagSeconds: Double, unarchivedBytes: UInt64,
        archiveTimeoutSeconds: Double, archivedCount: Int64, failedCount: Int64, lastArchivedTime: Date?,
        lastFailedWAL: String?, lastFailedTime: Date?)
    {
        self.observedAt = observedAt
        self.inRecovery = inRecovery
        self.readyFiles = readyFiles
        self.lagSeconds = lagSeconds
        self.unarchivedBytes = unarchivedBytes
        self.archiveTimeoutSeconds = archiveTimeoutSeconds
        self.archivedCount = archivedCount
        self.failedCount = failedCount
        self.lastArchivedTime = lastArchivedTime
        self.lastFailedWAL = lastFailedWAL
        self.lastFailedTime = lastFailedTime
    }

    static let query = """
        SELECT now()::text, pg_is_in_recovery()::text,
          (SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready')::text,
          (SELECT coalesce(extract(epoch FROM now() - min(modification)), 0) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready')::text,
          (SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name ~ '^[0-9A-F]{24}[.]ready$')::text,
          CASE WHEN pg_is_in_recovery() THEN '0' ELSE (pg_current_wal_lsn() - '0/0'::pg_lsn)::text END,
          current_setting('wal_segment_size'), current_setting('archive_timeout'),
          archived_count::text, failed_count::text, last_archived_time::text, last_failed_wal, last_failed_time::text
        FROM pg_stat_archiver
        """

    /// Reads the status over an open session (needs superuser or pg_monitor).
    public static func read(_ session: PostgresSession) async throws -> ArchiverStatus {
        guard let row = try await session.query(query).first, row.count == 13 else {
            throw LifeboatError(.postgres, "pg_stat_archiver returned nothing usable")
        }
        func text(_ i: Int) -> String? { row[i].flatMap { $0.isEmpty ? nil : $0 } }
        func date(_ i: Int) throws -> Date? { try text(i).map(Timestamp.parse) }
        let segmentSize = try ServerSettings.bytes(text(6) ?? "16MB")
        let position = UInt64(text(5).flatMap { Double($0) } ?? 0)
        let readySegments = UInt64(text(4).flatMap(Int.init) ?? 0)
        // The current segment's written part: everything past its start. (A segment just switched
        // away from has its .ready file and is counted there.)
        let current = segmentSize > 0 ? position % segmentSize : 0
        return ArchiverStatus(observedAt: try date(0) ?? Date(), inRecovery: text(1) == "true",
            readyFiles: text(2).flatMap(Int.init) ?? 0, lagSeconds: max(0, text(3).flatMap(Double.init) ?? 0),
            unarchivedBytes: readySegments * segmentSize + current,
            archiveTimeoutSeconds: try ServerSettings.seconds(text(7) ?? "0"),
            archivedCount: text(8).flatMap { Int64($0) } ?? 0, failedCount: text(9).flatMap { Int64($0) } ?? 0,
            lastArchivedTime: try date(10), lastFailedWAL: text(11), lastFailedTime: try date(12))
    }
}

/// PostgreSQL's `current_setting` texts with units ("16MB", "60s", "5min").
public enum ServerSettings {
    public static func bytes(_ text: String) throws -> UInt64 {
        let (number, unit) = try split(text)
        let scale: UInt64
        switch unit.lowercased() {
        case "", "b": scale = 1
        case "kb": scale = 1024
        case "mb": scale = 1 << 20
        case "gb": scale = 1 << 30
        case "tb": scale = 1 << 40
        default: throw LifeboatError(.postgres, "unexpected size '\(text)' from the server")
        }
        return number * scale
    }

    public static func seconds(_ text: String) throws -> Double {
        let (number, unit) = try split(text)
        switch unit {
        case "", "s": return Double(number)
        case "ms": return Double(number) / 1000
        case "us": return Double(number) / 1_000_000
        case "min": return Double(number) * 60
        case "h": return Double(number) * 3600
        case "d": return Double(number) * 86400
        default: throw LifeboatError(.postgres, "unexpected duration '\(text)' from the server")
        }
    }

    static func split(_ text: String) throws -> (UInt64, String) {
        let digits = text.prefix { $0.isNumber }
        guard let n = UInt64(digits) else { throw LifeboatError(.postgres, "unexpected setting '\(text)' from the server") }
        return (n, String(text.dropFirst(digits.count)).trimmingCharacters(in: .whitespaces))
    }
}

import Foundation
import LifeboatCore

/// What `info` shows: backups, the recovery window and the state of the WAL archive.
public struct RepositorySummary: Codable, Sendable {
    public struct Timeline: Codable, Sendable {
        public var timeline: UInt32
        public var segments: Int
        public var first: String?
        public var last: String?
    }

    public var location: String
    public var repositoryID: String
    public var format: Int
    public var backups: [BackupRecord]
    /// The seed's `EarliestRestorableTime`: the end of the oldest backup.
    public var earliestRestorableTime: Date?
    /// The seed's `LatestRestorableTime`, approximated by when the newest WAL segment was archived
    /// (every transaction in it committed before that).
    public var latestRestorableTime: Date?
    public var lastArchivedWAL: String?
    public var walFiles: Int
    public var walBytes: Int
    public var timelines: [Timeline]
    public var chunkCount: Int
    public var totalBytes: Int
    /// Lag of each further repository of this cluster (filled by the caller that knows them).
    public var replicas: [ReplicaLag] = []

    public static func make(_ repo: Repository) async throws -> RepositorySummary {
        let all = try await repo.store.list(prefix: "")
        let backups = try await repo.backups()
        let wal = try await repo.walFiles()
        var byTimeline: [UInt32: [WALSegment]] = [:]
        var newest: (WALSegment, Date)?
        for (file, info) in wal {
            if case .segment(let s) = file {
                byTimeline[s.timeline, default: []].append(s)
                if info.modified > (newest?.1 ?? .distantPast) { newest = (s, info.modified) }
            }
        }
        let timelines = byTimeline.keys.sorted().map { tli -> Timeline in
            let segs = (byTimeline[tli] ?? []).sorted()
            return Timeline(timeline: tli, segments: segs.count, first: segs.first?.name, last: segs.last?.name)
        }
        return RepositorySummary(location: repo.store.location, repositoryID: repo.config.repositoryID, format: repo.config.format,
            backups: backups, earliestRestorableTime: backups.first?.stopTime,
            latestRestorableTime: backups.isEmpty ? nil : newest.map { max($0.1, backups.last?.stopTime ?? $0.1) },
            lastArchivedWAL: newest?.0.name, walFiles: wal.count, walBytes: wal.reduce(0) { $0 + $1.info.size },
            timelines: timelines, chunkCount: all.filter { $0.key.hasPrefix("chunks/") }.count,
            totalBytes: all.reduce(0) { $0 + $1.size })
    }
}

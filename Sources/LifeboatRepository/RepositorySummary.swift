import Foundation
import LifeboatCore

/// What `info` shows: backups, the recovery window and the state of the WAL archive, timeline by
/// timeline as recovery follows them.
public struct RepositorySummary: Codable, Sendable {
    public struct Timeline: Codable, Sendable {
        public var timeline: UInt32
        public var segments: Int
        public var first: String?
        public var last: String?
        /// The timeline this one forked from, and where.
        public var parent: UInt32?
        public var forkedAt: String?
        /// Whether the newest timeline's history runs through this one.
        public var onLatestLine: Bool
        /// Segments past the point where the newest timeline leaves this one (`FIRST..LAST (N)`):
        /// an old primary's WAL after a failover, restorable along this timeline only.
        public var abandonedTail: String?
    }

    public var location: String
    public var repositoryID: String
    public var format: Int
    public var backups: [BackupRecord]
    /// The seed's `EarliestRestorableTime`: the end of the oldest backup.
    public var earliestRestorableTime: Date?
    /// The seed's `LatestRestorableTime`: when the last segment of the newest timeline's history was
    /// archived (every transaction in it committed before that). An abandoned tail does not count.
    public var latestRestorableTime: Date?
    /// The last segment on the newest timeline's history.
    public var lastArchivedWAL: String?
    public var latestTimeline: UInt32
    public var walFiles: Int
    public var walBytes: Int
    public var timelines: [Timeline]
    /// Chunk objects (whole and delta); chunks inside packs are not counted here.
    public var chunkCount: Int
    /// Pack objects (format 3), each holding many small chunks.
    public var packCount: Int = 0
    public var totalBytes: Int
    /// Lag of each mirror repository of this cluster (filled by the caller that knows them).
    public var mirrors: [MirrorStatus] = []

    public static func make(_ repo: Repository) async throws -> RepositorySummary {
        let all = try await repo.store.list(prefix: "")
        let backups = try await repo.backups()
        let wal = try await repo.walFiles()
        let size = backups.last?.walSegmentSize ?? 16 << 20
        let graph = try await repo.timelineGraph(segmentSize: size)
        let latest = graph.latestTimeline
        var lastSegment: WALSegment?
        var lastTime: Date?
        if let n = graph.lastSegment(on: latest) {
            let s = graph.segment(n, on: latest)
            lastSegment = s
            lastTime = wal.first { $0.file == .segment(s) }?.info.modified
        }
        let timelines = graph.summaries().map { t in
            Timeline(timeline: t.timeline, segments: t.segments, first: t.first?.name, last: t.last?.name, parent: t.parent,
                forkedAt: t.forkedAt?.description, onLatestLine: t.onLatestLine,
                abandonedTail: t.abandonedTail.map { "\($0.first.name)..\($0.last.name) (\($0.count))" })
        }
        return RepositorySummary(location: repo.store.location, repositoryID: repo.config.repositoryID, format: repo.config.format,
            backups: backups, earliestRestorableTime: backups.first?.stopTime,
            latestRestorableTime: backups.isEmpty ? nil : lastTime.map { max($0, backups.last?.stopTime ?? $0) },
            lastArchivedWAL: lastSegment?.name, latestTimeline: latest, walFiles: wal.count, walBytes: wal.reduce(0) { $0 + $1.info.size },
            timelines: timelines, chunkCount: all.filter { RepositoryObject(key: $0.key)?.chunk != nil }.count,
            packCount: all.filter { RepositoryObject(key: $0.key)?.packID != nil }.count,
            totalBytes: all.reduce(0) { $0 + $1.size })
    }
}

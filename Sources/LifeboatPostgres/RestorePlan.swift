import Foundation
import LifeboatCore
import LifeboatRepository
import Logging

/// What to restore, where, and whether to bring the server up.
public struct RestoreOptions: Sendable {
    public enum ArchiveMode: String, Sendable, CaseIterable {
        /// Keep the backed-up archive settings: once promoted, the restored cluster archives its new
        /// timeline into the repository (for a restored cluster that becomes production).
        case keep
        /// Disable archiving on the restored cluster (the default): a copy restored to inspect or
        /// verify must never add a timeline to production's archive, or later point-in-time
        /// restores following `latest` would take that timeline.
        case off
    }

    public var destination: String
    public var target: RecoveryTarget
    public var backupID: String?
    /// How the restored server calls Lifeboat back (`restore_command`).
    public var invocation: LifeboatInvocation
    public var archiveMode: ArchiveMode
    public var targetTimeline: TimelineChoice
    /// Tablespace oid or name to directory; unmapped ones go to `<destination>.tablespaces/<oid>`.
    public var tablespaceMap: [String: String]
    /// Restore up to a gap in the archive knowingly instead of refusing.
    public var acceptWALGap: Bool
    public var parallelism: Int
    public var start: Bool
    public var port: Int
    public var socketDirectory: String
    public var listenAddresses: String
    public var binDirectory: String?
    public var recoveryTimeout: TimeInterval
    /// With `start`: WAL segments kept fetched ahead of the recovering server (0: none).
    public var walPrefetch: Int
    /// Build a streaming standby of this primary instead of a promoted copy (nil: promote).
    public var standby: StandbySettings?
    /// With `start`: settings for the recovery run only (on the server's command line; the restored
    /// configuration is left as it is), e.g. `archive_mode=off` while a new cluster recovers.
    public var recoveryRunSettings: [String: String] = [:]
    /// With `start`: shut the promoted server down cleanly once the point reached is checked (a
    /// new cluster someone else, Patroni, starts).
    public var stopAfterRecovery = false

    public init(destination: String, target: RecoveryTarget = .latest, backupID: String? = nil, invocation: LifeboatInvocation,
        archiveMode: ArchiveMode = .off, targetTimeline: TimelineChoice = .latest, tablespaceMap: [String: String] = [:],
        acceptWALGap: Bool = false, parallelism: Int = 4, start: Bool = false, port: Int = 5432, socketDirectory: String = "/tmp",
        listenAddresses: String = "127.0.0.1", binDirectory: String? = nil, recoveryTimeout: TimeInterval = 3600, walPrefetch: Int = 8,
        standby: StandbySettings? = nil)
    {
        self.destination = destination
        self.target = target
        self.backupID = backupID
        self.invocation = invocation
        self.archiveMode = archiveMode
        self.targetTimeline = targetTimeline
        self.tablespaceMap = tablespaceMap
        self.acceptWALGap = acceptWALGap
        self.parallelism = parallelism
        self.start = start
        self.port = port
        self.socketDirectory = socketDirectory
        self.listenAddresses = listenAddresses
        self.binDirectory = binDirectory
        self.recoveryTimeout = recoveryTimeout
        self.walPrefetch = walPrefetch
        self.standby = standby
    }
}

/// A standby built from the repository: it catches up from the archive with `restore_command`
/// (non-fatal errors: a standby retries) and streams from `primaryConnInfo` when given. Its
/// tablespaces go where the primary keeps them (a replica mirrors its primary's layout) unless mapped.
public struct StandbySettings: Sendable, Equatable {
    /// nil: no streaming, the archive only.
    public var primaryConnInfo: String?
    public var primarySlotName: String?
    /// The caller writes the standby's recovery configuration (Patroni does, in its own
    /// postgresql.conf): the restore writes none, so nothing in postgresql.auto.conf overrides it.
    public var configuredByCaller: Bool

    public init(primaryConnInfo: String? = nil, primarySlotName: String? = nil, configuredByCaller: Bool = false) {
        self.primaryConnInfo = primaryConnInfo
        self.primarySlotName = primarySlotName
        self.configuredByCaller = configuredByCaller
    }
}

/// A gap in the archive a restore stopped at, knowingly (`--accept-wal-gap`).
public struct WALGapReport: Codable, Sendable, Equatable {
    public var firstMissing: String
    public var missingSegments: Int
    /// Where recovery can get to: the end of the last segment before the gap.
    public var lastReachableLSN: String
    /// When that segment was archived (an upper bound of its last commit), if known.
    public var lastReachableTime: Date?
}

/// Where a tablespace went.
public struct RestoredTablespace: Codable, Sendable, Equatable {
    public var oid: UInt32
    public var name: String?
    public var directory: String
    /// Created in the WAL after the backup (its replay redirected here).
    public var createdInWAL: Bool
}

/// Everything a restore decided before writing a byte: the backup, the timeline, the WAL it needs
/// (checked present and continuous), where tablespaces go. `RestoreEngine.plan` makes it; the
/// runbooks' preflight and `--dry-run` show it.
public struct RestorePlan: Sendable {
    public var backup: BackupRecord
    /// The timeline recovery follows (always a number: PostgreSQL's own `latest` could pick another).
    public var timeline: UInt32
    public var target: RecoveryTarget
    public var graph: TimelineGraph
    /// The last segment replay must reach (nil: as far as the target takes it).
    public var lastNeededSegment: WALSegment?
    public var gap: WALGapReport?
    /// A gap the target may lie before (time, xid and name targets): reported if the server stops short.
    public var gapAfterPossibleTarget: TimelineGraph.Gap?
    public var tablespaceDirectories: [UInt32: String]
    public var notes: [String]
}

extension RestoreEngine {
    /// Decides the restore without writing: the backup on the target timeline's history, and
    /// the WAL from it to the target, present and continuous. A gap is refused with `.walGap`
    /// naming the first missing segment and the last reachable point, unless accepted.
    public func plan(_ options: RestoreOptions) async throws -> RestorePlan {
        let backups = try await repository.backups()
        var explicit: BackupRecord?
        if let id = options.backupID {
            guard let found = backups.first(where: { $0.id == id }) else {
                throw LifeboatError(.notFound, "backup \(id) does not exist", hint: "list backups with `lifeboat info`")
            }
            explicit = found
        }
        let segmentSize = explicit?.walSegmentSize ?? backups.last?.walSegmentSize ?? 16 << 20
        let graph = try await repository.timelineGraph(segmentSize: segmentSize)
        var notes: [String] = []

        // 1. The timeline, then the backup on its history.
        var backup: BackupRecord
        var timeline: UInt32
        switch options.targetTimeline {
        case .number(let n):
            guard graph.exists(n) else {
                throw LifeboatError(.notFound, "timeline \(n) is not in the archive",
                    hint: "timelines archived: \(graph.timelines.map(String.init).joined(separator: ", "))")
            }
            timeline = n
            backup = try explicit ?? options.target.chooseBackup(from: backups, along: n, in: graph)
        case .latest:
            if let explicit {
                // The newest timeline whose history runs through the backup.
                timeline = graph.timelines.reversed().first {
                    graph.contains(backupTimeline: explicit.timeline, stopLSN: explicit.stopLSN, on: $0)
                } ?? explicit.timeline
                backup = explicit
            } else {
                timeline = graph.latestTimeline
                backup = try options.target.chooseBackup(from: backups, along: timeline, in: graph)
            }
        case .current:
            if let explicit {
                backup = explicit
            } else {
                // Any timeline: the newest backup consistent before the target, then its own timeline.
                let candidates = graph.timelines.compactMap { tli -> BackupRecord? in
                    let own = backups.filter { $0.timeline == tli }
                    return own.isEmpty ? nil : try? options.target.chooseBackup(from: own, along: tli, in: graph)
                }
                guard let newest = candidates.max(by: { $0.stopTime < $1.stopTime }) else {
                    _ = try options.target.chooseBackup(from: backups, along: graph.latestTimeline, in: graph)
                    throw LifeboatError(.notFound, "no backup is consistent before the target \(options.target)")
                }
                backup = newest
            }
            timeline = backup.timeline
        }
        guard graph.contains(backupTimeline: backup.timeline, stopLSN: backup.stopLSN, on: timeline) else {
            let leaves = graph.leaves(backup.timeline, on: timeline)
            throw LifeboatError(.invalidUsage,
                "backup \(backup.id) (timeline \(backup.timeline), ends at \(backup.stopLSN)) is not on the history of timeline \(timeline)"
                    + (leaves.map { ": timeline \(timeline) left timeline \(backup.timeline) at \($0), before the backup ended" } ?? ""),
                hint: "omit --backup to let lifeboat pick one on that timeline's history, or choose --target-timeline \(backup.timeline)")
        }
        if case .time(let t) = options.target, t < backup.stopTime {
            throw LifeboatError(.invalidUsage, "backup \(backup.id) ends at \(Timestamp.format(backup.stopTime)), after the target time",
                hint: "choose an older backup or omit --backup to let lifeboat pick one")
        }
        if case .lsn(let l) = options.target, l < backup.stopLSN {
            throw LifeboatError(.invalidUsage, "backup \(backup.id) ends at lsn \(backup.stopLSN), after the target lsn \(l)",
                hint: "choose an older backup or omit --backup")
        }
        for stretch in graph.line(timeline) where stretch.timeline > 1 && graph.histories[stretch.timeline] == nil {
            throw LifeboatError(.walGap, "the history file of timeline \(stretch.timeline) (\(WALFileName.history(timeline: stretch.timeline))) is not archived",
                hint: "recovery cannot follow timeline \(stretch.timeline) without it; copy it from the cluster's pg_wal, or restore along an older timeline")
        }

        // 2. The WAL from the backup to the target, present and continuous.
        let size = backup.walSegmentSize
        let first = backup.startSegment.number(segmentSize: size)
        let stop = backup.stopSegment.number(segmentSize: size)
        let endOfLine = graph.lastSegment(on: timeline)
        var last: UInt64
        switch options.target {
        case .immediate: last = stop
        case .lsn(let l): last = max(stop, LSN(max(l.value, 1) - 1).value / size)
        default: last = max(stop, endOfLine ?? stop)
        }
        if options.standby != nil { last = stop }
        let gaps = graph.gaps(on: timeline, from: first, through: last)
        var gapReport: WALGapReport?
        var gapAfterTarget: TimelineGraph.Gap?
        if let gap = gaps.first {
            let reachable = gap.lastPresent.map { LSN(($0.number(segmentSize: size) + 1) * size) }
            var reachableTime: Date?
            if let present = gap.lastPresent { reachableTime = try await repository.store.info(Repository.walKey(.segment(present)))?.modified }
            let report = WALGapReport(firstMissing: gap.firstMissing.name, missingSegments: gap.count,
                lastReachableLSN: reachable?.description ?? backup.startLSN.description, lastReachableTime: reachableTime)
            let described = "\(gap.count) segment(s) from \(gap.firstMissing.name) are missing from the archive"
                + (reachable.map { "; recovery can reach lsn \($0)" } ?? "")
                + (reachableTime.map { " (archived \(Timestamp.format($0)))" } ?? "")
            if gap.firstMissing.number(segmentSize: size) <= stop {
                throw LifeboatError(.walGap, "backup \(backup.id) cannot become consistent: \(described)",
                    hint: "restore an older or newer backup (`lifeboat info`), or a copy of the repository that has the segment")
            }
            // Whether the target certainly lies beyond the gap.
            var beyond: Bool
            switch options.target {
            case .latest: beyond = true
            case .lsn(let l): beyond = reachable.map { l > $0 } ?? true
            case .time(let t): beyond = reachableTime.map { $0 < t } ?? false
            case .xid, .name: beyond = false
            case .immediate: beyond = false
            }
            if beyond {
                guard options.acceptWALGap else {
                    throw LifeboatError(.walGap, "the target \(options.target) lies beyond a gap in the archive: \(described)",
                        hint: "restore from a copy of the repository that has the segment, or give --accept-wal-gap to restore up to the gap knowingly (the report says so)")
                }
                gapReport = report
                notes.append("restoring up to the gap: \(described)")
                last = gap.lastPresent.map { $0.number(segmentSize: size) } ?? stop
                // Recovery must not try to switch to a later timeline past the gap.
                timeline = graph.timeline(ofSegment: last, on: timeline)
            } else {
                gapAfterTarget = gap
            }
        }
        let neededLast: WALSegment? = {
            switch options.target {
            case .latest, .immediate, .lsn: return graph.segment(last, on: timeline)
            default: return gapReport != nil ? graph.segment(last, on: timeline) : nil
            }
        }()

        // 3. Tablespaces: where each goes (a copy: never its original location; a standby: the primary's).
        var directories: [UInt32: String] = [:]
        let manifestOIDs = try await repository.manifest(for: backup).tablespaceOIDs
        for oid in manifestOIDs {
            let record = backup.tablespaces?.first { $0.oid == oid }
            let mapped = options.tablespaceMap[String(oid)] ?? record.flatMap { options.tablespaceMap[$0.name] }
            if mapped == nil, options.standby != nil, let location = record?.location, !location.isEmpty {
                directories[oid] = location
            } else {
                directories[oid] = mapped ?? Self.defaultTablespaceDirectory(options.destination, oid: oid)
            }
        }
        for key in options.tablespaceMap.keys where !manifestOIDs.contains(where: { String($0) == key }) {
            if backup.tablespace(named: key) == nil, UInt32(key) == nil {
                throw LifeboatError(.invalidUsage, "--tablespace-map names '\(key)', which is no tablespace of backup \(backup.id)",
                    hint: "its tablespaces: " + (backup.tablespaces ?? []).map { "\($0.oid) (\($0.name))" }.joined(separator: ", ")
                        + "; a tablespace created after the backup is mapped by its oid")
            }
        }
        let resolvedTarget: RecoveryTarget = gapReport != nil ? .latest : options.target
        if gapReport != nil, options.target != .latest { notes.append("the target \(options.target) is beyond the gap: recovering as far as the archive goes") }
        return RestorePlan(backup: backup, timeline: timeline, target: resolvedTarget, graph: graph, lastNeededSegment: neededLast,
            gap: gapReport, gapAfterPossibleTarget: gapAfterTarget, tablespaceDirectories: directories, notes: notes)
    }

    /// `<destination>.tablespaces/<oid>`: beside the data directory, the restore's own.
    public static func defaultTablespaceDirectory(_ destination: String, oid: UInt32) -> String {
        destination + ".tablespaces/\(oid)"
    }
}

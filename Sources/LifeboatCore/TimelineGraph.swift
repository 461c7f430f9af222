import Foundation

/// Which timeline a restore recovers along.
public enum TimelineChoice: Sendable, Equatable, CustomStringConvertible, Codable {
    /// The newest timeline in the archive (what becomes production after failovers and restores).
    case latest
    /// The timeline the backup was taken on.
    case current
    case number(UInt32)

    public init?(text: String) {
        switch text.lowercased() {
        case "latest": self = .latest
        case "current": self = .current
        default:
            guard let n = UInt32(text), n >= 1 else { return nil }
            self = .number(n)
        }
    }

    public var description: String {
        switch self {
        case .latest: return "latest"
        case .current: return "current"
        case .number(let n): return String(n)
        }
    }
}

/// The archive's timelines as PostgreSQL follows them: every timeline's ancestry from its history
/// file, and the segments archived. Everything that asks "which WAL does a restore along timeline T
/// read" asks this type: backup choice, the pre-restore WAL check, `verify`, `info` and the recovery
/// window. A parent's segments past the point where a child forked off are the parent's own tail:
/// part of the parent's line, never part of the child's, never "missing" from it.
public struct TimelineGraph: Sendable {
    public var segmentSize: UInt64
    public var segments: Set<WALSegment>
    public var histories: [UInt32: TimelineHistory]

    public init(segmentSize: UInt64, segments: Set<WALSegment>, histories: [UInt32: TimelineHistory]) {
        self.segmentSize = segmentSize
        self.segments = segments
        self.histories = histories
    }

    /// Every timeline the archive knows of: those with segments or a history file.
    public var timelines: [UInt32] {
        Array(Set(segments.map(\.timeline)).union(histories.keys).union([1])).sorted()
    }

    /// The newest timeline: the highest-numbered one in the archive.
    public var latestTimeline: UInt32 { timelines.last ?? 1 }

    /// Whether the archive knows timeline `tli` at all.
    public func exists(_ tli: UInt32) -> Bool { tli == 1 || histories[tli] != nil || segments.contains { $0.timeline == tli } }

    /// The history of `tli` (an empty one for timeline 1, or when its file is missing).
    public func history(_ tli: UInt32) -> TimelineHistory { histories[tli] ?? TimelineHistory(timeline: tli, entries: []) }

    /// One stretch of a timeline's line: WAL of timeline `timeline` from `begin` (nil: the start of
    /// WAL) up to `end` (nil: as far as it goes), where the line switches to the next timeline.
    public struct Stretch: Sendable, Equatable {
        public var timeline: UInt32
        public var begin: LSN?
        public var end: LSN?
    }

    /// The line of `tli`: its ancestors, oldest first, each up to its switch point, then `tli` itself.
    public func line(_ tli: UInt32) -> [Stretch] {
        let entries = history(tli).entries
        var stretches: [Stretch] = []
        var begin: LSN?
        for entry in entries {
            stretches.append(Stretch(timeline: entry.parentTimeline, begin: begin, end: entry.switchPoint))
            begin = entry.switchPoint
        }
        stretches.append(Stretch(timeline: tli, begin: begin, end: nil))
        return stretches
    }

    /// The timeline whose file of segment `number` a restore along `tli` reads: the segment holding
    /// a switch point is read from the newer timeline (it holds the parent's records up to the switch).
    public func timeline(ofSegment number: UInt64, on tli: UInt32) -> UInt32 {
        let lastByte = LSN((number + 1) * segmentSize - 1)
        return history(tli).timeline(at: lastByte)
    }

    /// The segment of `number` a restore along `tli` reads.
    public func segment(_ number: UInt64, on tli: UInt32) -> WALSegment {
        WALSegment(timeline: timeline(ofSegment: number, on: tli), number: number, segmentSize: segmentSize)
    }

    /// The last segment number archived on the line of `tli`: segments of ancestors count only up
    /// to where the line leaves them. Nil when the line has no segment.
    public func lastSegment(on tli: UInt32) -> UInt64? {
        var last: UInt64?
        for s in segments {
            let n = s.number(segmentSize: segmentSize)
            if s.timeline == timeline(ofSegment: n, on: tli), n > (last ?? 0) || last == nil { last = n }
        }
        return last
    }

    /// Whether a backup on timeline `backupTimeline` that became consistent at `stopLSN` can be
    /// restored along `tli`: its timeline is on the line, and the line does not leave it before the
    /// backup ends (a backup taken on the parent after the fork holds changes the child never had).
    public func contains(backupTimeline: UInt32, stopLSN: LSN, on tli: UInt32) -> Bool {
        guard let stretch = line(tli).first(where: { $0.timeline == backupTimeline }) else { return false }
        if let end = stretch.end, stopLSN > end { return false }
        return true
    }

    /// The switch point at which the line of `tli` leaves `ancestor` (nil if it never does or is not on it).
    public func leaves(_ ancestor: UInt32, on tli: UInt32) -> LSN? { line(tli).first { $0.timeline == ancestor }?.end }

    /// A run of consecutive missing segments on a line.
    public struct Gap: Sendable, Equatable {
        /// The first segment the line needs that the archive lacks.
        public var firstMissing: WALSegment
        /// How many consecutive segments are missing from there.
        public var count: Int
        /// The last segment before the gap that is there (nil: the gap starts at the first needed).
        public var lastPresent: WALSegment?
    }

    /// Segments a restore along `tli` needs from segment `first` through `last` that are not archived,
    /// grouped into gaps, oldest first.
    public func gaps(on tli: UInt32, from first: UInt64, through last: UInt64) -> [Gap] {
        guard last >= first else { return [] }
        var gaps: [Gap] = []
        var previous: WALSegment?
        var n = first
        while n <= last {
            let want = segment(n, on: tli)
            if segments.contains(want) {
                previous = want
                n += 1
                continue
            }
            var count = 0
            while n <= last, !segments.contains(segment(n, on: tli)) {
                count += 1
                n += 1
            }
            gaps.append(Gap(firstMissing: want, count: count, lastPresent: previous))
        }
        return gaps
    }

    /// How a timeline looks in the archive, for `info`.
    public struct Summary: Sendable, Equatable {
        public var timeline: UInt32
        public var segments: Int
        public var first: WALSegment?
        public var last: WALSegment?
        public var parent: UInt32?
        public var forkedAt: LSN?
        /// On the newest timeline's line: this timeline's segments past the point where that line
        /// leaves it (an old primary's WAL archived after a failover). Restorable along this
        /// timeline, never part of the newest one.
        public var abandonedTail: (first: WALSegment, last: WALSegment, count: Int)?
        /// Whether the newest timeline's line runs through this timeline.
        public var onLatestLine: Bool

        public static func == (a: Summary, b: Summary) -> Bool {
            a.timeline == b.timeline && a.segments == b.segments && a.first == b.first && a.last == b.last && a.parent == b.parent
                && a.forkedAt == b.forkedAt && a.onLatestLine == b.onLatestLine && a.abandonedTail?.first == b.abandonedTail?.first
                && a.abandonedTail?.last == b.abandonedTail?.last && a.abandonedTail?.count == b.abandonedTail?.count
        }
    }

    public func summaries() -> [Summary] {
        let latest = latestTimeline
        let latestLine = line(latest)
        return timelines.map { tli in
            let own = segments.filter { $0.timeline == tli }.sorted()
            let parentEntry = history(tli).entries.last
            var tail: (WALSegment, WALSegment, Int)?
            let stretch = latestLine.first { $0.timeline == tli }
            if let end = stretch?.end {
                // Segments wholly past the switch point: the one holding it is read from the child.
                let switchSegment = end.value / segmentSize
                let past = own.filter { $0.number(segmentSize: segmentSize) >= switchSegment }
                if let f = past.first, let l = past.last { tail = (f, l, past.count) }
            }
            return Summary(timeline: tli, segments: own.count, first: own.first, last: own.last, parent: parentEntry?.parentTimeline,
                forkedAt: parentEntry?.switchPoint, abandonedTail: tail, onLatestLine: stretch != nil)
        }
    }
}

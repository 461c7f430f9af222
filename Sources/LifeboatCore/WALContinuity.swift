import Foundation

/// Checks that the archive holds every WAL segment needed to replay from a backup to the end of
/// the archive, following timeline switches recorded in history files.
public struct WALContinuity: Sendable {
    public var segmentSize: UInt64
    /// Segments present in the archive.
    public var segments: Set<WALSegment>
    /// Parsed history files by timeline.
    public var histories: [UInt32: TimelineHistory]

    public init(segmentSize: UInt64, segments: Set<WALSegment>, histories: [UInt32: TimelineHistory]) {
        self.segmentSize = segmentSize
        self.segments = segments
        self.histories = histories
    }

    /// The newest timeline descending from `timeline` (what `recovery_target_timeline = latest` follows).
    public func latestTimeline(from timeline: UInt32) -> UInt32 {
        var best = timeline
        for (tli, history) in histories where tli > best && history.contains(timeline: timeline) {
            best = tli
        }
        return best
    }

    /// Segment numbers from `start` to the last archived segment along the path to the latest
    /// timeline, with the timeline each should be on; returns the ones missing.
    /// `through` is the last segment number that must exist at minimum (the backup's stop segment);
    /// with `toEndOfArchive` false, nothing past it is checked.
    public func missingSegments(from start: WALSegment, through mustReach: UInt64, toEndOfArchive: Bool = true) -> [WALSegment] {
        let target = latestTimeline(from: start.timeline)
        let history = histories[target] ?? TimelineHistory(timeline: target, entries: [])
        let relevant = segments.filter { history.contains(timeline: $0.timeline) }
        let lastArchived = relevant.map { $0.number(segmentSize: segmentSize) }.max() ?? 0
        let first = start.number(segmentSize: segmentSize)
        let last = toEndOfArchive ? max(lastArchived, mustReach) : mustReach
        guard last >= first else { return [] }
        var missing: [WALSegment] = []
        for n in first...last {
            // The segment holding the switch point exists on both timelines; the newer one is used.
            let lsnAtEnd = LSN((n + 1) * segmentSize - 1)
            let tli = history.timeline(at: lsnAtEnd)
            let want = WALSegment(timeline: tli, number: n, segmentSize: segmentSize)
            if segments.contains(want) { continue }
            missing.append(want)
        }
        return missing
    }
}

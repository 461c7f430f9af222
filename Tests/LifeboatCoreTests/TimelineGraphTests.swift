import Foundation
import LifeboatCore
import Testing

/// Timeline histories as real clusters make them: failovers to a lagging replica, an old primary
/// that archived past the fork, two forks from one parent, forks before, at and after the end of
/// the parent's archive.
struct TimelineGraphTests {
    let size: UInt64 = 16 << 20

    func segs(_ tli: UInt32, _ range: ClosedRange<UInt64>) -> [WALSegment] {
        range.map { WALSegment(timeline: tli, number: $0, segmentSize: size) }
    }

    func history(_ tli: UInt32, _ lines: String) throws -> TimelineHistory { try TimelineHistory(timeline: tli, text: lines) }

    func backup(_ id: String, tl: UInt32, start: UInt64, stop: UInt64, minutes: Double) -> BackupRecord {
        BackupRecord(id: id, kind: .automated, tags: [:], retainUntil: nil, startTime: Date(timeIntervalSince1970: minutes * 60 - 30),
            stopTime: Date(timeIntervalSince1970: minutes * 60), startLSN: LSN(start * size + 40), stopLSN: LSN(stop * size + 200),
            timeline: tl, nextXidAtStop: nil, walSegmentSize: size, postgresVersion: "15", systemIdentifier: "1", backupLabel: "",
            tablespaceMap: "", fileCount: 1, logicalBytes: 1, newStoredBytes: 1, newChunks: 1, totalChunks: 1, manifestObject: "m/\(id)",
            host: "h", lifeboatVersion: "t")
    }

    /// Failover to a replica that was behind the archive: the old primary archived timeline 1 up
    /// to segment 10, the replica forked at segment 7. Timeline 2's line is 1..6 of timeline 1, then
    /// 7.. of timeline 2; timeline 1's 7..10 are its abandoned tail, never "missing" from timeline 2,
    /// never its end.
    @Test func failoverToALaggingReplicaLeavesAnAbandonedTail() throws {
        let g = TimelineGraph(segmentSize: size, segments: Set(segs(1, 1...10) + segs(2, 7...9)),
            histories: [2: try history(2, "1\t0/7000100\tno recovery target specified\n")])
        #expect(g.latestTimeline == 2)
        #expect(g.lastSegment(on: 2) == 9, "timeline 1's tail does not extend timeline 2")
        #expect(g.lastSegment(on: 1) == 10)
        #expect(g.gaps(on: 2, from: 1, through: 9).isEmpty, "timeline 2 misses nothing")
        #expect(g.segment(7, on: 2).timeline == 2, "the segment holding the switch is read from the new timeline")
        #expect(g.segment(6, on: 2).timeline == 1)
        let tl1 = try #require(g.summaries().first { $0.timeline == 1 })
        #expect(tl1.abandonedTail?.first.name == "000000010000000000000007" && tl1.abandonedTail?.count == 4)
        #expect(tl1.onLatestLine)
        let tl2 = try #require(g.summaries().first { $0.timeline == 2 })
        #expect(tl2.abandonedTail == nil && tl2.parent == 1 && tl2.forkedAt == LSN(0x700_0100))
    }

    /// Two forks from timeline 1: timeline 2 at segment 5, timeline 3 (a later restore to an earlier
    /// time) at segment 3. The newest line is 3's: backups on timeline 2, or on timeline 1 after the
    /// fork at 3, are not on it.
    @Test func twoForksFromOneParent() throws {
        let g = TimelineGraph(segmentSize: size, segments: Set(segs(1, 1...6) + segs(2, 5...8) + segs(3, 3...4)),
            histories: [2: try history(2, "1\t0/5000000\tx\n"), 3: try history(3, "1\t0/3000800\ty\n")])
        #expect(g.latestTimeline == 3)
        let early = backup("early", tl: 1, start: 1, stop: 2, minutes: 10)
        let late = backup("late", tl: 1, start: 4, stop: 4, minutes: 20)
        let onTwo = backup("two", tl: 2, start: 6, stop: 6, minutes: 30)
        let all = [early, late, onTwo]
        #expect(try RecoveryTarget.latest.chooseBackup(from: all, along: 3, in: g).id == "early")
        #expect(try RecoveryTarget.latest.chooseBackup(from: all, along: 2, in: g).id == "two")
        #expect(try RecoveryTarget.latest.chooseBackup(from: all, along: 1, in: g).id == "late")
        #expect(!g.contains(backupTimeline: 1, stopLSN: late.stopLSN, on: 3), "taken on timeline 1 after timeline 3 left it")
        #expect(!g.contains(backupTimeline: 2, stopLSN: onTwo.stopLSN, on: 3))
        #expect(g.contains(backupTimeline: 1, stopLSN: late.stopLSN, on: 2), "timeline 2 left timeline 1 after that backup")
        #expect(g.lastSegment(on: 3) == 4)
        #expect(g.gaps(on: 3, from: 1, through: 4).isEmpty)
        // Timeline 1's 3..6 are past where timeline 3 leaves it: the abandoned tail.
        let tl1 = try #require(g.summaries().first { $0.timeline == 1 })
        #expect(tl1.abandonedTail?.count == 4)
        #expect(g.summaries().first { $0.timeline == 2 }?.onLatestLine == false)
        #expect(throws: LifeboatError.self) { try RecoveryTarget.latest.chooseBackup(from: [late, onTwo], along: 3, in: g) }
    }

    /// A fork exactly at the end of the parent's archive (a clean switchover) and one past it (the
    /// parent's last segments never reached the archive: the child's line has a gap).
    @Test func forksAtAndAfterTheParentsEnd() throws {
        let atEnd = TimelineGraph(segmentSize: size, segments: Set(segs(1, 1...5) + segs(2, 6...7)),
            histories: [2: try history(2, "1\t0/6000000\tswitchover\n")])
        #expect(atEnd.gaps(on: 2, from: 1, through: atEnd.lastSegment(on: 2) ?? 0).isEmpty)
        #expect(atEnd.segment(6, on: 2).timeline == 2 && atEnd.segment(5, on: 2).timeline == 1)
        #expect(atEnd.summaries().first { $0.timeline == 1 }?.abandonedTail == nil)

        let beyond = TimelineGraph(segmentSize: size, segments: Set(segs(1, 1...4) + segs(2, 6...7)),
            histories: [2: try history(2, "1\t0/6000080\tfailover\n")])
        let gaps = beyond.gaps(on: 2, from: 1, through: beyond.lastSegment(on: 2) ?? 0)
        #expect(gaps.count == 1 && gaps.first?.firstMissing.name == "000000010000000000000005", "the parent's unarchived segment")
        #expect(gaps.first?.lastPresent?.name == "000000010000000000000004")

        // Forked before the parent's end, with the parent still archiving: nothing missing on either line.
        let before = TimelineGraph(segmentSize: size, segments: Set(segs(1, 1...9) + segs(2, 3...4)),
            histories: [2: try history(2, "1\t0/3000000\trestore\n")])
        #expect(before.gaps(on: 2, from: 1, through: 4).isEmpty && before.gaps(on: 1, from: 1, through: 9).isEmpty)
    }

    /// A timeline named by segments only (its history file lost): it exists, but its line is its own.
    @Test func timelineChoiceParsing() {
        #expect(TimelineChoice(text: "latest") == .latest && TimelineChoice(text: "current") == .current)
        #expect(TimelineChoice(text: "3") == .number(3) && TimelineChoice(text: "0") == nil && TimelineChoice(text: "x") == nil)
    }
}

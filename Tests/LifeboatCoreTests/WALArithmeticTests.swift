import Foundation
@testable import LifeboatCore
import Testing

struct LSNTests {
    @Test func parsesAndPrints() throws {
        let lsn = try #require(LSN("16/B374D848"))
        #expect(lsn.value == 0x16_B374_D848)
        #expect(lsn.description == "16/B374D848")
        #expect(LSN("0/0")?.value == 0)
        #expect(LSN("1/0")! > LSN("0/FFFFFFFF")!)
    }

    @Test(arguments: ["", "/", "1/", "x/1", "1/2/3", "123456789/0", "0/1G"])
    func rejectsGarbage(_ text: String) {
        #expect(LSN(text) == nil)
    }
}

struct WALNameTests {
    let size: UInt64 = 16 * 1024 * 1024

    @Test func segmentContainingLSN() {
        let seg = WALSegment(timeline: 1, containing: LSN(0x1_0300_0028), segmentSize: size)
        #expect(seg.name == "000000010000000100000003")
        #expect(seg.number(segmentSize: size) == 256 + 3)
        #expect(seg.startLSN(segmentSize: size) == LSN(0x1_0300_0000))
        // Segment numbering carries over the 4 GiB "log id" boundary.
        let last = WALSegment(timeline: 2, number: 255, segmentSize: size)
        #expect(last.name == "0000000200000000000000FF")
        #expect(WALSegment(timeline: 2, number: 256, segmentSize: size).name == "000000020000000100000000")
    }

    @Test func otherSegmentSizes() {
        let oneGiB: UInt64 = 1 << 30
        #expect(WALSegment(timeline: 1, number: 4, segmentSize: oneGiB).name == "000000010000000100000000")
        #expect(WALSegment(timeline: 1, number: 5, segmentSize: oneGiB).name == "000000010000000100000001")
    }

    @Test func classifiesArchiveFileNames() {
        #expect(WALFileName("000000010000000000000003") == .segment(WALSegment(timeline: 1, logID: 0, segID: 3)))
        #expect(WALFileName("0000000A.history") == .history(timeline: 10))
        #expect(WALFileName("000000010000000000000003.partial") == .partial(WALSegment(timeline: 1, logID: 0, segID: 3)))
        #expect(WALFileName("000000010000000000000002.00000028.backup") == .backupHistory(WALSegment(timeline: 1, logID: 0, segID: 2), offset: "00000028"))
        for bad in ["00000001000000000000000", "0000000g0000000000000003", "00000001.hist", "RECOVERYXLOG", "../etc/passwd",
            "000000010000000000000003.backup"]
        {
            #expect(WALFileName(bad) == nil, "\(bad)")
        }
        #expect(WALFileName("000000010000000000000002.00000028.backup")?.description == "000000010000000000000002.00000028.backup")
    }
}

struct TimelineTests {
    let size: UInt64 = 16 * 1024 * 1024

    @Test func parsesHistoryAndLocatesTimelines() throws {
        let h = try TimelineHistory(timeline: 3, text: "1\t0/5000000\tbefore 2026-11-29\n\n# comment\n2\t0/9000A28\tno recovery target specified\n")
        #expect(h.entries.count == 2)
        #expect(h.timeline(at: LSN(0x4FF_FFFF)) == 1)
        #expect(h.timeline(at: LSN(0x500_0000)) == 2)
        #expect(h.timeline(at: LSN(0x900_0A28)) == 3)
        #expect(h.contains(timeline: 1) && h.contains(timeline: 3) && !h.contains(timeline: 4))
        #expect(throws: LifeboatError.self) { try TimelineHistory(timeline: 2, text: "one\tzero\n") }
    }

    @Test func continuityFollowsTimelineSwitch() throws {
        // Timeline 1: segments 2..4; switch to timeline 2 inside segment 5; timeline 2: 5..7.
        let h2 = try TimelineHistory(timeline: 2, text: "1\t0/5000100\tpromoted\n")
        var segments: Set<WALSegment> = []
        for n in 2...4 { segments.insert(WALSegment(timeline: 1, number: UInt64(n), segmentSize: size)) }
        for n in 5...7 { segments.insert(WALSegment(timeline: 2, number: UInt64(n), segmentSize: size)) }
        var g = TimelineGraph(segmentSize: size, segments: segments, histories: [2: h2])
        #expect(g.latestTimeline == 2)
        #expect(g.lastSegment(on: 2) == 7)
        #expect(g.gaps(on: 2, from: 2, through: 7).isEmpty)
        // A hole on timeline 2 is found, with what is there before it.
        g.segments.remove(WALSegment(timeline: 2, number: 6, segmentSize: size))
        let gap = try #require(g.gaps(on: 2, from: 2, through: 7).first)
        #expect(gap.firstMissing.name == "000000020000000000000006" && gap.count == 1 && gap.lastPresent?.name == "000000020000000000000005")
        // Along timeline 1 the end is segment 4; segment 5 of timeline 1 was never archived.
        #expect(g.lastSegment(on: 1) == 4)
    }
}

struct DurationAndTimeTests {
    @Test func durations() throws {
        #expect(try HumanDuration.parse("7d") == 7 * 86400)
        #expect(try HumanDuration.parse("90s") == 90)
        #expect(try HumanDuration.parse("1.5h") == 5400)
        #expect(try HumanDuration.parse("2w") == 14 * 86400)
        #expect(throws: LifeboatError.self) { try HumanDuration.parse("7") }
        #expect(throws: LifeboatError.self) { try HumanDuration.parse("7y") }
        #expect(throws: LifeboatError.self) { try HumanDuration.parse("-1d") }
    }

    @Test func timestamps() throws {
        let a = try Timestamp.parse("2026-11-29T03:00:00Z")
        #expect(try Timestamp.parse("2026-11-29 04:00:00+01") == a)
        #expect(try Timestamp.parse("2026-11-29T04:00:00+01:00") == a)
        let withFraction = try Timestamp.parse("2026-11-29 03:00:00.25+00")
        #expect(withFraction.timeIntervalSince(a) == 0.25)
        #expect(Timestamp.postgres(withFraction) == "2026-11-29 03:00:00.250000+00")
        // Half a microsecond before a whole second rounds up to it, not to the second before.
        #expect(Timestamp.postgres(a.addingTimeInterval(-0.0000004)) == "2026-11-29 03:00:00.000000+00")
        #expect(Timestamp.postgres(a.addingTimeInterval(-0.000001)) == "2026-11-29 02:59:59.999999+00")
        #expect(Timestamp.postgres(Date(timeIntervalSince1970: -0.5)) == "1969-12-31 23:59:59.500000+00")
        // Every PostgreSQL text form round-trips.
        for offset in stride(from: 0.0, to: 400 * 86400, by: 86400 * 7.123457) {
            let d = a.addingTimeInterval(offset)
            #expect(abs(try Timestamp.parse(Timestamp.postgres(d)).timeIntervalSince(d)) < 0.000001)
        }
        #expect(throws: LifeboatError.self) { try Timestamp.parse("2026-11-29 03:00:00") }
        #expect(throws: LifeboatError.self) { try Timestamp.parse("yesterday") }
        #expect(try Timestamp.parse("2026-11-28T22:30:00-05:30") == a.addingTimeInterval(3600))
    }

    /// Ids, SigV4 dates and HTTP dates are computed, not formatted by ICU: they agree with a
    /// DateFormatter everywhere, truncating seconds as it does.
    @Test func compactTimestampsAndHTTPDates() throws {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss"
        let http = DateFormatter()
        http.locale = Locale(identifier: "en_US_POSIX")
        http.timeZone = TimeZone(identifier: "GMT")
        http.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        var date = try Timestamp.parse("1999-12-31T23:59:59.999Z")
        while date < (try Timestamp.parse("2033-03-01T00:00:00Z")) {
            let whole = Date(timeIntervalSince1970: date.timeIntervalSince1970.rounded(.down))
            // (ICU rounds to milliseconds first: compared away from a second's last millisecond.)
            #expect(Timestamp.compactUTC(whole.addingTimeInterval(0.75), separator: "T") == formatter.string(from: whole))
            #expect(Timestamp.compactUTC(whole, separator: "T") == formatter.string(from: whole))
            #expect(Timestamp.parseHTTPDate(http.string(from: whole)) == whole, "\(http.string(from: whole))")
            date = date.addingTimeInterval(86400 * 3.3217 + 0.173)
        }
        #expect(Timestamp.parseHTTPDate("Sun, 29 Nov 2026 03:00:00 GMT") == (try Timestamp.parse("2026-11-29T03:00:00Z")))
        #expect(Timestamp.parseHTTPDate("Sun, 29 Foo 2026 03:00:00 GMT") == nil)
        #expect(Timestamp.parseHTTPDate("2026-11-29T03:00:00Z") == nil)
        let id = TimestampID.make(try Timestamp.parse("2026-11-29T05:21:00.7Z"), name: "pre upgrade")
        #expect(id.hasPrefix("20261129-052100-pre-upgrade-") && id.count == "20261129-052100-pre-upgrade-".count + 4, "\(id)")
        #expect(TimestampID.make(try Timestamp.parse("2026-11-29T05:21:00Z")).count == 20)
    }

    /// The hand-written parser and formatter agree with Foundation's ISO 8601 formatter everywhere,
    /// leap days and year ends included.
    @Test func timestampsAgreeWithFoundation() throws {
        let reference = ISO8601DateFormatter()
        reference.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        var generator = SystemRandomNumberGenerator()
        var dates = [Date(timeIntervalSince1970: 0), try Timestamp.parse("2024-02-29T23:59:59.999Z"),
                     try Timestamp.parse("2000-12-31T23:59:59Z"), try Timestamp.parse("2100-03-01T00:00:00Z")]
        for _ in 0..<2000 {
            dates.append(Date(timeIntervalSince1970: Double(Int64.random(in: 0...4_102_444_800_000, using: &generator)) / 1000))
        }
        for date in dates {
            let text = Timestamp.format(date)
            #expect(text == reference.string(from: date), "format of \(date.timeIntervalSince1970)")
            let parsed = try Timestamp.parse(text)
            #expect(parsed == reference.date(from: text), "parse of \(text)")
        }
        #expect(Timestamp.parseFast("2026-13-01T00:00:00Z") == nil)
        #expect(Timestamp.parseFast("2026-11-29T03:00:00") == nil)
    }
}

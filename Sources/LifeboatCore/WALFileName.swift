import Foundation

/// What a file name in `pg_wal` or the archive is: a segment, a timeline history, a backup history
/// file or a partial segment (written at promotion).
public enum WALFileName: Hashable, Sendable, CustomStringConvertible {
    case segment(WALSegment)
    case history(timeline: UInt32)
    case backupHistory(WALSegment, offset: String)
    case partial(WALSegment)

    /// Classifies a bare file name; nil if PostgreSQL would never archive a file of that name.
    public init?(_ name: String) {
        let isHex = { (s: Substring) in s.allSatisfy { $0.isHexDigit && ($0.isNumber || $0.isUppercase) } }
        if name.count == 24, isHex(Substring(name)), let seg = WALSegment(name: name) {
            self = .segment(seg)
        } else if name.hasSuffix(".history"), name.count == 16, isHex(name.prefix(8)),
            let tli = UInt32(name.prefix(8), radix: 16)
        {
            self = .history(timeline: tli)
        } else if name.hasSuffix(".partial"), name.count == 32, let seg = WALSegment(name: String(name.prefix(24))) {
            self = .partial(seg)
        } else if name.hasSuffix(".backup"), name.count == 40, let seg = WALSegment(name: String(name.prefix(24))) {
            let offset = name.dropFirst(25).prefix(8)
            guard isHex(offset) else { return nil }
            self = .backupHistory(seg, offset: String(offset))
        } else {
            return nil
        }
    }

    public var description: String {
        switch self {
        case .segment(let s): return s.name
        case .history(let t): return WALSegment.hex8(t) + ".history"
        case .backupHistory(let s, let offset): return "\(s.name).\(offset).backup"
        case .partial(let s): return s.name + ".partial"
        }
    }
}

/// One WAL segment file: a timeline plus a segment number. The number is independent of the segment
/// size; the 24-character name needs the size (PostgreSQL's `XLogFileName`).
public struct WALSegment: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var timeline: UInt32
    /// Log id and segment within it, packed as PostgreSQL names them (`XXXXXXXX` and `YYYYYYYY`).
    public var logID: UInt32
    public var segID: UInt32

    public init(timeline: UInt32, logID: UInt32, segID: UInt32) {
        self.timeline = timeline
        self.logID = logID
        self.segID = segID
    }

    /// The segment containing `lsn` for segments of `segmentSize` bytes.
    public init(timeline: UInt32, containing lsn: LSN, segmentSize: UInt64) {
        let number = lsn.value / segmentSize
        self.init(timeline: timeline, number: number, segmentSize: segmentSize)
    }

    public init(timeline: UInt32, number: UInt64, segmentSize: UInt64) {
        let perLog = 0x1_0000_0000 / segmentSize
        self.init(timeline: timeline, logID: UInt32(number / perLog), segID: UInt32(number % perLog))
    }

    public init?(name: String) {
        guard name.count == 24 else { return nil }
        let chars = Array(name)
        guard let t = UInt32(String(chars[0..<8]), radix: 16), let l = UInt32(String(chars[8..<16]), radix: 16),
            let s = UInt32(String(chars[16..<24]), radix: 16)
        else { return nil }
        self.init(timeline: t, logID: l, segID: s)
    }

    /// Position in the WAL stream for segments of `segmentSize`, independent of the timeline.
    public func number(segmentSize: UInt64) -> UInt64 {
        UInt64(logID) * (0x1_0000_0000 / segmentSize) + UInt64(segID)
    }

    /// First LSN of this segment.
    public func startLSN(segmentSize: UInt64) -> LSN { LSN(number(segmentSize: segmentSize) * segmentSize) }

    public var name: String { Self.hex8(timeline) + Self.hex8(logID) + Self.hex8(segID) }
    public var description: String { name }

    public static func < (a: WALSegment, b: WALSegment) -> Bool {
        (a.logID, a.segID, a.timeline) < (b.logID, b.segID, b.timeline)
    }

    static func hex8(_ v: UInt32) -> String {
        let s = String(v, radix: 16, uppercase: true)
        return String(repeating: "0", count: 8 - s.count) + s
    }
}

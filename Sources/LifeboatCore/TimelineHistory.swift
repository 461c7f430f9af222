import Foundation

/// The content of a `NNNNNNNN.history` file: for each ancestor timeline, the LSN at which the
/// next timeline branched off it.
public struct TimelineHistory: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var parentTimeline: UInt32
        public var switchPoint: LSN
        public var reason: String
    }

    public var timeline: UInt32
    /// Ancestors, oldest first.
    public var entries: [Entry]

    public init(timeline: UInt32, entries: [Entry]) {
        self.timeline = timeline
        self.entries = entries
    }

    /// Parses the history file text of `timeline`. Lines are `parentTLI<TAB>switchpoint<TAB>reason`;
    /// blank lines and `#` comments are ignored as PostgreSQL does.
    public init(timeline: UInt32, text: String) throws {
        var entries: [Entry] = []
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(whereSeparator: { $0 == "\t" || $0 == " " }).map(String.init)
            guard fields.count >= 2, let tli = UInt32(fields[0]), let lsn = LSN(fields[1]) else {
                throw LifeboatError(.integrity, "timeline history \(timeline) has an unreadable line: \(line)")
            }
            entries.append(Entry(parentTimeline: tli, switchPoint: lsn, reason: fields.dropFirst(2).joined(separator: " ")))
        }
        self.init(timeline: timeline, entries: entries)
    }

    /// The timeline that WAL at `lsn` belongs to when following this history to `timeline`.
    public func timeline(at lsn: LSN) -> UInt32 {
        for entry in entries where lsn < entry.switchPoint {
            return entry.parentTimeline
        }
        return timeline
    }

    /// True if `other` is this timeline or one of its ancestors.
    public func contains(timeline other: UInt32) -> Bool {
        other == timeline || entries.contains { $0.parentTimeline == other }
    }
}

import Foundation

/// A daily window in UTC, like the seed's `PreferredBackupWindow` "03:00-04:00". It may wrap past
/// midnight ("23:30-00:30").
public struct BackupWindow: Sendable, Equatable, Codable, CustomStringConvertible {
    /// Minutes after midnight UTC.
    public var startMinute: Int
    public var endMinute: Int

    public init(startMinute: Int, endMinute: Int) {
        self.startMinute = startMinute
        self.endMinute = endMinute
    }

    /// Parses "HH:MM-HH:MM".
    public static func parse(_ text: String) throws -> BackupWindow {
        let parts = text.split(separator: "-").map { $0.trimmingCharacters(in: .whitespaces) }
        func minute(_ s: String) -> Int? {
            let hm = s.split(separator: ":")
            guard hm.count == 2, let h = Int(hm[0]), let m = Int(hm[1]), (0..<24).contains(h), (0..<60).contains(m) else { return nil }
            return h * 60 + m
        }
        guard parts.count == 2, let start = minute(parts[0]), let end = minute(parts[1]), start != end else {
            throw LifeboatError(.invalidUsage, "backup window '\(text)' is not HH:MM-HH:MM (UTC) with two different times",
                hint: "e.g. 03:00-04:00, as the seed's PreferredBackupWindow")
        }
        return BackupWindow(startMinute: start, endMinute: end)
    }

    public var lengthSeconds: TimeInterval {
        TimeInterval(((endMinute - startMinute) + 1440) % 1440 * 60)
    }

    public var description: String {
        String(format: "%02d:%02d-%02d:%02d", startMinute / 60, startMinute % 60, endMinute / 60, endMinute % 60)
    }

    static func midnight(_ date: Date) -> Date {
        Date(timeIntervalSince1970: (date.timeIntervalSince1970 / 86400).rounded(.down) * 86400)
    }

    /// The start of the window occurrence that contains `date`, if any.
    public func occurrence(containing date: Date) -> Date? {
        let day = Self.midnight(date)
        for start in [day.addingTimeInterval(TimeInterval(startMinute * 60)), day.addingTimeInterval(TimeInterval(startMinute * 60) - 86400)]
        where date >= start && date < start.addingTimeInterval(lengthSeconds) {
            return start
        }
        return nil
    }

    /// The first window start at or after `date`.
    public func nextStart(atOrAfter date: Date) -> Date {
        let today = Self.midnight(date).addingTimeInterval(TimeInterval(startMinute * 60))
        return today >= date ? today : today.addingTimeInterval(86400)
    }
}

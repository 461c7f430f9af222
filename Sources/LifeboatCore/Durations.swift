import Foundation

/// Human durations as used in options and configuration: `90s`, `15m`, `12h`, `7d`, `4w`.
public enum HumanDuration {
    public static func parse(_ text: String) throws -> TimeInterval {
        let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
        guard let unit = trimmed.last, let number = Double(trimmed.dropLast()), number >= 0 else {
            throw LifeboatError(.invalidUsage, "'\(text)' is not a duration", hint: "write a number and a unit: 90s, 15m, 12h, 7d, 4w")
        }
        switch unit {
        case "s": return number
        case "m": return number * 60
        case "h": return number * 3600
        case "d": return number * 86400
        case "w": return number * 7 * 86400
        default:
            throw LifeboatError(.invalidUsage, "'\(text)' has an unknown unit", hint: "use s, m, h, d or w")
        }
    }

    public static func format(_ seconds: TimeInterval) -> String {
        if seconds < 1 { return String(format: "%.0fms", seconds * 1000) }
        if seconds < 120 { return String(format: "%.1fs", seconds) }
        if seconds < 7200 { return String(format: "%.1fmin", seconds / 60) }
        if seconds < 172800 { return String(format: "%.1fh", seconds / 3600) }
        return String(format: "%.1fd", seconds / 86400)
    }
}

/// Timestamps in options: ISO 8601 with zone (`2026-11-29T03:00:00Z`, `2026-11-29 03:00:00+01`)
/// or with fractional seconds; output always UTC ISO 8601 with milliseconds.
public enum Timestamp {
    public static func parse(_ text: String) throws -> Date {
        let normalized = text.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: " ", with: "T")
        for withFraction in [false, true] {
            let f = ISO8601DateFormatter()
            f.formatOptions = withFraction ? [.withInternetDateTime, .withFractionalSeconds] : [.withInternetDateTime]
            if let d = f.date(from: normalized) { return d }
            // PostgreSQL prints "+00" offsets; ISO 8601 wants "+00:00".
            if let range = normalized.range(of: #"[+-]\d\d$"#, options: .regularExpression),
                let d = f.date(from: normalized + ":00"), !range.isEmpty
            {
                return d
            }
        }
        throw LifeboatError(.invalidUsage, "'\(text)' is not a timestamp with a time zone",
            hint: "write it as 2026-11-29T03:00:00Z (UTC) or with an offset, e.g. 2026-11-29T04:00:00+01:00")
    }

    public static func format(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: date)
    }

    /// The form PostgreSQL accepts for `recovery_target_time` (microsecond precision, UTC).
    public static func postgres(_ date: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd HH:mm:ss"
        let micros = Int((date.timeIntervalSince1970 * 1_000_000).rounded()) % 1_000_000
        return f.string(from: date) + String(format: ".%06d+00", (micros + 1_000_000) % 1_000_000)
    }
}

/// Sortable, human-readable ids: UTC time of creation plus 4 random hex digits
/// (`20261129-052100-a1b2`), with an optional name in between.
public enum TimestampID {
    public static func make(_ date: Date = Date(), name: String? = nil) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd-HHmmss"
        let middle = name.map { "-" + String($0.map { $0.isLetter || $0.isNumber || $0 == "-" ? $0 : "-" }.prefix(40)) } ?? ""
        return f.string(from: date) + middle + "-" + String(format: "%04x", UInt16.random(in: 0...UInt16.max))
    }
}

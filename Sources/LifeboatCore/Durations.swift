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
        // Manifests hold a timestamp per file: a formatter per call cost a quarter of a restore's CPU.
        if let date = parseFast(normalized) { return date }
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

    /// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH[[:]MM])`, the form lifeboat writes and PostgreSQL prints.
    static func parseFast(_ text: String) -> Date? {
        let b = Array(text.utf8)
        func number(_ from: Int, _ count: Int) -> Int? {
            guard from + count <= b.count else { return nil }
            var v = 0
            for i in from..<(from + count) {
                guard b[i] >= 48, b[i] <= 57 else { return nil }
                v = v * 10 + Int(b[i] - 48)
            }
            return v
        }
        guard b.count >= 20, b[4] == 45, b[7] == 45, b[10] == 84, b[13] == 58, b[16] == 58,
            let year = number(0, 4), let month = number(5, 2), let day = number(8, 2),
            let hour = number(11, 2), let minute = number(14, 2), let second = number(17, 2),
            (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61
        else { return nil }
        var i = 19
        var fraction = 0.0
        if b[i] == 46 {
            i += 1
            var scale = 0.1
            let start = i
            while i < b.count, b[i] >= 48, b[i] <= 57 {
                fraction += Double(b[i] - 48) * scale
                scale /= 10
                i += 1
            }
            guard i > start else { return nil }
        }
        guard i < b.count else { return nil }
        var offset = 0
        if b[i] == 90 {  // Z
            i += 1
        } else if b[i] == 43 || b[i] == 45 {
            let sign = b[i] == 45 ? -1 : 1
            guard let h = number(i + 1, 2) else { return nil }
            i += 3
            var m = 0
            if i < b.count {
                if b[i] == 58 { i += 1 }
                guard let mm = number(i, 2) else { return nil }
                m = mm
                i += 2
            }
            offset = sign * (h * 3600 + m * 60)
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        let days = daysFromCivil(year: year, month: month, day: day)
        let seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset
        return Date(timeIntervalSince1970: Double(seconds) + fraction)
    }

    public static func format(_ date: Date) -> String {
        let millis = Int((date.timeIntervalSince1970 * 1000).rounded())
        let (secs, ms) = millis.quotientAndRemainder(dividingBy: 1000)
        let (days0, rest0) = secs.quotientAndRemainder(dividingBy: 86400)
        let (days, rest) = rest0 < 0 ? (days0 - 1, rest0 + 86400) : (days0, rest0)
        let ms1 = ms < 0 ? ms + 1000 : ms
        let (y, m, d) = civilFromDays(days)
        func pad(_ v: Int, _ n: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, n - s.count)) + s
        }
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(rest / 3600, 2)):\(pad(rest / 60 % 60, 2)):\(pad(rest % 60, 2)).\(pad(ms1, 3))Z"
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    static func civilFromDays(_ days: Int) -> (Int, Int, Int) {
        let z = days + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }

    /// The form PostgreSQL accepts for `recovery_target_time` (microsecond precision, UTC). Seconds
    /// and microseconds come from one rounded count, so a time a hair before a whole second is that
    /// second, never the one before it.
    public static func postgres(_ date: Date) -> String {
        let micros = Int((date.timeIntervalSince1970 * 1_000_000).rounded())
        let (secs0, us0) = micros.quotientAndRemainder(dividingBy: 1_000_000)
        let (secs, us) = us0 < 0 ? (secs0 - 1, us0 + 1_000_000) : (secs0, us0)
        let (days0, rest0) = secs.quotientAndRemainder(dividingBy: 86400)
        let (days, rest) = rest0 < 0 ? (days0 - 1, rest0 + 86400) : (days0, rest0)
        let (y, m, d) = civilFromDays(days)
        func pad(_ v: Int, _ n: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, n - s.count)) + s
        }
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2)) \(pad(rest / 3600, 2)):\(pad(rest / 60 % 60, 2)):\(pad(rest % 60, 2)).\(pad(us, 6))+00"
    }
}

/// Sortable, human-readable ids: UTC time of creation plus 4 random hex digits
/// (`20261129-052100-a1b2`), with an optional name in between.
public enum TimestampID {
    public static func make(_ date: Date = Date(), name: String? = nil) -> String {
        let middle = name.map { "-" + String($0.map { $0.isLetter || $0.isNumber || $0 == "-" ? $0 : "-" }.prefix(40)) } ?? ""
        let random = String(UInt16.random(in: 0...UInt16.max), radix: 16)
        return Timestamp.compactUTC(date, separator: "-") + middle + "-" + String(repeating: "0", count: 4 - random.count) + random
    }
}

extension Timestamp {
    /// `yyyyMMdd<separator>HHmmss` in UTC, seconds truncated: ids, and SigV4's `yyyyMMdd'T'HHmmss'Z'`
    /// (with "T", plus the "Z"). Arithmetic, not a DateFormatter: one of those per S3 request cost
    /// CPU and pulled ICU's locale data into every process.
    public static func compactUTC(_ date: Date, separator: String) -> String {
        let secs = Int(date.timeIntervalSince1970.rounded(.down))
        let (days0, rest0) = secs.quotientAndRemainder(dividingBy: 86400)
        let (days, rest) = rest0 < 0 ? (days0 - 1, rest0 + 86400) : (days0, rest0)
        let (y, m, d) = civilFromDays(days)
        func pad(_ v: Int, _ n: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, n - s.count)) + s
        }
        return pad(y, 4) + pad(m, 2) + pad(d, 2) + separator + pad(rest / 3600, 2) + pad(rest / 60 % 60, 2) + pad(rest % 60, 2)
    }

    /// `Sun, 29 Nov 2026 03:00:00 GMT` (RFC 9110's IMF-fixdate, HTTP's Last-Modified), or nil.
    public static func parseHTTPDate(_ text: String) -> Date? {
        let parts = text.split(separator: " ")
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        guard parts.count == 6, parts[0].hasSuffix(","), parts[5] == "GMT", let day = Int(parts[1]), let year = Int(parts[3]),
            let month = months.firstIndex(of: String(parts[2])), (1...31).contains(day)
        else { return nil }
        let clock = parts[4].split(separator: ":").compactMap { Int($0) }
        guard clock.count == 3, clock[0] < 24, clock[1] < 60, clock[2] < 61 else { return nil }
        let days = daysFromCivil(year: year, month: month + 1, day: day)
        return Date(timeIntervalSince1970: Double(days * 86400 + clock[0] * 3600 + clock[1] * 60 + clock[2]))
    }
}

/// Byte counts for people: `512 B`, `1.5 KiB`, `3.2 GiB`.
public enum ByteCount {
    public static func format(_ n: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var v = Double(n)
        var i = 0
        while v >= 1024, i < units.count - 1 {
            v /= 1024
            i += 1
        }
        return i == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[i])
    }
}

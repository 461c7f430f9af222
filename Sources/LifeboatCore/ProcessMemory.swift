import Foundation

/// The process's own memory as the kernel counts it (`/proc/self/status`): resident now and at its
/// peak, and of the resident set now what is anonymous (the heap: what the process made) and what is
/// file-backed (the pages of the binary and the Swift runtime, Foundation and ICU it maps: about 40
/// MiB, clean and shared), for the debug log of phases whose memory must stay bounded.
public enum ProcessMemory {
    /// Resident and peak resident MiB; nil where `/proc` is absent.
    public static func residentMiB() -> (now: Int, peak: Int)? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        var now: Int?
        var peak: Int?
        for line in text.split(separator: "\n") {
            if line.hasPrefix("VmRSS:") { now = kib(line) } else if line.hasPrefix("VmHWM:") { peak = kib(line) }
        }
        guard let now, let peak else { return nil }
        return (now / 1024, peak / 1024)
    }

    /// Resident anonymous and file-backed MiB now; nil where `/proc` is absent.
    public static func residentSplitMiB() -> (anonymous: Int, file: Int)? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        var anonymous: Int?
        var file: Int?
        for line in text.split(separator: "\n") {
            if line.hasPrefix("RssAnon:") { anonymous = kib(line) } else if line.hasPrefix("RssFile:") { file = kib(line) }
        }
        guard let anonymous, let file else { return nil }
        return (anonymous / 1024, file / 1024)
    }

    /// Metadata-ready text: "now 40 MiB (anonymous 12, file 28), peak 52 MiB".
    public static var summary: String {
        guard let m = residentMiB() else { return "unknown" }
        let split = residentSplitMiB().map { " (anonymous \($0.anonymous), file \($0.file))" } ?? ""
        return "now \(m.now) MiB\(split), peak \(m.peak) MiB"
    }

    private static func kib(_ line: Substring) -> Int? {
        line.split(separator: " ").dropFirst().first.flatMap { Int($0) }
    }
}

import Foundation

/// The process's own memory as the kernel counts it (`/proc/self/status`): resident now and at its
/// peak, for the debug log of phases whose memory must stay bounded (a backup's file list).
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

    /// Metadata-ready text: "now 40 MiB, peak 52 MiB".
    public static var summary: String {
        guard let m = residentMiB() else { return "unknown" }
        return "now \(m.now) MiB, peak \(m.peak) MiB"
    }

    private static func kib(_ line: Substring) -> Int? {
        line.split(separator: " ").dropFirst().first.flatMap { Int($0) }
    }
}

import Foundation
import LifeboatCore

/// How PostgreSQL calls Lifeboat back: the executable and the repository options every call
/// repeats. `archive_command` and `restore_command` are spelled here and nowhere else.
public struct LifeboatInvocation: Sendable, Equatable {
    public var executable: String
    /// `--config FILE`, `--repo R`, `--key-file K`: what locates the repository and its key.
    public var arguments: [String]
    /// Environment the server must run with for the calls to find the repository (`LIFEBOAT_REPO`,
    /// `LIFEBOAT_CONFIG`). Never a passphrase: a key reaches a restored server as a private file
    /// that recovery's end removes (see `RestoreEngine`).
    public var environment: [String: String]

    public init(executable: String, arguments: [String] = [], environment: [String: String] = [:]) {
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
    }

    /// `archive_command`: `lifeboat wal push ... %p`.
    public var archiveCommand: String { Self.command([executable, "wal", "push"] + arguments) + " %p" }

    /// `restore_command`: `lifeboat wal fetch ... %f %p`.
    public var restoreCommand: String { Self.command([executable, "wal", "fetch"] + arguments) + " %f %p" }

    /// `restore_command` for a restore that fetches WAL ahead into the spool
    /// (`pg_wal/.lifeboat-prefetch`, see `WALPrefetchSpool`): a spooled file is moved into place by
    /// the shell (`mv`, about 1 ms), and only a file not spooled starts Lifeboat (about 40 ms, more
    /// under recovery's load). Files reach the spool whole, authenticated and through the
    /// tablespace guard, so taking one needs nothing Lifeboat would check. PostgreSQL runs the
    /// command in the data directory, where the spool's path is relative.
    public var spoolingRestoreCommand: String {
        let spooled = "pg_wal/" + WALPrefetchSpool.directoryName + "/%f"
        return "mv -f \(spooled) %p 2>/dev/null || exec " + restoreCommand
    }

    /// The same calls with extra options appended (`--key-handoff FILE`).
    public func adding(_ extra: [String]) -> LifeboatInvocation {
        LifeboatInvocation(executable: executable, arguments: arguments + extra, environment: environment)
    }

    /// A command line for a shell, each word quoted when it needs it.
    public static func command(_ words: [String]) -> String { words.map(shellQuote).joined(separator: " ") }

    public static func shellQuote(_ s: String) -> String {
        if !s.isEmpty, s.allSatisfy({ $0.isLetter || $0.isNumber || "/-_.=%:,+@".contains($0) }) { return s }
        return "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    /// The absolute path of the running executable.
    public static var currentExecutable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
}

/// LifeboatCore owns the I/O-free domain of Lifeboat: errors and exit codes, WAL and LSN arithmetic,
/// timeline histories, manifests, retention planning and backup selection. Nothing here touches disk,
/// network or processes, so all of it is unit-tested directly.
import Foundation

/// Every failure Lifeboat reports to a human or a script.
///
/// `code` is stable and maps to a documented process exit code (see `docs/user-guide.md`), `message`
/// says what went wrong in lower case, `hint` says what to do about it. Secrets never appear in either.
public struct LifeboatError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable, CaseIterable {
        /// Bad command line, configuration file or environment.
        case invalidUsage
        /// Repository missing, not initialized, already initialized or of an unsupported format.
        case repository
        /// The passphrase or key file does not open the repository.
        case wrongKey
        /// An object failed authentication or its content does not match its name; `verify` found problems.
        case integrity
        /// A requested object (backup, WAL file) does not exist.
        case notFound
        /// Another process holds a conflicting repository lock.
        case locked
        /// PostgreSQL refused a connection or a query failed.
        case postgres
        /// The restore destination is not an empty directory.
        case targetNotEmpty
        /// A WAL file with the same name but different content is already archived.
        case walConflict
        /// Reading or writing local files failed (full disk, permissions, ...).
        case io
        /// Recovery did not reach its target or the restored server did not come up.
        case recoveryFailed
        /// An external program (initdb, pg_ctl, pgbench, ...) failed.
        case externalCommand
        /// A step took longer than allowed.
        case timeout
        /// A drill or runbook ran but a check failed or an objective was missed.
        case objectiveMissed
        /// A runbook step needed confirmation and did not get it.
        case notConfirmed
        /// An unexpected internal state; please report it.
        case internalError
        /// The WAL archive has a gap between the backup and the recovery target: the target cannot be
        /// reached (`--accept-wal-gap` restores up to the gap knowingly).
        case walGap

        /// The process exit code for this error, stable for scripts.
        public var exitCode: Int32 {
            switch self {
            case .internalError: return 1
            case .invalidUsage: return 2
            case .repository: return 3
            case .wrongKey: return 4
            case .integrity: return 5
            case .notFound: return 6
            case .locked: return 7
            case .postgres: return 8
            case .targetNotEmpty: return 9
            case .walConflict: return 10
            case .io: return 11
            case .recoveryFailed: return 12
            case .externalCommand: return 13
            case .timeout: return 14
            case .objectiveMissed: return 15
            case .notConfirmed: return 16
            case .walGap: return 17
            }
        }

        /// A few words for the exit-code table.
        public var summary: String {
            switch self {
            case .internalError: return "internal"
            case .invalidUsage: return "usage"
            case .repository: return "repository"
            case .wrongKey: return "wrong key"
            case .integrity: return "integrity"
            case .notFound: return "not found"
            case .locked: return "locked"
            case .postgres: return "postgres"
            case .targetNotEmpty: return "target not empty"
            case .walConflict: return "WAL conflict"
            case .io: return "I/O"
            case .recoveryFailed: return "recovery failed"
            case .externalCommand: return "external command"
            case .timeout: return "timeout"
            case .objectiveMissed: return "drill or runbook failed"
            case .notConfirmed: return "not confirmed"
            case .walGap: return "gap in the WAL archive"
            }
        }

        /// "1 internal, 2 usage, ...", in exit-code order: what `--help` and the user guide show.
        public static var exitCodeTable: String {
            allCases.sorted { $0.exitCode < $1.exitCode }.map { "\($0.exitCode) \($0.summary)" }.joined(separator: ", ")
        }
    }

    public var code: Code
    public var message: String
    public var hint: String?
    /// A short text form of the underlying error, if any (never containing secrets).
    public var cause: String?
    /// True when trying again may succeed (throttling, a 5xx, a timeout, a dropped connection);
    /// permanent errors (403, a bad signature, a missing bucket) are reported at once.
    public var retryable: Bool
    /// The remote service's own code for the failure when it refused a call (an AWS error code such
    /// as `DBClusterNotFoundFault`), so callers compare codes instead of searching messages.
    public var remoteCode: String?

    public init(_ code: Code, _ message: String, hint: String? = nil, cause: (any Error)? = nil, retryable: Bool = false) {
        self.code = code
        self.message = message
        self.hint = hint
        self.cause = cause.map { String(describing: $0) }
        self.retryable = retryable
    }

    public var description: String {
        var text = "error [\(code.rawValue)]: \(message)"
        if let cause { text += "\n  cause: \(cause)" }
        if let hint { text += "\n  hint: \(hint)" }
        return text
    }
}

/// The version of this build, recorded in every backup.
public enum LifeboatVersion {
    public static let current = "0.1.0"
}

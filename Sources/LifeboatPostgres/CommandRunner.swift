import Foundation
import LifeboatCore
import LifeboatFileSystem

#if canImport(Glibc)
import Glibc
#endif

/// An operating-system account to run PostgreSQL programs as. PostgreSQL refuses to run as root,
/// so when Lifeboat runs as root it starts servers as the owner of the data directory.
public struct OSUser: Sendable, Equatable {
    public var name: String
    public var uid: UInt32
    public var gid: UInt32

    public init?(name: String) {
        guard let pw = getpwnam(name) else { return nil }
        self.name = name
        self.uid = pw.pointee.pw_uid
        self.gid = pw.pointee.pw_gid
    }

    public init?(uid: UInt32) {
        guard let pw = getpwuid(uid) else { return nil }
        self.name = String(cString: pw.pointee.pw_name)
        self.uid = uid
        self.gid = pw.pointee.pw_gid
    }

    /// This user as a file owner.
    public var fileOwner: FileIO.Owner { FileIO.Owner(uid: uid, gid: gid) }

    /// The user a server must run as for `dataDirectory`: nil (ourselves) unless we are root.
    public static func forServer(dataDirectory: String) -> OSUser? {
        guard geteuid() == 0 else { return nil }
        var st = stat()
        if stat(dataDirectory, &st) == 0, st.st_uid != 0 { return OSUser(uid: st.st_uid) }
        return defaultUnprivileged()
    }

    /// `postgres` if it exists, otherwise `nobody`.
    public static func defaultUnprivileged() -> OSUser? {
        OSUser(name: "postgres") ?? OSUser(name: "nobody")
    }

    /// Gives `path` (recursively if it is a directory) to this user.
    public func own(_ path: String, recursive: Bool = false) {
        _ = chown(path, uid, gid)
        guard recursive, let enumerator = FileManager.default.enumerator(atPath: path) else { return }
        while let item = enumerator.nextObject() as? String {
            _ = lchown(path + "/" + item, uid, gid)
        }
    }
}

/// The outcome of a finished program.
public struct CommandResult: Sendable {
    public var status: Int32
    /// Standard output (and standard error unless it was kept apart).
    public var output: String
    /// Standard error, when kept apart.
    public var errors: String = ""
}

/// A started child process. Reaped with `waitpid`, which (unlike Foundation's `Process`) stays
/// reliable when the child forks daemons such as the postmaster.
public struct ChildProcess: Sendable {
    public let pid: pid_t
    public let name: String

    /// The exit status if the child has ended (reaping it), else nil.
    public func poll() -> Int32? {
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid { return Self.decode(status) }
        if r < 0, errno == ECHILD { return -1 }
        return nil
    }

    /// Waits for the end, polling so the task stays cancellable; kills the child on timeout.
    public func wait(timeout: TimeInterval? = nil) async throws -> Int32 {
        let deadline = timeout.map { Date().addingTimeInterval($0) }
        var delay: UInt64 = 2
        while true {
            if let status = poll() { return status }
            if let deadline, Date() > deadline {
                Glibc.kill(pid, SIGKILL)
                _ = try? await wait()
                throw LifeboatError(.timeout, "\(name) did not finish within \(HumanDuration.format(timeout ?? 0))")
            }
            if Task.isCancelled {
                Glibc.kill(pid, SIGTERM)
            }
            try? await Task.sleep(for: .milliseconds(delay))
            delay = min(delay * 2, 50)
        }
    }

    public func signal(_ sig: Int32) { Glibc.kill(pid, sig) }

    static func decode(_ status: Int32) -> Int32 {
        let low = status & 0x7f
        if low == 0 { return (status >> 8) & 0xff }  // exited
        return 128 + low  // killed by a signal
    }
}

/// Runs external programs with an explicit argument list (no shell), optionally as another user.
public enum CommandRunner {
    /// Runs `executable` to completion. Throws `.externalCommand` on a non-zero exit unless
    /// `check` is false. Output (stdout and stderr together) is captured.
    @discardableResult
    public static func run(_ executable: String, _ arguments: [String], as user: OSUser? = nil,
        environment: [String: String] = [:], clearing: Set<String> = [], check: Bool = true, timeout: TimeInterval? = nil) async throws
        -> CommandResult
    {
        try await runSeparately(executable, arguments, as: user, environment: environment, clearing: clearing, check: check,
            timeout: timeout, separateErrors: false)
    }

    /// Variables a PostgreSQL server must never inherit: a repository passphrase in the postmaster's
    /// environment would stay there for the server's whole life.
    public static let secrets: Set<String> = ["LIFEBOAT_PASSPHRASE", "LIFEBOAT_TO_PASSPHRASE"]

    /// Like `run`, with stderr kept apart from stdout when `separateErrors` is true.
    public static func runSeparately(_ executable: String, _ arguments: [String], as user: OSUser? = nil,
        environment: [String: String] = [:], clearing: Set<String> = [], check: Bool = true, timeout: TimeInterval? = nil,
        separateErrors: Bool = true) async throws -> CommandResult
    {
        let outputPath = FileManager.default.temporaryDirectory.appendingPathComponent("lifeboat-cmd-\(UUID().uuidString)").path
        let errorPath = separateErrors ? outputPath + ".err" : nil
        defer {
            unlink(outputPath)
            if let errorPath { unlink(errorPath) }
        }
        let child = try spawn(executable, arguments, as: user, environment: environment, clearing: clearing, outputPath: outputPath,
            errorPath: errorPath)
        let status = try await child.wait(timeout: timeout)
        let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        let errors = errorPath.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) } ?? ""
        if check, status != 0 {
            let tail = (output + errors).split(separator: "\n").suffix(15).joined(separator: "\n")
            throw LifeboatError(.externalCommand,
                "\((executable as NSString).lastPathComponent) \(arguments.prefix(3).joined(separator: " ")) failed with status \(status)",
                hint: tail.isEmpty ? nil : "its last output:\n\(tail)")
        }
        return CommandResult(status: status, output: output, errors: errors)
    }

    /// Starts a program with stdout and stderr appended to `outputPath`; the caller waits for it.
    public static func spawn(_ executable: String, _ arguments: [String], as user: OSUser? = nil,
        environment: [String: String] = [:], clearing: Set<String> = [], outputPath: String, errorPath: String? = nil) throws -> ChildProcess
    {
        var argv = [executable] + arguments
        var program = executable
        var env = ProcessInfo.processInfo.environment.filter { !clearing.contains($0.key) }
        for (k, v) in environment { env[k] = v }
        if let user, geteuid() == 0, user.uid != 0 {
            program = "/usr/bin/setpriv"
            argv = [program, "--reuid=\(user.uid)", "--regid=\(user.gid)", "--clear-groups", "--"] + argv
            env["HOME"] = "/tmp"
            env["USER"] = user.name
            env["LOGNAME"] = user.name
        }
        // Run from "/": the unprivileged user may not be able to enter our working directory.
        argv = ["/usr/bin/env", "-C", "/"] + argv
        let launcher = "/usr/bin/env"
        guard FileManager.default.isExecutableFile(atPath: program), FileManager.default.isExecutableFile(atPath: executable) else {
            throw LifeboatError(.externalCommand, "\(executable) is not an executable program",
                hint: "install it or point lifeboat at the right PostgreSQL binaries with --pg-bin")
        }
        let out = open(outputPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard out >= 0 else { throw LifeboatError(.io, "cannot create \(outputPath): \(String(cString: strerror(errno)))") }
        defer { close(out) }
        user.map { _ = fchown(out, $0.uid, $0.gid) }
        var err = out
        if let errorPath {
            err = open(errorPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            guard err >= 0 else { throw LifeboatError(.io, "cannot create \(errorPath): \(String(cString: strerror(errno)))") }
        }
        defer { if err != out { close(err) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, out, 1)
        posix_spawn_file_actions_adddup2(&actions, err, 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Start with default signal handling and an empty mask, whatever ours are.
        var all = sigset_t()
        sigfillset(&all)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        let envStrings = env.map { "\($0.key)=\($0.value)" }
        var pid: pid_t = 0
        let rc = withCStrings(argv) { cArgs in
            withCStrings(envStrings) { cEnv in
                posix_spawn(&pid, launcher, &actions, &attributes, cArgs, cEnv)
            }
        }
        guard rc == 0 else {
            throw LifeboatError(.externalCommand, "cannot start \(executable): \(String(cString: strerror(rc)))")
        }
        return ChildProcess(pid: pid, name: (executable as NSString).lastPathComponent)
    }

    private static func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
        var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
        pointers.append(nil)
        defer { pointers.forEach { free($0) } }
        return pointers.withUnsafeBufferPointer { buffer in
            // Never empty: it holds at least the terminating nil.
            guard let base = buffer.baseAddress else { preconditionFailure("empty argument vector") }
            return body(base)
        }
    }
}

import Foundation
import LifeboatCore
import LifeboatFileSystem
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Finds PostgreSQL server programs: an explicit directory, else the Debian layout
/// (`/usr/lib/postgresql/<major>/bin`) for the wanted or newest major version, else `pg_config`.
public struct PostgresBinaries: Sendable, Equatable {
    public var directory: String

    public init(directory: String) { self.directory = directory }

    public func path(_ program: String) -> String { directory + "/" + program }

    public static func locate(explicit: String? = nil, majorVersion: String? = nil) throws -> PostgresBinaries {
        if let explicit {
            guard FileManager.default.isExecutableFile(atPath: explicit + "/pg_ctl") else {
                throw LifeboatError(.invalidUsage, "\(explicit) does not contain pg_ctl", hint: "point --pg-bin at PostgreSQL's bin directory")
            }
            return PostgresBinaries(directory: explicit)
        }
        if let env = ProcessInfo.processInfo.environment["LIFEBOAT_PG_BIN"], !env.isEmpty {
            return try locate(explicit: env)
        }
        let base = "/usr/lib/postgresql"
        if let major = majorVersion, FileManager.default.isExecutableFile(atPath: "\(base)/\(major)/bin/pg_ctl") {
            return PostgresBinaries(directory: "\(base)/\(major)/bin")
        }
        let installed = ((try? FileManager.default.contentsOfDirectory(atPath: base)) ?? [])
            .compactMap(Int.init).sorted()
            .filter { FileManager.default.isExecutableFile(atPath: "\(base)/\($0)/bin/pg_ctl") }
        if majorVersion == nil, let newest = installed.last {
            return PostgresBinaries(directory: "\(base)/\(newest)/bin")
        }
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            if FileManager.default.isExecutableFile(atPath: "\(dir)/pg_ctl") { return PostgresBinaries(directory: String(dir)) }
        }
        throw LifeboatError(.invalidUsage,
            "cannot find PostgreSQL \(majorVersion ?? "") server programs (pg_ctl)",
            hint: "install postgresql\(majorVersion.map { "-\($0)" } ?? ""), or give their directory with --pg-bin or LIFEBOAT_PG_BIN")
    }
}

/// A PostgreSQL cluster on this machine that Lifeboat creates, starts or stops: the restored
/// target, the demo's throwaway cluster, a drill's scratch cluster.
public struct LocalCluster: Sendable {
    public var dataDirectory: String
    public var port: Int
    /// Directory for the Unix socket; also where connections go.
    public var socketDirectory: String
    public var listenAddresses: String
    public var binaries: PostgresBinaries
    /// Who runs the server (nil: the current user).
    public var user: OSUser?

    public init(dataDirectory: String, port: Int, socketDirectory: String, listenAddresses: String = "127.0.0.1",
        binaries: PostgresBinaries, user: OSUser?)
    {
        self.dataDirectory = dataDirectory
        self.port = port
        self.socketDirectory = socketDirectory
        self.listenAddresses = listenAddresses
        self.binaries = binaries
        self.user = user
    }

    public var logFile: String { dataDirectory + ".log" }

    /// Connection to this cluster through its socket as the bootstrap superuser.
    public func endpoint(database: String = "postgres") -> PostgresEndpoint {
        PostgresEndpoint(host: socketDirectory, port: port, user: superuser, database: database)
    }

    /// The superuser initdb created: the OS user that ran it.
    public var superuser: String {
        user?.name ?? (getpwuid(geteuid()).map { String(cString: $0.pointee.pw_name) } ?? "postgres")
    }

    /// `initdb` with page checksums, trust authentication for local connections only.
    public func initialize(extraSettings: [String: String] = [:]) async throws {
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        chmod(dataDirectory, 0o700)
        user?.own(dataDirectory)
        try await CommandRunner.run(binaries.path("initdb"),
            ["-D", dataDirectory, "--data-checksums", "--auth=trust", "--encoding=UTF8", "--locale=C", "-U", superuser],
            as: user, timeout: 300)
        if !extraSettings.isEmpty { try appendSettings(extraSettings) }
    }

    /// Appends settings to `postgresql.auto.conf` (later lines win).
    public func appendSettings(_ settings: [String: String]) throws {
        let path = dataDirectory + "/postgresql.auto.conf"
        var text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        if !text.isEmpty, !text.hasSuffix("\n") { text += "\n" }
        for key in settings.keys.sorted() {
            text += "\(key) = \(ServerConfiguration.quote(settings[key] ?? ""))\n"
        }
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        user?.own(path)
    }

    /// Starts the server and waits until it accepts connections (which, during targeted recovery,
    /// is once the restored data is consistent).
    /// `settings` hold for this run only (given on the server's command line, they override every
    /// configuration file and are gone at the next start).
    public func start(environment: [String: String] = [:], settings: [String: String] = [:], timeout: TimeInterval = 300) async throws {
        // The server log is private, as PostgreSQL's own log files are (log_file_mode 0600).
        try FileIO.replaceAtomically(logFile, with: Data(), mode: 0o600, owner: user?.fileOwner, durability: .atomicOnly)
        // pg_ctl hands -o to a shell: every value single-quoted.
        func quoted(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        var options = "-p \(port) -k \(quoted(socketDirectory)) -c \(quoted("listen_addresses=" + listenAddresses))"
        for key in settings.keys.sorted() { options += " -c \(quoted(key + "=" + (settings[key] ?? "")))" }
        let result = try await CommandRunner.run(binaries.path("pg_ctl"),
            ["-D", dataDirectory, "-l", logFile, "-o", options, "-w", "-t", String(Int(timeout)), "start"],
            as: user, environment: environment, clearing: CommandRunner.secrets, check: false, timeout: timeout + 30)
        if result.status != 0 {
            throw LifeboatError(.recoveryFailed, "PostgreSQL did not start on \(dataDirectory)",
                hint: "server log \(logFile) ends with:\n" + logTail())
        }
    }

    public func stop(mode: String = "fast") async throws {
        guard isRunning else { return }
        try await CommandRunner.run(binaries.path("pg_ctl"), ["-D", dataDirectory, "-m", mode, "-w", "stop"], as: user, timeout: 120)
    }

    /// Sends SIGKILL to the postmaster (for fault tests and "the disaster").
    public func kill() {
        if let pid = postmasterPID { Glibc.kill(pid, SIGKILL) }
    }

    public var postmasterPID: pid_t? {
        guard let text = try? String(contentsOfFile: dataDirectory + "/postmaster.pid", encoding: .utf8),
            let first = text.split(separator: "\n").first, let pid = pid_t(first.trimmingCharacters(in: .whitespaces))
        else { return nil }
        return pid
    }

    /// True if the postmaster of this data directory is alive.
    public var isRunning: Bool {
        guard let pid = postmasterPID else { return false }
        return Glibc.kill(pid, 0) == 0 || errno == EPERM
    }

    /// A loopback TCP port nobody listens on right now (for scratch and test clusters).
    public static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    public func logTail(lines: Int = 20) -> String {
        let text = (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }
}

/// LifeboatTesting owns test support shared by every test target: temporary sandboxes usable by an
/// unprivileged user (PostgreSQL refuses to run as root, and CI runs as root), free loopback ports,
/// real PostgreSQL clusters started with `initdb`, repositories with key files, the built binary,
/// and a fault-injecting object store.
import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// A temporary directory tree removed at the end of a test. When tests run as root, everything in
/// it belongs to an unprivileged user so PostgreSQL and its archive_command can use it.
public final class TestSandbox: Sendable {
    public let root: String
    public let user: OSUser?

    public init(_ name: String = "t") throws {
        let base = "/tmp/lifeboat-test-\(name)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        chmod(base, 0o755)
        root = base
        user = geteuid() == 0 ? OSUser.defaultUnprivileged() : nil
        user?.own(base)
    }

    public func path(_ relative: String) -> String { root + "/" + relative }

    /// Creates a directory owned by the sandbox user.
    @discardableResult
    public func directory(_ relative: String) throws -> String {
        let p = path(relative)
        try FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        user?.own(p)
        return p
    }

    /// Writes a file owned by the sandbox user.
    @discardableResult
    public func file(_ relative: String, _ text: String, mode: mode_t = 0o644) throws -> String {
        let p = path(relative)
        try text.write(toFile: p, atomically: false, encoding: .utf8)
        chmod(p, mode)
        user?.own(p)
        return p
    }

    /// Stops every server under the sandbox and deletes it.
    public func remove() async {
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] {
            let pidFile = root + "/" + entry + "/postmaster.pid"
            if let text = try? String(contentsOfFile: pidFile, encoding: .utf8), let first = text.split(separator: "\n").first,
                let pid = pid_t(first)
            {
                kill(pid, SIGQUIT)
                for _ in 0..<100 where kill(pid, 0) == 0 { try? await Task.sleep(for: .milliseconds(50)) }
            }
        }
        try? FileManager.default.removeItem(atPath: root)
    }

    /// A loopback TCP port nobody listens on right now.
    public static func freePort() -> Int { LocalCluster.freePort() }

    /// The build directory holding the `lifeboat` executable next to the test bundle.
    public static let lifeboatBuildDirectory: String = {
        let testBinary = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var dir = (testBinary as NSString).deletingLastPathComponent
        // swift test runs .build/<config>/<Package>PackageTests.xctest; the executable sits beside it.
        while !FileManager.default.isExecutableFile(atPath: dir + "/lifeboat"), dir != "/" {
            dir = (dir as NSString).deletingLastPathComponent
        }
        return dir
    }()

    /// The built `lifeboat` executable, copied once per test process to a place any user can run.
    public static let lifeboatBinary: String = {
        let built = lifeboatBuildDirectory + "/lifeboat"
        let shared = "/tmp/lifeboat-test-bin-\(getpid())"
        try? FileManager.default.createDirectory(atPath: shared, withIntermediateDirectories: true)
        chmod(shared, 0o755)
        let copy = shared + "/lifeboat"
        if !FileManager.default.fileExists(atPath: copy) {
            try? FileManager.default.copyItem(atPath: built, toPath: copy)
            chmod(copy, 0o755)
        }
        return copy
    }()

    public static func logger(_ label: String = "test") -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = .warning
        return logger
    }
}

/// A repository in a sandbox with its key file and a lifeboat config pointing at both.
public struct TestRepository: Sendable {
    public let path: String
    public let keyFile: String
    public let configFile: String
    public let repository: Repository

    /// Describes a repository made elsewhere (for example on S3) for the cluster harness.
    public init(path: String, keyFile: String, configFile: String, repository: Repository) {
        self.path = path
        self.keyFile = keyFile
        self.configFile = configFile
        self.repository = repository
    }

    public static func make(in sandbox: TestSandbox, name: String = "repo", passphrase: String = "correct horse battery staple",
        options: RepositoryOptions = .init(), extraConfig: String = "") async throws -> TestRepository
    {
        let path = try sandbox.directory(name)
        let keyFile = try sandbox.file("\(name).key", passphrase + "\n", mode: 0o600)
        let configFile = try sandbox.file("\(name).yaml", "repo: \(path)\nkey_file: \(keyFile)\n" + extraConfig)
        let repo = try await Repository.initialize(store: FileStore(root: path), key: .keyFile(keyFile), options: options,
            logger: TestSandbox.logger())
        return TestRepository(path: path, keyFile: keyFile, configFile: configFile, repository: repo)
    }

    /// How a test cluster calls the built lifeboat back for this repository.
    public var invocation: LifeboatInvocation {
        LifeboatInvocation(executable: TestSandbox.lifeboatBinary, arguments: ["--config", configFile])
    }

    /// Opens the same repository afresh (as another process would).
    public func reopen() async throws -> Repository {
        try await Repository.open(store: FileStore(root: path), key: .keyFile(keyFile), logger: TestSandbox.logger())
    }
}

import Foundation
import LifeboatCore
import LifeboatPostgres

#if canImport(Glibc)
import Glibc
#endif

/// A real Patroni cluster on loopback for HA tests: one etcd (Debian's `etcd-server`) and Patroni
/// nodes (PyPI `patroni`, installed by `scripts/install-deps --tests` where the `postgres` user can
/// read it) running as the sandbox user, every node archiving into a Lifeboat repository. Each
/// process is watched by a shell that stops it when the test process is gone.
public final class PatroniCluster: Sendable {
    public struct Node: Sendable {
        public var name: String
        public var pgPort: Int
        public var restPort: Int
        public var dataDirectory: String
        public var configFile: String
        public var pidFile: String
        public var logFile: String

        public var endpoint: PostgresEndpoint { PostgresEndpoint(host: "127.0.0.1", port: pgPort, user: "postgres", database: "postgres") }
        public var restURL: String { "http://127.0.0.1:\(restPort)" }
    }

    /// A member as `GET /cluster` reports it.
    public struct Member: Decodable, Sendable {
        public var name: String
        public var role: String
        public var state: String
        public var timeline: Int?
    }

    public let sandbox: TestSandbox
    public let scope: String
    public let etcdPort: Int
    public let repository: TestRepository
    let nodes: LockedNodes

    /// Where Patroni is found: `LIFEBOAT_PATRONI`, the install-deps location, or PATH.
    public static let patroniProgram: String? = {
        var candidates: [String] = []
        if let explicit = ProcessInfo.processInfo.environment["LIFEBOAT_PATRONI"] { candidates.append(explicit) }
        candidates.append("/opt/lifeboat-tools/patroni/bin/patroni")
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") { candidates.append("\(dir)/patroni") }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    public static let etcdProgram: String? = ["/usr/bin/etcd", "/usr/local/bin/etcd"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// Both programs are installed (the HA suite says so when they are not).
    public static var available: Bool { patroniProgram != nil && etcdProgram != nil }

    /// Starts etcd; nodes are added with `addNode`.
    public init(sandbox: TestSandbox, scope: String = "lifeboat", repository: TestRepository, etcdPort: Int? = nil) async throws {
        self.sandbox = sandbox
        self.scope = scope
        self.repository = repository
        nodes = LockedNodes()
        if let etcdPort {
            self.etcdPort = etcdPort
            return
        }
        guard let etcd = Self.etcdProgram else {
            throw LifeboatError(.externalCommand, "etcd is not installed", hint: "run scripts/install-deps --tests (Debian's etcd-server)")
        }
        let client = TestSandbox.freePort()
        let peer = TestSandbox.freePort()
        self.etcdPort = client
        let dir = try sandbox.directory("etcd")
        let command = [etcd, "--name", "e1", "--data-dir", dir, "--listen-client-urls", "http://127.0.0.1:\(client)",
            "--advertise-client-urls", "http://127.0.0.1:\(client)", "--listen-peer-urls", "http://127.0.0.1:\(peer)",
            "--initial-advertise-peer-urls", "http://127.0.0.1:\(peer)", "--initial-cluster", "e1=http://127.0.0.1:\(peer)",
            "--log-level", "warn"]
        try Self.watched(command, pidFile: sandbox.path("etcd.pid"), log: sandbox.path("etcd.log"), user: sandbox.user)
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if let r = try? await Self.http("http://127.0.0.1:\(client)/health"), r.contains("true") { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw LifeboatError(.externalCommand, "etcd did not start on port \(client)", hint: "see \(sandbox.path("etcd.log"))")
    }

    /// Writes a node's Patroni configuration and starts it. `createReplicaMethods` defaults to
    /// pg_basebackup; `bootstrap` replaces `initdb` with a custom method (its YAML, indented 4).
    @discardableResult
    public func addNode(_ name: String, createReplicaMethods: [String] = ["basebackup"], bootstrapMethod: String? = nil,
        archiveConfig: String? = nil) async throws -> Node
    {
        guard Self.patroniProgram != nil else {
            throw LifeboatError(.externalCommand, "Patroni is not installed", hint: "run scripts/install-deps --tests")
        }
        let node = Node(name: name, pgPort: TestSandbox.freePort(), restPort: TestSandbox.freePort(), dataDirectory: sandbox.path(name),
            configFile: sandbox.path(name + ".yml"), pidFile: sandbox.path(name + ".patroni.pid"), logFile: sandbox.path(name + ".patroni.log"))
        let lifeboat = TestSandbox.lifeboatBinary
        let config = archiveConfig ?? repository.configFile
        let bin = (try PostgresBinaries.locate(majorVersion: "15").path("pg_ctl") as NSString).deletingLastPathComponent
        let bootstrap = bootstrapMethod.map { method in
            "  method: lifeboat\n  lifeboat:\n" + method.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n") + "\n"
        } ?? ""
        let yaml = """
            scope: \(scope)
            name: \(name)
            log:
              level: INFO
            restapi:
              listen: 127.0.0.1:\(node.restPort)
              connect_address: 127.0.0.1:\(node.restPort)
            etcd3:
              hosts: 127.0.0.1:\(etcdPort)
            bootstrap:
            \(bootstrap)  dcs:
                ttl: 20
                loop_wait: 2
                retry_timeout: 5
                maximum_lag_on_failover: 1073741824
                synchronous_mode: true
                postgresql:
                  use_pg_rewind: true
                  use_slots: true
                  parameters:
                    wal_level: replica
                    hot_standby: 'on'
                    wal_log_hints: 'on'
                    archive_mode: 'on'
                    archive_command: '\(lifeboat) wal push --config \(config) %p'
                    wal_keep_size: 512MB
                    max_wal_senders: 10
                    max_replication_slots: 10
                    fsync: 'off'
                    shared_buffers: 32MB
                    checkpoint_timeout: 30min
              initdb:
                - encoding: UTF8
                - locale: C
              pg_hba:
                - local all all trust
                - host all all 127.0.0.1/32 trust
                - host replication all 127.0.0.1/32 trust
            postgresql:
              listen: 127.0.0.1:\(node.pgPort)
              connect_address: 127.0.0.1:\(node.pgPort)
              data_dir: \(node.dataDirectory)
              bin_dir: \(bin)
              pgpass: \(sandbox.path(name + ".pgpass"))
              authentication:
                superuser:
                  username: postgres
                  password: lifeboat-test
                replication:
                  username: replicator
                  password: lifeboat-test
                rewind:
                  username: postgres
                  password: lifeboat-test
              parameters:
                unix_socket_directories: \(sandbox.root)
                log_min_messages: warning
              create_replica_methods: [\(createReplicaMethods.joined(separator: ", "))]
              lifeboat:
                command: \(lifeboat) patroni create-replica --config \(repository.configFile)
                keep_data: false
                no_params: false
              basebackup:
                checkpoint: fast
            tags:
              nofailover: false
              noloadbalance: false
              clonefrom: false
              nosync: false

            """
        try sandbox.file(name + ".yml", yaml, mode: 0o600)
        nodes.append(node)
        try start(node)
        return node
    }

    /// (Re)starts a node's Patroni.
    public func start(_ node: Node) throws {
        guard let patroni = Self.patroniProgram else { throw LifeboatError(.externalCommand, "Patroni is not installed") }
        try Self.watched([patroni, node.configFile], pidFile: node.pidFile, log: node.logFile, user: sandbox.user)
    }

    /// kill -9 of the node's Patroni and its postmaster: a crashed host.
    public func crash(_ node: Node) {
        for pidFile in [node.pidFile, node.dataDirectory + "/postmaster.pid"] {
            if let text = try? String(contentsOfFile: pidFile, encoding: .utf8), let first = text.split(separator: "\n").first,
                let pid = pid_t(first.trimmingCharacters(in: .whitespaces))
            {
                kill(pid, SIGKILL)
            }
        }
    }

    /// Stops every node (Patroni shuts its PostgreSQL down), then etcd.
    public func stop() async {
        for node in nodes.all {
            if let text = try? String(contentsOfFile: node.pidFile, encoding: .utf8), let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                kill(pid, SIGTERM)
            }
        }
        for node in nodes.all {
            for _ in 0..<200 where FileManager.default.fileExists(atPath: node.dataDirectory + "/postmaster.pid") {
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        if let text = try? String(contentsOfFile: sandbox.path("etcd.pid"), encoding: .utf8), let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
            kill(pid, SIGTERM)
        }
    }

    public func node(_ name: String) -> Node? { nodes.all.first { $0.name == name } }

    /// The members as `GET /cluster` on any reachable node reports them.
    public func members() async throws -> [Member] {
        struct Cluster: Decodable { var members: [Member] }
        for node in nodes.all {
            if let body = try? await Self.http(node.restURL + "/cluster"), let data = body.data(using: .utf8),
                let cluster = try? JSONDecoder().decode(Cluster.self, from: data)
            {
                return cluster.members
            }
        }
        throw LifeboatError(.externalCommand, "no Patroni REST API answered")
    }

    /// Waits until a leader is running and `replicas` members stream from it; returns the leader.
    @discardableResult
    public func waitUntilHealthy(replicas: Int, excluding: Set<String> = [], timeout: TimeInterval = 180) async throws -> Node {
        let deadline = Date().addingTimeInterval(timeout)
        var last: [Member] = []
        while Date() < deadline {
            if let members = try? await members() {
                last = members
                let leader = members.first { ($0.role == "leader" || $0.role == "standby_leader") && $0.state == "running" && !excluding.contains($0.name) }
                let streaming = members.filter { $0.role != "leader" && $0.state == "streaming" && !excluding.contains($0.name) }
                if let leader, streaming.count >= replicas, let node = node(leader.name) { return node }
            }
            try await Task.sleep(for: .milliseconds(500))
        }
        throw LifeboatError(.timeout, "the Patroni cluster did not become healthy (a leader and \(replicas) streaming replicas) within \(Int(timeout))s",
            hint: "members: " + last.map { "\($0.name) \($0.role) \($0.state)" }.joined(separator: ", ") + "; logs in \(sandbox.root)")
    }

    /// Waits until a member other than `old` leads; returns it.
    public func waitForNewLeader(not old: String, timeout: TimeInterval = 120) async throws -> Node {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let members = try? await members(), let leader = members.first(where: { $0.role == "leader" && $0.state == "running" && $0.name != old }),
                let node = node(leader.name)
            {
                return node
            }
            try await Task.sleep(for: .milliseconds(250))
        }
        throw LifeboatError(.timeout, "no new leader within \(Int(timeout))s")
    }

    /// Starts `command` as `user`, its pid in `pidFile`, stopped when the test process is gone (its
    /// /proc entry: an unprivileged watcher may not signal a root test process, even with kill -0).
    static func watched(_ command: [String], pidFile: String, log: String, user: OSUser?) throws {
        let quoted = command.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
        let script = "\(quoted) >>\(log) 2>&1 & p=$!; echo $p > \(pidFile); while [ -d /proc/\(getpid()) ] && kill -0 $p 2>/dev/null; do sleep 1; done; kill $p 2>/dev/null"
        _ = try CommandRunner.spawn("/bin/sh", ["-c", script], as: user, outputPath: "/dev/null")
        for _ in 0..<100 where !FileManager.default.fileExists(atPath: pidFile) { usleep(20_000) }
    }

    static func http(_ url: String) async throws -> String {
        let r = try await CommandRunner.run("/usr/bin/python3", ["-c",
            "import sys, urllib.request\ntry:\n  print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())\nexcept urllib.error.HTTPError as e:\n  print(e.read().decode())",
            url], check: false, timeout: 10)
        guard r.status == 0 else { throw LifeboatError(.externalCommand, "GET \(url) failed") }
        return r.output
    }
}

/// The nodes added so far (a test adds them from one task; the lock keeps the class Sendable).
final class LockedNodes: @unchecked Sendable {
    private var nodes: [PatroniCluster.Node] = []
    private let lock = NSLock()

    func append(_ node: PatroniCluster.Node) { lock.withLock { nodes.append(node) } }
    var all: [PatroniCluster.Node] { lock.withLock { nodes } }
}

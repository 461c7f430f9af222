import Foundation
import LifeboatAWSCore
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository

#if canImport(Glibc)
import Glibc
#endif

/// A real S3 API server for tests: moto server (PyPI `moto[server]`), started once per test process
/// on a free loopback port and stopped by a watchdog when the test process ends. Tests fail (never
/// skip) when it cannot be found: `scripts/install-deps` installs it.
public actor MotoServer {
    public static let shared = MotoServer()

    public static let accessKey = "AKIDLIFEBOATTEST"
    public static let secretKey = "lifeboat-test-secret"

    /// The server's endpoint, starting it on first use. Concurrent first callers share one start:
    /// an actor is reentrant across `await`, so a plain "if not started" check would start two.
    public func url() async throws -> URL {
        if let startup { return try await startup.value }
        let task = Task { try await Self.launch() }
        startup = task
        return try await task.value
    }

    private var startup: Task<URL, any Error>?

    static func launch() async throws -> URL {
        let program = try locate()
        let port = TestSandbox.freePort()
        let log = "/tmp/lifeboat-moto-\(getpid())-\(port).log"
        // The watchdog shell stops moto when this test process is gone.
        let script = "\(program) -H 127.0.0.1 -p \(port) >\(log) 2>&1 & m=$!; while kill -0 \(getpid()) 2>/dev/null; do sleep 1; done; kill $m"
        _ = try CommandRunner.spawn("/bin/sh", ["-c", script], outputPath: "/dev/null")
        guard let url = URL(string: "http://127.0.0.1:\(port)") else { throw LifeboatError(.internalError, "bad moto URL") }
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if let r = try? await CommandRunner.run(python(), ["-c",
                "import urllib.request; urllib.request.urlopen('http://127.0.0.1:\(port)/moto-api/', timeout=2)"], check: false),
                r.status == 0
            {
                return url
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw LifeboatError(.externalCommand, "moto server did not start on port \(port)", hint: "see \(log)")
    }

    static func locate() throws -> String {
        var candidates: [String] = []
        if let explicit = ProcessInfo.processInfo.environment["LIFEBOAT_MOTO_SERVER"] { candidates.append(explicit) }
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") { candidates.append("\(dir)/moto_server") }
        // scripts/install-deps puts it in a virtual environment under the package.
        var dir = (TestSandbox.lifeboatBuildDirectory as NSString).deletingLastPathComponent
        while dir != "/", !dir.isEmpty {
            candidates.append(dir + "/.build-tools/moto/bin/moto_server")
            dir = (dir as NSString).deletingLastPathComponent
        }
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw LifeboatError(.externalCommand, "moto_server (the S3 API server for tests) is not installed",
                hint: "run scripts/install-deps, or pip install 'moto[server]==5.2.1'")
        }
        return found
    }

    public init() {}

    /// Turns on moto's request authentication (a server of its own: it affects every request) and
    /// returns the access key of an IAM user allowed everything on S3.
    public func enableAuthentication() async throws -> (id: String, secret: String) {
        let endpoint = try await url().absoluteString
        let python = Self.python()
        let script = """
            import boto3, json, urllib.request
            req = urllib.request.Request("\(endpoint)/moto-api/reset-auth", data=b"4", method="POST", headers={"Content-Type": "text/plain"})
            urllib.request.urlopen(req)
            iam = boto3.client("iam", endpoint_url="\(endpoint)", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
            iam.create_user(UserName="lifeboat")
            iam.put_user_policy(UserName="lifeboat", PolicyName="s3", PolicyDocument=json.dumps({"Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
            k = iam.create_access_key(UserName="lifeboat")["AccessKey"]
            print(k["AccessKeyId"], k["SecretAccessKey"])
            """
        let r = try await CommandRunner.runSeparately(python, ["-c", script], check: true, timeout: 60)
        let parts = r.output.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        guard parts.count == 2 else { throw LifeboatError(.externalCommand, "could not create moto IAM keys: \(r.output) \(r.errors)") }
        return (parts[0], parts[1])
    }

    /// The Python that runs moto (it has boto3).
    public static func python() -> String {
        if let server = try? locate() {
            let beside = (server as NSString).deletingLastPathComponent + "/python3"
            if FileManager.default.isExecutableFile(atPath: beside) { return beside }
        }
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":")
        where FileManager.default.isExecutableFile(atPath: "\(dir)/python3") {
            return "\(dir)/python3"
        }
        return "/usr/bin/python3"
    }

    /// Settings for a fresh bucket on the server (created, optionally with Object Lock).
    public func bucket(_ name: String = "lifeboat-\(UUID().uuidString.prefix(8).lowercased())", prefix: String = "repo",
        objectLock: ObjectLockSettings? = nil) async throws -> S3Settings
    {
        let endpoint = try await url()
        let settings = try S3Settings.resolve(url: "s3://\(name)/\(prefix)", overrides: Self.overrides(endpoint), objectLock: objectLock,
            environment: [:])
        try await S3Store(settings: settings).createBucket(objectLock: objectLock != nil)
        return settings
    }

    /// The test account on the server.
    public static func overrides(_ endpoint: URL, region: String = "us-east-1") -> AWSAccountOverrides {
        AWSAccountOverrides(region: region, endpoint: endpoint.absoluteString, accessKeyID: accessKey, secretAccessKey: secretKey)
    }

    /// Environment for the binary to reach a bucket.
    public static func environment(_ s: S3Settings) -> [String: String] {
        ["AWS_ACCESS_KEY_ID": s.accessKeyID, "AWS_SECRET_ACCESS_KEY": s.secretAccessKey, "AWS_ENDPOINT_URL": s.endpoint.absoluteString,
         "AWS_REGION": s.region, "LIFEBOAT_REPO": "s3://\(s.bucket)/\(s.prefix)"]
    }
}

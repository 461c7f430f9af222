import Foundation
import LifeboatPostgres

/// A tiny real application for runbook tests: an HTTP service that reads its database address
/// from a file on every request and answers `/health` from the database (200 with the row count and
/// the server's port, or 503).
public struct TinyApp: Sendable {
    public let endpointFile: String
    public let port: Int
    public let pidFile: String
    public let script: String
    public let log: String

    public init(sandbox: TestSandbox, psql: String, table: String = "users") throws {
        endpointFile = sandbox.path("app-database")
        port = TestSandbox.freePort()
        pidFile = sandbox.path("app.pid")
        log = sandbox.path("app.log")
        script = try sandbox.file("app.py", """
            import http.server, subprocess, sys
            endpoint_file, port = sys.argv[1], int(sys.argv[2])
            class Health(http.server.BaseHTTPRequestHandler):
                def do_GET(self):
                    conninfo = open(endpoint_file).read().strip()
                    r = subprocess.run(["\(psql)", conninfo, "-Atc",
                        "SELECT 'rows=' || count(*) || ' port=' || current_setting('port') FROM \(table)"],
                        capture_output=True, text=True, timeout=10)
                    ok = r.returncode == 0
                    body = (r.stdout if ok else r.stderr).strip().encode()
                    self.send_response(200 if ok else 503)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                def log_message(self, *args):
                    pass
            http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
            """)
    }

    /// Shell commands a `command` service controller runs.
    public var startCommand: String {
        "setsid python3 \(script) \(endpointFile) \(port) >> \(log) 2>&1 < /dev/null & echo $! > \(pidFile); sleep 0.5"
    }
    public var stopCommand: String { "kill $(cat \(pidFile)) && rm -f \(pidFile)" }
    public var healthURL: String { "http://127.0.0.1:\(port)/health" }

    public func pointAt(_ pg: TestPostgres) throws {
        try "host=\(pg.cluster.socketDirectory) port=\(pg.port) user=\(pg.cluster.superuser) dbname=postgres\n"
            .write(toFile: endpointFile, atomically: true, encoding: .utf8)
    }

    public func start() async throws { try await CommandRunner.run("/bin/sh", ["-c", startCommand]) }
    public func stop() async { _ = try? await CommandRunner.run("/bin/sh", ["-c", stopCommand], check: false) }

    /// GET /health: status and body, nil if nothing answers.
    public func health() async -> (Int, String)? {
        let r = try? await CommandRunner.runSeparately("/usr/bin/env", ["python3", "-c", """
            import urllib.request, urllib.error, sys
            try:
                r = urllib.request.urlopen("\(healthURL)", timeout=5); print(r.status, r.read().decode())
            except urllib.error.HTTPError as e:
                print(e.code, e.read().decode())
            """], check: false, timeout: 15)
        guard let r, r.status == 0, let space = r.output.firstIndex(of: " "), let code = Int(r.output[..<space]) else { return nil }
        return (code, String(r.output[r.output.index(after: space)...]).trimmingCharacters(in: .whitespacesAndNewlines))
    }
}

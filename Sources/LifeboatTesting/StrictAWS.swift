import Foundation
import LifeboatCore
import LifeboatPostgres

/// moto behind a small proxy of our own that answers as AWS does where moto does not: a new Aurora
/// cluster and its instances stay `creating` for a while (moto makes them `available` at once);
/// `ModifyDBCluster` on a cluster that is not `available` is refused with `InvalidDBClusterStateFault`;
/// a `db.serverless` instance in a cluster without serverless v2 scaling is refused with
/// `InvalidParameterCombination`; a restore or cluster creation into an unknown subnet group is
/// refused with `DBSubnetGroupNotFoundFault`; a cluster that still has instances cannot be deleted.
/// Everything else is passed to moto unchanged. The AWS tests run against it.
public actor StrictAWS {
    public static let shared = StrictAWS()

    /// How long new clusters and instances stay `creating`.
    public static let creatingSeconds = 2.0

    private var startup: Task<URL, any Error>?

    /// The proxy's endpoint (starting moto and the proxy on first use).
    public func url() async throws -> URL {
        if let startup { return try await startup.value }
        let task = Task { try await Self.launch() }
        startup = task
        return try await task.value
    }

    static func launch() async throws -> URL {
        let upstream = try await MotoServer.shared.url()
        let script = "/tmp/lifeboat-strict-aws-\(getpid()).py"
        try proxySource.write(toFile: script, atomically: true, encoding: .utf8)
        let port = TestSandbox.freePort()
        let log = "/tmp/lifeboat-strict-aws-\(getpid())-\(port).log"
        let python = MotoServer.python()
        let run = "\(python) \(script) \(upstream.absoluteString) \(port) \(creatingSeconds) >\(log) 2>&1 & p=$!; "
            + "while kill -0 \(getpid()) 2>/dev/null; do sleep 1; done; kill $p"
        _ = try CommandRunner.spawn("/bin/sh", ["-c", run], outputPath: "/dev/null")
        guard let url = URL(string: "http://127.0.0.1:\(port)") else { throw LifeboatError(.internalError, "bad proxy URL") }
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if let r = try? await CommandRunner.run(python, ["-c",
                "import urllib.request; urllib.request.urlopen('http://127.0.0.1:\(port)/moto-api/', timeout=2)"], check: false),
                r.status == 0
            {
                return url
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw LifeboatError(.externalCommand, "the strict AWS proxy did not start on port \(port)", hint: "see \(log)")
    }

    static let proxySource = #"""
        import http.server, socketserver, sys, threading, time, re, urllib.request, urllib.parse, uuid

        UPSTREAM, PORT, CREATING = sys.argv[1].rstrip("/"), int(sys.argv[2]), float(sys.argv[3])
        lock = threading.Lock()
        clusters = {}   # id -> {"created": t, "serverless": bool}
        instances = {}  # id -> {"created": t, "cluster": id}

        def service_of(auth):
            m = re.search(r"Credential=[^/]+/\d+/[^/]+/([^/]+)/aws4_request", auth or "")
            return m.group(1) if m else ""

        def forward(method, path, headers, body):
            req = urllib.request.Request(UPSTREAM + path, data=body if body or method in ("POST", "PUT") else None, method=method)
            for k, v in headers.items():
                if k.lower() not in ("host", "content-length", "connection", "accept-encoding"):
                    req.add_header(k, v)
            if body and not any(k.lower() == "content-type" for k in headers):
                # urllib would add a form content type; the client sent none.
                req.add_header("Content-Type", "application/octet-stream")
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    return r.status, dict(r.headers), r.read()
            except urllib.error.HTTPError as e:
                return e.code, dict(e.headers), e.read()

        def rds_error(code, message, status=400):
            body = ('<ErrorResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><Error><Type>Sender</Type>'
                    f'<Code>{code}</Code><Message>{message}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>')
            return status, {"Content-Type": "text/xml"}, body.encode()

        def creating(entry):
            return entry is not None and time.time() - entry["created"] < CREATING

        def subnet_group_exists(name, headers):
            form = urllib.parse.urlencode({"Action": "DescribeDBSubnetGroups", "Version": "2014-10-31", "DBSubnetGroupName": name})
            status, _, _ = forward("POST", "/", headers, form.encode())
            return status == 200

        def check(action, p, headers):
            with lock:
                if action in ("RestoreDBClusterToPointInTime", "RestoreDBClusterFromSnapshot", "CreateDBCluster"):
                    group = p.get("DBSubnetGroupName")
                    if group and not subnet_group_exists(group, headers):
                        return rds_error("DBSubnetGroupNotFoundFault", f"DBSubnetGroup {group} not found.", 404)
                if action == "ModifyDBCluster":
                    c = p.get("DBClusterIdentifier")
                    if creating(clusters.get(c)):
                        return rds_error("InvalidDBClusterStateFault", f"DB cluster {c} is not currently in the available state.")
                if action == "CreateDBInstance" and p.get("DBInstanceClass") == "db.serverless":
                    c = clusters.get(p.get("DBClusterIdentifier"))
                    if c is not None and not c["serverless"]:
                        return rds_error("InvalidParameterCombination",
                            "Creating a Serverless v2 DB instance requires the DB cluster to have a ServerlessV2ScalingConfiguration.")
                if action == "DeleteDBCluster":
                    c = p.get("DBClusterIdentifier")
                    live = [i for i, v in instances.items() if v["cluster"] == c]
                    if live:
                        return rds_error("InvalidDBClusterStateFault",
                            "Cluster cannot be deleted, it still contains DB instances in non-deleting state.")
            return None

        def record(action, p):
            with lock:
                now = time.time()
                if action in ("RestoreDBClusterToPointInTime", "RestoreDBClusterFromSnapshot", "CreateDBCluster"):
                    clusters[p["DBClusterIdentifier"]] = {"created": now,
                        "serverless": "ServerlessV2ScalingConfiguration.MinCapacity" in p}
                elif action == "ModifyDBCluster" and "ServerlessV2ScalingConfiguration.MinCapacity" in p:
                    clusters.setdefault(p["DBClusterIdentifier"], {"created": 0, "serverless": True})["serverless"] = True
                elif action == "CreateDBInstance":
                    instances[p["DBInstanceIdentifier"]] = {"created": now, "cluster": p.get("DBClusterIdentifier")}
                elif action == "DeleteDBInstance":
                    instances.pop(p.get("DBInstanceIdentifier"), None)
                elif action == "DeleteDBCluster":
                    clusters.pop(p.get("DBClusterIdentifier"), None)

        def still_creating(action, data):
            text = data.decode("utf-8", "replace")
            with lock:
                if action == "DescribeDBClusters":
                    def fix(m):
                        block = m.group(0)
                        ident = re.search(r"<DBClusterIdentifier>([^<]+)</DBClusterIdentifier>", block)
                        if ident and creating(clusters.get(ident.group(1))):
                            block = re.sub(r"<Status>[^<]*</Status>", "<Status>creating</Status>", block, count=1)
                        return block
                    text = re.sub(r"<DBCluster>.*?</DBCluster>", fix, text, flags=re.S)
                elif action == "DescribeDBInstances":
                    def fix(m):
                        block = m.group(0)
                        ident = re.search(r"<DBInstanceIdentifier>([^<]+)</DBInstanceIdentifier>", block)
                        if ident and creating(instances.get(ident.group(1))):
                            block = re.sub(r"<DBInstanceStatus>[^<]*</DBInstanceStatus>", "<DBInstanceStatus>creating</DBInstanceStatus>", block)
                        return block
                    text = re.sub(r"<DBInstance>.*?</DBInstance>", fix, text, flags=re.S)
            return text.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items()}
                action, params = None, {}
                if service_of(self.headers.get("Authorization")) == "rds" and body:
                    params = dict(urllib.parse.parse_qsl(body.decode()))
                    action = params.get("Action")
                refused = check(action, params, headers) if action else None
                if refused:
                    status, out_headers, data = refused
                else:
                    status, out_headers, data = forward(self.command, self.path, headers, body)
                    if action and status == 200:
                        record(action, params)
                        data = still_creating(action, data)
                self.send_response(status)
                for k, v in out_headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_any

            def log_message(self, *args):
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        Server(("127.0.0.1", PORT), Handler).serve_forever()
        """#
}

import Foundation
import LifeboatCore
import LifeboatPostgres

/// moto behind a small proxy of our own that answers as AWS does where moto does not: a new Aurora
/// cluster and its instances stay `creating` for a while (moto makes them `available` at once);
/// `ModifyDBCluster` on a cluster that is not `available` is refused with `InvalidDBClusterStateFault`;
/// a `db.serverless` instance in a cluster without serverless v2 scaling is refused with
/// `InvalidParameterCombination`; a restore or cluster creation into an unknown subnet group is
/// refused with `DBSubnetGroupNotFoundFault`; a cluster that still has instances cannot be deleted;
/// a rename onto an existing cluster's name is refused with `DBClusterAlreadyExistsFault` and a
/// renamed cluster is `renaming` for a while; a CloudWatch Logs export task stays `RUNNING` for a
/// while and a second one meanwhile is refused with `LimitExceededException` (AWS allows one).
/// It also answers AWS Config's `DeliverConfigSnapshot`, which moto lacks (for a delivery channel
/// moto knows), and, for tests, makes snapshots look older than they are and injects faults
/// (AccessDenied, throttling) into the next calls of an action: see `StrictAWS.control`.
/// Everything else is passed to moto unchanged. The AWS tests run against it.
public actor StrictAWS {
    public static let shared = StrictAWS()

    /// How long new clusters and instances stay `creating`.
    public static let creatingSeconds = 2.0

    private var startup: Task<URL, any Error>?

    /// SHA-256 (hex) of the master password last set on `cluster` (empty when none was seen).
    public func masterPasswordDigest(_ cluster: String, region: String) async throws -> String {
        let base = try await url()
        let r = try await CommandRunner.run(MotoServer.python(), ["-c",
            "import sys, urllib.request, urllib.parse; print(urllib.request.urlopen(sys.argv[1] + '/strict-aws/master-password?cluster=' + urllib.parse.quote(sys.argv[2]) + '&region=' + sys.argv[3]).read().decode())",
            base.absoluteString, cluster, region])
        return r.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Test controls, each for one region (state is kept per region, as AWS does): `["age_snapshot": ["id": ID, "days": N]]` makes a cluster snapshot look N days
    /// old; `["fault": ["action": "ListSecrets", "code": "AccessDeniedException", "status": 400, "times": 1]]`
    /// answers the next `times` calls of that action with that error.
    public func control(_ command: [String: Any], region: String) async throws {
        let base = try await url()
        var command = command
        command["region"] = region
        let body = try JSONSerialization.data(withJSONObject: command)
        let script = "import sys, urllib.request; r = urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=sys.stdin.buffer.read(), method='POST')); print(r.status)"
        let file = "/tmp/lifeboat-strict-control-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).json"
        try body.write(to: URL(fileURLWithPath: file))
        defer { try? FileManager.default.removeItem(atPath: file) }
        let r = try await CommandRunner.run("/bin/sh", ["-c", "\(MotoServer.python()) -c \"\(script)\" \(base.absoluteString)/strict-aws/control < \(file)"], check: false)
        guard r.status == 0 else { throw LifeboatError(.externalCommand, "the strict AWS proxy refused the control \(command)") }
    }

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
        import json, hashlib, collections
        # State per region (moto keeps regions apart; so must we): the region of the request being
        # handled is in `ctx.region`.
        ctx = threading.local()
        by_region = collections.defaultdict(lambda: {"clusters": {}, "instances": {}, "aged": {}, "exports": {}, "passwords": {}})
        def C(): return by_region[getattr(ctx, "region", "")]["clusters"]    # id -> {"created", "serverless", "status"}
        def I(): return by_region[getattr(ctx, "region", "")]["instances"]   # id -> {"created", "cluster"}
        def A(): return by_region[getattr(ctx, "region", "")]["aged"]        # snapshot id -> days added to its age
        def E(): return by_region[getattr(ctx, "region", "")]["exports"]     # export task id -> created
        def P(): return by_region[getattr(ctx, "region", "")]["passwords"]   # cluster -> sha256 of the master password
        faults = []     # {"action", "code", "status", "times", "region"?}

        def region_of(auth):
            m = re.search(r"Credential=[^/]+/\d+/([^/]+)/[^/]+/aws4_request", auth or "")
            return m.group(1) if m else ""

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

        def json_error(code, message, status=400):
            return status, {"Content-Type": "application/x-amz-json-1.1"}, json.dumps({"__type": code, "message": message}).encode()

        def cluster_exists(name, headers):
            form = urllib.parse.urlencode({"Action": "DescribeDBClusters", "Version": "2014-10-31", "DBClusterIdentifier": name})
            status, _, _ = forward("POST", "/", headers, form.encode())
            return status == 200

        def injected(action, is_json):
            with lock:
                for f in faults:
                    if f["action"] == action and f["times"] > 0 and f.get("region", ctx.region) == ctx.region:
                        f["times"] -= 1
                        if is_json:
                            return json_error(f["code"], f.get("message", "injected by the strict proxy"), f.get("status", 400))
                        return rds_error(f["code"], f.get("message", "injected by the strict proxy"), f.get("status", 400))
            return None

        def json_check(target, body, headers):
            op = target.split(".")[-1]
            if op == "CreateExportTask":
                with lock:
                    running = [t for t, c in E().items() if time.time() - c < CREATING]
                if running:
                    return json_error("LimitExceededException", "Resource limit exceeded.")
            if op == "DeliverConfigSnapshot":
                name = body.get("deliveryChannelName", "")
                h = dict(headers); h["X-Amz-Target"] = "StarlingDoveService.DescribeDeliveryChannels"
                status, _, data = forward("POST", "/", h, json.dumps({"DeliveryChannelNames": [name]}).encode())
                if status != 200 or not json.loads(data or b"{}").get("DeliveryChannels"):
                    return json_error("NoSuchDeliveryChannelException", f"Cannot find delivery channel with specified name '{name}'.")
                return 200, {"Content-Type": "application/x-amz-json-1.1"}, json.dumps({"configSnapshotId": str(uuid.uuid4())}).encode()
            return None

        def json_after(target, body, data):
            op = target.split(".")[-1]
            if op == "CreateExportTask":
                with lock:
                    E()[json.loads(data)["taskId"]] = time.time()
            if op == "DescribeExportTasks":
                answer = json.loads(data or b"{}")
                with lock:
                    running = {t for t, c in E().items() if time.time() - c < CREATING}
                if body.get("statusCode") in ("RUNNING", "PENDING"):
                    answer["exportTasks"] = [{"taskId": t, "status": {"code": "RUNNING"}} for t in sorted(running)] if body["statusCode"] == "RUNNING" else []
                else:
                    for task in answer.get("exportTasks", []):
                        if task.get("taskId") in running:
                            task["status"] = {"code": "RUNNING", "message": "running"}
                data = json.dumps(answer).encode()
            return data

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
                    if creating(C().get(c)):
                        return rds_error("InvalidDBClusterStateFault", f"DB cluster {c} is not currently in the available state.")
                    new = p.get("NewDBClusterIdentifier")
                    if new and cluster_exists(new, headers):
                        return rds_error("DBClusterAlreadyExistsFault", f"DB Cluster {new} already exists")
                if action == "CreateDBInstance" and p.get("DBInstanceClass") == "db.serverless":
                    c = C().get(p.get("DBClusterIdentifier"))
                    if c is not None and not c["serverless"]:
                        return rds_error("InvalidParameterCombination",
                            "Creating a Serverless v2 DB instance requires the DB cluster to have a ServerlessV2ScalingConfiguration.")
                if action == "DeleteDBCluster":
                    c = p.get("DBClusterIdentifier")
                    live = [i for i, v in I().items() if v["cluster"] == c]
                    if live:
                        return rds_error("InvalidDBClusterStateFault",
                            "Cluster cannot be deleted, it still contains DB instances in non-deleting state.")
            return None

        def record(action, p):
            with lock:
                now = time.time()
                if action in ("RestoreDBClusterToPointInTime", "RestoreDBClusterFromSnapshot", "CreateDBCluster"):
                    C()[p["DBClusterIdentifier"]] = {"created": now, "status": "creating",
                        "serverless": "ServerlessV2ScalingConfiguration.MinCapacity" in p}
                if action in ("CreateDBCluster", "ModifyDBCluster") and p.get("MasterUserPassword"):
                    P()[p["DBClusterIdentifier"]] = hashlib.sha256(p["MasterUserPassword"].encode()).hexdigest()
                if action == "ModifyDBCluster" and p.get("NewDBClusterIdentifier") and p["DBClusterIdentifier"] in P():
                    P()[p["NewDBClusterIdentifier"]] = P().pop(p["DBClusterIdentifier"])
                if action == "ModifyDBCluster" and p.get("NewDBClusterIdentifier"):
                    old = C().pop(p["DBClusterIdentifier"], {"serverless": False})
                    C()[p["NewDBClusterIdentifier"]] = {"created": now, "status": "renaming", "serverless": old.get("serverless", False)}
                    for v in I().values():
                        if v["cluster"] == p["DBClusterIdentifier"]:
                            v["cluster"] = p["NewDBClusterIdentifier"]
                elif action == "ModifyDBCluster" and "ServerlessV2ScalingConfiguration.MinCapacity" in p:
                    C().setdefault(p["DBClusterIdentifier"], {"created": 0, "serverless": True})["serverless"] = True
                elif action == "CreateDBInstance":
                    I()[p["DBInstanceIdentifier"]] = {"created": now, "cluster": p.get("DBClusterIdentifier")}
                elif action == "DeleteDBInstance":
                    I().pop(p.get("DBInstanceIdentifier"), None)
                elif action == "DeleteDBCluster":
                    C().pop(p.get("DBClusterIdentifier"), None)

        def still_creating(action, data):
            text = data.decode("utf-8", "replace")
            with lock:
                if action == "DescribeDBClusters":
                    def fix(m):
                        block = m.group(0)
                        ident = re.search(r"<DBClusterIdentifier>([^<]+)</DBClusterIdentifier>", block)
                        entry = C().get(ident.group(1)) if ident else None
                        if creating(entry):
                            block = re.sub(r"<Status>[^<]*</Status>", "<Status>" + entry.get("status", "creating") + "</Status>", block, count=1)
                        return block
                    text = re.sub(r"<DBCluster>.*?</DBCluster>", fix, text, flags=re.S)
                elif action == "DescribeDBInstances":
                    def fix(m):
                        block = m.group(0)
                        ident = re.search(r"<DBInstanceIdentifier>([^<]+)</DBInstanceIdentifier>", block)
                        if ident and creating(I().get(ident.group(1))):
                            block = re.sub(r"<DBInstanceStatus>[^<]*</DBInstanceStatus>", "<DBInstanceStatus>creating</DBInstanceStatus>", block)
                        return block
                    text = re.sub(r"<DBInstance>.*?</DBInstance>", fix, text, flags=re.S)
                elif action == "DescribeDBClusterSnapshots":
                    def fix(m):
                        block = m.group(0)
                        ident = re.search(r"<DBClusterSnapshotIdentifier>([^<]+)</DBClusterSnapshotIdentifier>", block)
                        days = A().get(ident.group(1)) if ident else None
                        if days:
                            older = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - days * 86400))
                            block = re.sub(r"<SnapshotCreateTime>[^<]*</SnapshotCreateTime>", f"<SnapshotCreateTime>{older}</SnapshotCreateTime>", block)
                        return block
                    text = re.sub(r"<DBClusterSnapshot>.*?</DBClusterSnapshot>", fix, text, flags=re.S)
            return text.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_any(self):
                ctx.region = region_of(self.headers.get("Authorization"))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items()}
                if self.path.startswith("/strict-aws/master-password"):
                    q = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(self.path).query))
                    ctx.region = q.get("region", "")
                    with lock:
                        digest = P().get(q.get("cluster", ""), "")
                    self.reply(200, {"Content-Type": "text/plain"}, digest.encode())
                    return
                if self.path.startswith("/strict-aws/control"):
                    command = json.loads(body or b"{}")
                    ctx.region = command.get("region", "")
                    with lock:
                        if "age_snapshot" in command:
                            A()[command["age_snapshot"]["id"]] = float(command["age_snapshot"]["days"])
                        if "fault" in command:
                            faults.append(dict(command["fault"]))
                    status, out_headers, data = 200, {"Content-Type": "text/plain"}, b"ok"
                    self.reply(status, out_headers, data)
                    return
                action, params = None, {}
                target = self.headers.get("X-Amz-Target") or ""
                jbody = {}
                if target and body:
                    try:
                        jbody = json.loads(body)
                    except ValueError:
                        jbody = {}
                if service_of(self.headers.get("Authorization")) in ("rds", "ec2", "elasticloadbalancing") and body and not target:
                    params = dict(urllib.parse.parse_qsl(body.decode()))
                    action = params.get("Action")
                refused = injected(target.split(".")[-1], True) if target else (injected(action, False) if action else None)
                if not refused and service_of(self.headers.get("Authorization")) == "rds":
                    refused = check(action, params, headers) if action else None
                if not refused and target:
                    refused = json_check(target, jbody, headers)
                if refused:
                    status, out_headers, data = refused
                else:
                    status, out_headers, data = forward(self.command, self.path, headers, body)
                    if action and status == 200 and service_of(self.headers.get("Authorization")) == "rds":
                        record(action, params)
                        data = still_creating(action, data)
                    if target and status == 200:
                        data = json_after(target, jbody, data)
                self.reply(status, out_headers, data)

            def reply(self, status, out_headers, data):
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

import Foundation
import LifeboatCore
import LifeboatPostgres

#if canImport(Glibc)
import Glibc
#endif

/// A TCP proxy in front of an HTTP server that resets (RST) the connection of the first `resets`
/// requests whose request line contains `match` (for example `partNumber=`, a multipart part
/// upload), and forwards every other request with `Connection: close` so each is inspected.
/// Stops with the test process.
public enum ResettingProxy {
    static let script = #"""
    import socket, struct, sys, threading
    listen_port, upstream_port, resets, match, count_file = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].encode(), sys.argv[5]
    state = {"n": 0}
    lock = threading.Lock()
    def pipe(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try: s.shutdown(socket.SHUT_RDWR)
                except OSError: pass
    def handle(c):
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = c.recv(65536)
            if not d:
                c.close(); return
            buf += d
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        if match in lines[0]:
            with lock:
                state["n"] += 1
                n = state["n"]
            if n <= resets:
                with open(count_file, "w") as f:
                    f.write(str(n))
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.close(); return
        lines = [l for l in lines if not l.lower().startswith(b"connection:")] + [b"Connection: close"]
        u = socket.create_connection(("127.0.0.1", upstream_port))
        u.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + rest)
        threading.Thread(target=pipe, args=(c, u), daemon=True).start()
        pipe(u, c)
        c.close(); u.close()
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", listen_port)); srv.listen(64)
    print("ready", flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()
    """#

    /// Starts a proxy to `upstream`; returns its URL and a function telling how many connections it reset.
    public static func start(upstream: URL, resets: Int, match: String) async throws -> (url: URL, resetsDone: @Sendable () -> Int) {
        let port = LocalCluster.freePort()
        let file = "/tmp/lifeboat-proxy-\(getpid())-\(port).py"
        try script.write(toFile: file, atomically: true, encoding: .utf8)
        let upstreamPort = upstream.port ?? 80
        let countFile = file + ".count"
        let command = "\(MotoServer.python()) \(file) \(port) \(upstreamPort) \(resets) '\(match)' \(countFile) & p=$!; while kill -0 \(getpid()) 2>/dev/null; do sleep 1; done; kill $p"
        _ = try CommandRunner.spawn("/bin/sh", ["-c", command], outputPath: "/dev/null")
        for _ in 0..<100 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            addr.sin_port = in_port_t(UInt16(port).bigEndian)
            let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 } }
            close(fd)
            if ok, let url = URL(string: "http://127.0.0.1:\(port)") {
                return (url, { Int((try? String(contentsOfFile: countFile, encoding: .utf8)) ?? "0") ?? 0 })
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw LifeboatError(.externalCommand, "the resetting proxy did not start")
    }
}

import Foundation
import LifeboatCore
import LifeboatTesting
import Testing

/// `kill -9` of `lifeboat backup` at chosen moments never makes a broken backup visible, and the
/// next backup, `verify` and a restore all succeed.
@Suite(.serialized) struct BackupCrashTests {
    @Test func killNineAtAnyPointLeavesNoVisibleBrokenBackup() async throws {
        let sandbox = try TestSandbox("kill9")
        defer { Task { await sandbox.remove() } }
        let repo = try await TestRepository.make(in: sandbox, options: .init(chunkSize: 64 * 1024))
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: repo)
        try await pg.pgbench(["-i", "-s", "1", "-q"])
        let env = LifeboatCLI.environment(for: pg)
        let config = ["--config", repo.configFile]

        for point in ["backup.started", "backup.chunks:1", "backup.chunks:40", "backup.stopped", "backup.manifest"] {
            var faultEnv = env
            faultEnv["LIFEBOAT_FAULT_KILL_AT"] = point
            let killed = try await LifeboatCLI.run(["backup"] + config, environment: faultEnv)
            #expect(killed.status == 128 + 9, "killed at \(point): \(killed.errors)")
            let info = try LifeboatCLI.json(try await LifeboatCLI.run(["info", "--json"] + config, environment: env))
            #expect((info["backups"] as? [Any])?.count == 0, "no backup visible after a kill at \(point)")
            let verify = try await LifeboatCLI.run(["verify"] + config, environment: env)
            #expect(verify.status == 0, "verify after a kill at \(point): \(verify.output)")
        }
        // PostgreSQL itself is not left in backup mode by the killed sessions.
        // (Their backends exit once they see the connection gone, which aborts the backup.)
        var others = "?"
        for _ in 0..<50 {
            others = try await pg.value("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()") ?? "?"
            if others == "0" { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(others == "0")

        let ok = try await LifeboatCLI.run(["backup", "--json"] + config, environment: env)
        #expect(ok.status == 0, "\(ok.errors)")
        try await pg.pgbench(["-t", "100", "-n"])
        try await pg.archiveCurrentWAL()
        #expect(try await LifeboatCLI.run(["verify"] + config, environment: env).status == 0)
        // The crashed attempts' chunks and file lists are garbage that expire sweeps.
        let expire = try LifeboatCLI.json(try await LifeboatCLI.run(["expire", "--json"] + config, environment: env))
        #expect((expire["orphanManifestsRemoved"] as? Int ?? 0) >= 1)
        #expect(try await LifeboatCLI.run(["verify"] + config, environment: env).status == 0)

        let dest = sandbox.path("after-crashes")
        let port = TestSandbox.freePort()
        let restore = try await LifeboatCLI.run(["restore", "--to", dest, "--start", "--port", String(port), "--socket-dir", sandbox.root,
            "--json"] + config, environment: env)
        #expect(restore.status == 0, "\(restore.errors)")
        let restored = TestPostgres.attach(dest, port: port, like: pg)
        let b = try await restored.pgbenchBalances()
        let invariant = b.accounts == b.tellers && b.tellers == b.branches && b.branches == b.history
        #expect(invariant, "\(b)")
        #expect(try await restored.value("SELECT count(*) FROM pgbench_history") == "100")
        try await restored.stop()
    }
}

import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatTesting
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `lifeboat serve` as an operator runs it: the built binary, a real cluster, real HTTP, SIGTERM.
@Suite(.serialized) struct ServeCommandTests {
    func get(_ url: String) async -> (status: Int, body: String)? {
        guard let u = URL(string: url), let (data, response) = try? await URLSession.shared.data(from: u) else { return nil }
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    @Test func serveTakesTheDueBackupReportsItAndStopsOnSIGTERM() async throws {
        let sandbox = try TestSandbox("serve-cli")
        defer { Task { await sandbox.remove() } }
        let port = TestSandbox.freePort()
        let state = sandbox.path("state/serve.json")
        let repo = try await TestRepository.make(in: sandbox, extraConfig: """
            serve:
              listen: 127.0.0.1:\(port)
              backup_every: 1h
              verify_every: "off"
              tick: 0.2s
              refresh: 0.5s
              state_file: \(state)

            """)
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: repo)
        let env = LifeboatCLI.environment(for: pg)
        _ = try await pg.query("CREATE TABLE t AS SELECT generate_series(1, 5000) AS id")
        try await pg.archiveCurrentWAL()

        let daemon = try CommandRunner.spawn(TestSandbox.lifeboatBinary, ["serve", "--config", repo.configFile], environment: env,
            outputPath: sandbox.path("serve.log"))
        var metrics = ""
        let deadline = Date().addingTimeInterval(90)
        while Date() < deadline, daemon.poll() == nil {
            if let m = await get("http://127.0.0.1:\(port)/metrics"), m.body.contains("lifeboat_backups{kind=\"automated\"} 1.0\n") {
                metrics = m.body
                break
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        let log = { (try? String(contentsOfFile: sandbox.path("serve.log"), encoding: .utf8)) ?? "" }
        #expect(metrics.contains("lifeboat_job_last_success{job=\"backup\"} 1.0\n"), "\(metrics)\n\(log())")
        #expect(metrics.contains("lifeboat_job_last_success{job=\"expire\"} 1.0\n"))
        let health = await get("http://127.0.0.1:\(port)/healthz")
        #expect(health?.status == 200 && health?.body == "ok\n", "\(String(describing: health))")

        // A second daemon (or a cron run) on the same state file is refused while this one runs.
        let second = try await LifeboatCLI.run(["serve", "--once", "--config", repo.configFile], environment: env)
        #expect(second.status == 7 && second.errors.contains("already uses"), "\(second.errors)")

        daemon.signal(SIGTERM)
        #expect(try await daemon.wait(timeout: 20) == 0, "\(log())")
        #expect(await get("http://127.0.0.1:\(port)/healthz") == nil, "the listener is gone")

        // Cron mode afterwards: the backup is not due again; one automated backup in all.
        let once = try await LifeboatCLI.run(["serve", "--once", "--config", repo.configFile], environment: env)
        #expect(once.status == 0 && once.output.contains("nothing due"), "\(once.output)\(once.errors)")
        let backups = try await repo.reopen().backups()
        #expect(backups.count == 1 && backups.first?.kind == .automated)
        try await pg.stop()
    }

    @Test func badServeSettingsAreRefusedClearly() async throws {
        let sandbox = try TestSandbox("serve-bad")
        defer { Task { await sandbox.remove() } }
        let cases: [(String, String)] = [
            ("serve:\n  bogus: 1\n", "unknown configuration key 'serve.bogus'"),
            ("serve:\n  backup_window: 3am\n", "is not HH:MM-HH:MM"),
            ("serve:\n  drill_every: 30d\n  drill_scenario: service-restart\n", "must be snapshot-restore or point-in-time"),
            ("serve:\n  listen: nowhere\n", "is not HOST:PORT"),
            ("serve:\n  expire: maybe\n", "serve.expire must be true or false"),
        ]
        for (i, (yaml, message)) in cases.enumerated() {
            let repo = try await TestRepository.make(in: sandbox, name: "repo\(i)", extraConfig: "pgdata: /nonexistent\n" + yaml)
            let r = try await LifeboatCLI.run(["serve", "--once", "--config", repo.configFile])
            #expect(r.status == 2 && r.errors.contains(message), "\(yaml): \(r.status) \(r.errors)")
            #expect(try await repo.reopen().backups().isEmpty)
        }
    }
}

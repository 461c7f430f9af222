import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository
import LifeboatRunbooks
import LifeboatService
import LifeboatTesting
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// One HTTP request; the status and the body.
func http(_ url: String, method: String = "GET") async throws -> (status: Int, body: String) {
    var request = URLRequest(url: try #require(URL(string: url)))
    request.httpMethod = method
    request.timeoutInterval = 10
    let (data, response) = try await URLSession.shared.data(for: request)
    return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
}

/// The daemon's jobs against a real cluster and repositories, and what it reports over real HTTP.
@Suite(.serialized) struct ServiceTests {
    /// Due jobs run in order (backup, expire, replica copy, verify), their records survive a restart
    /// of the daemon, nothing runs twice, and the next cycle takes the next backup.
    @Test func scheduledJobsRunOnceWhenDueAndSurviveARestart() async throws {
        let sandbox = try TestSandbox("serve-jobs")
        defer { Task { await sandbox.remove() } }
        let replica = try await TestRepository.make(in: sandbox, name: "replica", passphrase: "the second region's key")
        let primary = try await TestRepository.make(in: sandbox, extraConfig: "mirrors: [\(replica.configFile)]\n")
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: primary)
        _ = try await pg.query("CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g")
        try await pg.archiveCurrentWAL()

        let stateFile = sandbox.path("state/serve.json")
        let drill = DrillOptions(scenario: .snapshotRestore, production: pg.endpoint, pgdata: pg.cluster.dataDirectory,
            scratchRoot: sandbox.root, invocation: primary.invocation,
            checks: [DrillCheck(name: "rows", sql: "SELECT count(*) FROM t", expect: "20000")])
        let configuration = ServiceConfiguration(
            schedule: ServiceSchedule(backupWindow: nil, backupEvery: 3600, verifyEvery: 86400, drillEvery: 30 * 86400),
            backup: BackupOptions(pgdata: pg.cluster.dataDirectory, endpoint: pg.endpoint), expirePolicy: .seedDefault,
            copyToMirrors: true, drill: drill, production: pg.endpoint, stateFile: stateFile, tick: 0.1,
            refreshEvery: 0.5)
        let replicas = MirrorSet([MirrorSet.Entry(name: replica.configFile) { try await replica.reopen() }])
        var service = try BackupService(repository: try await primary.reopen(), mirrors: replicas, configuration: configuration,
            logger: TestSandbox.logger())
        await service.observeRepository()
        let first = await service.runDueJobs(now: Date())
        #expect(first == [.backup, .expire, .copy, .verify, .drill])
        var snapshot = await service.snapshot()
        for job in first { #expect(snapshot.jobs[job.rawValue]?.succeeded == true, "\(job): \(snapshot.jobs[job.rawValue]?.message ?? "")") }
        let backups = try await primary.reopen().backups()
        #expect(backups.count == 1 && backups.first?.kind == .automated)
        #expect(try await replica.reopen().backups().map(\.id) == backups.map(\.id), "the copy reached the replica")
        #expect(snapshot.repository?.automatedBackups == 1)
        #expect(snapshot.mirrors.first?.missingBackups == [] && snapshot.mirrors.first?.state == .upToDate)
        // The drill's evidence is in the repository, and its snapshot was cleaned up.
        #expect(snapshot.lastDrill?.passed == true && snapshot.lastDrill?.scenario == "snapshot-restore")
        #expect(try await primary.reopen().backups().filter { $0.kind == .manual }.isEmpty)
        #expect(await service.runDueJobs(now: Date()) == [], "nothing is due twice")

        // A restarted daemon keeps its records: verify is not repeated, the backup cadence comes
        // from the repository.
        service = try BackupService(repository: try await primary.reopen(), mirrors: replicas, configuration: configuration,
            logger: TestSandbox.logger())
        await service.observeRepository()
        #expect(await service.runDueJobs(now: Date()) == [])
        _ = try await pg.query("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(20001, 30000) g")
        let next = await service.runDueJobs(now: Date().addingTimeInterval(3601))
        #expect(next == [.backup, .expire, .copy])
        snapshot = await service.snapshot()
        #expect(snapshot.repository?.automatedBackups == 2)
        #expect(snapshot.jobs["backup"]?.runs == 2 && snapshot.jobs["verify"]?.runs == 1)
        let metrics = ServiceMetrics.render(snapshot)
        #expect(metrics.contains("lifeboat_backups{kind=\"automated\"} 2.0\n"))
        #expect(metrics.contains("lifeboat_job_runs_total{job=\"backup\"} 2\n"))
        #expect(metrics.contains("lifeboat_drill_last_passed{scenario=\"snapshot-restore\"} 1.0\n"))
        #expect(metrics.contains("lifeboat_mirror_missing_backups{mirror=\"\(replica.path)\"} 0.0\n"), "\(metrics)")

        // The newest backup restores with every row.
        let (report, restored) = try await TestRestore.restore(primary, sandbox: sandbox, name: "restored", target: .immediate)
        #expect(report.backupID == snapshot.repository?.newestBackupID)
        #expect(try await restored.value("SELECT count(*) FROM t") == "30000")
        try await restored.stop()

        // A job a killed daemon left "running" counts as a failure after a restart, with the reason.
        var saved = try ServiceState.load(stateFile)
        saved[.verify] = JobRecord(startedAt: Date(), reason: "every 1.0d", message: "running", runs: 2, failures: 0)
        try saved.save(stateFile)
        service = try BackupService(repository: try await primary.reopen(), mirrors: replicas, configuration: configuration,
            logger: TestSandbox.logger())
        let afterKill = await service.snapshot()
        #expect(afterKill.jobs["verify"]?.succeeded == false && afterKill.jobs["verify"]?.failures == 1)
        #expect(afterKill.health.problems.contains { $0.contains("verify failed") && $0.contains("interrupted") }, "\(afterKill.health.problems)")

        // One daemon per state file.
        let lock = try ServiceLock(stateFile: stateFile)
        #expect(throws: LifeboatError.self) { try ServiceLock(stateFile: stateFile) }
        withExtendedLifetime(lock) {}
        try await pg.stop()
    }

    /// A failing archive_command turns /healthz red with the reason and shows in /metrics; fixed
    /// archiving turns it green again. Real cluster, real HTTP.
    @Test func archiverFailureShowsInHealthAndMetricsOverHTTP() async throws {
        let sandbox = try TestSandbox("serve-http")
        defer { Task { await sandbox.remove() } }
        let repo = try await TestRepository.make(in: sandbox)
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: repo)
        _ = try await pg.query("CREATE TABLE t (id int)")
        try await pg.archiveCurrentWAL()
        let configuration = ServiceConfiguration(schedule: ServiceSchedule(backupWindow: nil, backupEvery: nil),
            backup: nil, expirePolicy: nil, copyToMirrors: false, drill: nil, production: pg.endpoint, rpoObjective: 300,
            stateFile: sandbox.path("serve.json"))
        let service = try BackupService(repository: try await repo.reopen(), mirrors: MirrorSet([]), configuration: configuration,
            logger: TestSandbox.logger())
        await service.observeRepository()
        let port = TestSandbox.freePort()
        let server = Task {
            try await StatusServer(host: "127.0.0.1", port: port, logger: TestSandbox.logger()) { method, path in
                await service.answer(method: method, path: path)
            }.run()
        }
        defer { server.cancel() }
        let base = "http://127.0.0.1:\(port)"
        var health: (status: Int, body: String) = (0, "")
        for _ in 0..<100 {
            if let h = try? await http(base + "/healthz") { health = h; break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(health.status == 200 && health.body == "ok\n", "\(health)")
        var metrics = try await http(base + "/metrics")
        #expect(metrics.body.contains("lifeboat_archive_ready_files 0.0\n") && metrics.body.contains("lifeboat_archive_failing 0.0\n"))
        #expect(metrics.body.contains("lifeboat_archiver_up 1.0\n"))

        // Archiving breaks.
        let command = try #require(try await pg.value("SHOW archive_command"))
        _ = try await pg.query("ALTER SYSTEM SET archive_command = 'false'")
        _ = try await pg.query("SELECT pg_reload_conf()")
        try await Task.sleep(for: .milliseconds(300))
        _ = try await pg.query("INSERT INTO t SELECT generate_series(1, 1000)")
        _ = try await pg.query("SELECT pg_switch_wal()")
        let deadline = Date().addingTimeInterval(30)
        while try await pg.value("SELECT failed_count FROM pg_stat_archiver") == "0", Date() < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
        try await Task.sleep(for: .milliseconds(1100))
        health = try await http(base + "/healthz")
        #expect(health.status == 503 && health.body.contains("WAL archiving is failing"), "\(health)")
        metrics = try await http(base + "/metrics")
        #expect(metrics.body.contains("lifeboat_archive_failing 1.0\n"), "\(metrics.body)")
        #expect(!metrics.body.contains("lifeboat_archive_ready_files 0.0\n"))
        let status = try await http(base + "/status")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(status.body.utf8)) as? [String: Any])
        #expect((json["health"] as? [String: Any])?["healthy"] as? Bool == false)
        #expect(((json["snapshot"] as? [String: Any])?["archiver"] as? [String: Any])?["readyFiles"] as? Int ?? 0 >= 1)
        let page = try await http(base + "/")
        #expect(page.status == 200 && page.body.contains("<title>Lifeboat: UNHEALTHY · ") && page.body.contains("WAL archiving is failing"))

        // Fixed: the waiting segment goes out and health is green again.
        _ = try await pg.query("ALTER SYSTEM SET archive_command = '\(command.replacingOccurrences(of: "'", with: "''"))'")
        _ = try await pg.query("SELECT pg_reload_conf()")
        try await pg.waitForArchiverIdle(timeout: 90)
        try await Task.sleep(for: .milliseconds(1100))
        health = try await http(base + "/healthz")
        #expect(health.status == 200, "\(health)")
        #expect(try await http(base + "/").body.contains("<p class=ok id=health>Healthy</p>"))

        // The repository disappears (moved away): red, with the reason; back in place: green.
        try FileManager.default.moveItem(atPath: repo.path, toPath: repo.path + ".moved")
        await service.observeRepository()
        health = try await http(base + "/healthz")
        #expect(health.status == 503 && health.body.contains("repository unreachable") && health.body.contains("moved or deleted"), "\(health)")
        #expect(try await http(base + "/metrics").body.contains("lifeboat_repository_up 0.0\n"))
        try FileManager.default.moveItem(atPath: repo.path + ".moved", toPath: repo.path)
        await service.observeRepository()
        #expect(try await http(base + "/healthz").status == 200)
        #expect(try await http(base + "/nope").status == 404)
        #expect(try await http(base + "/metrics", method: "POST").status == 405)
        server.cancel()
        _ = await server.result
        try await pg.stop()
    }
}

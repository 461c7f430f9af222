import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository
import LifeboatRunbooks
import LifeboatTesting
import Testing

@Suite(.serialized) struct DrillTests {
    func options(_ scenario: DrillScenario, _ pg: TestPostgres, _ repo: TestRepository, _ sandbox: TestSandbox,
        checks: [DrillCheck] = [], objectives: DrillObjectives? = nil) -> DrillOptions
    {
        DrillOptions(scenario: scenario, production: pg.endpoint, pgdata: pg.cluster.dataDirectory, scratchRoot: sandbox.root,
            invocation: repo.invocation, objectives: objectives,
            checks: checks)
    }

    @Test func snapshotAndPointInTimeDrillsMeasureReallyAndKeepHistory() async throws {
        let sandbox = try TestSandbox("drill")
        defer { Task { await sandbox.remove() } }
        let repo = try await TestRepository.make(in: sandbox)
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: repo)
        try await pg.pgbench(["-i", "-s", "1", "-q"])
        _ = try await pg.query("CREATE TABLE users (id int)")
        _ = try await pg.query("INSERT INTO users SELECT generate_series(1, 321)")
        let opened = try await repo.reopen()
        let checks = [DrillCheck(name: "users are all there", sql: "SELECT count(*) FROM users", expect: "321"),
            DrillCheck(name: "accounts loaded", sql: "SELECT count(*) FROM pgbench_accounts", min: 100_000)]

        // Snapshot-restore: the seed's monthly test.
        let snap = try await Drill(repository: opened, logger: TestSandbox.logger()).run(options(.snapshotRestore, pg, repo, sandbox, checks: checks))
        #expect(snap.passed, "\(snap.checks)")
        #expect(snap.checks.contains { $0.name == "pgbench balances agree" && $0.passed })
        #expect(snap.checks.contains { $0.name == "users are all there" && $0.passed })
        #expect(snap.checks.contains { $0.name == "pg_amcheck finds no corruption" && $0.passed })
        let rtoPhases = snap.phases.filter(\.countsTowardRTO)
        #expect(Set(rtoPhases.map(\.name)) == ["restore files", "recover and promote", "verify the restored cluster"])
        #expect(abs(snap.rtoSeconds - rtoPhases.reduce(0) { $0 + $1.seconds }) < 1e-9)
        #expect(snap.rtoSeconds > 0 && snap.rtoMet)
        let (target, achieved) = (try #require(snap.targetTime), try #require(snap.achievedTime))
        #expect(abs((snap.rpoSeconds ?? -1) - target.timeIntervalSince(achieved)) < 1e-6)
        // The scratch cluster and the drill's snapshot are gone; production is untouched.
        #expect(!FileManager.default.fileExists(atPath: try #require(snap.scratchDirectory)))
        let remaining = try await opened.backups()
        #expect(!remaining.contains { $0.id == snap.backupID })
        #expect(try await pg.value("SELECT count(*) FROM users") == "321")

        // Point-in-time: writes right before the drill must all be recovered (RPO 0).
        // It restores the newest automated backup plus WAL.
        _ = try await BackupEngine(repository: opened, logger: TestSandbox.logger())
            .run(BackupOptions(pgdata: pg.cluster.dataDirectory, endpoint: pg.endpoint))
        _ = try await pg.query("INSERT INTO users SELECT generate_series(322, 400)")
        let pitr = try await Drill(repository: opened, logger: TestSandbox.logger()).run(options(.pointInTime, pg, repo, sandbox,
            checks: [DrillCheck(name: "latest users", sql: "SELECT count(*) FROM users", expect: "400")]))
        #expect(pitr.passed, "\(pitr.checks) \(pitr.error ?? "")")
        #expect(pitr.rpoSeconds == 0)
        #expect(pitr.rpoMet == true)
        let reached = try #require(LSN(pitr.achievedLSN ?? ""))
        let marked = try #require(LSN(pitr.productionLSNAtTarget ?? ""))
        #expect(reached >= marked)
        #expect((pitr.archiveLagSeconds ?? -1) >= 0)

        // Both drills are recorded in the repository, and the reports render.
        let history = try await DrillHistory.all(try await repo.reopen())
        #expect(history.map(\.id) == [snap.id, pitr.id])
        let files = try DrillReportRenderer.write(pitr, history: history, to: sandbox.path("reports"))
        #expect(files.count == 3)
        let html = try String(contentsOfFile: files[2], encoding: .utf8)
        let pitrBackup = try #require(pitr.backupID)
        #expect(html.contains("<svg") && html.contains("PASSED") && html.contains(pitrBackup))
        let md = try String(contentsOfFile: files[0], encoding: .utf8)
        #expect(md.contains("| **RTO** |") && md.contains("latest users"))
        let decoded = try RepositoryJSON.decoder().decode(DrillReport.self, from: Data(contentsOf: URL(fileURLWithPath: files[1])))
        #expect(decoded.rtoSeconds == pitr.rtoSeconds)
    }

    @Test func failingCheckOrMissedObjectiveFailsTheDrill() async throws {
        let sandbox = try TestSandbox("drill-fail")
        defer { Task { await sandbox.remove() } }
        let repo = try await TestRepository.make(in: sandbox)
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: repo)
        _ = try await pg.query("CREATE TABLE users (id int)")
        let opened = try await repo.reopen()
        let failing = try await Drill(repository: opened, logger: TestSandbox.logger()).run(options(.snapshotRestore, pg, repo, sandbox,
            checks: [DrillCheck(name: "has users", sql: "SELECT count(*) FROM users", min: 1),
                DrillCheck(name: "bad sql", sql: "SELECT * FROM no_such_table")]))
        #expect(!failing.passed)
        #expect(failing.checks.first { $0.name == "has users" }?.passed == false)
        #expect(failing.checks.first { $0.name == "bad sql" }?.detail.contains("no_such_table") == true)
        // An impossible RTO objective is reported as missed, with the real measurement.
        let slow = try await Drill(repository: opened, logger: TestSandbox.logger()).run(options(.snapshotRestore, pg, repo, sandbox,
            objectives: DrillObjectives(rtoSeconds: 0.001, rpoSeconds: nil)))
        #expect(!slow.rtoMet && !slow.passed)
        #expect(slow.checks.allSatisfy { $0.passed })
        let history = try await DrillHistory.all(opened)
        #expect(history.count == 2)
    }
}

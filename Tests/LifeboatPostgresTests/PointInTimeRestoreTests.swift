import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository
import LifeboatTesting
import Testing

/// Point-in-time recovery against a real PostgreSQL: every target kind, each result compared with
/// what the database held at that moment.
@Suite(.serialized) struct PointInTimeRestoreTests {
    @Test func restoresToTimeLSNXidNameAndImmediate() async throws {
        let sandbox = try TestSandbox("pitr")
        defer { Task { await sandbox.remove() } }
        let repo = try await TestRepository.make(in: sandbox)
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: repo)
        _ = try await pg.query("CREATE TABLE marks (step int PRIMARY KEY, note text)")
        _ = try await pg.query("INSERT INTO marks SELECT g, 'base' FROM generate_series(1, 100) g")

        let backup = try await BackupEngine(repository: repo.repository, logger: TestSandbox.logger())
            .run(BackupOptions(pgdata: pg.cluster.dataDirectory, endpoint: pg.endpoint))
        // Rows present at the end of the backup: what --immediate must give back.
        let atBackup = 100

        // Step 1: time target after 200 rows.
        _ = try await pg.query("INSERT INTO marks SELECT g, 'one' FROM generate_series(101, 200) g")
        try await Task.sleep(for: .milliseconds(50))
        let timeTarget = try await pg.now()
        try await Task.sleep(for: .milliseconds(50))
        // Step 2: LSN target after 300 rows.
        _ = try await pg.query("INSERT INTO marks SELECT g, 'two' FROM generate_series(201, 300) g")
        let lsnTarget = try #require(LSN(try await pg.value("SELECT pg_current_wal_lsn()::text") ?? ""))
        // Step 3: xid target: the transaction inserting rows 301..400 (inclusive).
        let session = try await PostgresSession.connect(pg.endpoint, logger: TestSandbox.logger())
        _ = try await session.query("BEGIN")
        _ = try await session.query("INSERT INTO marks SELECT g, 'three' FROM generate_series(301, 400) g")
        let xid = try #require(UInt64(try await session.value("SELECT txid_current()") ?? ""))
        _ = try await session.query("COMMIT")
        await session.close()
        // Step 4: named restore point after 500 rows.
        _ = try await pg.query("INSERT INTO marks SELECT g, 'four' FROM generate_series(401, 500) g")
        _ = try await pg.query("SELECT pg_create_restore_point('before-cleanup')")
        // Later changes nobody should see, then the archive is flushed.
        _ = try await pg.query("INSERT INTO marks SELECT g, 'late' FROM generate_series(501, 600) g")
        _ = try await pg.query("DELETE FROM marks WHERE step <= 50")
        try await pg.archiveCurrentWAL()

        let cases: [(String, RecoveryTarget, Int, Int)] = [
            ("time", .time(timeTarget), 200, 1),
            ("lsn", .lsn(lsnTarget), 300, 1),
            ("xid", .xid(xid), 400, 1),
            ("name", .name("before-cleanup"), 500, 1),
            ("immediate", .immediate, atBackup, 1),
            ("latest", .latest, 550, 51),
        ]
        for (name, target, count, minStep) in cases {
            let (report, restored) = try await TestRestore.restore(repo, sandbox: sandbox, name: "restore-\(name)", target: target)
            #expect(report.backupID == backup.backup.id, "\(name)")
            #expect(report.started)
            let rows = try await restored.query("SELECT count(*)::text, min(step)::text, max(step)::text FROM marks")[0]
            #expect(rows[0] == String(count), "target \(name): row count")
            #expect(rows[1] == String(minStep), "target \(name): first row")
            #expect(try await restored.value("SELECT pg_is_in_recovery()::text") == "false", "target \(name) promoted")
            _ = try await restored.query("INSERT INTO marks VALUES (100000, 'written after the restore')")
            // At a target the restore pauses the server and promotes it itself (as a promotion
            // request, or, when the server sees the resume that wakes it first, by leaving the pause
            // with an end-of-recovery checkpoint). The latest point has no target to pause at.
            let log = (try? String(contentsOfFile: restored.cluster.logFile, encoding: .utf8)) ?? ""
            if target == .latest {
                #expect(!log.contains("pausing at the end of recovery"), "latest: the server promotes itself")
            } else {
                #expect(log.contains("pausing at the end of recovery"), "target \(name): paused at the target")
                #expect(log.contains("received promote request") || log.contains("end-of-recovery"), "target \(name): then promoted")
            }
            if case .time(let t) = target {
                // The reported recovery point is the last commit at or before the target.
                let achieved = try #require(report.achievedTime)
                #expect(achieved <= t)
                #expect(t.timeIntervalSince(achieved) < 5)
            }
            try await restored.stop()
        }
    }

    @Test func refusesNonEmptyDestinationAndWritesNothing() async throws {
        let sandbox = try TestSandbox("nonempty")
        defer { Task { await sandbox.remove() } }
        let repo = try await TestRepository.make(in: sandbox)
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: repo)
        _ = try await BackupEngine(repository: repo.repository, logger: TestSandbox.logger())
            .run(BackupOptions(pgdata: pg.cluster.dataDirectory, endpoint: pg.endpoint))
        let dest = try sandbox.directory("occupied")
        try sandbox.file("occupied/precious.txt", "do not touch")
        await #expect {
            _ = try await RestoreEngine(repository: repo.repository, logger: TestSandbox.logger())
                .run(RestoreOptions(destination: dest, invocation: LifeboatInvocation(executable: "/bin/false")))
        } throws: { error in
            (error as? LifeboatError)?.code == .targetNotEmpty
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dest) == ["precious.txt"])
        #expect(try String(contentsOfFile: dest + "/precious.txt", encoding: .utf8) == "do not touch")
    }
}

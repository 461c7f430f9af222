import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository
import LifeboatTesting
import Testing

func backup(_ pg: TestPostgres, _ repo: TestRepository, kind: BackupKind = .automated) async throws -> BackupRecord {
    try await BackupEngine(repository: try await repo.reopen(), logger: TestSandbox.logger())
        .run(BackupOptions(pgdata: pg.cluster.dataDirectory, endpoint: pg.endpoint, kind: kind)).backup
}

/// Restores under load, across timelines, and the properties that make the repository cheap and safe.
@Suite(.serialized) struct WorkloadRestoreTests {
    /// A backup taken while pgbench writes, then restores to several moments: each restored cluster
    /// satisfies pgbench's invariant and holds exactly the history rows committed by then.
    @Test func backupUnderPgbenchRestoresConsistentlyToSeveralTimes() async throws {
        let sandbox = try TestSandbox("pgbench")
        defer { Task { await sandbox.remove() } }
        let repo = try await TestRepository.make(in: sandbox)
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: repo)
        try await pg.pgbench(["-i", "-s", "2", "-q"])

        // pgbench runs throughout the backup.
        async let load: Void = pg.pgbench(["-c", "2", "-T", "8", "-n"])
        try await Task.sleep(for: .seconds(1))
        let record = try await backup(pg, repo)
        try await load

        var targets: [(Date, Int)] = []
        for _ in 0..<3 {
            try await pg.pgbench(["-c", "2", "-t", "150", "-n"])
            try await Task.sleep(for: .milliseconds(20))
            let t = try await pg.now()
            let history = Int(try await pg.value("SELECT count(*) FROM pgbench_history") ?? "") ?? -1
            targets.append((t, history))
            try await Task.sleep(for: .milliseconds(20))
        }
        try await pg.pgbench(["-c", "2", "-t", "50", "-n"])
        try await pg.archiveCurrentWAL()

        for (i, (time, historyRows)) in targets.enumerated() {
            let (report, restored) = try await TestRestore.restore(repo, sandbox: sandbox, name: "at-\(i)", target: .time(time))
            #expect(report.backupID == record.id)
            // The segments fetched ahead (restore --start keeps a spool filled) are gone once promoted.
            #expect(!FileManager.default.fileExists(atPath: report.destination + "/pg_wal/.lifeboat-prefetch"))
            let b = try await restored.pgbenchBalances()
            #expect(b.accounts == b.tellers && b.tellers == b.branches && b.branches == b.history, "invariant at target \(i): \(b)")
            #expect(try await restored.value("SELECT count(*) FROM pgbench_history") == String(historyRows), "history rows at target \(i)")
            try await restored.stop()
        }
    }

    /// Restore, promote with archiving, write on timeline 2, then restore to a time on timeline 2.
    @Test func restoresToATimeOnTimelineTwo() async throws {
        let sandbox = try TestSandbox("timeline")
        defer { Task { await sandbox.remove() } }
        let repo = try await TestRepository.make(in: sandbox)
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: repo)
        _ = try await pg.query("CREATE TABLE events (id int, tl text)")
        _ = try await pg.query("INSERT INTO events SELECT g, 'one' FROM generate_series(1, 10) g")
        _ = try await backup(pg, repo)
        _ = try await pg.query("INSERT INTO events SELECT g, 'one' FROM generate_series(11, 20) g")
        let branch = try await pg.now()
        _ = try await pg.query("INSERT INTO events SELECT g, 'lost' FROM generate_series(21, 30) g")
        try await pg.archiveCurrentWAL()
        try await pg.stop()

        // Timeline 2: restored to before the 'lost' rows, archiving into the same repository.
        let (first, tl2) = try await TestRestore.restore(repo, sandbox: sandbox, name: "tl2", target: .time(branch), archiveMode: .keep)
        #expect(first.timeline == 2)
        _ = try await tl2.query("INSERT INTO events SELECT g, 'two' FROM generate_series(100, 109) g")
        try await Task.sleep(for: .milliseconds(20))
        let onTwo = try await tl2.now()
        try await Task.sleep(for: .milliseconds(20))
        _ = try await tl2.query("INSERT INTO events SELECT g, 'two-late' FROM generate_series(200, 209) g")
        try await tl2.archiveCurrentWAL()
        try await tl2.stop()
        let archived = try await repo.reopen().walFiles().map { "\($0.file)" }
        #expect(archived.contains("00000002.history"))

        let (second, restored) = try await TestRestore.restore(repo, sandbox: sandbox, name: "on-tl2", target: .time(onTwo))
        let rows = try await restored.query("SELECT tl, count(*) FROM events GROUP BY tl ORDER BY tl")
        #expect(rows.map { [$0[0] ?? "", $0[1] ?? ""] } == [["one", "20"], ["two", "10"]])
        #expect(second.timeline == 3)
        try await restored.stop()
    }

    /// The second backup of a barely changed cluster stores a small fraction of the first.
    @Test func secondBackupAfterSmallChangeIsSmall() async throws {
        let sandbox = try TestSandbox("dedup")
        defer { Task { await sandbox.remove() } }
        let repo = try await TestRepository.make(in: sandbox)
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: repo)
        try await pg.pgbench(["-i", "-s", "3", "-q"])
        _ = try await pg.query("CHECKPOINT")
        let first = try await backup(pg, repo)
        _ = try await pg.query("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= 20")
        _ = try await pg.query("CHECKPOINT")
        let second = try await backup(pg, repo)
        #expect(first.logicalBytes > 40_000_000)
        #expect(second.logicalBytes > 40_000_000)
        // Each backup is logically full, but the second stores under 5% of its chunks anew and under
        // 15% of the first's bytes (pgbench data compresses ~15x, so changed chunks weigh more).
        #expect(second.newChunks * 20 < second.totalChunks, "new \(second.newChunks) of \(second.totalChunks) chunks")
        #expect(second.newStoredBytes * 100 < first.newStoredBytes * 15, "first \(first.newStoredBytes), second \(second.newStoredBytes)")
        // And it restores to the changed data.
        try await pg.archiveCurrentWAL()
        let (_, restored) = try await TestRestore.restore(repo, sandbox: sandbox, name: "second", target: .immediate, backupID: second.id)
        #expect(try await restored.value("SELECT sum(abalance) FROM pgbench_accounts") == "20")
        try await restored.stop()
    }

    /// Changes spread over a whole table (1% of rows, every page touched) are stored as deltas against
    /// the previous backup's chunks: a fraction of what whole chunks would cost. Expiring the first
    /// backup keeps the base chunks the second depends on; the second restores to the exact data.
    @Test func spreadChurnIsStoredAsDeltasThatSurviveExpiry() async throws {
        let sandbox = try TestSandbox("delta")
        defer { Task { await sandbox.remove() } }
        let repo = try await TestRepository.make(in: sandbox)
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: repo)
        try await pg.pgbench(["-i", "-s", "3", "-q"])
        _ = try await pg.query("CHECKPOINT")
        let first = try await backup(pg, repo)
        _ = try await pg.query("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 100 = 7")
        _ = try await pg.query("CHECKPOINT")
        let second = try await backup(pg, repo)
        // Nearly every chunk of pgbench_accounts changed, yet the second backup stores under 20% of the
        // first's bytes (whole chunks would cost about as much as the table itself).
        let table = try #require(try await pg.value("SELECT pg_relation_filepath('pgbench_accounts')"))
        let manifest = try await repo.repository.manifest(for: second)
        let before = try #require(try await repo.repository.manifest(for: first).entries.first { $0.path == table }?.chunks)
        let after = try #require(manifest.entries.first { $0.path == table }?.chunks)
        let changed = zip(before, after).filter { $0 != $1 }.count
        #expect(changed * 10 >= before.count * 9, "\(changed) of \(before.count) chunks of \(table) changed")
        #expect(second.newStoredBytes * 100 < first.newStoredBytes * 20, "first \(first.newStoredBytes), second \(second.newStoredBytes)")
        let deltas = manifest.deltaBases ?? [:]
        #expect(deltas.count * 2 > second.newChunks, "\(deltas.count) deltas among \(second.newChunks) new chunks")
        let expected = try await pg.value("SELECT md5(string_agg(aid::text || ':' || abalance, ',' ORDER BY aid)) FROM pgbench_accounts")
        try await pg.archiveCurrentWAL()

        // The first backup expires; the bases its chunks provide stay for the second.
        let report = try await Expirer(repository: try await repo.reopen(), policy: RetentionPolicy(recoveryWindow: 1, manualRetention: 1))
            .run(dryRun: false, now: Date().addingTimeInterval(120))
        #expect(report.backups.first { $0.id == first.id }?.keep == false)
        #expect(report.chunksRemoved > 0, "chunks only the first backup used are gone")
        let verify = try await Verifier(repository: try await repo.reopen()).run()
        #expect(verify.problems.isEmpty, "\(verify.problems)")
        let (_, restored) = try await TestRestore.restore(repo, sandbox: sandbox, name: "deltas", target: .immediate, backupID: second.id)
        #expect(try await restored.value("SELECT md5(string_agg(aid::text || ':' || abalance, ',' ORDER BY aid)) FROM pgbench_accounts") == expected)
        #expect(try await restored.value("SELECT sum(abalance) FROM pgbench_accounts") == "3000")
        try await restored.stop()
    }

    /// A flipped byte in a chunk makes restore fail naming the object, leaving no partial output.
    @Test func restoreReportsCorruptChunkAndCleansUp() async throws {
        let sandbox = try TestSandbox("corrupt")
        defer { Task { await sandbox.remove() } }
        let repo = try await TestRepository.make(in: sandbox)
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: repo)
        let record = try await backup(pg, repo)
        let manifest = try await repo.repository.manifest(for: record)
        // A file too large to be packed (small files' chunks lie in packs: SmallRelationsTests).
        let entry = try #require(manifest.entries.first { $0.path.hasPrefix("base/") && $0.size > 300_000 })
        let chunkPath = repo.path + "/chunks/\(entry.chunks[0].prefix(2))/\(entry.chunks[0])"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: chunkPath))
        bytes[bytes.count / 2] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: chunkPath))

        let dest = sandbox.path("restore-corrupt")
        await #expect {
            _ = try await RestoreEngine(repository: try await repo.reopen(), logger: TestSandbox.logger())
                .run(RestoreOptions(destination: dest, target: .immediate, invocation: LifeboatInvocation(executable: "/bin/false")))
        } throws: { error in
            guard let e = error as? LifeboatError else { return false }
            return e.code == .integrity && e.message.contains(entry.chunks[0])
        }
        #expect(!FileManager.default.fileExists(atPath: dest), "partial restore removed")
        let report = try await Verifier(repository: try await repo.reopen()).run()
        #expect(report.problems.map(\.object).contains("chunks/\(entry.chunks[0].prefix(2))/\(entry.chunks[0])"))
    }
}

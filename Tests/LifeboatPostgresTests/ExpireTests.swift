import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository
import LifeboatTesting
import Testing

@Suite(.serialized) struct ExpireTests {
    /// Three automated backups and a manual one; expire at a moment when the window has passed them
    /// all. What remains is exactly: the newest automated backup (base of the window), the manual one
    /// (its own retention), the chunks those two use, and the WAL they need.
    @Test func expireRemovesExactlyWhatRetentionAllows() async throws {
        let sandbox = try TestSandbox("expire")
        defer { Task { await sandbox.remove() } }
        let repo = try await TestRepository.make(in: sandbox)
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: repo)
        _ = try await pg.query("CREATE TABLE t (id int, payload text)")
        var records: [BackupRecord] = []
        for (i, kind) in [BackupKind.automated, .manual, .automated, .automated].enumerated() {
            // Fresh, incompressible rows so every backup has chunks of its own.
            _ = try await pg.query("INSERT INTO t SELECT g, md5(random()::text) || md5(g::text) FROM generate_series(1, 40000) g")
            // And a table only this backup holds (dropped after it): the rows appended to t become
            // deltas whose bases later backups keep, so without it whether an expired backup leaves
            // anything to remove depended on which chunks the deltas were taken against.
            _ = try await pg.query("CREATE TABLE gone\(i) AS SELECT g, md5(random()::text) || md5(random()::text) AS p FROM generate_series(1, 30000) g")
            _ = try await pg.query("CHECKPOINT")
            records.append(try await backup(pg, repo, kind: kind))
            _ = try await pg.query("DROP TABLE gone\(i)")
            if i < 3 { try await pg.archiveCurrentWAL() }
        }
        try await pg.archiveCurrentWAL()
        let (b1, manual, b2, b3) = (records[0], records[1], records[2], records[3])
        let opened = try await repo.reopen()

        let now = b3.stopTime.addingTimeInterval(7 * 86400 + 3600)
        let dry = try await Expirer(repository: opened, policy: .seedDefault).run(dryRun: true, now: now)
        #expect(Set(dry.backups.filter { !$0.keep }.map(\.id)) == [b1.id, b2.id])
        #expect(try await opened.backups().count == 4, "dry run changes nothing")

        // The chunk objects the survivors use: their own (or their packs) and, for chunks stored as
        // deltas, their bases.
        var expectedChunks = Set<String>()
        for b in [b3, manual] {
            let manifest = try await opened.manifest(for: b)
            for list in manifest.allChunkIDs { for c in list { expectedChunks.formUnion(Repository.chunkObjectKeys(c, in: manifest)) } }
        }
        let size = b3.walSegmentSize
        let expectedWAL = Set(try await opened.walFiles().compactMap { file, _ -> String? in
            guard case .segment(let s) = file else { return nil }
            let n = s.number(segmentSize: size)
            let keep = n >= b3.startSegment.number(segmentSize: size)
                || (n >= manual.startSegment.number(segmentSize: size) && n <= manual.stopSegment.number(segmentSize: size))
            return keep ? s.name : nil
        })

        let report = try await Expirer(repository: opened, policy: .seedDefault).run(dryRun: false, now: now)
        #expect(report.chunksRemoved == dry.chunksRemoved && report.chunksRemoved > 0)
        #expect(try await opened.backups().map(\.id).sorted() == [manual.id, b3.id].sorted())
        #expect(Set(try await opened.store.list(prefix: "chunks/").map(\.key) + opened.store.list(prefix: "packs/").map(\.key)) == expectedChunks)
        #expect(expectedChunks.contains { $0.hasPrefix("packs/") } && expectedChunks.contains { $0.hasPrefix("chunks/") })
        let remainingSegments = Set(try await opened.walFiles().compactMap { file, _ -> String? in
            if case .segment(let s) = file { return s.name }
            return nil
        })
        #expect(remainingSegments == expectedWAL)
        #expect(try await Verifier(repository: opened).run().problems == [])

        // Both survivors still restore.
        let (r1, s1) = try await TestRestore.restore(repo, sandbox: sandbox, name: "after-expire-b3", target: .latest)
        #expect(r1.backupID == b3.id)
        #expect(try await s1.value("SELECT count(*) FROM t") == "160000")
        try await s1.stop()
        let (r2, s2) = try await TestRestore.restore(repo, sandbox: sandbox, name: "after-expire-manual", target: .immediate,
            backupID: manual.id)
        #expect(r2.backupID == manual.id)
        #expect(try await s2.value("SELECT count(*) FROM t") == "80000")
        try await s2.stop()
    }

    /// A backup cannot start while expire holds the repository, and expire cannot run while a backup
    /// does; WAL pushes go on regardless and expire never removes WAL newer than a kept backup.
    @Test func backupsAndExpireExcludeEachOther() async throws {
        let sandbox = try TestSandbox("locks")
        defer { Task { await sandbox.remove() } }
        let repo = try await TestRepository.make(in: sandbox)
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: repo)
        let opened = try await repo.reopen()

        let exclusive = try await RepositoryLock.acquire(.exclusive, purpose: "test expire", repository: opened)
        await #expect {
            _ = try await backup(pg, repo)
        } throws: { ($0 as? LifeboatError)?.code == .locked }
        // WAL archiving is not blocked by expire.
        _ = try await pg.query("CREATE TABLE x AS SELECT 1")
        try await pg.archiveCurrentWAL()
        try await exclusive.release()

        let shared = try await RepositoryLock.acquire(.shared, purpose: "test backup", repository: opened)
        await #expect {
            _ = try await Expirer(repository: opened, policy: .seedDefault).run(dryRun: false)
        } throws: { ($0 as? LifeboatError)?.code == .locked }
        try await shared.release()

        // Expire while pgbench writes and the archiver pushes: nothing needed goes missing.
        try await pg.pgbench(["-i", "-s", "1", "-q"])
        _ = try await backup(pg, repo)
        async let load: Void = pg.pgbench(["-c", "2", "-T", "4", "-n"])
        for _ in 0..<3 {
            _ = try await Expirer(repository: opened, policy: RetentionPolicy(recoveryWindow: 0, manualRetention: 0)).run(dryRun: false)
            try await Task.sleep(for: .milliseconds(500))
        }
        try await load
        try await pg.archiveCurrentWAL()
        #expect(try await Verifier(repository: opened).run().problems == [])
        let (_, restored) = try await TestRestore.restore(repo, sandbox: sandbox, name: "after-concurrent", target: .latest)
        let b = try await restored.pgbenchBalances()
        #expect(b.accounts == b.tellers && b.tellers == b.branches && b.branches == b.history)
        try await restored.stop()
    }
}

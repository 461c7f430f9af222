import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository
import LifeboatTesting
import Testing

/// Clusters of many small relations (the 20,000-table clusters of SaaS schemas, scaled down): their
/// files go into packs, so objects grow with bytes, not files; a file unchanged since the last backup
/// is not read again; and what comes back is exactly what was there, from the repository and from
/// its copy.
@Suite(.serialized) struct SmallRelationsTests {
    func backup(_ pg: TestPostgres, _ repo: TestRepository, readAll: Bool = false) async throws -> BackupRecord {
        var options = BackupOptions(pgdata: pg.cluster.dataDirectory, endpoint: pg.endpoint)
        options.readAllFiles = readAll
        return try await BackupEngine(repository: try await repo.reopen(), logger: TestSandbox.logger()).run(options).backup
    }

    func dumpAll(_ pg: TestPostgres) async throws -> String {
        let r = try await CommandRunner.runSeparately(pg.cluster.binaries.path("pg_dumpall"),
            ["-h", pg.cluster.socketDirectory, "-p", String(pg.port), "-U", pg.cluster.superuser], as: pg.sandbox.user, timeout: 120)
        let noise = ["--", "\\restrict", "\\unrestrict"]
        return r.output.split(separator: "\n").filter { line in !noise.contains { line.hasPrefix($0) } }.joined(separator: "\n")
    }

    func objects(_ repo: TestRepository) async throws -> (chunks: Int, packs: Int) {
        let store = FileStore(root: repo.path)
        return (try await store.list(.chunks).count, try await store.list(.packs).count)
    }

    @Test func manySmallRelationsArePackedRestoredCopiedAndReusedUnread() async throws {
        let sandbox = try TestSandbox("small-rels")
        defer { Task { await sandbox.remove() } }
        let repo = try await TestRepository.make(in: sandbox)
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: repo)
        // 300 tables, each with a primary key and a TOAST table, in two databases.
        let build = """
            DO $$ BEGIN FOR i IN 1..150 LOOP
              EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, body text)', i);
              EXECUTE format('INSERT INTO t%s SELECT g, repeat(md5((g * %s)::text), 3) FROM generate_series(1, 20) g', i, i);
            END LOOP; END $$
            """
        _ = try await pg.query(build)
        _ = try await pg.query("CREATE DATABASE app")
        _ = try await pg.query(build, database: "app")
        let first = try await backup(pg, repo)
        let afterFirst = try await objects(repo)
        #expect(first.fileCount > 1500, "a cluster of many files: \(first.fileCount)")
        #expect((first.newPacks ?? 0) >= 1)
        #expect(afterFirst.chunks + afterFirst.packs < first.fileCount / 10,
            "objects grow with bytes, not files: \(afterFirst.chunks) chunks + \(afterFirst.packs) packs for \(first.fileCount) files")
        let dumpAtFirst = try await dumpAll(pg)

        // Churn after the backup's second has passed: a few tables change, one is new, one dropped.
        try await Task.sleep(for: .milliseconds(1200))
        _ = try await pg.query("UPDATE t7 SET body = 'changed' WHERE id <= 3")
        _ = try await pg.query("INSERT INTO t8 SELECT g, 'more' FROM generate_series(21, 40) g")
        _ = try await pg.query("CREATE TABLE fresh (id int PRIMARY KEY)")
        _ = try await pg.query("INSERT INTO fresh SELECT generate_series(1, 100)")
        _ = try await pg.query("DROP TABLE t9")
        _ = try await pg.query("CHECKPOINT")
        let second = try await backup(pg, repo)
        #expect((second.unchangedFiles ?? 0) > 0 && (second.unchangedFiles ?? 0) < second.fileCount, "changed files were read")
        // With nothing written for a second since (the backup's own checkpoint wrote files), the next
        // backup reads almost nothing.
        try await Task.sleep(for: .milliseconds(1200))
        let quiet = try await backup(pg, repo)
        let unchanged = quiet.unchangedFiles ?? 0
        #expect(unchanged > quiet.fileCount * 8 / 10, "files are taken over unread: \(unchanged) of \(quiet.fileCount)")
        #expect(quiet.newChunks < 40, "only what changed is stored: \(quiet.newChunks) new chunks")
        // Reading everything finds no file the quiet backup took over wrongly.
        let full = try await backup(pg, repo, readAll: true)
        #expect(full.unchangedFiles == 0)
        let repository = try await repo.reopen()
        let (mQuiet, mFull) = (try await repository.manifest(for: quiet), try await repository.manifest(for: full))
        let fullByPath = Dictionary(mFull.entries.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        let differing = mQuiet.entries.filter { e in
            guard let f = fullByPath[e.path] else { return false }
            return f.modified == e.modified && f.chunks != e.chunks
        }
        #expect(differing.isEmpty, "a file unchanged by its time holds what reading it finds: \(differing.map(\.path).prefix(5))")
        _ = try await pg.query("INSERT INTO fresh SELECT generate_series(101, 150)")
        try await pg.archiveCurrentWAL()
        let dumpLatest = try await dumpAll(pg)
        try await pg.stop()

        // Both points come back exactly.
        let (_, atFirst) = try await TestRestore.restore(repo, sandbox: sandbox, name: "at-first", target: .immediate, backupID: first.id)
        #expect(try await dumpAll(atFirst) == dumpAtFirst)
        try await atFirst.stop()
        let (_, latest) = try await TestRestore.restore(repo, sandbox: sandbox, name: "latest", target: .latest)
        #expect(try await dumpAll(latest) == dumpLatest)
        #expect(try await latest.value("SELECT count(*) FROM fresh") == "150")
        #expect(try await latest.value("SELECT count(*) FROM t8", database: "app") == "20")
        #expect(try await latest.value("SELECT count(*) FROM t8") == "40")
        try await latest.stop()
        #expect(try await Verifier(repository: repository).run().ok)

        // The copy in a second repository (its own key) keeps the packing and restores the same.
        let second2 = try await TestRepository.make(in: sandbox, name: "copy", passphrase: "another passphrase")
        let report = try await RepositoryCopier(source: repository, target: try await second2.reopen(), logger: TestSandbox.logger())
            .run(backupIDs: nil)
        #expect(report.verifyProblems == [])
        let copied = try await objects(second2)
        #expect(copied.packs >= 1 && copied.chunks + copied.packs <= afterFirst.chunks + afterFirst.packs + 3 * 60,
            "the copy packs small files too: \(copied)")
        let (_, fromCopy) = try await TestRestore.restore(second2, sandbox: sandbox, name: "from-copy", target: .latest)
        #expect(try await dumpAll(fromCopy) == dumpLatest)
        try await fromCopy.stop()

        // Expire keeps the packs kept backups read; a damaged pack is named by verify.
        _ = try await Expirer(repository: repository, policy: .seedDefault).run(dryRun: false)
        #expect(try await objects(repo).packs >= afterFirst.packs, "packs of kept backups stay")
        #expect(try await Verifier(repository: repository).run().ok)
        let m1 = try await repository.manifest(for: first)
        let location = try #require(m1.packedChunks?.values.sorted { $0.offset < $1.offset }.first)
        let victim = RepositoryObject.pack(id: location.pack).key
        let path = repo.path + "/" + victim
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[location.offset + location.length / 2] ^= 0x40
        try FileManager.default.removeItem(atPath: path)
        try bytes.write(to: URL(fileURLWithPath: path))
        let problems = try await Verifier(repository: repository).run().problems
        #expect(problems.contains { $0.object == victim }, "the damaged pack is named: \(problems.map(\.object))")
        let (_, broken) = (try? await TestRestore.restore(repo, sandbox: sandbox, name: "broken", target: .immediate, backupID: first.id)) ?? (nil, nil)
        #expect(broken == nil, "a restore reading the damaged pack fails")
        try? await broken?.stop()
    }
}

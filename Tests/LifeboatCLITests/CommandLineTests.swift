import Foundation
import LifeboatCore
import LifeboatTesting
import Testing

/// The binary's contract with users and scripts: clear errors and documented exit codes.
@Suite(.serialized) struct CommandLineTests {
    @Test func repositoryCommandsAndErrorExitCodes() async throws {
        let sandbox = try TestSandbox("cli")
        defer { Task { await sandbox.remove() } }
        let repoPath = sandbox.path("repo")
        let env = ["LIFEBOAT_PASSPHRASE": "the right one"]

        let initialized = try await LifeboatCLI.run(["repo", "init", "--repo", repoPath], environment: env)
        #expect(initialized.status == 0, "\(initialized.errors)")
        // A second init over it is refused.
        let again = try await LifeboatCLI.run(["repo", "init", "--repo", repoPath], environment: env)
        #expect(again.status == 3)
        #expect(again.errors.contains("not empty"))

        // Wrong passphrase: exit 4, clear message, nothing written, passphrase not echoed.
        let before = try FileManager.default.subpathsOfDirectory(atPath: repoPath).sorted()
        let segment = try sandbox.file("000000010000000000000001", String(repeating: "w", count: 4096))
        let wrong = try await LifeboatCLI.run(["wal", "push", "--repo", repoPath, segment], environment: ["LIFEBOAT_PASSPHRASE": "wrong one"])
        #expect(wrong.status == 4)
        #expect(wrong.errors.contains("does not open the repository"))
        #expect(!wrong.errors.contains("wrong one") && !wrong.errors.contains("the right one"))
        #expect(try FileManager.default.subpathsOfDirectory(atPath: repoPath).sorted() == before)

        // WAL push through LIFEBOAT_REPO, fetch back, fetch of a missing file exits 6 quickly.
        let repoEnv = env.merging(["LIFEBOAT_REPO": repoPath]) { _, new in new }
        #expect(try await LifeboatCLI.run(["wal", "push", segment], environment: repoEnv).status == 0)
        let fetched = sandbox.path("fetched")
        #expect(try await LifeboatCLI.run(["wal", "fetch", "000000010000000000000001", fetched], environment: repoEnv).status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: fetched)) == Data(contentsOf: URL(fileURLWithPath: segment)))
        let started = Date()
        let missing = try await LifeboatCLI.run(["wal", "fetch", "000000010000000000000002", sandbox.path("nope")], environment: repoEnv)
        #expect(missing.status == 6)
        // At once, not after retries (5 s on a quiet machine was 5.3 s with the whole suite running).
        #expect(Date().timeIntervalSince(started) < 10)
        #expect(!FileManager.default.fileExists(atPath: sandbox.path("nope")))

        // Concurrent pushes of the same segment from separate processes all succeed.
        let pushes = try await withThrowingTaskGroup(of: Int32.self) { group in
            for _ in 0..<6 { group.addTask { try await LifeboatCLI.run(["wal", "push", segment], environment: repoEnv).status } }
            return try await group.reduce(into: [Int32]()) { $0.append($1) }
        }
        #expect(pushes == [0, 0, 0, 0, 0, 0])
        // Same name, different content: exit 10, archive untouched.
        try sandbox.directory("other")
        try sandbox.file("other/000000010000000000000001", String(repeating: "x", count: 4096))
        let conflict = try await LifeboatCLI.run(["wal", "push", sandbox.path("other/000000010000000000000001")], environment: repoEnv)
        #expect(conflict.status == 10)
        #expect(conflict.errors.contains("different content"))
        #expect(try await LifeboatCLI.run(["wal", "fetch", "000000010000000000000001", sandbox.path("again")], environment: repoEnv).status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: sandbox.path("again"))) == Data(contentsOf: URL(fileURLWithPath: segment)))

        // Unknown configuration key: exit 2 naming the key.
        let badConfig = try sandbox.file("bad.yaml", "repo: \(repoPath)\nretension:\n  manual: 30d\n")
        let bad = try await LifeboatCLI.run(["info", "--config", badConfig], environment: env)
        #expect(bad.status == 2)
        #expect(bad.errors.contains("unknown configuration key 'retension'"))
        // Unknown option: exit 2 too.
        #expect(try await LifeboatCLI.run(["info", "--no-such-option"], environment: repoEnv).status == 2)
        // No repository at all: exit 3 with a hint.
        let none = try await LifeboatCLI.run(["info", "--repo", sandbox.path("empty")], environment: env)
        #expect(none.status == 3)
        #expect(none.errors.contains("lifeboat repo init"))
    }

    /// `wal fetch` fetches the next segments into pg_wal/.lifeboat-prefetch; PostgreSQL's calls for them
    /// are answered from there without opening the repository (shown with a wrong passphrase), passed
    /// segments are dropped from the spool, and a file that is not archived is answered from the
    /// store alone (exit 6 even with a wrong key) while a missing repository stays an error (exit 3).
    @Test func walFetchPrefetchesAheadIntoASpool() async throws {
        let sandbox = try TestSandbox("prefetch")
        defer { Task { await sandbox.remove() } }
        let repoPath = sandbox.path("repo")
        let env = ["LIFEBOAT_PASSPHRASE": "right", "LIFEBOAT_REPO": repoPath]
        #expect(try await LifeboatCLI.run(["repo", "init"], environment: env).status == 0)
        try sandbox.directory("archive")
        var contents: [String: Data] = [:]
        for n in 1...5 {
            let name = WALSegment(timeline: 1, number: UInt64(n), segmentSize: 16 << 20).name
            let text = String(repeating: "segment \(n) ", count: 3000)
            contents[name] = Data(text.utf8)
            #expect(try await LifeboatCLI.run(["wal", "push", try sandbox.file("archive/" + name, text)], environment: env).status == 0)
        }
        let names = contents.keys.sorted()
        try sandbox.directory("pgdata/pg_wal")
        let target = sandbox.path("pgdata/pg_wal/RECOVERYXLOG")
        let spool = sandbox.path("pgdata/pg_wal/.lifeboat-prefetch")
        func spooled() -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: spool)) ?? []).sorted() }

        #expect(try await LifeboatCLI.run(["wal", "fetch", "--prefetch", "3", names[0], target], environment: env).status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: target)) == contents[names[0]])
        #expect(spooled() == Array(names[1...3]))

        let wrongKey = ["LIFEBOAT_PASSPHRASE": "wrong", "LIFEBOAT_REPO": repoPath]
        let fromSpool = try await LifeboatCLI.run(["wal", "fetch", names[1], target], environment: wrongKey)
        #expect(fromSpool.status == 0, "\(fromSpool.errors)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: target)) == contents[names[1]])
        #expect(spooled() == Array(names[2...3]))

        // Recovery jumps to segment 5 (fetched directly): the spooled 3 and 4 are dropped.
        #expect(try await LifeboatCLI.run(["wal", "fetch", names[4], target], environment: env).status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: target)) == contents[names[4]])
        #expect(spooled().isEmpty)

        let absent = WALSegment(timeline: 1, number: 9, segmentSize: 16 << 20).name
        #expect(try await LifeboatCLI.run(["wal", "fetch", absent, target], environment: wrongKey).status == 6)
        #expect(try await LifeboatCLI.run(["wal", "fetch", "00000002.history", target], environment: wrongKey).status == 6)
        let noRepo = try await LifeboatCLI.run(["wal", "fetch", absent, target], environment: ["LIFEBOAT_PASSPHRASE": "right", "LIFEBOAT_REPO": sandbox.path("elsewhere")])
        // A missing repository or a wrong key is not "the end of the archive": exit 127, which
        // PostgreSQL treats as fatal, so recovery stops instead of promoting early.
        #expect(noRepo.status == 127 && noRepo.errors.contains("no lifeboat repository"), "\(noRepo.errors)")
        let refused = try await LifeboatCLI.run(["wal", "fetch", names[2], target], environment: wrongKey)
        #expect(refused.status == 127 && refused.errors.contains("wrongKey"), "\(refused.errors)")
        let soft = try await LifeboatCLI.run(["wal", "fetch", "--soft-errors", names[2], target], environment: wrongKey)
        #expect(soft.status == 1, "a standby's restore_command fails softly and retries")
    }

    @Test func backupInfoVerifyRestoreFromTheCommandLine() async throws {
        let sandbox = try TestSandbox("cli-cycle")
        defer { Task { await sandbox.remove() } }
        let repo = try await TestRepository.make(in: sandbox, extraConfig: "retention:\n  recovery_window: 7d\n  manual: 30d\n")
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: repo)
        let env = LifeboatCLI.environment(for: pg)
        let config = ["--config", repo.configFile]
        _ = try await pg.query("CREATE TABLE users (id int)")
        _ = try await pg.query("INSERT INTO users SELECT generate_series(1, 1234)")

        let manual = try await LifeboatCLI.run(["backup", "--manual", "--tag", "Purpose=pre-migration", "--tag", "CreatedBy=sre",
            "--retain", "30d", "--json"] + config, environment: env)
        #expect(manual.status == 0, "\(manual.errors)")
        let backup = try #require(try LifeboatCLI.json(manual)["backup"] as? [String: Any])
        #expect(backup["kind"] as? String == "manual")
        #expect((backup["tags"] as? [String: String]) == ["Purpose": "pre-migration", "CreatedBy": "sre"])
        #expect(backup["retainUntil"] != nil)
        let human = try await LifeboatCLI.run(["backup"] + config, environment: env)
        #expect(human.status == 0)
        #expect(human.output.contains("(automated) completed"))
        // Tags without --manual are a usage error.
        #expect(try await LifeboatCLI.run(["backup", "--tag", "a=b"] + config, environment: env).status == 2)

        try await pg.archiveCurrentWAL()
        let info = try LifeboatCLI.json(try await LifeboatCLI.run(["info", "--json"] + config, environment: env))
        #expect((info["backups"] as? [[String: Any]])?.count == 2)
        #expect(info["earliestRestorableTime"] as? String != nil)
        #expect(info["latestRestorableTime"] as? String != nil)
        #expect(try await LifeboatCLI.run(["verify"] + config, environment: env).status == 0)

        // Restore into a non-empty directory: exit 9, directory untouched.
        try sandbox.directory("busy")
        try sandbox.file("busy/keep.me", "data")
        let busy = try await LifeboatCLI.run(["restore", "--to", sandbox.path("busy")] + config, environment: env)
        #expect(busy.status == 9)
        #expect(try FileManager.default.contentsOfDirectory(atPath: sandbox.path("busy")) == ["keep.me"])

        // Two targets at once: usage error.
        #expect(try await LifeboatCLI.run(["restore", "--to", sandbox.path("x"), "--immediate", "--target-xid", "5"] + config, environment: env).status == 2)

        // Damage the manifest of the manual backup: verify exits 5 naming it.
        let id = try #require(backup["id"] as? String)
        let manifestPath = repo.path + "/manifests/\(id)"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: manifestPath))
        bytes[bytes.count - 3] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: manifestPath))
        let damaged = try await LifeboatCLI.run(["verify"] + config, environment: env)
        #expect(damaged.status == 5)
        #expect(damaged.output.contains("manifests/\(id)"))
        // Restoring that backup fails clearly and leaves nothing behind.
        let failed = try await LifeboatCLI.run(["restore", "--to", sandbox.path("from-damaged"), "--backup", id] + config, environment: env)
        #expect(failed.status == 5)
        #expect(failed.errors.contains("manifests/\(id)"))
        #expect(!FileManager.default.fileExists(atPath: sandbox.path("from-damaged")))
    }
}

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
        #expect(Date().timeIntervalSince(started) < 5)
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

import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository
import LifeboatTesting
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A cluster with a primary and a second repository: archiving never waits for the second one,
/// its lag shows in info and verify, and copy catches it up.
@Suite(.serialized) struct ReplicaTests {
    @Test func walPushSucceedsWhileAReplicaIsDownAndCopyCatchesItUp() async throws {
        let sandbox = try TestSandbox("replica")
        defer { Task { await sandbox.remove() } }
        let replica = try await TestRepository.make(in: sandbox, name: "replica", passphrase: "another key entirely")
        let primary = try await TestRepository.make(in: sandbox, extraConfig: "replicas: [\(replica.configFile)]\n")
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: primary)
        let env = LifeboatCLI.environment(for: pg)
        let config = ["--config", primary.configFile]
        _ = try await pg.query("CREATE TABLE t AS SELECT generate_series(1, 1000) AS id")
        try await pg.archiveCurrentWAL()
        let first = try await LifeboatCLI.run(["backup"] + config, environment: env)
        #expect(first.status == 0)
        #expect(first.errors.contains("warning: the configuration key 'replicas' is now 'mirrors'"), "the old name still works, with a warning")
        try await pg.waitForArchiverIdle()
        var info = try LifeboatCLI.json(try await LifeboatCLI.run(["info", "--json"] + config, environment: env))
        var lag = try #require((info["mirrors"] as? [[String: Any]])?.first)
        #expect((lag["missingBackups"] as? [String])?.count == 1, "backups reach replicas by copy")
        #expect(lag["missingWALFiles"] as? Int == 0, "WAL reached the replica with every push: \(lag)")

        // The replica becomes unwritable for the archiver.
        let owner = geteuid() == 0 ? (uid: UInt32(0), gid: UInt32(0)) : nil
        if let owner { _ = chown(replica.path, owner.uid, owner.gid); chmod(replica.path, 0o700) } else { chmod(replica.path, 0o000) }
        for i in 0..<3 {
            _ = try await pg.query("INSERT INTO t SELECT generate_series(1, 1000) + \(i * 1000)")
            try await pg.archiveCurrentWAL()
        }
        #expect(try await pg.value("SELECT failed_count FROM pg_stat_archiver") == "0", "archiving never failed")
        if owner != nil { sandbox.user?.own(replica.path) } else { chmod(replica.path, 0o750) }
        info = try LifeboatCLI.json(try await LifeboatCLI.run(["info", "--json"] + config, environment: env))
        lag = try #require((info["mirrors"] as? [[String: Any]])?.first)
        #expect((lag["missingWALFiles"] as? Int ?? 0) >= 3, "\(lag)")
        let lagging = try await LifeboatCLI.run(["verify"] + config, environment: env)
        #expect(lagging.output.contains("LAGGING"))

        let catchUp = try await LifeboatCLI.run(["copy", "--to-replicas", "--all"] + config, environment: env)
        #expect(catchUp.status == 0, "\(catchUp.errors)")
        info = try LifeboatCLI.json(try await LifeboatCLI.run(["info", "--json"] + config, environment: env))
        lag = try #require((info["mirrors"] as? [[String: Any]])?.first)
        #expect((lag["missingBackups"] as? [String])?.isEmpty == true && lag["missingWALFiles"] as? Int == 0, "\(lag)")
        let verified = try await LifeboatCLI.run(["verify"] + config, environment: env)
        #expect(verified.status == 0 && verified.output.contains("up to date"))
        #expect(try await LifeboatCLI.run(["verify", "--config", replica.configFile]).status == 0)
    }
}

import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository
import LifeboatTesting
import Testing

/// Backups read from a streaming standby (the primary only switches WAL), a standby promoted during
/// its backup, and standbys built from the repository.
@Suite(.serialized) struct StandbyBackupTests {
    /// Rows 1...n committed one by one on `pg` while `body` runs; returns the numbers acknowledged.
    static func writing(to pg: TestPostgres, during body: () async throws -> Void) async throws -> Int {
        let stop = StopFlag()
        let writer = Task {
            var n = 0
            while !stop.isSet {
                n += 1
                _ = try await pg.query("INSERT INTO ticks VALUES (\(n), repeat('x', 200))")
                try await Task.sleep(for: .milliseconds(20))
            }
            return n
        }
        do {
            try await body()
        } catch {
            stop.set()
            _ = try? await writer.value
            throw error
        }
        stop.set()
        return try await writer.value
    }

    @Test func aBackupReadFromAStandbyRestoresThePrimarysDataAtThatMoment() async throws {
        let sandbox = try TestSandbox("standby-backup")
        defer { Task { await sandbox.remove() } }
        let repo = try await TestRepository.make(in: sandbox)
        // No archive_timeout and no autovacuum writing WAL behind the test's back: without the WAL
        // switch on the primary, the backup's last segment would not be archived within the timeout.
        let primary = try await TestPostgres.start(in: sandbox, name: "primary", archiveTo: repo, settings: ["autovacuum": "off"])
        try await primary.pgbench(["-i", "-s", "2"])
        _ = try await primary.query("CREATE TABLE ticks (n int PRIMARY KEY, pad text)")
        let standby = try await primary.streamingReplica(name: "standby")
        try await standby.waitForReplay(of: primary)
        let config = ["--config", repo.configFile]
        // The backup starts on the standby and waits there while pgbench and the writer change the
        // primary; then the load stops and the backup reads its files and stops: the primary is idle,
        // so only its WAL switch lets the stop segment be archived within the timeout.
        let pause = try sandbox.file("pause", "")
        var env = LifeboatCLI.environment(for: standby)
        env["LIFEBOAT_FAULT_PAUSE_AT"] = "backup.started"
        env["LIFEBOAT_FAULT_PAUSE_FILE"] = pause
        let running = Task { try await LifeboatCLI.run(["backup", "--json", "--wal-timeout", "20s"] + config, environment: env) }
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: pause + ".reached"), Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
        let acknowledged = try await Self.writing(to: primary) {
            try await primary.pgbench(["-T", "4", "-c", "2", "-n"])
        }
        // A checkpoint on the primary, replayed, then a restartpoint on the standby: every row is on
        // the standby's disk and its minimum recovery point (where a standby's backup becomes
        // consistent) is past them, in the primary's current segment.
        _ = try await primary.query("CHECKPOINT")
        try await standby.waitForReplay(of: primary)
        _ = try await standby.query("CHECKPOINT")
        try FileManager.default.removeItem(atPath: pause)
        let backupResult: CommandResult? = try await running.value
        let backup = try #require(backupResult)
        #expect(backup.status == 0, "\(backup.errors)")
        let record = try #require(try LifeboatCLI.json(backup)["backup"] as? [String: Any])
        let source = try #require(record["source"] as? [String: Any])
        #expect(source["role"] as? String == "standby")
        #expect(source["primary"] as? String == "\(primary.cluster.socketDirectory):\(primary.port)", "the primary found from the standby's WAL receiver")
        #expect((source["node"] as? String)?.hasSuffix(standby.cluster.dataDirectory) == true)
        #expect((record["backupLabel"] as? String)?.contains("BACKUP FROM: standby") == true)
        let id = try #require(record["id"] as? String)

        // Consistent at the backup's end: the rows then, each equal to the primary's.
        let (report, copy) = try await TestRestore.restore(repo, sandbox: sandbox, name: "copy", target: .immediate, backupID: id)
        #expect(report.started)
        let rows = try await copy.query("SELECT count(*), coalesce(max(n), 0), coalesce(sum(n), 0) FROM ticks").first
        let count = Int(rows?[0] ?? "") ?? -1
        let max = Int(rows?[1] ?? "") ?? -1
        #expect(count == max && Int(rows?[2] ?? "") == max * (max + 1) / 2, "rows 1...\(max) without holes: \(String(describing: rows))")
        #expect(max == acknowledged, "every row written before the backup's end")
        let restoredDigest = try await copy.value("SELECT md5(string_agg(n || pad, ',' ORDER BY n)) FROM ticks")
        let primaryDigest = try await primary.value("SELECT md5(string_agg(n || pad, ',' ORDER BY n)) FROM ticks WHERE n <= \(max)")
        #expect(restoredDigest == primaryDigest, "the restored rows are the primary's")
        let balances = try await copy.pgbenchBalances()
        #expect(balances.accounts == balances.tellers && balances.tellers == balances.branches && balances.branches == balances.history,
            "pgbench's balances agree: \(balances)")
        try await copy.stop()

        // The latest point: every acknowledged row.
        try await primary.archiveCurrentWAL()
        let (_, latest) = try await TestRestore.restore(repo, sandbox: sandbox, name: "latest", target: .latest)
        #expect(try await latest.value("SELECT count(*) FROM ticks") == String(acknowledged))
        try await latest.stop()
        try await standby.stop()
        try await primary.stop()
    }

    @Test func aStandbyPromotedDuringItsBackupFailsItCleanly() async throws {
        let sandbox = try TestSandbox("standby-promoted")
        defer { Task { await sandbox.remove() } }
        let repo = try await TestRepository.make(in: sandbox)
        let primary = try await TestPostgres.start(in: sandbox, name: "primary", archiveTo: repo)
        _ = try await primary.query("CREATE TABLE t AS SELECT generate_series(1, 10000) AS id")
        let standby = try await primary.streamingReplica(name: "standby")
        try await standby.waitForReplay(of: primary)
        let pause = try sandbox.file("pause", "")
        var env = LifeboatCLI.environment(for: standby)
        env["LIFEBOAT_FAULT_PAUSE_AT"] = "backup.started"
        env["LIFEBOAT_FAULT_PAUSE_FILE"] = pause
        let backup = Task { try await LifeboatCLI.run(["backup", "--config", repo.configFile], environment: env) }
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: pause + ".reached"), Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
        try await primary.stop()
        try await standby.promote()
        try FileManager.default.removeItem(atPath: pause)
        let result = try await backup.value
        #expect(result.status == LifeboatError.Code.postgres.exitCode, "\(result.output) \(result.errors)")
        #expect(result.errors.contains("was promoted during the backup; the backup was not committed"), "\(result.errors)")
        #expect(try await repo.reopen().backups().isEmpty, "nothing committed")
        try await standby.stop()
    }

    @Test func aStandbyBuiltFromTheRepositoryStreamsFromItsPrimary() async throws {
        let sandbox = try TestSandbox("standby-restore")
        defer { Task { await sandbox.remove() } }
        let repo = try await TestRepository.make(in: sandbox)
        let primary = try await TestPostgres.start(in: sandbox, name: "primary", archiveTo: repo)
        _ = try await primary.query("CREATE TABLE t (id int)")
        _ = try await primary.query("INSERT INTO t SELECT generate_series(1, 1000)")
        let env = LifeboatCLI.environment(for: primary)
        #expect(try await LifeboatCLI.run(["backup", "--config", repo.configFile], environment: env).status == 0)
        _ = try await primary.query("INSERT INTO t SELECT generate_series(1001, 2000)")
        try await primary.archiveCurrentWAL()

        let port = TestSandbox.freePort()
        let dest = sandbox.path("replica")
        let conninfo = "host=\(primary.cluster.socketDirectory) port=\(primary.port) user=\(primary.cluster.superuser)"
        let restored = try await LifeboatCLI.run(["restore", "--config", repo.configFile, "--to", dest, "--standby", "--primary-conninfo", conninfo,
            "--start", "--port", String(port), "--socket-dir", sandbox.root])
        #expect(restored.status == 0, "\(restored.errors)")
        #expect(restored.output.contains("standby running on port \(port), streaming from its primary"), "\(restored.output)")
        let replica = TestPostgres.attach(dest, port: port, like: primary)
        #expect(try await replica.value("SELECT pg_is_in_recovery()::text") == "true")
        // Caught up from the archive, then streaming what comes next.
        _ = try await primary.query("INSERT INTO t SELECT generate_series(2001, 3000)")
        try await replica.waitForReplay(of: primary)
        #expect(try await replica.value("SELECT count(*) FROM t") == "3000")
        #expect(try await replica.value("SELECT status FROM pg_stat_wal_receiver") == "streaming")
        #expect(FileManager.default.fileExists(atPath: dest + "/standby.signal"))
        let auto = try String(contentsOfFile: dest + "/postgresql.auto.conf", encoding: .utf8)
        #expect(!auto.contains("archive_mode = 'off'"), "a standby keeps archiving as configured: promoted, it is production")
        // A promoted replica archives its new timeline.
        try await primary.stop()
        try await replica.promote()
        _ = try await replica.query("INSERT INTO t SELECT generate_series(3001, 3010)")
        try await replica.archiveCurrentWAL()
        let summary = try await RepositorySummary.make(try await repo.reopen())
        #expect(summary.latestTimeline == 2, "the promoted replica archives timeline 2")
        try await replica.stop()
    }
}

/// A flag one task sets and another polls.
final class StopFlag: @unchecked Sendable {
    private var value = false
    private let lock = NSLock()
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}

import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository
import LifeboatTesting
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Restores on clusters with the histories production clusters have: tablespaces (one created
/// after the backup), a cluster restored and promoted before, two forks, a gap in the archive, a
/// configuration that points into the node's own paths, a restore that fails half way.
@Suite(.serialized) struct ClusterHistoryRestoreTests {
    func backup(_ pg: TestPostgres, _ repo: TestRepository) async throws -> BackupRecord {
        try await BackupEngine(repository: try await repo.reopen(), logger: TestSandbox.logger())
            .run(BackupOptions(pgdata: pg.cluster.dataDirectory, endpoint: pg.endpoint)).backup
    }

    /// A SHA-256 over every file under `dir` (names and contents): what must not change.
    func fingerprint(_ dir: String) throws -> String {
        var text = ""
        let walker = FileManager.default.enumerator(atPath: dir)
        var names: [String] = []
        while let name = walker?.nextObject() as? String { names.append(name) }
        for name in names.sorted() {
            var isDir: ObjCBool = false
            FileManager.default.fileExists(atPath: dir + "/" + name, isDirectory: &isDir)
            let content = isDir.boolValue ? Data() : try Data(contentsOf: URL(fileURLWithPath: dir + "/" + name))
            text += name + ":" + String(content.hashValue) + ":" + String(content.count) + "\n"
        }
        return text
    }

    /// `pg_dumpall` of a cluster with tablespace locations left out (a restored copy has its own).
    func dumpAll(_ pg: TestPostgres) async throws -> String {
        let r = try await CommandRunner.runSeparately(pg.cluster.binaries.path("pg_dumpall"),
            ["-h", pg.cluster.socketDirectory, "-p", String(pg.port), "-U", pg.cluster.superuser], as: pg.sandbox.user, timeout: 120)
        // Comments, and the random \restrict keys of newer pg_dumpall, differ between any two dumps.
        let noise = ["--", "\\restrict", "\\unrestrict"]
        return r.output.split(separator: "\n").filter { line in !line.contains("LOCATION '") && !noise.contains { line.hasPrefix($0) } }
            .joined(separator: "\n")
    }

    @Test func tablespacesAlsoOneCreatedAfterTheBackupRestoreWithoutTouchingTheOriginal() async throws {
        let sandbox = try TestSandbox("tblspc")
        defer { Task { await sandbox.remove() } }
        let repo = try await TestRepository.make(in: sandbox)
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: repo)
        let ts1 = try sandbox.directory("ts1")
        _ = try await pg.query("CREATE TABLESPACE ts1 LOCATION '\(ts1)'")
        _ = try await pg.query("CREATE DATABASE app")
        _ = try await pg.query("CREATE TABLE orders (id int PRIMARY KEY, note text) TABLESPACE ts1")
        _ = try await pg.query("INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(1, 5000) g")
        let record = try await backup(pg, repo)
        #expect(record.tablespaces?.map(\.name) == ["ts1"])

        // After the backup: a second tablespace, a table in it, more rows in the first.
        let ts2 = try sandbox.directory("ts2")
        _ = try await pg.query("CREATE TABLESPACE ts2 LOCATION '\(ts2)'")
        _ = try await pg.query("CREATE TABLE items (id int, order_id int) TABLESPACE ts2")
        _ = try await pg.query("INSERT INTO items SELECT g, g % 5000 + 1 FROM generate_series(1, 3000) g")
        _ = try await pg.query("INSERT INTO orders SELECT g, 'after' FROM generate_series(5001, 6000) g")
        try await Task.sleep(for: .milliseconds(50))
        let dumpAtT = try await dumpAll(pg)
        let t = try await pg.now()
        try await Task.sleep(for: .milliseconds(50))
        _ = try await pg.query("INSERT INTO items SELECT g, 1 FROM generate_series(3001, 3500) g")
        try await pg.archiveCurrentWAL()
        try await pg.stop()
        let originals = (try fingerprint(ts1), try fingerprint(ts2))

        // To a time after the second tablespace was created, and to the latest point.
        let (atT, restoredAtT) = try await TestRestore.restore(repo, sandbox: sandbox, name: "at-t", target: .time(t))
        #expect(try await restoredAtT.value("SELECT count(*) FROM items") == "3000")
        #expect(try await restoredAtT.value("SELECT count(*) FROM orders") == "6000")
        #expect(try await dumpAll(restoredAtT) == dumpAtT, "the restored cluster is what the original was at T")
        let locations = try await restoredAtT.query("SELECT spcname, pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname LIKE 'ts%' ORDER BY 1")
        for row in locations {
            let location = row[1] ?? ""
            #expect(location.hasPrefix(sandbox.path("at-t.tablespaces/")), "\(row[0] ?? "") lives in the restore's own directory: \(location)")
        }
        #expect(atT.tablespaces.contains { $0.createdInWAL }, "the tablespace created after the backup was redirected")
        // Writes to the restored copy land in its own tablespaces.
        _ = try await restoredAtT.query("INSERT INTO items SELECT g, 1 FROM generate_series(1, 20000) g")
        _ = try await restoredAtT.query("CHECKPOINT")
        try await restoredAtT.stop()

        let (_, latest) = try await TestRestore.restore(repo, sandbox: sandbox, name: "latest", target: .latest)
        #expect(try await latest.value("SELECT count(*) FROM items") == "3500")
        _ = try await latest.query("UPDATE orders SET note = 'changed'")
        _ = try await latest.query("CHECKPOINT")
        try await latest.stop()

        #expect(try fingerprint(ts1) == originals.0, "the original's first tablespace is untouched")
        #expect(try fingerprint(ts2) == originals.1, "the original's second tablespace is untouched")
        // The aliases made to redirect replay are gone; nothing of the restore's is in /tmp.
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? []).filter { $0.hasPrefix(".lb") }.isEmpty)
        // A mapping by name puts a tablespace of the backup where it is asked.
        let mapped = sandbox.path("mapped-ts1")
        let (m, byName) = try await TestRestore.restore(repo, sandbox: sandbox, name: "mapped", target: .immediate, tablespaceMap: ["ts1": mapped])
        #expect(m.tablespaces.first { $0.name == "ts1" }?.directory == mapped)
        #expect(try await byName.value("SELECT count(*) FROM orders") == "5000")
        try await byName.stop()
    }

    /// Restore, promote with archiving kept, back up the promoted cluster, write more, restore to
    /// latest: every row. The first restore's recovery settings did not outlive it.
    @Test func aClusterRestoredBeforeRestoresAgainToTheLatestPoint() async throws {
        let sandbox = try TestSandbox("again")
        defer { Task { await sandbox.remove() } }
        let repo = try await TestRepository.make(in: sandbox)
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: repo)
        _ = try await pg.query("CREATE TABLE rows (id int)")
        _ = try await backup(pg, repo)
        _ = try await pg.query("INSERT INTO rows SELECT generate_series(1, 10)")
        try await Task.sleep(for: .milliseconds(50))
        let t = try await pg.now()
        try await Task.sleep(for: .milliseconds(50))
        _ = try await pg.query("INSERT INTO rows SELECT generate_series(1000, 1009)")
        try await pg.archiveCurrentWAL()
        try await pg.stop()

        let (_, promoted) = try await TestRestore.restore(repo, sandbox: sandbox, name: "production-2", target: .time(t), archiveMode: .keep)
        let auto = try String(contentsOfFile: sandbox.path("production-2/postgresql.auto.conf"), encoding: .utf8)
        #expect(!auto.contains("recovery_target") && !auto.contains("restore_command") && !auto.contains(ServerConfiguration.recoveryBegin),
            "recovery settings are gone once recovery ended:\n\(auto)")
        #expect(!FileManager.default.fileExists(atPath: sandbox.path("production-2/pg_wal/.lifeboat-recovery")))
        _ = try await promoted.query("INSERT INTO rows SELECT generate_series(11, 20)")
        _ = try await backup(promoted, repo)
        _ = try await promoted.query("INSERT INTO rows SELECT generate_series(21, 30)")
        try await promoted.archiveCurrentWAL()
        try await promoted.stop()

        let (report, again) = try await TestRestore.restore(repo, sandbox: sandbox, name: "again", target: .latest)
        #expect(report.targetTimeline == 2)
        #expect(try await again.value("SELECT count(*) FROM rows") == "30", "every row, none of the abandoned ones")
        #expect(try await again.value("SELECT max(id) FROM rows") == "30")
        try await again.stop()
        let (_, immediate) = try await TestRestore.restore(repo, sandbox: sandbox, name: "immediate", target: .immediate)
        #expect(try await immediate.value("SELECT count(*) FROM rows") == "20")
        try await immediate.stop()
    }

    /// Timeline 2 forks from 1, then timeline 3 forks from 1 (a restore to an earlier time): latest
    /// follows 3 from a backup on its history; each timeline can be chosen, with times on each.
    @Test func twoForksRestoreAlongEveryTimeline() async throws {
        let sandbox = try TestSandbox("forks")
        defer { Task { await sandbox.remove() } }
        let repo = try await TestRepository.make(in: sandbox)
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: repo)
        _ = try await pg.query("CREATE TABLE events (id int, tl int)")
        let first = try await backup(pg, repo)
        _ = try await pg.query("INSERT INTO events SELECT generate_series(1, 10), 1")
        try await Task.sleep(for: .milliseconds(50))
        let early = try await pg.now()
        try await Task.sleep(for: .milliseconds(50))
        _ = try await pg.query("INSERT INTO events SELECT generate_series(11, 20), 1")
        try await Task.sleep(for: .milliseconds(50))
        let late = try await pg.now()
        try await Task.sleep(for: .milliseconds(50))
        _ = try await pg.query("INSERT INTO events SELECT generate_series(21, 30), 1")
        try await pg.archiveCurrentWAL()
        try await pg.stop()

        // Timeline 2: from the late point, with a backup of its own.
        let (r2, tl2) = try await TestRestore.restore(repo, sandbox: sandbox, name: "tl2", target: .time(late), archiveMode: .keep)
        #expect(r2.timeline == 2)
        _ = try await tl2.query("INSERT INTO events SELECT generate_series(100, 109), 2")
        let onTwo = try await backup(tl2, repo)
        _ = try await tl2.query("INSERT INTO events SELECT generate_series(110, 119), 2")
        try await tl2.archiveCurrentWAL()
        try await tl2.stop()

        // Timeline 3: from the early point of timeline 1.
        let (r3, tl3) = try await TestRestore.restore(repo, sandbox: sandbox, name: "tl3", target: .time(early), archiveMode: .keep,
            targetTimeline: .number(1))
        #expect(r3.timeline == 3 && r3.backupID == first.id)
        _ = try await tl3.query("INSERT INTO events SELECT generate_series(200, 209), 3")
        try await Task.sleep(for: .milliseconds(50))
        let onThree = try await tl3.now()
        try await Task.sleep(for: .milliseconds(50))
        _ = try await tl3.query("INSERT INTO events SELECT generate_series(210, 219), 3")
        try await tl3.archiveCurrentWAL()
        try await tl3.stop()

        func check(_ name: String, _ target: RecoveryTarget, _ timeline: TimelineChoice, backup: String, rows: String, tl: UInt32) async throws {
            let (r, restored) = try await TestRestore.restore(repo, sandbox: sandbox, name: name, target: target, targetTimeline: timeline)
            #expect(r.backupID == backup && r.targetTimeline == tl, "\(name): backup \(r.backupID) timeline \(r.targetTimeline)")
            let got = try await restored.value("SELECT string_agg(tl::text || ':' || count::text, ',' ORDER BY tl) FROM (SELECT tl, count(*) FROM events GROUP BY tl) c")
            #expect(got == rows, "\(name)")
            try await restored.stop()
        }
        try await check("latest", .latest, .latest, backup: first.id, rows: "1:10,3:20", tl: 3)
        try await check("tl3-time", .time(onThree), .latest, backup: first.id, rows: "1:10,3:10", tl: 3)
        try await check("tl2-latest", .latest, .number(2), backup: onTwo.id, rows: "1:20,2:20", tl: 2)
        try await check("tl1-latest", .latest, .number(1), backup: first.id, rows: "1:30", tl: 1)
        try await check("tl1-time", .time(late), .number(1), backup: first.id, rows: "1:20", tl: 1)
        // verify follows every line: nothing is missing anywhere.
        let report = try await Verifier(repository: try await repo.reopen()).run()
        #expect(report.ok, "\(report.problems)")
    }

    /// A segment deleted from the middle of the archive: latest is refused naming it (exit 17 from
    /// the binary); accepted, the restore stops exactly before it and says so.
    @Test func aGapInTheArchiveIsRefusedAndAcceptedKnowingly() async throws {
        let sandbox = try TestSandbox("gap")
        defer { Task { await sandbox.remove() } }
        let repo = try await TestRepository.make(in: sandbox)
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: repo)
        _ = try await pg.query("CREATE TABLE marks (id int)")
        _ = try await backup(pg, repo)
        var segments: [String] = []
        for i in 1...9 {
            _ = try await pg.query("INSERT INTO marks VALUES (\(i))")
            segments.append(try await pg.value("SELECT pg_walfile_name(pg_current_wal_lsn())") ?? "")
            try await pg.archiveCurrentWAL()
        }
        try await pg.stop()
        // Row 4's segment goes missing.
        let missing = segments[3]
        try FileManager.default.removeItem(atPath: repo.path + "/" + Repository.walKey(.segment(try #require(WALSegment(name: missing)))))

        await #expect {
            _ = try await TestRestore.restore(repo, sandbox: sandbox, name: "refused", target: .latest)
        } throws: { error in
            guard let e = error as? LifeboatError else { return false }
            return e.code == .walGap && e.message.contains(missing)
        }
        #expect(!FileManager.default.fileExists(atPath: sandbox.path("refused")), "nothing written")
        let cli = try await LifeboatCLI.run(["restore", "--config", repo.configFile, "--to", sandbox.path("cli-refused")])
        #expect(cli.status == LifeboatError.Code.walGap.exitCode && cli.errors.contains(missing) && cli.errors.contains("--accept-wal-gap"),
            "\(cli.status) \(cli.errors)")

        let (report, restored) = try await TestRestore.restore(repo, sandbox: sandbox, name: "to-gap", target: .latest, acceptWALGap: true)
        #expect(report.walGap?.firstMissing == missing)
        #expect(try await restored.value("SELECT string_agg(id::text, ',' ORDER BY id) FROM marks") == "1,2,3", "exactly up to the gap")
        try await restored.stop()
        let verify = try await Verifier(repository: try await repo.reopen()).run()
        #expect(verify.problems.contains { $0.message.contains(missing) })
    }

    /// Failover to a replica that was behind: the old primary archived segments past the fork.
    /// verify passes; info names the abandoned tail and puts the latest point on the new timeline.
    @Test func failoverToALaggingReplicaVerifiesAndReportsTheTail() async throws {
        let sandbox = try TestSandbox("lagging")
        defer { Task { await sandbox.remove() } }
        let repo = try await TestRepository.make(in: sandbox)
        let primary = try await TestPostgres.start(in: sandbox, name: "primary", archiveTo: repo,
            settings: ["max_wal_senders": "4", "wal_keep_size": "256MB"])
        _ = try await primary.query("CREATE TABLE t (id int)")
        _ = try await backup(primary, repo)
        let replica = try await primary.streamingReplica(name: "replica")
        _ = try await primary.query("INSERT INTO t SELECT generate_series(1, 100)")
        try await replica.waitForReplay(of: primary)
        try await replica.stop()
        // The primary goes on without the replica, archives, and dies.
        for _ in 0..<3 {
            _ = try await primary.query("INSERT INTO t SELECT generate_series(1, 100)")
            try await primary.archiveCurrentWAL()
        }
        try await primary.stop()
        // The lagging replica is promoted and archives its new timeline.
        try await replica.startAgain()
        try await replica.promote()
        _ = try await replica.query("INSERT INTO t SELECT generate_series(1000, 1099)")
        try await replica.archiveCurrentWAL()

        let opened = try await repo.reopen()
        let verify = try await Verifier(repository: opened).run()
        #expect(verify.ok, "\(verify.problems)")
        #expect(verify.notes.contains { $0.contains("timeline 1") && $0.contains("past the point") }, "\(verify.notes)")
        let info = try await RepositorySummary.make(opened)
        #expect(info.latestTimeline == 2)
        #expect(info.lastArchivedWAL?.hasPrefix("00000002") == true, "latest is on timeline 2: \(info.lastArchivedWAL ?? "-")")
        #expect(info.timelines.first { $0.timeline == 1 }?.abandonedTail != nil)
        try await replica.stop()
        let (_, restored) = try await TestRestore.restore(repo, sandbox: sandbox, name: "after-failover", target: .latest)
        #expect(try await restored.value("SELECT count(*) FROM t") == "200", "the replica's rows, not the abandoned ones")
        try await restored.stop()
    }

    /// A node whose postgresql.conf names files inside its own data directory (as Patroni writes it):
    /// the restored copy starts where the source's paths do not exist, and says what it changed.
    @Test func aConfigurationPointingIntoItsOwnPathsStartsElsewhere() async throws {
        let sandbox = try TestSandbox("ownpaths")
        defer { Task { await sandbox.remove() } }
        let repo = try await TestRepository.make(in: sandbox)
        let pg = try await TestPostgres.start(in: sandbox, name: "node1", archiveTo: repo)
        let dir = pg.cluster.dataDirectory
        let conf = try String(contentsOfFile: dir + "/postgresql.conf", encoding: .utf8)
        try sandbox.file("node1/postgresql.conf", conf + "\nhba_file = '\(dir)/pg_hba.conf'\nident_file = '\(dir)/pg_ident.conf'\nexternal_pid_file = '\(dir).pid'\n",
            mode: 0o600)
        try await pg.stop()
        try await pg.cluster.start(timeout: 60)
        _ = try await pg.query("CREATE TABLE t AS SELECT generate_series(1, 10) AS id")
        _ = try await backup(pg, repo)
        try await pg.archiveCurrentWAL()
        try await pg.stop()
        // The node's directory is gone (another host).
        try FileManager.default.moveItem(atPath: dir, toPath: sandbox.path("node1-gone"))

        let (report, restored) = try await TestRestore.restore(repo, sandbox: sandbox, name: "elsewhere", target: .latest)
        #expect(try await restored.value("SELECT count(*) FROM t") == "10")
        #expect(try await restored.value("SHOW hba_file") == sandbox.path("elsewhere/pg_hba.conf"))
        #expect(report.configurationChanges.contains { $0.contains("hba_file") } && report.configurationChanges.contains { $0.contains("ident_file") },
            "\(report.configurationChanges)")
        try await restored.stop()
    }

    /// A restore whose server cannot start removes what it wrote (a retry into the same directory
    /// works); what it writes is private; the passphrase never reaches the server's environment.
    @Test func aFailedStartLeavesNothingAndFilesArePrivate() async throws {
        let sandbox = try TestSandbox("failed-start")
        defer { Task { await sandbox.remove() } }
        let repo = try await TestRepository.make(in: sandbox)
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: repo)
        let ts = try sandbox.directory("ts")
        _ = try await pg.query("CREATE TABLESPACE ts LOCATION '\(ts)'")
        _ = try await pg.query("CREATE TABLE t (id int) TABLESPACE ts")
        _ = try await backup(pg, repo)
        try await pg.archiveCurrentWAL()
        let dest = sandbox.path("restored")
        // The production server holds the port: the restored one cannot start.
        let busy = RestoreOptions(destination: dest, invocation: repo.invocation, start: true, port: pg.port,
            socketDirectory: sandbox.root, recoveryTimeout: 60)
        await #expect(throws: LifeboatError.self) {
            _ = try await RestoreEngine(repository: try await repo.reopen(), logger: TestSandbox.logger()).run(busy)
        }
        #expect(!FileManager.default.fileExists(atPath: dest), "the restore's directory is gone")
        #expect(!FileManager.default.fileExists(atPath: dest + ".tablespaces"), "and its tablespace directory")

        // Not started: what is written is private, and the key waits in a handoff file.
        let report = try await RestoreEngine(repository: try await repo.reopen(), logger: TestSandbox.logger())
            .run(RestoreOptions(destination: dest, invocation: repo.invocation))
        func mode(_ path: String) -> mode_t {
            var st = stat()
            return stat(path, &st) == 0 ? st.st_mode & 0o777 : 0
        }
        for file in ["backup_label", "recovery.signal", "postgresql.auto.conf", "pg_wal/.lifeboat-recovery/key"] {
            #expect(mode(dest + "/" + file) == 0o600, "\(file) is \(String(mode(dest + "/" + file), radix: 8))")
        }
        #expect(mode(dest) == 0o700)
        #expect(report.keyHandoff == dest + "/pg_wal/.lifeboat-recovery/key")

        // Started by the binary with the passphrase in its environment: the server never gets it.
        let passphraseConfig = try sandbox.file("pass.yaml", "repo: \(repo.path)\n")
        let port = TestSandbox.freePort()
        let started = try await LifeboatCLI.run(["restore", "--config", passphraseConfig, "--to", sandbox.path("by-cli"), "--start",
            "--port", String(port), "--socket-dir", sandbox.root], environment: ["LIFEBOAT_PASSPHRASE": "correct horse battery staple"])
        #expect(started.status == 0, "\(started.errors)")
        let server = TestPostgres.attach(sandbox.path("by-cli"), port: port, like: pg)
        let pid = try #require(server.cluster.postmasterPID)
        let environ = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/environ"))).map { String(decoding: $0, as: UTF8.self) } ?? ""
        #expect(!environ.isEmpty && !environ.contains("correct horse"), "the passphrase is not in the server's environment")
        #expect(!FileManager.default.fileExists(atPath: sandbox.path("by-cli/pg_wal/.lifeboat-recovery")), "the handoff ended with recovery")
        #expect(mode(sandbox.path("by-cli.log")) == 0o600)
        try await server.stop()
        try await pg.stop()
    }
}

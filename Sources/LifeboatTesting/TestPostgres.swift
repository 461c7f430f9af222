import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository
import Logging

/// A real PostgreSQL cluster made with `initdb` in a sandbox, on a free loopback port, optionally
/// archiving its WAL into a test repository through the built `lifeboat wal push`.
public struct TestPostgres: Sendable {
    public let cluster: LocalCluster
    public let sandbox: TestSandbox

    /// Wraps a cluster started by other means (for example by `lifeboat restore --start`).
    public init(cluster: LocalCluster, sandbox: TestSandbox) {
        self.cluster = cluster
        self.sandbox = sandbox
    }

    public static func start(in sandbox: TestSandbox, name: String = "pg", archiveTo repo: TestRepository?,
        settings: [String: String] = [:]) async throws -> TestPostgres
    {
        let binaries = try PostgresBinaries.locate(majorVersion: ProcessInfo.processInfo.environment["LIFEBOAT_TEST_PG_MAJOR"] ?? "15")
        let cluster = LocalCluster(dataDirectory: sandbox.path(name), port: TestSandbox.freePort(), socketDirectory: sandbox.root,
            binaries: binaries, user: sandbox.user)
        var conf: [String: String] = [
            "fsync": "off", "shared_buffers": "32MB", "max_wal_size": "256MB", "checkpoint_timeout": "30min",
            "log_min_messages": "warning", "wal_level": "replica",
        ]
        if let repo {
            conf["archive_mode"] = "on"
            conf["archive_command"] = repo.invocation.archiveCommand
        }
        for (k, v) in settings { conf[k] = v }
        try await cluster.initialize(extraSettings: conf)
        try await cluster.start(timeout: 60)
        return TestPostgres(cluster: cluster, sandbox: sandbox)
    }

    /// A cluster in the sandbox that something else started (`lifeboat restore --start`, a runbook).
    public static func attach(_ dataDirectory: String, port: Int, like other: TestPostgres) -> TestPostgres {
        TestPostgres(cluster: LocalCluster(dataDirectory: dataDirectory, port: port, socketDirectory: other.sandbox.root,
            binaries: other.cluster.binaries, user: other.sandbox.user), sandbox: other.sandbox)
    }

    public var endpoint: PostgresEndpoint { cluster.endpoint() }
    public var port: Int { cluster.port }

    /// Rows of text values.
    public func query(_ sql: String, database: String? = nil) async throws -> [[String?]] {
        var endpoint = self.endpoint
        if let database { endpoint.database = database }
        let session = try await PostgresSession.connect(endpoint, logger: TestSandbox.logger())
        do {
            let rows = try await session.query(sql)
            await session.close()
            return rows
        } catch {
            await session.close()
            throw error
        }
    }

    public func value(_ sql: String, database: String? = nil) async throws -> String? {
        try await query(sql, database: database).first?.first ?? nil
    }

    /// The current server time (what recovery_target_time is compared with).
    public func now() async throws -> Date {
        try Timestamp.parse(try await value("SELECT now()::text") ?? "")
    }

    /// Forces the current WAL segment out and waits until the archiver has pushed it and has nothing
    /// else pending.
    public func archiveCurrentWAL(timeout: TimeInterval = 30) async throws {
        // The segment the switch completed, named from the switch itself: reading the current
        // position first and switching after leaves a window in which the two name different
        // segments (a restore to a time after the last commit then found it missing from the archive).
        // With nothing written since the last switch, this names the segment before, also complete.
        let segment = try await value("SELECT pg_walfile_name(pg_switch_wal())") ?? ""
        let deadline = Date().addingTimeInterval(timeout)
        // Not pg_stat_archiver.last_archived_wal: a .backup history file archived after a later
        // segment makes it go backwards. The segment's .done status is the truth.
        while try await value("SELECT \(PostgresArchive.archivedCondition(segment))") != "true" {
            guard Date() < deadline else { throw LifeboatError(.timeout, "segment \(segment) was not archived within \(timeout)s") }
            try await Task.sleep(for: .milliseconds(50))
        }
        // ...and nothing else is waiting either (tests comparing repositories need it settled).
        try await waitForArchiverIdle(timeout: max(1, deadline.timeIntervalSinceNow))
    }

    /// Waits until the archiver has no file left to archive: every archive_command that was due has
    /// returned (`.ready` turns `.done` only then). A backup waits for its own WAL, not for the
    /// `.backup` history file pg_backup_stop(false) leaves to the archiver.
    public func waitForArchiverIdle(timeout: TimeInterval = 30) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try await value("SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'") == "0" { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw LifeboatError(.timeout, "the archiver still had files to archive after \(timeout)s")
    }

    /// Runs pgbench against this cluster.
    public func pgbench(_ arguments: [String]) async throws {
        try await CommandRunner.run(cluster.binaries.path("pgbench"),
            arguments + ["-h", cluster.socketDirectory, "-p", String(port), "-U", cluster.superuser, "postgres"],
            as: sandbox.user, timeout: 600)
    }

    /// pgbench's invariant: account, teller and branch balances and history deltas all sum alike.
    public func pgbenchBalances() async throws -> (accounts: Int64, tellers: Int64, branches: Int64, history: Int64) {
        let row = try await query("""
            SELECT (SELECT coalesce(sum(abalance),0) FROM pgbench_accounts)::text, (SELECT coalesce(sum(tbalance),0) FROM pgbench_tellers)::text,
                   (SELECT coalesce(sum(bbalance),0) FROM pgbench_branches)::text, (SELECT coalesce(sum(delta),0) FROM pgbench_history)::text
            """)[0]
        return (Int64(row[0] ?? "") ?? -1, Int64(row[1] ?? "") ?? -2, Int64(row[2] ?? "") ?? -3, Int64(row[3] ?? "") ?? -4)
    }

    public func stop() async throws { try await cluster.stop() }

    /// Starts this cluster again after `stop`.
    public func startAgain() async throws { try await cluster.start(timeout: 60) }

    /// A streaming replica of this cluster made with `pg_basebackup -R` (it inherits the archive
    /// settings, and archives once promoted, as a real replica does).
    public func streamingReplica(name: String, settings: [String: String] = [:]) async throws -> TestPostgres {
        let dir = sandbox.path(name)
        try await CommandRunner.run(cluster.binaries.path("pg_basebackup"),
            ["-h", cluster.socketDirectory, "-p", String(port), "-U", cluster.superuser, "-D", dir, "-R", "-X", "stream", "-c", "fast"],
            as: sandbox.user, timeout: 300)
        let replica = TestPostgres(cluster: LocalCluster(dataDirectory: dir, port: TestSandbox.freePort(), socketDirectory: sandbox.root,
            binaries: cluster.binaries, user: sandbox.user), sandbox: sandbox)
        if !settings.isEmpty { try replica.cluster.appendSettings(settings) }
        try await replica.cluster.start(timeout: 60)
        return replica
    }

    /// Waits until this standby has replayed everything `primary` has written so far.
    public func waitForReplay(of primary: TestPostgres, timeout: TimeInterval = 60) async throws {
        let target = try await primary.value("SELECT pg_current_wal_lsn()::text") ?? ""
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try await value("SELECT pg_last_wal_replay_lsn() >= '\(target)'::pg_lsn") == "true" { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw LifeboatError(.timeout, "the standby did not replay up to \(target) within \(timeout)s")
    }

    /// Promotes this standby and waits until it accepts writes.
    public func promote() async throws {
        _ = try await query("SELECT pg_promote(true, 60)")
        let deadline = Date().addingTimeInterval(60)
        while try await value("SELECT pg_is_in_recovery()::text") != "false" {
            guard Date() < deadline else { throw LifeboatError(.timeout, "the standby was not promoted") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }
}

/// Restores with the library, the way `lifeboat restore --start` does, into a fresh sandbox directory.
public enum TestRestore {
    public static func restore(_ repo: TestRepository, sandbox: TestSandbox, name: String, target: RecoveryTarget,
        backupID: String? = nil, archiveMode: RestoreOptions.ArchiveMode = .off, targetTimeline: TimelineChoice = .latest,
        tablespaceMap: [String: String] = [:], acceptWALGap: Bool = false)
        async throws -> (report: RestoreReport, server: TestPostgres)
    {
        let options = RestoreOptions(destination: sandbox.path(name), target: target, backupID: backupID, invocation: repo.invocation,
            archiveMode: archiveMode, targetTimeline: targetTimeline, tablespaceMap: tablespaceMap, acceptWALGap: acceptWALGap, start: true,
            port: TestSandbox.freePort(), socketDirectory: sandbox.root, recoveryTimeout: 120)
        let report = try await RestoreEngine(repository: try await repo.reopen(), logger: TestSandbox.logger()).run(options)
        let cluster = LocalCluster(dataDirectory: options.destination, port: options.port, socketDirectory: sandbox.root,
            binaries: try PostgresBinaries.locate(majorVersion: "15"), user: sandbox.user)
        return (report, TestPostgres(cluster: cluster, sandbox: sandbox))
    }
}

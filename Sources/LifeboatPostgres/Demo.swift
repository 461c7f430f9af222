import Foundation
import LifeboatCore
import LifeboatRepository
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// `lifeboat demo`: a whole disaster and recovery on a throwaway local cluster, measured.
///
/// initdb a cluster that archives WAL into a new repository, load pgbench data, take a backup while
/// pgbench writes, note the moment T, then "the disaster" (DROP TABLE pgbench_accounts). Restore to T
/// into a new directory, start it, prove the data is back (row counts, balances equal to those at T,
/// pgbench's invariant), and report the recovery time and the data-loss window.
public struct DemoReport: Codable, Sendable {
    public struct Step: Codable, Sendable {
        public var name: String
        public var seconds: Double
        public var detail: String
    }

    public var workDirectory: String
    public var steps: [Step]
    public var backupID: String
    public var backupLogicalBytes: UInt64
    public var backupStoredBytes: UInt64
    public var targetTime: Date
    public var achievedTime: Date?
    /// Restore command start to a promoted server answering queries.
    public var recoverySeconds: Double
    /// Commits made before the disaster that the restore did not bring back (by pgbench_history rows).
    public var transactionsLost: Int
    /// Between the last recovered commit and the target.
    public var dataLossWindowSeconds: Double?
    public var checks: [String: Bool]
    public var passed: Bool
}

public struct Demo: Sendable {
    public var scale: Int
    public var keep: Bool
    public var binary: String
    public var logger: Logger

    public init(scale: Int = 5, keep: Bool = false, binary: String, logger: Logger) {
        self.scale = scale
        self.keep = keep
        self.binary = binary
        self.logger = logger
    }

    public func run(progress: @Sendable (String) -> Void) async throws -> DemoReport {
        let work = "/tmp/lifeboat-demo-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        chmod(work, 0o755)
        let user = geteuid() == 0 ? OSUser.defaultUnprivileged() : nil
        user?.own(work)
        var clusters: [LocalCluster] = []
        defer {
            if !keep { try? FileManager.default.removeItem(atPath: work) }
        }
        do {
            let report = try await scenario(work: work, user: user, clusters: &clusters, progress: progress)
            for c in clusters { try? await c.stop() }
            return report
        } catch {
            for c in clusters { try? await c.stop(mode: "immediate") }
            throw error
        }
    }

    private func scenario(work: String, user: OSUser?, clusters: inout [LocalCluster], progress: @Sendable (String) -> Void)
        async throws -> DemoReport
    {
        var steps: [DemoReport.Step] = []
        func step<T>(_ name: String, _ body: () async throws -> (T, String)) async throws -> T {
            progress("• \(name) ...")
            let began = Date()
            let (value, detail) = try await body()
            let seconds = Date().timeIntervalSince(began)
            steps.append(.init(name: name, seconds: seconds, detail: detail))
            progress("  \(detail) (\(HumanDuration.format(seconds)))")
            return value
        }
        // PostgreSQL runs as an unprivileged user when we are root: give it a copy of this program
        // it can execute for archive_command and restore_command.
        var exe = binary
        if user != nil {
            exe = work + "/lifeboat"
            try FileManager.default.copyItem(atPath: binary, toPath: exe)
            chmod(exe, 0o755)
        }
        let binaries = try PostgresBinaries.locate()
        let repoPath = work + "/repository"
        let keyFile = work + "/repository.key"
        let config = work + "/lifeboat.yaml"
        try FileManager.default.createDirectory(atPath: repoPath, withIntermediateDirectories: true)
        let secret = Hex.encode((0..<32).map { _ in UInt8.random(in: 0...255) })
        try (secret + "\n").write(toFile: keyFile, atomically: false, encoding: .utf8)
        chmod(keyFile, 0o600)
        try "repo: \(repoPath)\nkey_file: \(keyFile)\n".write(toFile: config, atomically: false, encoding: .utf8)
        for p in [repoPath, keyFile, config] { user?.own(p) }

        let repo = try await step("create an encrypted repository") {
            let r = try await Repository.initialize(store: FileStore(root: repoPath), key: .keyFile(keyFile), logger: logger)
            return (r, "\(repoPath), \(r.config.compression.rawValue), AES-256-GCM")
        }

        let production = LocalCluster(dataDirectory: work + "/production", port: LocalCluster.freePort(), socketDirectory: work,
            binaries: binaries, user: user)
        let invocation = LifeboatInvocation(executable: exe, arguments: ["--config", config])
        try await step("initdb a throwaway 'production' cluster archiving WAL to it") {
            try await production.initialize(extraSettings: [
                "archive_mode": "on", "archive_command": invocation.archiveCommand,
                "shared_buffers": "64MB", "max_wal_size": "512MB", "log_min_messages": "warning",
            ])
            try await production.start(timeout: 120)
            return ((), "PostgreSQL \(binaries.directory) on port \(production.port)")
        }
        clusters.append(production)
        let endpoint = production.endpoint()
        let pgbench = binaries.path("pgbench")
        let pgbenchConn = ["-h", production.socketDirectory, "-p", String(production.port), "-U", production.superuser, "postgres"]

        try await step("load pgbench data (scale \(scale))") {
            try await CommandRunner.run(pgbench, ["-i", "-s", String(scale), "-q"] + pgbenchConn, as: user, timeout: 1200)
            return ((), "\(scale * 100_000) accounts")
        }

        let record = try await step("take a base backup while pgbench writes") {
            let outputPath = work + "/pgbench-during-backup.log"
            let load = try CommandRunner.spawn(pgbench, ["-c", "2", "-T", "6", "-n"] + pgbenchConn, as: user,
                outputPath: outputPath)
            try await Task.sleep(for: .seconds(1))
            let result = try await BackupEngine(repository: repo, logger: logger).run(BackupOptions(pgdata: production.dataDirectory,
                endpoint: endpoint))
            let status = try await load.wait(timeout: 120)
            guard status == 0 else { throw LifeboatError(.externalCommand, "pgbench failed during the backup (status \(status))") }
            let b = result.backup
            return (b, "backup \(b.id): read \(Self.mib(b.logicalBytes)), stored \(Self.mib(b.newStoredBytes)) after dedup and zstd")
        }

        let session = try await PostgresSession.connect(endpoint, logger: logger)
        defer { Task { await session.close() } }
        let (before, target): (Fingerprint, Date) = try await step("more pgbench traffic, then note the last good moment T") {
            try await CommandRunner.run(pgbench, ["-c", "2", "-t", "300", "-n"] + pgbenchConn, as: user, timeout: 600)
            let fp = try await Fingerprint.read(session)
            try await Task.sleep(for: .milliseconds(100))
            let t = try Timestamp.parse(try await session.value("SELECT now()::text") ?? "")
            return ((fp, t), "T = \(Timestamp.format(t)); \(fp.history) transactions so far, balances sum \(fp.accounts)")
        }

        let disaster = try await step("the disaster: DROP TABLE pgbench_accounts") {
            try await Task.sleep(for: .milliseconds(100))
            _ = try await session.query("DROP TABLE pgbench_accounts CASCADE")
            let at = Date()
            // Make the disaster's WAL reach the archive, as archive_timeout would.
            // Named from the switch itself: the segment it completed holds the DROP's commit.
            let segment = try await session.value("SELECT pg_walfile_name(pg_switch_wal())") ?? ""
            let deadline = Date().addingTimeInterval(60)
            while try await session.value("SELECT \(PostgresArchive.archivedCondition(segment))") != "true" {
                guard Date() < deadline else { throw LifeboatError(.timeout, "WAL segment \(segment) was not archived") }
                try await Task.sleep(for: .milliseconds(50))
            }
            let lag = Date().timeIntervalSince(at)
            return (at, "table gone; its WAL archived \(String(format: "%.2f", lag)) s after the DROP")
        }
        _ = disaster

        let restoreBegan = Date()
        let restorePort = LocalCluster.freePort()
        let restoreReport = try await step("restore to T into a new directory and start it") {
            let options = RestoreOptions(destination: work + "/restored", target: .time(target), invocation: invocation,
                archiveMode: .off, start: true, port: restorePort, socketDirectory: work, recoveryTimeout: 600)
            let r = try await RestoreEngine(repository: repo, logger: logger).run(options)
            return (r, "backup \(r.backupID) + WAL replayed to \(r.achievedTime.map(Timestamp.format) ?? "?"), promoted on timeline \(r.timeline ?? 0)")
        }
        let recoverySeconds = Date().timeIntervalSince(restoreBegan)
        let restored = LocalCluster(dataDirectory: work + "/restored", port: restorePort, socketDirectory: work, binaries: binaries,
            user: user)
        clusters.append(restored)

        let (after, checks): (Fingerprint, [String: Bool]) = try await step("verify the restored data") {
            let check = try await PostgresSession.connect(restored.endpoint(), logger: logger)
            let fp = try await Fingerprint.read(check)
            await check.close()
            let checks: [String: Bool] = [
                "pgbench_accounts is back with every row": fp.accountRows == before.accountRows,
                "every transaction before T is there": fp.history == before.history,
                "balances equal those at T": fp.accounts == before.accounts && fp.tellers == before.tellers,
                "pgbench invariant holds": fp.invariantHolds,
            ]
            let passed = checks.values.filter { $0 }.count
            return ((fp, checks), "\(passed)/\(checks.count) checks passed: \(fp.accountRows) accounts, \(fp.history) transactions")
        }

        let lost = max(0, before.history - after.history)
        return DemoReport(workDirectory: work, steps: steps, backupID: record.id, backupLogicalBytes: record.logicalBytes,
            backupStoredBytes: record.newStoredBytes, targetTime: target, achievedTime: restoreReport.achievedTime,
            recoverySeconds: recoverySeconds, transactionsLost: lost,
            dataLossWindowSeconds: restoreReport.achievedTime.map { target.timeIntervalSince($0) },
            checks: checks, passed: !checks.values.contains(false))
    }

    /// What the data looked like: row counts and balance sums.
    struct Fingerprint: Sendable {
        var accountRows: Int
        var history: Int
        var accounts: Int64
        var tellers: Int64
        var branches: Int64
        var deltas: Int64
        var invariantHolds: Bool { accounts == tellers && tellers == branches && branches == deltas }

        static func read(_ s: PostgresSession) async throws -> Fingerprint {
            let r = try await s.query("""
                SELECT (SELECT count(*) FROM pgbench_accounts), (SELECT count(*) FROM pgbench_history),
                       (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(tbalance) FROM pgbench_tellers),
                       (SELECT sum(bbalance) FROM pgbench_branches), (SELECT coalesce(sum(delta), 0) FROM pgbench_history)
                """)[0]
            func i(_ k: Int) -> Int64 { Int64(r[k] ?? "") ?? Int64.min }
            return Fingerprint(accountRows: Int(i(0)), history: Int(i(1)), accounts: i(2), tellers: i(3), branches: i(4), deltas: i(5))
        }
    }

    static func mib(_ n: UInt64) -> String { String(format: "%.1f MiB", Double(n) / 1_048_576) }

}

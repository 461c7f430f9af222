import Foundation
import LifeboatCore
import LifeboatPostgres
import Logging

/// The checks run on a restored cluster: it answers and is promoted, the user's SQL assertions hold,
/// pgbench's invariant holds where its tables exist, no page checksum failed, and `pg_amcheck`
/// finds no corruption.
public struct DrillVerifier: Sendable {
    public var endpoint: PostgresEndpoint
    /// A cluster on this host (pg_amcheck runs only there); nil for a remote one (Aurora).
    public var cluster: LocalCluster?
    public var logger: Logger

    public init(cluster: LocalCluster, logger: Logger) {
        endpoint = cluster.endpoint()
        self.cluster = cluster
        self.logger = logger
    }

    /// A cluster reached over the network: every check but pg_amcheck.
    public init(endpoint: PostgresEndpoint, logger: Logger) {
        self.endpoint = endpoint
        cluster = nil
        self.logger = logger
    }

    public func run(_ userChecks: [DrillCheck], amcheck runAmcheck: Bool = true) async throws -> [DrillReport.CheckResult] {
        var results: [DrillReport.CheckResult] = []
        let session = try await PostgresSession.connect(endpoint, logger: logger)
        defer { Task { await session.close() } }
        func record(_ name: String, _ passed: Bool, _ detail: String) {
            results.append(.init(name: name, passed: passed, detail: detail))
        }
        let version = try? await session.value("SELECT version()")
        record("server answers", version != nil, version ?? "no answer")
        let recovering = try? await session.value("SELECT pg_is_in_recovery()")
        record("promoted (accepts writes)", recovering == "false", "pg_is_in_recovery = \(recovering ?? "?")")

        for check in userChecks {
            do {
                let value = try await session.value(check.sql)
                record(check.name, Self.evaluate(check, value), "\(check.sql) → \(value ?? "NULL")\(Self.expectation(check))")
            } catch let error as LifeboatError {
                record(check.name, false, error.message)
            }
        }

        if try await session.value("SELECT count(*) FROM pg_tables WHERE tablename IN ('pgbench_accounts','pgbench_tellers','pgbench_branches','pgbench_history')") == "4" {
            let row = try await session.query("""
                SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(tbalance) FROM pgbench_tellers),
                       (SELECT sum(bbalance) FROM pgbench_branches), (SELECT coalesce(sum(delta),0) FROM pgbench_history)
                """)[0]
            let values = row.map { $0 ?? "NULL" }
            record("pgbench balances agree", Set(values).count == 1, values.joined(separator: " = "))
        }

        if try await session.value("SHOW data_checksums") == "on" {
            let failures = try await session.value("SELECT coalesce(sum(checksum_failures), 0) FROM pg_stat_database") ?? "?"
            record("no page checksum failures", failures == "0", "checksum_failures = \(failures)")
        }

        if runAmcheck, let cluster, case let amcheck = cluster.binaries.path("pg_amcheck"), FileManager.default.isExecutableFile(atPath: amcheck) {
            let result = try await CommandRunner.run(amcheck,
                ["-h", cluster.socketDirectory, "-p", String(cluster.port), "-U", cluster.superuser, "--install-missing", "--all",
                 "--heapallindexed"], as: cluster.user, check: false, timeout: 3600)
            let tail = result.output.split(separator: "\n").suffix(3).joined(separator: " ")
            record("pg_amcheck finds no corruption", result.status == 0, result.status == 0 ? "all relations checked" : tail)
        }
        return results
    }

    static func evaluate(_ check: DrillCheck, _ value: String?) -> Bool {
        if let expect = check.expect { return value == expect }
        guard let value, let number = Double(value) else { return check.min == nil && check.max == nil && value != nil }
        if let min = check.min, number < min { return false }
        if let max = check.max, number > max { return false }
        return true
    }

    static func expectation(_ check: DrillCheck) -> String {
        if let e = check.expect { return " (expected \(e))" }
        switch (check.min, check.max) {
        case (let lo?, let hi?): return " (expected \(lo) to \(hi))"
        case (let lo?, nil): return " (expected at least \(lo))"
        case (nil, let hi?): return " (expected at most \(hi))"
        default: return ""
        }
    }
}

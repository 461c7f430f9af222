import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository
import LifeboatTesting
import Logging
import Testing

/// A real Patroni 4.1.5 cluster (three nodes, etcd, synchronous mode) protected by Lifeboat on every
/// node, through the failures HA clusters have: one cluster, the scenarios in sequence.
@Suite(.serialized) struct PatroniClusterTests {
    /// One numbered row committed every 0.2 s on whichever node leads; `sent` is before the insert
    /// was sent, `acknowledged` after its commit returned.
    actor TickWriter {
        struct Tick: Sendable {
            var n: Int
            var sent: Date
            var acknowledged: Date
        }

        let cluster: PatroniCluster
        private(set) var ticks: [Tick] = []
        private var stopped = false
        private var failures = 0

        init(cluster: PatroniCluster) { self.cluster = cluster }

        func stop() { stopped = true }

        func run() async {
            var session: PostgresSession?
            var n = 1
            while !stopped {
                if session == nil { session = await leaderSession() }
                guard let open = session else {
                    try? await Task.sleep(for: .milliseconds(200))
                    continue
                }
                let sent = Date()
                // A connection to a node that died may never answer: closing it fails the query.
                let watchdog = Task {
                    try await Task.sleep(for: .seconds(5))
                    await open.close()
                }
                defer { watchdog.cancel() }
                do {
                    // ON CONFLICT: a row committed just before the leader died is not lost by a retry.
                    _ = try await open.query("INSERT INTO ticks (n, pad) VALUES (\(n), repeat('t', 100)) ON CONFLICT (n) DO NOTHING")
                    ticks.append(Tick(n: n, sent: sent, acknowledged: Date()))
                    n += 1
                    try? await Task.sleep(for: .milliseconds(200))
                } catch {
                    failures += 1
                    await open.close()
                    session = nil
                    try? await Task.sleep(for: .milliseconds(200))
                }
            }
            await session?.close()
        }

        private func leaderSession() async -> PostgresSession? {
            guard let members = try? await cluster.members() else { return nil }
            for member in members where member.role == "leader" {
                guard let node = cluster.node(member.name),
                    let session = try? await PostgresSession.connect(node.endpoint, logger: TestSandbox.logger())
                else { continue }
                if (try? await session.value("SELECT pg_is_in_recovery()::text")) == "false" { return session }
                await session.close()
            }
            return nil
        }
    }

    static func query(_ node: PatroniCluster.Node, _ sql: String) async throws -> [[String?]] {
        let session = try await PostgresSession.connect(node.endpoint, logger: TestSandbox.logger())
        do {
            let rows = try await session.query(sql)
            await session.close()
            return rows
        } catch {
            await session.close()
            throw error
        }
    }

    /// Rows 1...k exactly, one by one.
    static func expectRows(_ server: TestPostgres, exactly k: Int, _ what: String) async throws {
        let row = try await server.query("SELECT count(*), coalesce(min(n), 0), coalesce(max(n), 0), count(DISTINCT n) FROM ticks").first
        #expect(row?[0] == String(k) && row?[2] == String(k) && row?[3] == String(k) && (k == 0 || row?[1] == "1"),
            "\(what): rows 1...\(k) expected, found count/min/max/distinct \(String(describing: row))")
    }

    static func waitForTimeline(_ timeline: UInt32, in repo: TestRepository, segment: Bool, timeout: TimeInterval) async throws -> Date {
        let repository = try await repo.reopen()
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let graph = try await repository.timelineGraph(segmentSize: 16 << 20)
            if graph.exists(timeline), !segment || graph.lastSegment(on: timeline).map({ graph.timeline(ofSegment: $0, on: timeline) == timeline }) == true {
                return Date()
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw LifeboatError(.timeout, "nothing of timeline \(timeline) archived within \(Int(timeout))s")
    }

    @Test(.enabled(if: PatroniCluster.available, "needs Patroni and etcd: scripts/install-deps --tests installs them"),
        .timeLimit(.minutes(20)))
    func aPatroniClusterProtectedByLifeboatThroughAFailover() async throws {
        let sandbox = try TestSandbox("patroni")
        let repo = try await TestRepository.make(in: sandbox)
        let cluster = try await PatroniCluster(sandbox: sandbox, repository: repo)
        var clusters = [cluster]
        do {
            try await scenarios(sandbox: sandbox, repo: repo, cluster: cluster, clusters: &clusters)
        } catch {
            for c in clusters { await c.stop() }
            Issue.record("the Patroni scenarios failed: \(error); logs kept in \(sandbox.root)")
            return
        }
        for c in clusters { await c.stop() }
        await sandbox.remove()
    }

    func scenarios(sandbox: TestSandbox, repo: TestRepository, cluster: PatroniCluster, clusters: inout [PatroniCluster]) async throws {
        let began = Date()
        // Progress goes to stderr and to a file in the sandbox (kept when the test fails).
        let progress = sandbox.path("progress.log")
        _ = FileManager.default.createFile(atPath: progress, contents: Data())
        func say(_ line: String) {
            let text = Data("[patroni +\(Int(Date().timeIntervalSince(began)))s] \(line)\n".utf8)
            FileHandle.standardError.write(text)
            if let handle = FileHandle(forWritingAtPath: progress) {
                handle.seekToEndOfFile()
                handle.write(text)
                try? handle.close()
            }
        }
        try await cluster.addNode("node1")
        var leader = try await cluster.waitUntilHealthy(replicas: 0)
        try await cluster.addNode("node2")
        try await cluster.addNode("node3")
        leader = try await cluster.waitUntilHealthy(replicas: 2)
        say("leader \(leader.name), two replicas streaming")
        _ = try await Self.query(leader, "CREATE TABLE ticks (n int PRIMARY KEY, pad text, at timestamptz DEFAULT clock_timestamp())")
        let pgbench = try PostgresBinaries.locate(majorVersion: "15").path("pgbench")
        let bench = ["-h", "127.0.0.1", "-p", String(leader.pgPort), "-U", "postgres"]
        try await CommandRunner.run(pgbench, ["-i", "-s", "2", "-q"] + bench, as: sandbox.user, timeout: 120)

        let writer = TickWriter(cluster: cluster)
        let writing = Task { await writer.run() }
        let load = Task { try await CommandRunner.run(pgbench, ["-T", "15", "-c", "2", "-n"] + bench, as: sandbox.user, check: false, timeout: 120) }
        // The backup below is checked for the writer's rows: it may not start before every node has
        // replayed some (a fast backup could otherwise finish before the first row reached it).
        let replayed = Date().addingTimeInterval(60)
        for name in ["node1", "node2", "node3"] {
            guard let node = cluster.node(name) else { continue }
            while Date() < replayed, Int(((try? await Self.query(node, "SELECT count(*) FROM ticks"))?.first?[0] ?? nil) ?? "0") ?? 0 == 0 {
                try await Task.sleep(for: .milliseconds(100))
            }
        }

        // 1. `serve` on every node: Patroni's view elects one node, the first healthy replica by name,
        //    and only that node backs up (from the standby; the primary only switches WAL).
        var configs: [String: String] = [:]
        for name in ["node1", "node2", "node3"] {
            guard let node = cluster.node(name) else { continue }
            configs[name] = try sandbox.file("\(name)-lifeboat.yaml", """
                repo: \(repo.path)
                key_file: \(repo.keyFile)
                pgdata: \(node.dataDirectory)
                pghost: 127.0.0.1
                pgport: \(node.pgPort)
                pguser: postgres
                serve:
                  listen: 'off'
                  backup_every: 1h
                  verify_every: 'off'
                  expire: false
                  ha:
                    patroni: \(node.restURL)

                """)
        }
        let serveRuns = try await withThrowingTaskGroup(of: (String, CommandResult).self) { group in
            for (name, config) in configs {
                group.addTask {
                    (name, try await LifeboatCLI.run(["serve", "--once", "--config", config, "--state-file", sandbox.path("\(name)-serve.json")]))
                }
            }
            var results: [String: CommandResult] = [:]
            for try await (name, result) in group { results[name] = result }
            return results
        }
        let members = try await cluster.members()
        let expected = members.filter { $0.role != "leader" && $0.state == "streaming" }.map(\.name).sorted().first
        let backedUp = serveRuns.filter { $0.value.output.contains("backup: ok") }.map(\.key)
        #expect(backedUp == [expected].compactMap { $0 }, "exactly the elected node backs up: \(serveRuns.mapValues { $0.output + $0.errors })")
        let backups = try await repo.reopen().backups()
        #expect(backups.count == 1)
        let standbyBackup = try #require(backups.first)
        #expect(standbyBackup.source?.role == .standby && standbyBackup.source?.node.hasSuffix("/" + (expected ?? "?")) == true,
            "\(String(describing: standbyBackup.source))")
        say("backup \(standbyBackup.id) taken on \(expected ?? "?") (a replica) while pgbench and the writer ran")
        _ = try await load.value

        // 2. The leader crashes (kill -9 of Patroni and PostgreSQL): a replica takes over on timeline 2.
        try await Task.sleep(for: .seconds(2))
        let crashedAt = Date()
        cluster.crash(leader)
        let old = leader
        say("crashed \(old.name)")
        leader = try await cluster.waitForNewLeader(not: old.name)
        let promotedAt = Date()
        let historyAt = try await Self.waitForTimeline(2, in: repo, segment: false, timeout: 120)
        say("crash of \(old.name): \(leader.name) leads after \(String(format: "%.1f", promotedAt.timeIntervalSince(crashedAt))) s; timeline 2's history archived \(String(format: "%.1f", historyAt.timeIntervalSince(crashedAt))) s after the crash")
        try await Task.sleep(for: .seconds(3))
        _ = try await Self.query(leader, "SELECT pg_switch_wal()")
        let segmentAt = try await Self.waitForTimeline(2, in: repo, segment: true, timeout: 60)
        say("first timeline-2 segment archived \(String(format: "%.1f", segmentAt.timeIntervalSince(crashedAt))) s after the crash")
        let verifyBefore = try await LifeboatCLI.run(["verify", "--config", repo.configFile])
        #expect(verifyBefore.status == 0, "verify after the failover: \(verifyBefore.output) \(verifyBefore.errors)")
        say("verify passes after the failover")

        // 3. The old leader rejoins (pg_rewind) as a replica; verify still passes.
        try cluster.start(old)
        say("restarting \(old.name)")
        leader = try await cluster.waitUntilHealthy(replicas: 2, timeout: 180)
        say("\(old.name) rejoined as a replica")
        await writer.stop()
        say("stopping the writer")
        await writing.value
        let ticks = await writer.ticks
        say("writer stopped after \(ticks.count) rows")
        _ = try await Self.query(leader, "SELECT pg_switch_wal()")
        let lastSegment = try await Self.query(leader, "SELECT pg_walfile_name(pg_current_wal_lsn())").first?[0] ?? nil
        try await Task.sleep(for: .seconds(1))
        _ = try await Self.query(leader, "SELECT pg_switch_wal()")
        let repository = try await repo.reopen()
        let deadline = Date().addingTimeInterval(60)
        while let name = lastSegment, let seg = WALSegment(name: name), Date() < deadline,
            try await repository.store.info(Repository.walKey(.segment(seg))) == nil
        {
            try await Task.sleep(for: .milliseconds(200))
        }
        let verifyAfter = try await LifeboatCLI.run(["verify", "--config", repo.configFile])
        #expect(verifyAfter.status == 0, "verify after the rejoin: \(verifyAfter.output) \(verifyAfter.errors)")
        let info = try await RepositorySummary.make(repository)
        say("writer acknowledged \(ticks.count) rows; repository: timelines \(info.timelines.map { "\($0.timeline):\($0.segments)" }.joined(separator: " ")), abandoned tails: \(info.timelines.compactMap(\.abandonedTail))")
        // The crashed leader may have archived WAL past the fork (its .partial and the segment it
        // was writing): that tail is reported as abandoned, on timeline 1 only, and is not "latest".
        #expect(info.timelines.allSatisfy { $0.abandonedTail == nil || $0.timeline == 1 }, "only the old leader's timeline has an abandoned tail")
        #expect(info.latestTimeline == 2)

        // 4. Point in time before the crash (on timeline 1, read through timeline 2's history):
        //    exactly the rows acknowledged before the target.
        let beforeCrash = try #require(ticks.last { $0.acknowledged < crashedAt.addingTimeInterval(-1) })
        let next = try #require(ticks.first { $0.n == beforeCrash.n + 1 })
        let target = Date(timeIntervalSince1970: (beforeCrash.acknowledged.timeIntervalSince1970 + next.sent.timeIntervalSince1970) / 2)
        let (atTime, pitr) = try await TestRestore.restore(repo, sandbox: sandbox, name: "pitr-before-crash", target: .time(target))
        try await Self.expectRows(pitr, exactly: beforeCrash.n, "PITR to \(Timestamp.format(target))")
        let balances = try await pitr.pgbenchBalances()
        #expect(balances.accounts == balances.tellers && balances.tellers == balances.branches, "\(balances)")
        say("PITR before the crash: \(beforeCrash.n) rows, timeline \(atTime.targetTimeline)")
        try await pitr.stop()

        // 5. The latest point: every acknowledged row, none lost in the failover.
        let (_, latest) = try await TestRestore.restore(repo, sandbox: sandbox, name: "pitr-latest", target: .latest)
        try await Self.expectRows(latest, exactly: ticks.count, "PITR to the latest point")
        try await latest.stop()
        say("PITR latest: all \(ticks.count) acknowledged rows")

        // 6. A fourth node built by `lifeboat patroni create-replica` (no basebackup fallback).
        let node4 = try await cluster.addNode("node4", createReplicaMethods: ["lifeboat"])
        leader = try await cluster.waitUntilHealthy(replicas: 3, timeout: 240)
        let node4Log = (try? String(contentsOfFile: node4.logFile, encoding: .utf8)) ?? ""
        #expect(node4Log.contains("replica has been created using lifeboat"), "\(node4Log.suffix(2000))")
        #expect(try await Self.query(node4, "SELECT count(*) FROM ticks").first?[0] == String(ticks.count))
        say("node4 created from the repository, streaming")

        // 7. A new cluster bootstrapped from the repository to a point in time after the failover.
        let afterFailover = try #require(ticks.last { $0.acknowledged > promotedAt.addingTimeInterval(2) && $0.n < ticks.count })
        let following = try #require(ticks.first { $0.n == afterFailover.n + 1 })
        let target2 = Date(timeIntervalSince1970: (afterFailover.acknowledged.timeIntervalSince1970 + following.sent.timeIntervalSince1970) / 2)
        let copyRepo = try await TestRepository.make(in: sandbox, name: "copy-repo", passphrase: "the copy's own key")
        let copy = try await PatroniCluster(sandbox: sandbox, scope: "copy", repository: repo, etcdPort: cluster.etcdPort)
        clusters.append(copy)
        let copyLeader = try await copy.addNode("copy1",
            bootstrapMethod: "command: \(TestSandbox.lifeboatBinary) patroni bootstrap --config \(repo.configFile)\ntarget_time: '\(Timestamp.format(target2))'",
            archiveConfig: copyRepo.configFile)
        _ = try await copy.waitUntilHealthy(replicas: 0, timeout: 240)
        let copyRows = try await Self.query(copyLeader, "SELECT count(*), max(n) FROM ticks").first
        #expect(copyRows?[0] == String(afterFailover.n) && copyRows?[1] == String(afterFailover.n),
            "the bootstrapped cluster has rows 1...\(afterFailover.n): \(String(describing: copyRows))")
        _ = try await Self.query(copyLeader, "INSERT INTO ticks (n) VALUES (1000000)")
        _ = try await Self.query(copyLeader, "SELECT pg_switch_wal()")
        try await Task.sleep(for: .seconds(2))
        #expect(try await RepositorySummary.make(try await copyRepo.reopen()).walFiles > 0, "the new cluster archives into its own repository")
        #expect(try await RepositorySummary.make(try await repo.reopen()).latestTimeline == 2, "and never into the source's")
        say("cluster 'copy' bootstrapped to \(Timestamp.format(target2)): \(afterFailover.n) rows")

        // 8. A restored copy of a Patroni node starts where the node's paths do not exist.
        for c in clusters { await c.stop() }
        let gone = sandbox.path("gone")
        try FileManager.default.createDirectory(atPath: gone, withIntermediateDirectories: true)
        for name in ["node1", "node2", "node3", "node4"] {
            try FileManager.default.moveItem(atPath: sandbox.path(name), toPath: gone + "/" + name)
        }
        let (moved, server) = try await TestRestore.restore(repo, sandbox: sandbox, name: "elsewhere", target: .immediate, backupID: standbyBackup.id)
        #expect(moved.started)
        let hba = try await server.value("SHOW hba_file") ?? ""
        #expect(hba.hasPrefix(server.cluster.dataDirectory + "/"), "hba_file \(hba) is the copy's own")
        #expect(Int(try await server.value("SELECT count(*) FROM ticks") ?? "") ?? 0 > 0)
        // The end of a standby's backup is its stop LSN, not the first consistent point before it.
        #expect((moved.achievedLSN.flatMap(LSN.init) ?? LSN(0)) >= standbyBackup.stopLSN,
            "reached \(moved.achievedLSN ?? "?"), the backup stopped at \(standbyBackup.stopLSN)")
        try await server.stop()
        say("a copy of \(expected ?? "?")'s backup started with the node's paths gone (\(moved.configurationChanges.count) setting(s) neutralised)")
    }
}

import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatRunbooks
import LifeboatTesting
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Runbooks driven through the binary against a real PostgreSQL and a real (tiny) application.
@Suite(.serialized) struct RunbookTests {
    struct Setup {
        let sandbox: TestSandbox
        let repo: TestRepository
        let pg: TestPostgres
        let app: TestApp
        let env: [String: String]
        let common: [String]

        typealias TestApp = TinyApp

        static func make(_ name: String) async throws -> Setup {
            let sandbox = try TestSandbox(name)
            let repo = try await TestRepository.make(in: sandbox)
            let pg = try await TestPostgres.start(in: sandbox, archiveTo: repo)
            _ = try await pg.query("CREATE TABLE users (id int)")
            _ = try await pg.query("INSERT INTO users SELECT generate_series(1, 500)")
            let app = try TinyApp(sandbox: sandbox, psql: pg.cluster.binaries.path("psql"))
            try app.pointAt(pg)
            try await app.start()
            var env = LifeboatCLI.environment(for: pg)
            env["LIFEBOAT_STATE_DIR"] = sandbox.path("runs")
            return Setup(sandbox: sandbox, repo: repo, pg: pg, app: app, env: env, common: ["--config", repo.configFile])
        }

        func failoverVars(restorePort: Int, verifySQL: String = "SELECT count(*) FROM users") -> [String] {
            [
                "restore_dir=\(sandbox.path("failover"))", "restore_port=\(restorePort)", "socket_dir=\(sandbox.root)",
                "endpoint_file=\(app.endpointFile)",
                "endpoint_value=host=\(sandbox.root) port=\(restorePort) user=\(pg.cluster.superuser) dbname=postgres",
                "stop_app=\(app.stopCommand)", "start_app=\(app.startCommand)", "health_url=\(app.healthURL)", "verify_sql=\(verifySQL)",
            ].flatMap { ["--var", $0] }
        }

        func cleanup() async {
            await app.stop()
            await sandbox.remove()
        }
    }

    /// The seed's emergency failover, end to end: production dies, the runbook restores the latest
    /// point into a new cluster and the application serves from it.
    @Test func emergencyFailoverRestoresAndTheAppServesFromTheNewCluster() async throws {
        let s = try await Setup.make("failover")
        defer { Task { await s.cleanup() } }
        #expect(try await LifeboatCLI.run(["backup"] + s.common, environment: s.env).status == 0)
        let before = await s.app.health()
        #expect(before?.0 == 200 && before?.1 == "rows=500 port=\(s.pg.port)")
        _ = try await s.pg.query("INSERT INTO users SELECT generate_series(501, 600)")
        try await s.pg.archiveCurrentWAL()
        s.pg.cluster.kill()  // the disaster: production is gone

        let port = TestSandbox.freePort()
        let run = try await LifeboatCLI.run(["runbook", "run", "builtin:emergency-failover", "--yes", "--json"] + s.common
            + s.failoverVars(restorePort: port), environment: s.env, timeout: 600)
        #expect(run.status == 0, "\(run.errors)")
        let result = try LifeboatCLI.json(run)
        #expect(result["status"] as? String == "succeeded")
        let steps = try #require(result["steps"] as? [[String: Any]])
        #expect(steps.map { $0["name"] as? String ?? "" } == ["stop-application", "final-backup", "restore-latest", "verify-restored",
            "switch-endpoint", "start-application", "health-check"])
        // Production was dead, so the final backup failed and the runbook went on as it says.
        #expect(steps[1]["status"] as? String == "failed")
        #expect(steps.filter { $0["status"] as? String == "ok" }.count == 6)
        #expect(steps.allSatisfy { ($0["seconds"] as? Double ?? -1) >= 0 })
        let after = await s.app.health()
        #expect(after?.0 == 200 && after?.1 == "rows=600 port=\(port)", "\(String(describing: after))")
        #expect(try String(contentsOfFile: s.app.endpointFile, encoding: .utf8).contains("port=\(port)"))
        let restored = TestPostgres.attach(s.sandbox.path("failover"), port: port, like: s.pg)
        try await restored.stop()
    }

    /// Killed between steps, and inside a step: resume finishes without repeating finished steps.
    @Test func killedRunsResumeWithoutRepeatingSteps() async throws {
        let sandbox = try TestSandbox("resume")
        defer { Task { await sandbox.remove() } }
        let counter = sandbox.path("counter")
        let book = try sandbox.file("count.yaml", """
            name: counting
            steps:
              - { name: one, action: shell, with: { command: "echo one >> \(counter)" } }
              - { name: two, action: shell, with: { command: "echo two >> \(counter)" } }
              - { name: three, action: shell, with: { command: "echo three-start >> \(counter) && sleep 7.31 && echo three-end >> \(counter)" } }
              - { name: four, action: shell, with: { command: "echo four >> \(counter)" } }
            """)
        let env = ["LIFEBOAT_STATE_DIR": sandbox.path("runs")]
        func lines() -> [String] { ((try? String(contentsOfFile: counter, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init) }
        func runID() -> String { RunJournal.list(directory: sandbox.path("runs")).last?.id ?? "" }

        // 1. Between steps: killed right after step two is journaled as finished.
        let killed = try await LifeboatCLI.run(["runbook", "run", book], environment: env.merging(["LIFEBOAT_FAULT_KILL_AT": "runbook.finished:two"]) { $1 })
        #expect(killed.status == 128 + 9)
        #expect(lines() == ["one", "two"])
        let first = runID()
        let resumed = try await LifeboatCLI.run(["runbook", "resume", first], environment: env)
        #expect(resumed.status == 0, "\(resumed.errors)")
        #expect(resumed.output.contains("two: done in an earlier run, not repeated"))
        #expect(lines() == ["one", "two", "three-start", "three-end", "four"])
        #expect(try await LifeboatCLI.run(["runbook", "resume", first], environment: env).status == 2, "a finished run is not run again")

        // 2. Inside a step: kill -9 while step three runs.
        try FileManager.default.removeItem(atPath: counter)
        let outputPath = sandbox.path("run2.out")
        let child = try CommandRunner.spawn(TestSandbox.lifeboatBinary, ["runbook", "run", book], environment: env, outputPath: outputPath)
        let deadline = Date().addingTimeInterval(30)
        while !lines().contains("three-start"), Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
        child.signal(SIGKILL)
        #expect(try await child.wait(timeout: 10) == 128 + 9)
        _ = try? await CommandRunner.run("/usr/bin/pkill", ["-f", "sleep 7.31"], check: false)
        #expect(lines() == ["one", "two", "three-start"])
        let second = runID()
        #expect(second != first)
        let resumed2 = try await LifeboatCLI.run(["runbook", "resume", second], environment: env)
        #expect(resumed2.status == 0, "\(resumed2.errors)")
        #expect(resumed2.output.contains("three: was interrupted in an earlier run; running it again"))
        // One and two ran once; the interrupted step ran again from its start; four once.
        #expect(lines() == ["one", "two", "three-start", "three-start", "three-end", "four"])
    }

    /// --dry-run changes nothing on disk, in the database or in the application; an unconfirmed
    /// destructive step does nothing either.
    @Test func dryRunAndRefusedConfirmationChangeNothing() async throws {
        let s = try await Setup.make("dryrun")
        defer { Task { await s.cleanup() } }
        #expect(try await LifeboatCLI.run(["backup"] + s.common, environment: s.env).status == 0)
        // Let the archiver finish what the backup started (its .backup history file, the switch),
        // so the snapshot below is of a settled repository.
        try await s.pg.archiveCurrentWAL()
        let endpointBefore = try String(contentsOfFile: s.app.endpointFile, encoding: .utf8)
        let repoBefore = try FileManager.default.subpathsOfDirectory(atPath: s.repo.path).sorted()
        let port = TestSandbox.freePort()

        let dry = try await LifeboatCLI.run(["runbook", "run", "builtin:emergency-failover", "--dry-run"] + s.common
            + s.failoverVars(restorePort: port), environment: s.env)
        #expect(dry.status == 0, "\(dry.errors)")
        #expect(dry.output.contains("DRY RUN"))
        #expect(dry.output.contains("7. health-check"))
        // A refused confirmation (no terminal, no --yes): exit 16, the first step did not run.
        let refused = try await LifeboatCLI.run(["runbook", "run", "builtin:emergency-failover"] + s.common
            + s.failoverVars(restorePort: port), environment: s.env)
        #expect(refused.status == 16, "\(refused.errors)")

        #expect(try String(contentsOfFile: s.app.endpointFile, encoding: .utf8) == endpointBefore)
        #expect(!FileManager.default.fileExists(atPath: s.sandbox.path("failover")))
        let repoAfter = try FileManager.default.subpathsOfDirectory(atPath: s.repo.path).sorted()
        #expect(repoAfter == repoBefore, "added: \(Set(repoAfter).subtracting(repoBefore)), removed: \(Set(repoBefore).subtracting(repoAfter))")
        #expect(try await s.pg.value("SELECT count(*) FROM users") == "500")
        let health = await s.app.health()
        #expect(health?.0 == 200, "the application was not stopped")
        // The dry run left no journal; the refused run's journal shows nothing but the refusal.
        let runs = RunJournal.list(directory: s.sandbox.path("runs"))
        #expect(runs.count == 1)
        #expect(runs[0].events.filter { $0.event == .stepStarted }.isEmpty)
    }

    /// A failing verification stops the runbook before the endpoint switch.
    @Test func failingVerificationStopsBeforeTheSwitch() async throws {
        let s = try await Setup.make("verifyfail")
        defer { Task { await s.cleanup() } }
        #expect(try await LifeboatCLI.run(["backup"] + s.common, environment: s.env).status == 0)
        try await s.pg.archiveCurrentWAL()
        let endpointBefore = try String(contentsOfFile: s.app.endpointFile, encoding: .utf8)
        let port = TestSandbox.freePort()
        let run = try await LifeboatCLI.run(["runbook", "run", "builtin:emergency-failover", "--yes", "--json"] + s.common
            + s.failoverVars(restorePort: port, verifySQL: "SELECT count(*) FROM table_that_is_not_there"), environment: s.env, timeout: 600)
        #expect(run.status == 15, "\(run.errors)")
        #expect(run.errors.contains("verify-restored"))
        let steps = try #require(try LifeboatCLI.json(run)["steps"] as? [[String: Any]])
        #expect(steps.last?["name"] as? String == "verify-restored")
        #expect(steps.last?["status"] as? String == "failed")
        #expect(try String(contentsOfFile: s.app.endpointFile, encoding: .utf8) == endpointBefore, "endpoint not switched")
        let events = RunJournal.list(directory: s.sandbox.path("runs")).last?.events ?? []
        #expect(!events.contains { $0.step == "switch-endpoint" })
        // Stop the restored cluster the runbook started.
        let restored = TestPostgres.attach(s.sandbox.path("failover"), port: port, like: s.pg)
        try await restored.stop()
    }

    /// The seed's "service restart" RTO test as a drill: the service-outage runbook restarts a real
    /// HTTP service and checks its health; the drill times it against the 10-minute objective, turns
    /// each step into a check and records the report with the other drills. A step that fails, or an
    /// objective that is missed, fails the drill (exit 15) and is recorded too.
    @Test func serviceRestartDrillTimesTheRunbook() async throws {
        let s = try await Setup.make("drill-restart")
        defer { Task { await s.cleanup() } }
        let reports = s.sandbox.path("reports")
        let vars = ["status_app=kill -0 $(cat \(s.app.pidFile))", "restart_app=\(s.app.stopCommand); \(s.app.startCommand)",
            "health_url=\(s.app.healthURL)"].flatMap { ["--var", $0] }
        let started = Date()
        let run = try await LifeboatCLI.run(["drill", "run", "--scenario", "service-restart", "--runbook", "builtin:service-outage", "--yes",
            "--json", "--report-dir", reports] + s.common + vars, environment: s.env)
        let elapsed = Date().timeIntervalSince(started)
        #expect(run.status == 0, "\(run.errors)")
        let report = try LifeboatCLI.json(run)
        #expect(report["scenario"] as? String == "service-restart")
        #expect(report["passed"] as? Bool == true)
        #expect(report["runbook"] as? String == "service-outage")
        #expect(report["rpoSeconds"] == nil && report["backupID"] == nil)
        let rto = try #require(report["rtoSeconds"] as? Double)
        #expect(rto > 0.4 && rto < elapsed, "the restart sleeps 0.5 s; RTO \(rto), command took \(elapsed)")
        #expect((report["objectives"] as? [String: Any])?["rtoSeconds"] as? Double == 600)
        let checks = try #require(report["checks"] as? [[String: Any]])
        #expect(checks.map { $0["name"] as? String ?? "" } == ["status", "restart", "health-after-restart"])
        #expect(checks.allSatisfy { $0["passed"] as? Bool == true })
        let health = await s.app.health()
        #expect(health?.0 == 200, "the service is up after the drill")
        let markdown = try String(contentsOfFile: reports + "/drill-\(report["id"] as? String ?? "").md", encoding: .utf8)
        #expect(markdown.contains("| runbook | service-outage") && markdown.contains("not measured by this scenario"))

        // A health check that cannot pass fails the drill and names the step; so does an impossible objective.
        let failing = try s.sandbox.file("failing.yaml", """
            name: restart-and-check
            vars: { url: "http://127.0.0.1:\(TestSandbox.freePort())/health" }
            steps:
              - name: health
                action: http.check
                with: { url: "${vars.url}", attempts: 1 }
            """)
        let failed = try await LifeboatCLI.run(["drill", "run", "--scenario", "service-restart", "--runbook", failing, "--json"] + s.common,
            environment: s.env)
        #expect(failed.status == 15, "\(failed.errors)")
        let failedReport = try LifeboatCLI.json(failed)
        #expect(failedReport["passed"] as? Bool == false)
        #expect((failedReport["checks"] as? [[String: Any]])?.first { $0["name"] as? String == "health" }?["passed"] as? Bool == false)
        let slow = try await LifeboatCLI.run(["drill", "run", "--scenario", "service-restart", "--runbook", "builtin:service-outage", "--yes",
            "--rto", "0.01s", "--json"] + s.common + vars, environment: s.env)
        #expect(slow.status == 15)
        #expect(try LifeboatCLI.json(slow)["rtoMet"] as? Bool == false)
        // A runbook drill needs its runbook; runbook variables without a runbook are refused.
        #expect(try await LifeboatCLI.run(["drill", "run", "--scenario", "full-rebuild"] + s.common, environment: s.env).status == 2)
        let stray = try await LifeboatCLI.run(["drill", "run", "--scenario", "snapshot-restore", "--var", "a=b"] + s.common, environment: s.env)
        #expect(stray.status == 2 && stray.errors.contains("give --runbook too"), "\(stray.errors)")

        let history = try await LifeboatCLI.run(["drill", "history", "--json"] + s.common, environment: s.env)
        let recorded = try #require(try JSONSerialization.jsonObject(with: Data(history.output.utf8)) as? [[String: Any]])
        #expect(recorded.compactMap { $0["scenario"] as? String } == ["service-restart", "service-restart", "service-restart"])
    }
}

import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatTesting
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Headless Chromium (Debian's `chromium`), when installed.
enum HeadlessChromium {
    static var path: String? {
        ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// The DOM after the page's scripts ran, and a screenshot of it.
    static func render(_ url: String, screenshot: String) async throws -> String {
        guard let path else { throw LifeboatError(.notFound, "chromium is not installed") }
        let common = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars", "--user-data-dir=\(NSTemporaryDirectory())lifeboat-chromium-\(getpid())"]
        let dom = try await CommandRunner.runSeparately(path, common + ["--virtual-time-budget=2000", "--dump-dom", url], check: false, timeout: 120)
        _ = try await CommandRunner.runSeparately(path, common + ["--window-size=1280,2000", "--screenshot=\(screenshot)", url], check: false, timeout: 120)
        return dom.output
    }
}

/// The dashboard as an SRE looks at it: `lifeboat serve` over a real cluster with automated and
/// manual backups and a drill behind it, rendered by headless Chromium; the key figures are read from
/// the DOM it built (which cluster, objectives beside the figures, the timeline with every backup,
/// the drill chart, the second-copy warning, sizes for humans, the archive-lag row red while
/// archiving fails). The screenshot is kept in `.build/test-artifacts/`.
@Suite(.serialized) struct DashboardBrowserTests {
    func get(_ url: String) async -> (status: Int, body: String)? {
        guard let u = URL(string: url), let (data, response) = try? await URLSession.shared.data(from: u) else { return nil }
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    @Test(.enabled(if: HeadlessChromium.path != nil, "needs chromium (scripts/install-deps --tests installs it)"))
    func theDashboardShowsTheFiguresAgainstTheirObjectives() async throws {
        let sandbox = try TestSandbox("dashboard")
        defer { Task { await sandbox.remove() } }
        let port = TestSandbox.freePort()
        let repo = try await TestRepository.make(in: sandbox, extraConfig: """
            serve:
              listen: 127.0.0.1:\(port)
              backup_every: 1d
              verify_every: "off"
              tick: 0.2s
              refresh: 0.5s
              state_file: \(sandbox.path("state/serve.json"))
            retention:
              recovery_window: 7d

            """)
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: repo)
        let env = LifeboatCLI.environment(for: pg)
        _ = try await pg.query("CREATE TABLE t AS SELECT generate_series(1, 200000) AS id")
        try await pg.archiveCurrentWAL()
        let common = ["--config", repo.configFile]
        #expect(try await LifeboatCLI.run(["backup"] + common, environment: env).status == 0)
        #expect(try await LifeboatCLI.run(["backup", "--manual", "--tag", "Purpose=pre-migration"] + common, environment: env).status == 0)
        _ = try await pg.query("INSERT INTO t SELECT generate_series(1, 1000)")
        try await pg.archiveCurrentWAL()
        let drill = try await LifeboatCLI.run(["drill", "run", "--scenario", "point-in-time"] + common,
            environment: env, timeout: 600)
        #expect(drill.status == 0, "\(drill.output)\(drill.errors)")

        // Archiving breaks: the lag row must turn red.
        _ = try await pg.query("ALTER SYSTEM SET archive_command = 'false'")
        _ = try await pg.query("SELECT pg_reload_conf()")
        try await Task.sleep(for: .milliseconds(300))
        _ = try await pg.query("INSERT INTO t SELECT generate_series(1, 1000)")
        _ = try await pg.query("SELECT pg_switch_wal()")
        let failDeadline = Date().addingTimeInterval(30)
        while try await pg.value("SELECT failed_count FROM pg_stat_archiver") == "0", Date() < failDeadline {
            try await Task.sleep(for: .milliseconds(100))
        }

        let daemon = try CommandRunner.spawn(TestSandbox.lifeboatBinary, ["serve"] + common, environment: env, outputPath: sandbox.path("serve.log"))
        defer { daemon.signal(SIGTERM) }
        let url = "http://127.0.0.1:\(port)/"
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, daemon.poll() == nil {
            if let page = await get(url), page.body.contains("automated backups (1)") { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        let artifacts = FileManager.default.currentDirectoryPath + "/.build/test-artifacts"
        try FileManager.default.createDirectory(atPath: artifacts, withIntermediateDirectories: true)
        let screenshot = artifacts + "/dashboard.png"
        try? FileManager.default.removeItem(atPath: screenshot)
        let dom = try await HeadlessChromium.render(url, screenshot: screenshot)
        let log = (try? String(contentsOfFile: sandbox.path("serve.log"), encoding: .utf8)) ?? ""

        // Which cluster it protects: title and heading.
        #expect(dom.contains("<title>Lifeboat: UNHEALTHY · \(pg.cluster.socketDirectory):\(pg.port) · \(pg.cluster.dataDirectory)</title>"), "\(dom.prefix(600))\n\(log)")
        #expect(dom.contains("protecting \(pg.cluster.socketDirectory):\(pg.port)"))
        // Objectives beside the figures.
        #expect(dom.contains("RTO \(HumanDuration.format(45 * 60)) for the scenario, \(HumanDuration.format(4 * 3600)) overall"),
            "the seed's 4 h beside the measured drill RTO")
        #expect(row(dom, "drill-rto").contains("passed") && !row(dom, "drill-rto").contains("class=\"bad\""), "\(row(dom, "drill-rto"))")
        #expect(dom.contains("retention \(HumanDuration.format(7 * 86400))"), "the recovery window against the retention target")
        #expect(row(dom, "archive-lag").contains("class=\"bad\"") && row(dom, "archive-lag").contains("archiving FAILING"), "\(row(dom, "archive-lag"))")
        #expect(row(dom, "next-drill").contains("not scheduled"))
        // The second-copy warning, sizes for humans.
        #expect(dom.contains("No second copy is configured"))
        #expect(row(dom, "repository").range(of: #"\d+(\.\d+)? (KiB|MiB)"#, options: .regularExpression) != nil, "\(row(dom, "repository"))")
        // The timeline: every backup on it, automated and manual.
        #expect(dom.components(separatedBy: "class=\"backup automated\"").count - 1 == 1)
        #expect(dom.components(separatedBy: "class=\"backup manual\"").count - 1 == 1)
        #expect(dom.contains("aria-label=\"recovery window\""))
        // The drill chart: one RTO bar and one RPO bar for the drill.
        #expect(dom.components(separatedBy: "class=\"rto\"").count - 1 == 1 && dom.components(separatedBy: "class=\"rpo\"").count - 1 == 1)
        // No AWS panel without an aws: section.
        #expect(!dom.contains("<section id=\"aws\">"))
        let png = FileManager.default.contents(atPath: screenshot) ?? Data()
        #expect(png.count > 10_000 && png.starts(with: [0x89, 0x50, 0x4E, 0x47]), "a screenshot is kept at \(screenshot)")
        daemon.signal(SIGTERM)
        _ = try await daemon.wait(timeout: 20)
        try await pg.stop()
    }

    /// The `<tr id="...">` row of the DOM Chromium built.
    func row(_ dom: String, _ id: String) -> String {
        guard let start = dom.range(of: "<tr id=\"\(id)\"") else { return "" }
        let rest = dom[start.lowerBound...]
        guard let end = rest.range(of: "</tr>") else { return String(rest) }
        return String(rest[..<end.upperBound])
    }
}

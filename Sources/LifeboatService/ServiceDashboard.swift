import Foundation
import LifeboatCore

/// The snapshot as one self-contained HTML page (inline SVG, no external assets; it reloads itself
/// every 30 seconds): what an on-call engineer opens first. It names the cluster it protects, puts
/// every figure beside its objective (live RPO, drill RTO and RPO, recovery window against the
/// retention), draws the recovery window as a timeline with the backups on it and the drill history
/// as a chart, and has a panel for the AWS jobs.
public enum ServiceDashboard {
    static func esc(_ t: String) -> String {
        t.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    static func bytes(_ n: Int) -> String { ByteCount.format(UInt64(max(0, n))) }

    public static func html(_ s: ServiceSnapshot) -> String {
        let health = s.health
        func time(_ d: Date?) -> String { d.map(Timestamp.format) ?? "—" }
        func age(_ d: Date?) -> String { d.map { HumanDuration.format(max(0, s.now.timeIntervalSince($0))) + " ago" } ?? "—" }
        func row(_ label: String, _ value: String, objective: String = "", bad: Bool = false, id: String? = nil) -> String {
            "<tr\(id.map { " id=\"\($0)\"" } ?? "")><th>\(esc(label))</th><td\(bad ? " class=bad" : "")>\(esc(value))</td><td class=objective>\(esc(objective))</td></tr>"
        }
        var warnings: [String] = []
        if s.protected.secondCopies.isEmpty {
            warnings.append("No second copy is configured (no mirror repository, no aws.second_region): a regional outage or a lost bucket loses every backup.")
        }

        // Objectives: each measured figure beside its target.
        var objectives: [String] = []
        if let a = s.archiver {
            objectives.append(row("archive lag (live RPO)", a.failing ? "archiving FAILING: \(HumanDuration.format(a.lagSeconds)) and growing" : HumanDuration.format(a.lagSeconds),
                objective: "RPO \(HumanDuration.format(s.rpoObjectiveSeconds))", bad: a.failing || a.lagSeconds > s.rpoObjectiveSeconds, id: "archive-lag"))
            objectives.append(row("most a disaster now could lose", a.rpoBoundSeconds.map { HumanDuration.format($0) } ?? "unbounded: archive_timeout is off",
                objective: "RPO \(HumanDuration.format(s.rpoObjectiveSeconds))", bad: a.failing || (a.rpoBoundSeconds ?? .infinity) > s.rpoObjectiveSeconds))
        } else if let e = s.archiverError {
            objectives.append(row("archive lag (live RPO)", "unknown: \(e)", objective: "RPO \(HumanDuration.format(s.rpoObjectiveSeconds))", bad: true, id: "archive-lag"))
        }
        if let d = s.lastDrill {
            objectives.append(row("last drill RTO", "\(HumanDuration.format(d.rtoSeconds)) (\(d.scenario), \(d.passed ? "passed" : "FAILED") \(age(d.startedAt)))",
                objective: "RTO \(HumanDuration.format(d.rtoObjectiveSeconds)) for the scenario, \(HumanDuration.format(s.protected.rtoObjectiveSeconds)) overall",
                bad: !d.passed || d.rtoSeconds > d.rtoObjectiveSeconds, id: "drill-rto"))
            if let rpo = d.rpoSeconds {
                objectives.append(row("last drill RPO", String(format: "%.3f s", rpo), objective: d.rpoObjectiveSeconds.map { "RPO \(HumanDuration.format($0))" } ?? "",
                    bad: d.rpoObjectiveSeconds.map { rpo > $0 } ?? false))
            }
        } else {
            objectives.append(row("last drill RTO", "no drill yet", objective: "RTO \(HumanDuration.format(s.protected.rtoObjectiveSeconds))", bad: true, id: "drill-rto"))
        }
        objectives.append(row("next drill", s.nextDrill.map { $0 <= s.now ? "due now" : Timestamp.format($0) } ?? "not scheduled (serve.drill_every, aws.schedule.drill)",
            bad: s.nextDrill == nil, id: "next-drill"))
        if let r = s.repository {
            let length = zip2(r.earliestRestorableTime, r.latestRestorableTime).map { $0.1.timeIntervalSince($0.0) }
            objectives.append(row("recovery window", length.map { "\(HumanDuration.format($0)): \(time(r.earliestRestorableTime)) .. \(time(r.latestRestorableTime))" } ?? "none: no backup yet",
                objective: s.protected.recoveryWindowTargetSeconds.map { "retention \(HumanDuration.format($0))" } ?? "", bad: length == nil, id: "recovery-window"))
        }

        // The repository and the archive.
        var rows: [String] = []
        if let r = s.repository {
            let maxAge = s.schedule.maxBackupAge
            let stale = r.newestBackupStop.map { d in maxAge.map { s.now.timeIntervalSince(d) > $0 } ?? false } ?? (maxAge != nil)
            rows.append(row("newest backup", "\(r.newestBackupID ?? "none") (\(age(r.newestBackupStop)))", objective: maxAge.map { "within \(HumanDuration.format($0))" } ?? "", bad: stale))
            rows.append(row("backups", "\(r.automatedBackups) automated, \(r.manualBackups) manual"))
            rows.append(row("repository", "\(s.repositoryLocation): \(bytes(r.storedBytes)) in \(r.chunks) chunks, \(r.walFiles) WAL files", id: "repository"))
        } else {
            rows.append(row("repository", s.repositoryError ?? "not observed yet", bad: s.repositoryError != nil, id: "repository"))
        }
        if let a = s.archiver {
            rows.append(row("archiver", a.failing ? "FAILING since \(time(a.lastFailedTime)) on \(a.lastFailedWAL ?? "?"), \(a.readyFiles) file(s) waiting" : "\(a.archivedCount) archived, \(a.failedCount) failed, last \(age(a.lastArchivedTime))",
                bad: a.failing))
            rows.append(row("WAL not yet archived", "\(bytes(Int(a.unarchivedBytes))) in \(a.readyFiles) ready file(s)", bad: a.failing))
        }
        rows.append(row("next backup", s.nextBackup.map { Timestamp.format($0) + (s.schedule.backupWindow.map { " (window \($0) UTC)" } ?? "") } ?? "not scheduled"))
        for r in s.mirrors {
            let text: String
            switch r.state {
            case .upToDate: text = "up to date"
            case .unreachable: text = "unreachable: \(r.reason ?? "?")"
            case .lagging: text = "behind: \(r.missingBackups.count) backup(s), \(r.missingWALFiles) WAL file(s)"
            }
            rows.append(row("mirror \(r.location)", text, bad: !r.upToDate))
        }
        if let node = s.backupNode {
            rows.append(row("backup node", "\(node.backupNode ?? "none") (this node: \(node.thisNode ?? "?"))", bad: node.error != nil))
        }

        func jobRow(_ job: ServiceJob) -> String? {
            guard let j = s.jobs[job.rawValue] else { return nil }
            let state = s.running == job.rawValue ? "running" : j.succeeded == true ? "ok" : j.succeeded == false ? "FAILED" : "started"
            return "<tr data-job=\"\(job.rawValue)\"><td>\(job.rawValue)</td><td\(j.succeeded == false ? " class=bad" : "")>\(state)</td><td>\(esc(time(j.startedAt)))</td><td>\(j.durationSeconds.map { HumanDuration.format($0) } ?? "")</td><td>\(j.runs) / \(j.failures)</td><td>\(esc(j.message))</td></tr>"
        }
        let header = "<tr><th>job</th><th>last</th><th>started</th><th>took</th><th>runs / failures</th><th>result</th></tr>"
        let jobs = ServiceJob.allCases.filter { !$0.isAWS }.compactMap(jobRow)
        let awsJobs = ServiceJob.allCases.filter(\.isAWS).compactMap(jobRow)
        var awsPanel = ""
        if s.protected.awsCluster != nil || !awsJobs.isEmpty {
            let second = s.protected.secondCopies.first { $0.hasPrefix("aws region") }
            awsPanel = "<section id=aws><h2>AWS</h2><p>Aurora cluster \(esc(s.protected.awsCluster ?? "—"))\(s.protected.awsRegion.map { " in " + esc($0) } ?? ""); snapshot copies: \(esc(second ?? "none configured"))</p>"
                + (awsJobs.isEmpty ? "<p>No AWS job has run yet.</p>" : "<table>\(header)\(awsJobs.joined())</table>") + "</section>"
        }
        let banner = health.healthy ? "<p class=ok id=health>Healthy</p>"
            : "<div class=bad id=health><p>Unhealthy</p><ul>" + health.problems.map { "<li>\(esc($0))</li>" }.joined() + "</ul></div>"
        let warning = warnings.isEmpty ? "" : "<div class=warn id=warnings><ul>" + warnings.map { "<li>\(esc($0))</li>" }.joined() + "</ul></div>"
        let name = esc(s.protected.name)
        return """
            <!doctype html><html><head><meta charset="utf-8"><meta http-equiv="refresh" content="30">
            <title>Lifeboat: \(health.healthy ? "healthy" : "UNHEALTHY") · \(name)</title>
            <style>body{font-family:system-ui,sans-serif;margin:2em;max-width:78em;color:#1b1b1b}table{border-collapse:collapse;margin:.6em 0}
            th,td{text-align:left;padding:.3em .8em;border-bottom:1px solid #ddd;vertical-align:top}.bad{color:#b00020;font-weight:600}
            .ok{color:#176f2c;font-weight:600}p.ok,div.bad p{font-size:1.4em;margin:.2em 0}.objective{color:#555}
            .warn{background:#fff4e5;border-left:4px solid #e65100;padding:.2em 1em;margin:.6em 0}h1 small{font-weight:400;color:#555;font-size:.55em;display:block}
            section{margin-top:1.4em}svg text{font-family:system-ui,sans-serif}</style></head><body>
            <h1>Lifeboat<small id=cluster>protecting \(name)</small></h1>\(banner)\(warning)
            <section id=objectives><h2>Objectives</h2><table><tr><th></th><th>measured</th><th>objective</th></tr>\(objectives.joined())</table></section>
            <section id=timeline><h2>Recovery window</h2>\(timeline(s))</section>
            <section id=drills><h2>Drill history</h2>\(drillChart(s.drillHistory))</section>
            <section id=repository-panel><h2>Backups and archive</h2><table>\(rows.joined())</table></section>
            \(awsPanel)
            <section id=jobs><h2>Jobs</h2><table>\(header)\(jobs.joined())</table></section>
            <p>As of \(Timestamp.format(s.now)). Machine-readable: <a href="/status">/status</a>, <a href="/metrics">/metrics</a>, <a href="/healthz">/healthz</a>.</p>
            </body></html>
            """
    }

    static func zip2<A, B>(_ a: A?, _ b: B?) -> (A, B)? {
        guard let a, let b else { return nil }
        return (a, b)
    }

    /// The recovery window as a bar on a time axis ending now, with every backup on it (automated
    /// and manual in two colours) and the retention target's start marked.
    static func timeline(_ s: ServiceSnapshot) -> String {
        guard let r = s.repository, let earliest = r.earliestRestorableTime, let latest = r.latestRestorableTime else {
            return "<p>No restore point yet: the first backup opens the recovery window.</p>"
        }
        let target = s.protected.recoveryWindowTargetSeconds
        let first = min(earliest, r.backups.map(\.stop).min() ?? earliest)
        let windowLength = max(1, s.now.timeIntervalSince(first))
        // The axis spans the retention target when the window is about as long; a young window
        // (shorter than a third of it) gets its own scale, and the target is said in words.
        let showTarget = target.map { $0 <= windowLength * 3 } ?? false
        let start = showTarget ? min(first, s.now.addingTimeInterval(-(target ?? 0))) : first.addingTimeInterval(-windowLength * 0.05)
        let span = max(1, s.now.timeIntervalSince(start))
        let width = 900.0
        let left = 20.0
        func x(_ d: Date) -> Double { left + (width - 2 * left) * max(0, min(1, d.timeIntervalSince(start) / span)) }
        var marks = ""
        for b in r.backups {
            let color = b.kind == "manual" ? "#e65100" : "#1565c0"
            marks += "<line class=\"backup \(b.kind)\" x1=\"\(x(b.stop))\" y1=\"28\" x2=\"\(x(b.stop))\" y2=\"62\" stroke=\"\(color)\" stroke-width=\"2\"><title>\(esc(b.id)) (\(b.kind)) \(Timestamp.format(b.stop))</title></line>"
        }
        let young = target.map { t in showTarget ? "" : "<text x=\"\(left)\" y=\"16\" font-size=\"11\">the window is \(HumanDuration.format(windowLength)) long so far; the retention target is \(HumanDuration.format(t))</text>" } ?? ""
        let targetLine = !showTarget ? young : target.map { t -> String in
            let tx = x(s.now.addingTimeInterval(-t))
            return "<line x1=\"\(tx)\" y1=\"20\" x2=\"\(tx)\" y2=\"70\" stroke=\"#555\" stroke-dasharray=\"4\"/><text x=\"\(tx + 3)\" y=\"16\" font-size=\"11\">retention target \(HumanDuration.format(t))</text>"
        } ?? ""
        return """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="100" role="img" aria-label="recovery window">
            <rect x="\(x(earliest))" y="38" width="\(max(2, x(latest) - x(earliest)))" height="14" fill="#c8e6c9" stroke="#2e7d32"><title>restorable \(Timestamp.format(earliest)) .. \(Timestamp.format(latest))</title></rect>
            \(targetLine)\(marks)
            <line x1="\(x(s.now))" y1="20" x2="\(x(s.now))" y2="70" stroke="#b00020"/><text x="\(x(s.now) - 24)" y="84" font-size="11">now</text>
            <text x="\(left)" y="84" font-size="11">\(Timestamp.format(start).prefix(16))</text>
            <text x="\(left)" y="98" font-size="11">green: restorable; blue: automated backups (\(r.backups.filter { $0.kind != "manual" }.count)); orange: manual (\(r.backups.filter { $0.kind == "manual" }.count))</text>
            </svg>
            """
    }

    /// RTO and RPO of each drill against its objectives (bars as a share of the objective; the
    /// dashed line is the objective), as the drill reports draw them.
    static func drillChart(_ history: [DrillObservation]) -> String {
        guard !history.isEmpty else { return "<p>No drills recorded yet.</p>" }
        let plot = 140.0
        let base = 170.0
        let ratios = history.flatMap { d in [d.rtoSeconds / max(d.rtoObjectiveSeconds, 1)] + (d.rpoSeconds.map { rpo in [rpo / max(d.rpoObjectiveSeconds ?? 300, 1)] } ?? []) }
        let top = max(1.2, ratios.max() ?? 1)
        let width = max(620, 80 + history.count * 44)
        var bars = ""
        for (i, d) in history.enumerated() {
            let x = 60 + i * 44
            let rto = d.rtoSeconds / max(d.rtoObjectiveSeconds, 1)
            let h = plot * rto / top
            bars += "<rect class=\"rto\" x=\"\(x)\" y=\"\(base - h)\" width=\"16\" height=\"\(max(1, h))\" fill=\"\(d.passed ? "#2e7d32" : "#c62828")\"><title>\(esc(d.id)) \(d.scenario): RTO \(HumanDuration.format(d.rtoSeconds)) of \(HumanDuration.format(d.rtoObjectiveSeconds))</title></rect>"
            bars += "<text x=\"\(x)\" y=\"\(base - h - 4)\" font-size=\"9\">\(HumanDuration.format(d.rtoSeconds))</text>"
            if let rpo = d.rpoSeconds {
                let ratio = rpo / max(d.rpoObjectiveSeconds ?? 300, 1)
                let rh = plot * ratio / top
                bars += "<rect class=\"rpo\" x=\"\(x + 18)\" y=\"\(base - rh)\" width=\"16\" height=\"\(max(1, rh))\" fill=\"#1565c0\"><title>\(esc(d.id)): RPO \(String(format: "%.3f s", rpo))\(d.rpoObjectiveSeconds.map { " of \(HumanDuration.format($0))" } ?? "")</title></rect>"
            }
            bars += "<text x=\"\(x)\" y=\"\(base + 14)\" font-size=\"9\">\(esc(String(d.id.prefix(8).suffix(4))))</text>"
        }
        let objectiveY = base - plot / top
        return """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="210" role="img" aria-label="drill RTO and RPO against objectives">
            <line x1="50" y1="\(base)" x2="\(width)" y2="\(base)" stroke="#444"/>
            <line x1="50" y1="\(objectiveY)" x2="\(width)" y2="\(objectiveY)" stroke="#555" stroke-dasharray="4"/>
            <text x="4" y="\(objectiveY + 4)" font-size="10">objective</text>
            \(bars)
            <text x="50" y="202" font-size="11">green/red: RTO as a share of its objective (passed/failed); blue: RPO as a share of its objective</text>
            </svg>
            """
    }
}

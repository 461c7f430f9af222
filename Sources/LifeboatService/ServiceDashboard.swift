import Foundation
import LifeboatCore

/// The snapshot as one self-contained HTML page (no scripts, no external assets; it reloads itself
/// every 30 seconds): what an on-call engineer opens first.
public enum ServiceDashboard {
    public static func html(_ s: ServiceSnapshot) -> String {
        let health = s.health
        func esc(_ t: String) -> String {
            t.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
                .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
        }
        func time(_ d: Date?) -> String { d.map(Timestamp.format) ?? "—" }
        func age(_ d: Date?) -> String { d.map { HumanDuration.format(max(0, s.now.timeIntervalSince($0))) + " ago" } ?? "—" }
        func row(_ label: String, _ value: String, bad: Bool = false) -> String {
            "<tr><th>\(esc(label))</th><td\(bad ? " class=bad" : "")>\(esc(value))</td></tr>"
        }
        var rows: [String] = []
        if let r = s.repository {
            let maxAge = s.schedule.maxBackupAge
            let stale = r.newestBackupStop.map { d in maxAge.map { s.now.timeIntervalSince(d) > $0 } ?? false } ?? (maxAge != nil)
            rows.append(row("newest backup", "\(r.newestBackupID ?? "none") (\(age(r.newestBackupStop)))", bad: stale))
            rows.append(row("backups", "\(r.automatedBackups) automated, \(r.manualBackups) manual"))
            rows.append(row("recovery window", "\(time(r.earliestRestorableTime)) .. \(time(r.latestRestorableTime))"))
            rows.append(row("repository", "\(s.repositoryLocation): \(r.storedBytes) bytes in \(r.chunks) chunks, \(r.walFiles) WAL files"))
        } else {
            rows.append(row("repository", s.repositoryError ?? "not observed yet", bad: s.repositoryError != nil))
        }
        if let a = s.archiver {
            rows.append(row("archive lag (live RPO)", "\(HumanDuration.format(a.lagSeconds)), \(a.readyFiles) file(s) waiting, \(a.unarchivedBytes) bytes not archived",
                bad: a.lagSeconds > s.rpoObjectiveSeconds))
            rows.append(row("most a disaster now could lose", a.rpoBoundSeconds.map { "\(HumanDuration.format($0)) (objective \(HumanDuration.format(s.rpoObjectiveSeconds)))" }
                ?? "unbounded: archive_timeout is off", bad: (a.rpoBoundSeconds ?? .infinity) > s.rpoObjectiveSeconds))
            rows.append(row("archiver", a.failing ? "FAILING since \(time(a.lastFailedTime)) on \(a.lastFailedWAL ?? "?")" : "\(a.archivedCount) archived, \(a.failedCount) failed, last \(age(a.lastArchivedTime))",
                bad: a.failing))
        } else if let e = s.archiverError {
            rows.append(row("archiver", e, bad: true))
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
        if let d = s.lastDrill {
            rows.append(row("last drill", "\(d.scenario) \(d.passed ? "passed" : "FAILED") \(age(d.startedAt)): RTO \(HumanDuration.format(d.rtoSeconds)) of \(HumanDuration.format(d.rtoObjectiveSeconds))\(d.rpoSeconds.map { String(format: ", RPO %.3f s", $0) } ?? "")",
                bad: !d.passed))
        }
        var jobs: [String] = []
        for job in ServiceJob.allCases {
            guard let j = s.jobs[job.rawValue] else { continue }
            let state = s.running == job.rawValue ? "running" : j.succeeded == true ? "ok" : j.succeeded == false ? "FAILED" : "started"
            jobs.append("<tr><td>\(job.rawValue)</td><td\(j.succeeded == false ? " class=bad" : "")>\(state)</td><td>\(esc(time(j.startedAt)))</td><td>\(j.durationSeconds.map { HumanDuration.format($0) } ?? "")</td><td>\(j.runs) / \(j.failures)</td><td>\(esc(j.message))</td></tr>")
        }
        let banner = health.healthy ? "<p class=ok>Healthy</p>"
            : "<div class=bad><p>Unhealthy</p><ul>" + health.problems.map { "<li>\(esc($0))</li>" }.joined() + "</ul></div>"
        return """
            <!doctype html><html><head><meta charset="utf-8"><meta http-equiv="refresh" content="30">
            <title>Lifeboat: \(health.healthy ? "healthy" : "UNHEALTHY")</title>
            <style>body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:1em 0}
            th,td{text-align:left;padding:.3em .8em;border-bottom:1px solid #ddd;vertical-align:top}.bad{color:#b00020;font-weight:600}
            .ok{color:#176f2c;font-weight:600}p.ok,div.bad p{font-size:1.4em;margin:.2em 0}</style></head><body>
            <h1>Lifeboat</h1>\(banner)
            <table>\(rows.joined())</table>
            <h2>Jobs</h2><table><tr><th>job</th><th>last</th><th>started</th><th>took</th><th>runs / failures</th><th>result</th></tr>\(jobs.joined())</table>
            <p>As of \(Timestamp.format(s.now)). Machine-readable: <a href="/status">/status</a>, <a href="/metrics">/metrics</a>, <a href="/healthz">/healthz</a>.</p>
            </body></html>
            """
    }
}

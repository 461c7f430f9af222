import Foundation
import LifeboatCore
import LifeboatRepository

/// Writes a drill report as Markdown (for the ticket), JSON (for machines) and a self-contained
/// HTML page with a chart of RTO and RPO across the drill history (for the auditor).
public enum DrillReportRenderer {
    public static func markdown(_ r: DrillReport) -> String {
        var s = "# DR drill \(r.id): \(r.scenario.rawValue) — \(r.passed ? "PASSED" : "FAILED")\n\n"
        s += "| | |\n|---|---|\n"
        s += "| started | \(Timestamp.format(r.startedAt)) on \(r.host) |\n"
        for (label, value) in details(r) { s += "| \(label) | \(value) |\n" }
        s += "| **RTO** | **\(HumanDuration.format(r.rtoSeconds))** (objective \(HumanDuration.format(r.objectives.rtoSeconds))): \(r.rtoMet ? "met" : "MISSED") |\n"
        s += "| **RPO** | \(rpoText(r, strong: true)) |\n\n"
        s += "## Phases\n\n| phase | duration | counts toward RTO |\n|---|---|---|\n"
        for p in r.phases { s += "| \(p.name) | \(HumanDuration.format(p.seconds)) | \(p.countsTowardRTO ? "yes" : "no") |\n" }
        let passed = r.checks.filter(\.passed).count
        s += "\n## Checks: \(passed) passed, \(r.checks.count - passed) failed\n\n| check | result | detail |\n|---|---|---|\n"
        for c in r.checks { s += "| \(c.name) | \(c.passed ? "✓ passed" : "✗ FAILED") | \(c.detail.replacingOccurrences(of: "|", with: "\\|")) |\n" }
        if let e = r.error { s += "\n**Error:** \(e)\n" }
        if let scratch = r.scratchDirectory {
            s += "\nScratch target `\(scratch)` (loopback only, WAL archiving off) was \(r.error == nil ? "removed" : "cleaned up") after the drill.\n"
        }
        if let run = r.runID { s += "\nRunbook run `\(run)`: its journal holds every step with its timing and outputs.\n" }
        return s
    }

    /// What was recovered (restore drills) or run (runbook drills), as label/value rows.
    static func details(_ r: DrillReport) -> [(String, String)] {
        var rows: [(String, String)] = []
        if let backup = r.backupID {
            rows.append(("backup used", "\(backup)\(r.backupStopTime.map { " (ended \(Timestamp.format($0)))" } ?? "")"))
        }
        if let target = r.targetTime { rows.append(("target point", Timestamp.format(target))) }
        if let achieved = r.achievedTime {
            rows.append(("achieved point", Timestamp.format(achieved) + (r.achievedLSN.map { " (lsn \($0))" } ?? "")))
        }
        if let lag = r.archiveLagSeconds { rows.append(("archive lag at start", String(format: "%.2f s", lag))) }
        if let book = r.runbook { rows.append(("runbook", book + (r.runID.map { " (run \($0))" } ?? ""))) }
        return rows
    }

    static func rpoText(_ r: DrillReport, strong: Bool) -> String {
        guard let rpo = r.rpoSeconds else { return "not measured by this scenario" }
        let objective = r.objectives.rpoSeconds.map { "objective \(HumanDuration.format($0))" } ?? "no objective for this scenario"
        let verdict = r.rpoMet.map { $0 ? "met" : "MISSED" } ?? "n/a"
        let value = String(format: "%.3f s", rpo)
        return "\(strong ? "**\(value)**" : value) (\(objective)): \(verdict)"
    }

    public static func json(_ r: DrillReport) throws -> Data {
        let encoder = RepositoryJSON.encoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(r)
    }

    public static func html(_ r: DrillReport, history: [DrillReport]) -> String {
        func esc(_ t: String) -> String {
            t.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
        }
        var rows = ""
        for p in r.phases {
            rows += "<tr><td>\(esc(p.name))</td><td>\(HumanDuration.format(p.seconds))</td><td>\(p.countsTowardRTO ? "yes" : "no")</td></tr>"
        }
        var checks = ""
        for c in r.checks {
            checks += "<tr class=\"\(c.passed ? "ok" : "bad")\"><td>\(esc(c.name))</td><td>\(c.passed ? "✓ passed" : "✗ failed")</td><td>\(esc(c.detail))</td></tr>"
        }
        return """
            <!doctype html><html lang="en"><head><meta charset="utf-8"><title>DR drill \(esc(r.id))</title>
            <style>body{font-family:system-ui,sans-serif;margin:2em;max-width:60em;color:#222}
            table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}
            .ok td:nth-child(2){color:#176f2c}.bad td:nth-child(2){color:#b00020;font-weight:bold}
            .verdict{font-size:1.4em;font-weight:bold;color:\(r.passed ? "#176f2c" : "#b00020")}</style></head><body>
            <h1>DR drill \(esc(r.id)): \(esc(r.scenario.rawValue))</h1>
            <p class="verdict">\(r.passed ? "PASSED" : "FAILED")</p>
            <table><tr><th>started</th><td>\(Timestamp.format(r.startedAt)) on \(esc(r.host))</td></tr>
            \(details(r).map { "<tr><th>\(esc($0.0))</th><td>\(esc($0.1))</td></tr>" }.joined())
            <tr><th>RTO</th><td>\(HumanDuration.format(r.rtoSeconds)) (objective \(HumanDuration.format(r.objectives.rtoSeconds))): \(r.rtoMet ? "met" : "missed")</td></tr>
            <tr><th>RPO</th><td>\(esc(rpoText(r, strong: false)))</td></tr></table>
            <h2>Phases</h2><table><tr><th>phase</th><th>duration</th><th>counts toward RTO</th></tr>\(rows)</table>
            <h2>Checks</h2><table><tr><th>check</th><th>result</th><th>detail</th></tr>\(checks)</table>
            <h2>History</h2>\(chart(history))
            </body></html>
            """
    }

    /// Inline SVG: one bar pair per drill (RTO as a share of its objective, RPO in seconds).
    static func chart(_ history: [DrillReport]) -> String {
        let recent = Array(history.suffix(24))
        guard !recent.isEmpty else { return "<p>No drills recorded yet.</p>" }
        let width = 60 + recent.count * 40
        let height = 220
        let plot = 160.0
        let maxRatio = max(1.0, recent.map { $0.rtoSeconds / max($0.objectives.rtoSeconds, 1) }.max() ?? 1)
        let maxRPO = max(1.0, recent.compactMap(\.rpoSeconds).max() ?? 1)
        var bars = ""
        for (i, d) in recent.enumerated() {
            let x = 50 + i * 40
            let rtoH = plot * (d.rtoSeconds / max(d.objectives.rtoSeconds, 1)) / maxRatio
            let rpoH = plot * (d.rpoSeconds ?? 0) / maxRPO
            let color = d.passed ? "#2e7d32" : "#c62828"
            bars += "<rect x=\"\(x)\" y=\"\(180 - rtoH)\" width=\"14\" height=\"\(rtoH)\" fill=\"\(color)\"><title>\(d.id): RTO \(HumanDuration.format(d.rtoSeconds))</title></rect>"
            bars += "<rect x=\"\(x + 16)\" y=\"\(180 - rpoH)\" width=\"14\" height=\"\(rpoH)\" fill=\"#1565c0\"><title>\(d.id): RPO \(d.rpoSeconds.map { String(format: "%.3f s", $0) } ?? "not measured")</title></rect>"
            bars += "<text x=\"\(x)\" y=\"195\" font-size=\"9\">\(d.id.prefix(8).suffix(4))</text>"
        }
        let objectiveY = 180 - plot / maxRatio
        return """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="\(height)" role="img" aria-label="RTO and RPO history">
            <line x1="40" y1="180" x2="\(width)" y2="180" stroke="#444"/>
            <line x1="40" y1="\(objectiveY)" x2="\(width)" y2="\(objectiveY)" stroke="#2e7d32" stroke-dasharray="4"/>
            <text x="42" y="\(objectiveY - 4)" font-size="10">RTO objective</text>
            \(bars)
            <text x="40" y="212" font-size="11">green/red: RTO relative to objective (pass/fail); blue: RPO seconds (max \(String(format: "%.2f", maxRPO)))</text>
            </svg>
            """
    }

    /// Writes `drill-<id>.md`, `.json` and `.html` into `directory`; returns their paths.
    public static func write(_ r: DrillReport, history: [DrillReport], to directory: String) throws -> [String] {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let base = directory + "/drill-\(r.id)"
        try markdown(r).write(toFile: base + ".md", atomically: true, encoding: .utf8)
        try json(r).write(to: URL(fileURLWithPath: base + ".json"))
        try html(r, history: history).write(toFile: base + ".html", atomically: true, encoding: .utf8)
        return [base + ".md", base + ".json", base + ".html"]
    }
}

import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository
import LifeboatRunbooks

extension DrillScenario: ExpressibleByArgument {}

struct DrillCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "drill",
        abstract: "Run a DR drill (the seed's monthly test): restore to a scratch target, verify, measure RTO/RPO, report.",
        subcommands: [DrillRunCommand.self, DrillHistoryCommand.self], defaultSubcommand: DrillRunCommand.self)
}

struct DrillRunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Run one drill (the default).")

    @OptionGroup var global: GlobalOptions
    @Option(help: "The seed's RTO test to run.") var scenario: DrillScenario = .snapshotRestore
    @Option(help: "The runbook to time (a file or builtin:NAME): needed by service-restart and full-rebuild; with snapshot-restore or point-in-time it replaces Lifeboat's own restore (e.g. builtin:aws-restore-drill on Aurora).") var runbook: String?
    @Option(name: .customLong("var"), help: "Runbook variable NAME=VALUE (repeatable).") var vars: [String] = []
    @Flag(help: "Runbook drills: answer yes to every confirmation.") var yes = false
    @Option(name: .customLong("state-dir"), help: "Runbook drills: where run journals are kept.") var stateDir: String?
    @Option(name: .customLong("report-dir"), help: "Write drill-<id>.md/.json/.html here (also drill.report_dir).") var reportDir: String?
    @Option(name: .customLong("scratch-dir"), help: "Parent of the scratch cluster (also drill.scratch_dir; default /tmp).") var scratchDir: String?
    @Option(help: "RTO objective, e.g. 30m (default: drill.objectives or the seed's).") var rto: String?
    @Option(help: "RPO objective, e.g. 5m.") var rpo: String?
    @OptionGroup var connection: ConnectionOptions
    @Option(name: .customLong("pg-bin"), help: "PostgreSQL bin directory.") var pgBin: String?
    @Flag(name: .customLong("keep-backup"), help: "Keep the drill's snapshot (the seed deletes it).") var keepBackup = false
    @Flag(name: .customLong("keep-scratch"), help: "Leave the scratch cluster running for inspection.") var keepScratch = false
    @Flag(help: "Print the report as JSON.") var json = false

    func validate() throws {
        if !vars.isEmpty, runbook == nil, !scenario.runsARunbook {
            throw ValidationError("--var sets runbook variables: give --runbook too (without it, the \(scenario.rawValue) drill restores a backup from the repository itself)")
        }
        if let rto { _ = try HumanDuration.parse(rto) }
        if let rpo { _ = try HumanDuration.parse(rpo) }
    }

    func run() async throws {
        let context = try Context(global) {
            connection.apply(to: &$0)
            $0.pgBin = pgBin
            $0.stateDir = stateDir
        }
        let logger = context.makeLogger()
        let kind = scenario
        let objectives = try context.drillObjectives(kind, rto: rto, rpo: rpo)
        if kind.runsARunbook || runbook != nil {
            try await runRunbookDrill(kind, objectives: objectives, context: context)
            return
        }
        let pgdata = try context.pgdata() ?? ""
        let repo = try await context.openRepository(logger)
        let options = try context.drillOptions(kind, objectives: objectives, pgdata: pgdata, production: try context.endpoint(),
            scratchDir: scratchDir, keepBackup: keepBackup, keepScratch: keepScratch)
        let quiet = json
        if !quiet { print("DR drill: \(kind.rawValue) (RTO objective \(HumanDuration.format(objectives.rtoSeconds)))") }
        let report = try await Drill(repository: repo, logger: logger).run(options) { line in if !quiet { print(line) } }
        try await finish(report, repository: repo, context: context)
    }

    /// service-restart and full-rebuild: time the team's runbook, journaled, and record the drill.
    func runRunbookDrill(_ kind: DrillScenario, objectives: DrillObjectives, context: Context) async throws {
        guard let runbook else {
            throw LifeboatError(.invalidUsage, "the \(kind.rawValue) drill times your runbook: pass --runbook FILE",
                hint: "start from \(kind.suggestedRunbook ?? "a built-in runbook"): `lifeboat runbook show \(kind.suggestedRunbook ?? "")` prints it to adapt")
        }
        let text = try BuiltinRunbooks.load(runbook)
        let book = try Runbook(yaml: text)
        let overrides = try RunbookOptions.overrides(vars, for: book)
        let repo = try await context.openRepository(context.makeLogger())
        let executor = try RunbookOptions.executor(context, yes: yes, quiet: json)
        if !json { print("DR drill: \(kind.rawValue) with runbook \(book.name) (RTO objective \(HumanDuration.format(objectives.rtoSeconds)))") }
        let report = try await RunbookDrill(repository: repo, executor: executor).run(scenario: kind, runbook: book, text: text,
            vars: overrides, objectives: objectives)
        try await finish(report, repository: repo, context: context)
    }

    /// Writes the report files, prints the report, and fails the command when the drill failed.
    func finish(_ report: DrillReport, repository repo: Repository, context: Context) async throws {
        var files: [String] = []
        if let dir = context.settings.reportDirectory(reportDir) {
            files = try DrillReportRenderer.write(report, history: try await DrillHistory.all(repo), to: dir)
        }
        if json {
            print(String(decoding: try DrillReportRenderer.json(report), as: UTF8.self))
        } else {
            print("")
            print(DrillReportRenderer.markdown(report))
            for f in files { print("report written: \(f)") }
        }
        if !report.passed {
            throw LifeboatError(.objectiveMissed, "the drill failed: \(report.error ?? "a check failed or an objective was missed")",
                hint: "see the report's checks and phases")
        }
    }
}

struct DrillHistoryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "history", abstract: "List recorded drills (kept in the repository).")

    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let context = try Context(global)
        let repo = try await context.openRepository(context.makeLogger())
        let history = try await DrillHistory.all(repo)
        if json {
            try Output.json(history)
            return
        }
        print("\(history.count) drill(s)")
        for d in history {
            print("  \(d.id)  \(d.scenario.rawValue.padding(toLength: 16, withPad: " ", startingAt: 0)) \(d.passed ? "PASSED" : "FAILED")  RTO \(HumanDuration.format(d.rtoSeconds)) (\(d.rtoMet ? "met" : "missed"))  RPO \(d.rpoSeconds.map { String(format: "%.3f s", $0) } ?? "n/a")  checks \(d.checks.filter(\.passed).count)/\(d.checks.count)")
        }
    }
}

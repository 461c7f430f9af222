import ArgumentParser
import Dispatch
import Foundation
import LifeboatCore
import LifeboatRepository
import LifeboatRunbooks

#if canImport(Glibc)
import Glibc
#endif

struct RunbookCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "runbook",
        abstract: "Run incident runbooks: journaled, resumable, with confirmations and dry runs.",
        subcommands: [RunbookRunCommand.self, RunbookResumeCommand.self, RunbookListCommand.self, RunbookShowCommand.self])
}

/// Options shared by run and resume.
struct RunbookOptions: ParsableArguments {
    @Option(name: .customLong("state-dir"), help: "Where run journals are kept (also LIFEBOAT_STATE_DIR; default ~/.lifeboat/runs).") var stateDir: String?
    @Flag(help: "Answer yes to every confirmation (for automation; a human should read the plan first).") var yes = false
    @Option(help: "Data directory of production (also PGDATA), for backup steps.") var pgdata: String?
    @Option(name: .customLong("pg-bin"), help: "PostgreSQL bin directory.") var pgBin: String?
    @Flag(help: "Print the result as JSON.") var json = false

    func context(_ global: GlobalOptions) throws -> Context {
        try Context(global) {
            $0.stateDir = stateDir
            $0.pgdata = pgdata
            $0.pgBin = pgBin
        }
    }

    /// Overrides for a runbook's variables from `NAME=VALUE` arguments (`NAME=` sets it empty);
    /// unknown names are refused.
    static func overrides(_ vars: [String], for book: Runbook) throws -> [String: String] {
        var overrides: [String: String] = [:]
        for v in vars {
            let parts = v.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty else { throw LifeboatError(.invalidUsage, "--var '\(v)' is not NAME=VALUE") }
            guard book.vars[String(parts[0])] != nil else {
                throw LifeboatError(.invalidUsage, "runbook \(book.name) has no variable '\(parts[0])'",
                    hint: "its variables: \(book.vars.keys.sorted().joined(separator: ", "))")
            }
            overrides[String(parts[0])] = String(parts[1])
        }
        return overrides
    }

    static func executor(_ cli: Context, yes: Bool, quiet: Bool) throws -> RunbookExecutor {
        let logger = cli.makeLogger()
        // Resolved now, opened only when a step needs the repository (many runbooks do not).
        let store = Result { try cli.store() }
        let key = Result { try cli.keySource() }
        let context = RunbookContext(repository: { try await Repository.open(store: try store.get(), key: try key.get(), logger: logger) },
            production: try cli.endpoint(), pgdata: cli.settings.pgdata, invocation: cli.invocation, binDirectory: cli.settings.pgBin,
            aws: cli.awsOverrides, awsDeployment: try cli.settings.awsDeployment(), logger: logger)
        return RunbookExecutor(context: context, stateDirectory: cli.settings.stateDirectory(), assumeYes: yes,
            confirm: { question in
                FileHandle.standardError.write(Data("\n⚠ \(question)\n  Type 'yes' to continue: ".utf8))
                return readLine()?.trimmingCharacters(in: .whitespaces).lowercased() == "yes"
            },
            output: { line in
                if quiet { FileHandle.standardError.write(Data((line + "\n").utf8)) } else { print(line) }
            })
    }

    /// Runs `body` so that Ctrl-C cancels it (the run is journaled as interrupted), then reports.
    func finish(_ body: @escaping @Sendable () async throws -> RunResult) async throws {
        signal(SIGINT, SIG_IGN)
        let task = Task { try await body() }
        let source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        source.setEventHandler { task.cancel() }
        source.resume()
        let result = try await task.value
        source.cancel()
        if json { try Output.json(result) }
        switch result.status {
        case .succeeded, .planned: return
        case .failed:
            let failed = result.steps.last { $0.status == .failed }
            if result.preflightFailed {
                throw LifeboatError(.objectiveMissed, "runbook \(result.runbook) stopped in its preflight: \(failed?.error ?? "")",
                    hint: "nothing was changed; fix the cause (or the variable: `lifeboat runbook resume \(result.runID) --var NAME=VALUE`) and run again")
            }
            throw LifeboatError(.objectiveMissed, "runbook \(result.runbook) failed at step \(failed?.name ?? "?"): \(failed?.error ?? "")",
                hint: "fix the cause, then `lifeboat runbook resume \(result.runID)` continues without repeating finished steps (--var NAME=VALUE changes a variable, --redo STEP runs a finished step again)")
        case .notConfirmed:
            throw LifeboatError(.notConfirmed, "a step was not confirmed; nothing after it ran",
                hint: "`lifeboat runbook resume \(result.runID)` asks again")
        case .interrupted:
            FileHandle.standardError.write(Data("interrupted; `lifeboat runbook resume \(result.runID)` continues\n".utf8))
            Foundation.exit(130)
        }
    }
}

struct RunbookRunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Run a runbook (a YAML file or builtin:NAME).")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var options: RunbookOptions
    @Argument(help: "Runbook file, or builtin:NAME (see `lifeboat runbook list`).") var runbook: String
    @Option(name: .customLong("var"), help: "Set a variable: NAME=VALUE (repeatable).") var vars: [String] = []
    @Flag(name: .customLong("dry-run"), help: "Print the plan; change nothing.") var dryRun = false

    func run() async throws {
        let context = try options.context(global)
        let text = try BuiltinRunbooks.load(runbook)
        let book = try Runbook(yaml: text)
        let overrides = try RunbookOptions.overrides(vars, for: book)
        let executor = try RunbookOptions.executor(context, yes: options.yes, quiet: options.json)
        if dryRun {
            print("DRY RUN: nothing will be changed; the read-only checks run against the real systems")
            for line in executor.plan(book, vars: overrides) { print(line) }
            let checks = await executor.preflight(book, vars: overrides)
            executor.show(checks)
            let failed = checks.contains { $0.error != nil }
            if options.json {
                try Output.json(RunResult(runID: "dry-run", runbook: book.name, status: failed ? .failed : .planned, steps: [], totalSeconds: 0,
                    journal: "", preflight: checks, preflightFailed: failed))
            }
            if failed {
                throw LifeboatError(.objectiveMissed, "the preflight of \(book.name) failed: a real run would stop before changing anything",
                    hint: "see the ✗ line above")
            }
            return
        }
        let chosen = overrides
        try await options.finish { try await executor.run(book, text: text, vars: chosen) }
    }
}

struct RunbookResumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "resume", abstract: "Continue a run after a crash, failure or refusal.")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var options: RunbookOptions
    @Argument(help: "Run id (see `lifeboat runbook list`).") var runID: String
    @Option(name: .customLong("var"), help: "Change a variable from here on: NAME=VALUE (repeatable; recorded in the journal).")
    var vars: [String] = []
    @Option(help: "Run this finished step again (repeatable).") var redo: [String] = []

    func run() async throws {
        let context = try options.context(global)
        let executor = try RunbookOptions.executor(context, yes: options.yes, quiet: options.json)
        var changes: [String: String] = [:]
        if !vars.isEmpty {
            let events = try RunJournal(directory: context.settings.stateDirectory(), runID: runID).events()
            guard let text = events.first(where: { $0.event == .runStarted })?.runbook else {
                throw LifeboatError(.notFound, "no run \(runID) in \(context.settings.stateDirectory())")
            }
            changes = try RunbookOptions.overrides(vars, for: try Runbook(yaml: text))
        }
        let redoSteps = redo
        let chosen = changes
        try await options.finish { try await executor.resume(runID: runID, vars: chosen, redo: redoSteps) }
    }
}

struct RunbookListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "Built-in runbooks and recorded runs.")

    @OptionGroup var global: GlobalOptions
    @Option(name: .customLong("state-dir"), help: "Where run journals are kept.") var stateDir: String?

    func run() async throws {
        let context = try Context(global) { $0.stateDir = stateDir }
        print("built-in runbooks (lifeboat runbook show NAME):")
        for name in BuiltinRunbooks.all.keys.sorted() {
            let book = try Runbook(yaml: BuiltinRunbooks.all[name] ?? "")
            print("  builtin:\(name)  \(book.steps.count) steps  \(book.description.prefix(80))")
        }
        let runs = RunJournal.list(directory: context.settings.stateDirectory())
        print("runs in \(context.settings.stateDirectory()):")
        for (id, events) in runs {
            let finished = events.last { $0.event == .runFinished }
            let state = finished.map { f in f.status == .superseded ? "finished by a later run" : f.status?.rawValue ?? "?" } ?? "unfinished (resumable)"
            let steps = events.filter { $0.event == .stepFinished && $0.status == .ok }.count
            print("  \(id)  \(state)  \(steps) step(s) done")
        }
    }
}

struct RunbookShowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Print a built-in runbook's YAML to adapt.")
    @Argument(help: "Built-in runbook name.") var name: String

    func run() async throws {
        print(try BuiltinRunbooks.load(name.hasPrefix("builtin:") ? name : "builtin:" + name))
    }
}

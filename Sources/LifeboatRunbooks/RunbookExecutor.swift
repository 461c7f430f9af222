import Foundation
import LifeboatCore
import Logging

/// How one step of a run ended.
public struct StepRecord: Codable, Sendable {
    public var name: String
    public var action: String
    public var status: JournalEvent.Status
    public var seconds: Double
    public var attempts: Int
    public var outputs: [String: String]
    public var error: String?
    /// True when the step had finished in an earlier (interrupted) run and was not repeated.
    public var fromEarlierRun: Bool
}

public struct RunResult: Codable, Sendable {
    public enum Status: String, Codable, Sendable {
        case succeeded
        case failed
        case interrupted
        case notConfirmed = "not-confirmed"
        case planned
    }

    public var runID: String
    public var runbook: String
    public var status: Status
    public var steps: [StepRecord]
    public var totalSeconds: Double
    public var journal: String
    /// The read-only checks made before the first change.
    public var preflight: [PreflightCheck]
    /// Set when a preflight check failed: nothing was changed.
    public var preflightFailed: Bool

    public init(runID: String, runbook: String, status: Status, steps: [StepRecord], totalSeconds: Double, journal: String,
        preflight: [PreflightCheck] = [], preflightFailed: Bool = false)
    {
        self.runID = runID
        self.runbook = runbook
        self.status = status
        self.steps = steps
        self.totalSeconds = totalSeconds
        self.journal = journal
        self.preflight = preflight
        self.preflightFailed = preflightFailed
    }
}

/// One step's preflight: what was checked, or why it was not, or what failed.
public struct PreflightCheck: Codable, Sendable, Equatable {
    public var step: String
    public var checks: [String]
    /// Set when the step's inputs depend on earlier steps' outputs: checked when it runs.
    public var deferred: String?
    public var error: String?
}

/// Runs runbooks step by step with a journal written before and after each step.
///
/// - Before the first step, every read-only check the steps define (preflight) runs; a failure
///   stops the run with nothing changed. `--dry-run` runs the same checks.
/// - A killed run is resumed with `resume`: finished steps are not repeated (their outputs come
///   from the journal); a step that had started but not finished is run again; variables can be
///   changed (recorded in the journal) and finished steps redone.
/// - A new run of a runbook whose earlier run did not finish carries on that run's record of
///   production's state (a scale-down's previous counts), never the state the failed attempt left.
/// - Post-conditions (`expect:` on a step or the runbook) are checked before a run is reported ok.
/// - A step with `confirm`, or a destructive step of a `production: true` runbook, runs only after
///   `confirm` answers yes (or with `assumeYes`); the question shows its values filled in.
/// - Cancelling the task (Ctrl-C) records the run as interrupted; it can be resumed.
public struct RunbookExecutor: Sendable {
    public var context: RunbookContext
    public var stateDirectory: String
    public var assumeYes: Bool
    /// Asks a human; returns true for yes.
    public var confirm: @Sendable (String) -> Bool
    public var output: @Sendable (String) -> Void

    public init(context: RunbookContext, stateDirectory: String, assumeYes: Bool = false,
        confirm: @escaping @Sendable (String) -> Bool = { _ in false }, output: @escaping @Sendable (String) -> Void = { _ in })
    {
        self.context = context
        self.stateDirectory = stateDirectory
        self.assumeYes = assumeYes
        self.confirm = confirm
        self.output = output
    }

    /// The plan, one line per step, with every resolvable reference filled in (questions included).
    public func plan(_ runbook: Runbook, vars: [String: String]) -> [String] {
        let all = Self.expandVars(runbook.vars.merging(vars) { _, new in new })
        var lines = ["runbook \(runbook.name): \(runbook.steps.count) steps\(runbook.production ? " (production: destructive steps need confirmation)" : "")"]
        func describe(_ step: Runbook.Step) -> String {
            let action = RunbookActions.all[step.action]
            let resolved = (try? step.with.mapValues { try $0.resolved { Self.lookup($0, vars: all, outputs: [:]) ?? "${\($0)}" } }) ?? step.with
            return action?.describe(StepInputs(step: step.name, values: resolved)) ?? step.action
        }
        for (i, step) in runbook.steps.enumerated() {
            var line = "  \(i + 1). \(step.name) [\(step.action)]: \(describe(step))"
            if needsConfirmation(step, runbook) {
                line += "  ⚠ asks: \"\(Self.fill(step.confirm ?? "This step changes production.", vars: all, outputs: [:]))\""
            }
            if let t = step.timeout { line += "  (timeout \(HumanDuration.format(t)))" }
            if step.retries > 0 { line += "  (retries \(step.retries))" }
            switch step.onFailure {
            case .stop: break
            case .continue: line += "  (on failure: continue)"
            case .compensate(let comp): line += "  (on failure: \(comp.map(\.name).joined(separator: ", ")))"
            }
            lines.append(line)
            for e in step.expect { lines.append("     expect \(e.name) [\(e.action)]: \(describe(e))") }
        }
        for e in runbook.expect { lines.append("  then expect \(e.name) [\(e.action)]: \(describe(e))") }
        return lines
    }

    func needsConfirmation(_ step: Runbook.Step, _ runbook: Runbook) -> Bool {
        step.confirm != nil || (runbook.production && (RunbookActions.all[step.action]?.destructive ?? true))
    }

    /// `${...}` filled where known, left as written where not (a question must never be asked with a
    /// reference in it that could be filled).
    static func fill(_ text: String, vars: [String: String], outputs: [String: [String: String]]) -> String {
        (try? InputValue.substitute(text) { lookup($0, vars: vars, outputs: outputs) ?? "${\($0)}" }) ?? text
    }

    /// Variables may refer to other variables and the environment; expanded a few levels deep.
    static func expandVars(_ vars: [String: String]) -> [String: String] {
        var current = vars
        for _ in 0..<5 {
            let next = current.mapValues { value in
                (try? InputValue.substitute(value) { ref in
                    ref.hasPrefix("steps.") ? "${\(ref)}" : lookup(ref, vars: current, outputs: [:]) ?? "${\(ref)}"
                }) ?? value
            }
            if next == current { break }
            current = next
        }
        return current
    }

    static func lookup(_ ref: String, vars: [String: String], outputs: [String: [String: String]]) -> String? {
        let parts = ref.split(separator: ".", maxSplits: 2).map(String.init)
        switch parts.first {
        case "vars" where parts.count == 2: return vars[parts[1]]
        case "env" where parts.count == 2: return ProcessInfo.processInfo.environment[parts[1]]
        case "steps" where parts.count == 3: return outputs[parts[1]]?[parts[2]]
        default: return nil
        }
    }

    // MARK: - preflight

    /// Every read-only check the runbook's steps define, with the variables known now: what each
    /// checked, or why it waits (its inputs need an earlier step's outputs), or what failed.
    public func preflight(_ runbook: Runbook, vars: [String: String], skipping done: Set<String> = []) async -> [PreflightCheck] {
        let all = Self.expandVars(runbook.vars.merging(vars) { _, new in new })
        var results: [PreflightCheck] = []
        for step in runbook.steps where !done.contains(step.name) {
            guard let check = RunbookActions.all[step.action]?.preflight else { continue }
            let inputs: StepInputs
            do {
                inputs = StepInputs(step: step.name, values: try step.with.mapValues { try $0.resolved { Self.lookup($0, vars: all, outputs: [:]) } })
            } catch {
                results.append(PreflightCheck(step: step.name, checks: [], deferred: "its inputs use an earlier step's outputs: checked when it runs",
                    error: nil))
                continue
            }
            do {
                results.append(PreflightCheck(step: step.name, checks: try await check(inputs, context), deferred: nil, error: nil))
            } catch {
                let message = (error as? LifeboatError).map { $0.message + ($0.hint.map { " (\($0))" } ?? "") } ?? "\(error)"
                results.append(PreflightCheck(step: step.name, checks: [], deferred: nil, error: message))
                break
            }
        }
        return results
    }

    /// Prints preflight results, one line per check.
    public func show(_ checks: [PreflightCheck]) {
        guard !checks.isEmpty else { return }
        output("preflight (read-only, before anything changes):")
        for c in checks {
            for line in c.checks { output("  ✓ \(c.step): \(line)") }
            if let d = c.deferred { output("  · \(c.step): \(d)") }
            if let e = c.error { output("  ✗ \(c.step): \(e)") }
        }
    }

    // MARK: - runs

    /// Starts a new run: preflight first, then the steps, then the post-conditions.
    public func run(_ runbook: Runbook, text: String, vars: [String: String]) async throws -> RunResult {
        let runID = Self.newRunID(runbook.name)
        let journal = try RunJournal(directory: stateDirectory, runID: runID)
        let all = Self.expandVars(runbook.vars.merging(vars) { _, new in new })
        let earlier = Self.earliestUnfinished(runbook.name, in: stateDirectory, excluding: runID)
        try journal.append(JournalEvent(event: .runStarted, runbook: text, vars: all, runbookName: runbook.name, inheritedFrom: earlier?.id))
        output("run \(runID) of \(runbook.name) (journal \(journal.path))")
        if let earlier {
            output("an earlier run of \(runbook.name) did not finish (\(earlier.id)): the production state it recorded is carried on")
        }
        return try await execute(runbook, vars: all, journal: journal, earlier: [], inherited: earlier.map { Self.outputs(of: $0.events) } ?? [:],
            inheritedFrom: earlier?.id, preflightFirst: true)
    }

    /// Continues a run from its journal; `vars` change variables from here on (recorded), `redo`
    /// names finished steps to run again.
    public func resume(runID: String, vars changes: [String: String] = [:], redo: [String] = []) async throws -> RunResult {
        let journal = try RunJournal(directory: stateDirectory, runID: runID)
        let events = try journal.events()
        guard let start = events.first(where: { $0.event == .runStarted }), let text = start.runbook else {
            throw LifeboatError(.notFound, "no run \(runID) in \(stateDirectory)", hint: "list runs with `lifeboat runbook list`")
        }
        if RunJournal.isFinished(events) {
            throw LifeboatError(.invalidUsage, "run \(runID) already finished successfully")
        }
        let runbook = try Runbook(yaml: text)
        for name in redo where !runbook.steps.contains(where: { $0.name == name }) {
            throw LifeboatError(.invalidUsage, "runbook \(runbook.name) has no step '\(name)'",
                hint: "its steps: \(runbook.steps.map(\.name).joined(separator: ", "))")
        }
        var vars = start.vars ?? [:]
        for e in events where e.event == .varsChanged { vars.merge(e.vars ?? [:]) { _, new in new } }
        if !changes.isEmpty {
            try journal.append(JournalEvent(event: .varsChanged, vars: changes))
            vars.merge(changes) { _, new in new }
            vars = Self.expandVars(vars)
            output("resuming run \(runID) of \(runbook.name) with " + changes.keys.sorted().map { "\($0)=\(changes[$0] ?? "")" }.joined(separator: ", "))
        } else {
            output("resuming run \(runID) of \(runbook.name)")
        }
        var inherited: [String: [String: String]] = [:]
        if let from = start.inheritedFrom, let other = try? RunJournal(directory: stateDirectory, runID: from).events() {
            inherited = Self.outputs(of: other)
        }
        let kept = events.filter { e in !(e.event == .stepFinished && redo.contains(e.step ?? "")) }
        // A run that stopped in its preflight has changed nothing: check again before the first step.
        let preflightAgain = !events.contains { $0.event == .stepStarted }
        return try await execute(runbook, vars: vars, journal: journal, earlier: kept, inherited: inherited, inheritedFrom: start.inheritedFrom,
            preflightFirst: preflightAgain || !changes.isEmpty)
    }

    /// The oldest run of `runbook` in `directory` that neither finished nor was finished by a later run.
    static func earliestUnfinished(_ runbook: String, in directory: String, excluding: String) -> (id: String, events: [JournalEvent])? {
        RunJournal.list(directory: directory).first { run in
            run.id != excluding && RunJournal.runbookName(run.events) == runbook && !RunJournal.isFinished(run.events)
                && run.events.contains { $0.event == .stepFinished && $0.status == .ok }
        }
    }

    /// The outputs of every step that finished ok, by step.
    static func outputs(of events: [JournalEvent]) -> [String: [String: String]] {
        var out: [String: [String: String]] = [:]
        for e in events where e.event == .stepFinished && e.status == .ok {
            if let step = e.step { out[step] = e.outputs ?? [:] }
        }
        return out
    }

    private func execute(_ runbook: Runbook, vars: [String: String], journal: RunJournal, earlier: [JournalEvent],
        inherited: [String: [String: String]], inheritedFrom: String?, preflightFirst: Bool) async throws -> RunResult
    {
        let began = Date()
        var outputs: [String: [String: String]] = [:]
        var done = Set<String>()
        var started = Set<String>()
        var failed = Set<String>()
        for e in earlier {
            guard let name = e.step else { continue }
            if e.event == .stepStarted { started.insert(name) }
            if e.event == .stepFinished {
                let step = runbook.steps.first { $0.name == name }
                if e.status == .ok || (e.status == .failed && step?.onFailure == .continue) {
                    done.insert(name)
                    outputs[name] = e.outputs ?? [:]
                } else if e.status == .failed {
                    failed.insert(name)
                }
            }
        }
        var records: [StepRecord] = []
        var checks: [PreflightCheck] = []
        func finish(_ status: RunResult.Status, preflightFailed: Bool = false) throws -> RunResult {
            let journalStatus: JournalEvent.Status = status == .succeeded ? .ok : (status == .interrupted ? .interrupted : .failed)
            try journal.append(JournalEvent(event: .runFinished, status: journalStatus))
            if status == .succeeded, let inheritedFrom {
                // The earlier run's work is done now: later runs must not carry its state on.
                if let other = try? RunJournal(directory: stateDirectory, runID: inheritedFrom) {
                    try? other.append(JournalEvent(event: .runFinished, status: .superseded, error: "finished by run \(journal.runID)"))
                }
            }
            output("run \(journal.runID): \(status.rawValue) in \(HumanDuration.format(Date().timeIntervalSince(began)))")
            return RunResult(runID: journal.runID, runbook: runbook.name, status: status, steps: records,
                totalSeconds: Date().timeIntervalSince(began), journal: journal.path, preflight: checks, preflightFailed: preflightFailed)
        }

        if preflightFirst {
            // Steps finished in an earlier attempt are not checked again (their targets exist now).
            checks = await preflight(runbook, vars: vars, skipping: done)
            show(checks)
            var summary: [String: String] = [:]
            for c in checks { summary[c.step] = c.error.map { "failed: \($0)" } ?? c.deferred ?? c.checks.joined(separator: "; ") }
            try journal.append(JournalEvent(event: .preflight, status: checks.contains { $0.error != nil } ? .failed : .ok, outputs: summary))
            if let failed = checks.first(where: { $0.error != nil }) {
                output("preflight failed at \(failed.step): nothing was changed")
                records.append(StepRecord(name: "preflight", action: "preflight", status: .failed, seconds: Date().timeIntervalSince(began),
                    attempts: 1, outputs: [:], error: "\(failed.step): \(failed.error ?? "")", fromEarlierRun: false))
                return try finish(.failed, preflightFailed: true)
            }
        }

        for (index, step) in runbook.steps.enumerated() {
            if done.contains(step.name) {
                output("[\(index + 1)/\(runbook.steps.count)] \(step.name): done in an earlier run, not repeated")
                records.append(StepRecord(name: step.name, action: step.action, status: .ok, seconds: 0, attempts: 0,
                    outputs: outputs[step.name] ?? [:], error: nil, fromEarlierRun: true))
                continue
            }
            if failed.contains(step.name) {
                output("[\(index + 1)/\(runbook.steps.count)] \(step.name): failed in an earlier attempt; running it again")
            } else if started.contains(step.name) {
                output("[\(index + 1)/\(runbook.steps.count)] \(step.name): was interrupted in an earlier run; running it again")
            }
            var outcome = try await runStep(step, runbook: runbook, position: "\(index + 1)/\(runbook.steps.count)", vars: vars,
                outputs: outputs, journal: journal, inherited: inherited[step.name], inheritedFrom: inheritedFrom)
            if outcome.record.status == .ok, !step.expect.isEmpty {
                var after = outputs
                after[step.name] = outcome.record.outputs
                if let failure = try await check(step.expect, label: step.name, vars: vars, outputs: after, journal: journal, records: &records) {
                    outcome.record.status = .failed
                    outcome.record.error = failure
                }
            }
            records.append(outcome.record)
            switch outcome.record.status {
            case .ok:
                outputs[step.name] = outcome.record.outputs
            case .interrupted:
                return try finish(.interrupted)
            case .failed, .skipped, .superseded:
                if outcome.notConfirmed { return try finish(.notConfirmed) }
                switch step.onFailure {
                case .continue:
                    continue
                case .stop:
                    return try finish(.failed)
                case .compensate(let steps):
                    output("running \(steps.count) compensating step(s)")
                    for comp in steps {
                        let r = try await runStep(comp, runbook: runbook, position: "compensate", vars: vars, outputs: outputs, journal: journal,
                            inherited: nil, inheritedFrom: nil)
                        records.append(r.record)
                        if r.record.status == .ok { outputs[comp.name] = r.record.outputs }
                    }
                    return try finish(.failed)
                }
            }
        }
        if !runbook.expect.isEmpty {
            output("post-conditions:")
            if try await check(runbook.expect, label: "the run", vars: vars, outputs: outputs, journal: journal, records: &records) != nil {
                return try finish(.failed)
            }
        }
        return try finish(.succeeded)
    }

    /// Runs post-condition steps; returns the first failure, nil when all hold.
    private func check(_ conditions: [Runbook.Step], label: String, vars: [String: String], outputs: [String: [String: String]],
        journal: RunJournal, records: inout [StepRecord]) async throws -> String?
    {
        for condition in conditions {
            let r = try await runStep(condition, runbook: nil, position: "expect", vars: vars, outputs: outputs, journal: journal,
                inherited: nil, inheritedFrom: nil)
            records.append(r.record)
            if r.record.status != .ok { return "post-condition \(condition.name) of \(label) not met: \(r.record.error ?? "")" }
        }
        return nil
    }

    private func runStep(_ step: Runbook.Step, runbook: Runbook?, position: String, vars: [String: String],
        outputs: [String: [String: String]], journal: RunJournal, inherited: [String: String]?, inheritedFrom: String?) async throws
        -> (record: StepRecord, notConfirmed: Bool)
    {
        guard let action = RunbookActions.all[step.action] else {
            throw LifeboatError(.invalidUsage, "unknown action \(step.action)")
        }
        func record(_ status: JournalEvent.Status, _ seconds: Double, _ attempts: Int, _ out: [String: String], _ error: String?) -> StepRecord {
            StepRecord(name: step.name, action: step.action, status: status, seconds: seconds, attempts: attempts, outputs: out, error: error,
                fromEarlierRun: false)
        }
        let inputs: StepInputs
        do {
            inputs = StepInputs(step: step.name, values: try step.with.mapValues { try $0.resolved { Self.lookup($0, vars: vars, outputs: outputs) } })
        } catch let e as LifeboatError {
            try journal.append(JournalEvent(event: .stepFinished, step: step.name, status: .failed, seconds: 0, error: e.message))
            output("[\(position)] \(step.name): ✗ \(e.message)")
            return (record(.failed, 0, 0, [:], e.message), false)
        }
        let what = action.describe(inputs)
        output("[\(position)] \(step.name): \(what)")
        if let runbook, needsConfirmation(step, runbook), !assumeYes {
            let question = Self.fill(step.confirm ?? "This step changes production.", vars: vars, outputs: outputs) + "\n  It will: \(what)"
            guard confirm(question) else {
                let message = "not confirmed; nothing was done (resume the run to be asked again)"
                try journal.append(JournalEvent(event: .stepFinished, step: step.name, status: .skipped, seconds: 0, error: message))
                output("[\(position)] \(step.name): ✗ \(message)")
                return (record(.skipped, 0, 0, [:], message), true)
            }
        }
        let began = Date()
        var lastError = ""
        for attempt in 1...(step.retries + 1) {
            try journal.append(JournalEvent(event: .stepStarted, step: step.name, attempt: attempt))
            FaultPoint.reached("runbook.started:\(step.name)")
            do {
                var out = try await Self.withTimeout(step.timeout, name: step.name) { try await action.run(inputs, context) }
                // Production's state before the first attempt changed it, not what a failed one left.
                var carried: [String] = []
                for key in action.stateOutputs.sorted() {
                    if let earlier = inherited?[key], earlier != out[key] {
                        carried.append("\(key)=\(earlier) (found now: \(out[key] ?? "-"); recorded by run \(inheritedFrom ?? "?"))")
                        out[key] = earlier
                    }
                }
                let seconds = Date().timeIntervalSince(began)
                try journal.append(JournalEvent(event: .stepFinished, step: step.name, attempt: attempt, status: .ok, seconds: seconds, outputs: out))
                FaultPoint.reached("runbook.finished:\(step.name)")
                output("[\(position)] \(step.name): ✓ \(HumanDuration.format(seconds))")
                for line in carried { output("    state before the first attempt: \(line)") }
                for key in out.keys.sorted() { show(key, out[key] ?? "") }
                return (record(.ok, seconds, attempt, out, nil), false)
            } catch is CancellationError {
                try journal.append(JournalEvent(event: .stepFinished, step: step.name, attempt: attempt, status: .interrupted,
                    seconds: Date().timeIntervalSince(began), error: "interrupted"))
                output("[\(position)] \(step.name): interrupted; resume the run to continue")
                return (record(.interrupted, Date().timeIntervalSince(began), attempt, [:], "interrupted"), false)
            } catch {
                if Task.isCancelled {
                    try journal.append(JournalEvent(event: .stepFinished, step: step.name, attempt: attempt, status: .interrupted,
                        seconds: Date().timeIntervalSince(began), error: "interrupted"))
                    return (record(.interrupted, Date().timeIntervalSince(began), attempt, [:], "interrupted"), false)
                }
                lastError = (error as? LifeboatError).map { $0.message + ($0.hint.map { " (\($0))" } ?? "") } ?? "\(error)"
                if attempt <= step.retries {
                    output("[\(position)] \(step.name): attempt \(attempt) failed: \(lastError); retrying in \(HumanDuration.format(step.retryDelay))")
                    try? await Task.sleep(for: .seconds(step.retryDelay))
                }
            }
        }
        let seconds = Date().timeIntervalSince(began)
        try journal.append(JournalEvent(event: .stepFinished, step: step.name, attempt: step.retries + 1, status: .failed, seconds: seconds,
            error: lastError))
        output("[\(position)] \(step.name): ✗ \(lastError)")
        return (record(.failed, seconds, step.retries + 1, [:], lastError), false)
    }

    /// An output, whole: one line, or an indented block for multi-line text (a `terraform plan`).
    func show(_ key: String, _ value: String) {
        let lines = value.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.count <= 1 {
            output("    \(key) = \(value)")
        } else {
            output("    \(key):")
            for line in lines { output("      | \(line)") }
        }
    }

    static func withTimeout<T: Sendable>(_ timeout: TimeInterval?, name: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        guard let timeout else { return try await body() }
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: .seconds(timeout))
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else {
                throw LifeboatError(.timeout, "step \(name) did not finish within \(HumanDuration.format(timeout))")
            }
            return value
        }
    }

    static func newRunID(_ name: String) -> String { TimestampID.make(name: name) }
}

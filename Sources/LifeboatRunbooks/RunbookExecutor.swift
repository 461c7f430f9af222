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

    public init(runID: String, runbook: String, status: Status, steps: [StepRecord], totalSeconds: Double, journal: String) {
        self.runID = runID
        self.runbook = runbook
        self.status = status
        self.steps = steps
        self.totalSeconds = totalSeconds
        self.journal = journal
    }
}

/// Runs runbooks step by step with a journal written before and after each step.
///
/// - A killed run is resumed with `resume`: finished steps are not repeated (their outputs come
///   from the journal); a step that had started but not finished is run again.
/// - `dryRun` prints the plan and changes nothing.
/// - A step with `confirm`, or a destructive step of a `production: true` runbook, runs only after
///   `confirm` answers yes (or with `assumeYes`).
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

    /// The plan, one line per step, with every resolvable reference filled in.
    public func plan(_ runbook: Runbook, vars: [String: String]) -> [String] {
        let all = Self.expandVars(runbook.vars.merging(vars) { _, new in new })
        var lines = ["runbook \(runbook.name): \(runbook.steps.count) steps\(runbook.production ? " (production: destructive steps need confirmation)" : "")"]
        for (i, step) in runbook.steps.enumerated() {
            let action = RunbookActions.all[step.action]
            let resolved = (try? step.with.mapValues { try $0.resolved { Self.lookup($0, vars: all, outputs: [:]) ?? "${\($0)}" } }) ?? step.with
            let text = action?.describe(StepInputs(step: step.name, values: resolved)) ?? step.action
            var line = "  \(i + 1). \(step.name) [\(step.action)]: \(text)"
            if needsConfirmation(step, runbook) { line += "  ⚠ asks for confirmation" }
            if let t = step.timeout { line += "  (timeout \(HumanDuration.format(t)))" }
            if step.retries > 0 { line += "  (retries \(step.retries))" }
            switch step.onFailure {
            case .stop: break
            case .continue: line += "  (on failure: continue)"
            case .compensate(let comp): line += "  (on failure: \(comp.map(\.name).joined(separator: ", ")))"
            }
            lines.append(line)
        }
        return lines
    }

    func needsConfirmation(_ step: Runbook.Step, _ runbook: Runbook) -> Bool {
        step.confirm != nil || (runbook.production && (RunbookActions.all[step.action]?.destructive ?? true))
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

    /// Starts a new run.
    public func run(_ runbook: Runbook, text: String, vars: [String: String]) async throws -> RunResult {
        let runID = Self.newRunID(runbook.name)
        let journal = try RunJournal(directory: stateDirectory, runID: runID)
        let all = Self.expandVars(runbook.vars.merging(vars) { _, new in new })
        try journal.append(JournalEvent(event: .runStarted, runbook: text, vars: all))
        output("run \(runID) of \(runbook.name) (journal \(journal.path))")
        return try await execute(runbook, vars: all, journal: journal, earlier: [])
    }

    /// Continues a run from its journal.
    public func resume(runID: String) async throws -> RunResult {
        let journal = try RunJournal(directory: stateDirectory, runID: runID)
        let events = try journal.events()
        guard let start = events.first(where: { $0.event == .runStarted }), let text = start.runbook else {
            throw LifeboatError(.notFound, "no run \(runID) in \(stateDirectory)", hint: "list runs with `lifeboat runbook list`")
        }
        if let end = events.last(where: { $0.event == .runFinished }), end.status == .ok {
            throw LifeboatError(.invalidUsage, "run \(runID) already finished successfully")
        }
        let runbook = try Runbook(yaml: text)
        output("resuming run \(runID) of \(runbook.name)")
        return try await execute(runbook, vars: start.vars ?? [:], journal: journal, earlier: events)
    }

    private func execute(_ runbook: Runbook, vars: [String: String], journal: RunJournal, earlier: [JournalEvent]) async throws -> RunResult {
        let began = Date()
        var outputs: [String: [String: String]] = [:]
        var done = Set<String>()
        var started = Set<String>()
        for e in earlier {
            guard let name = e.step else { continue }
            if e.event == .stepStarted { started.insert(name) }
            if e.event == .stepFinished {
                let step = runbook.steps.first { $0.name == name }
                if e.status == .ok || (e.status == .failed && step?.onFailure == .continue) {
                    done.insert(name)
                    outputs[name] = e.outputs ?? [:]
                }
            }
        }
        var records: [StepRecord] = []
        func finish(_ status: RunResult.Status) throws -> RunResult {
            let journalStatus: JournalEvent.Status = status == .succeeded ? .ok : (status == .interrupted ? .interrupted : .failed)
            try journal.append(JournalEvent(event: .runFinished, status: journalStatus))
            output("run \(journal.runID): \(status.rawValue) in \(HumanDuration.format(Date().timeIntervalSince(began)))")
            return RunResult(runID: journal.runID, runbook: runbook.name, status: status, steps: records,
                totalSeconds: Date().timeIntervalSince(began), journal: journal.path)
        }

        for (index, step) in runbook.steps.enumerated() {
            if done.contains(step.name) {
                output("[\(index + 1)/\(runbook.steps.count)] \(step.name): done in an earlier run, not repeated")
                records.append(StepRecord(name: step.name, action: step.action, status: .ok, seconds: 0, attempts: 0,
                    outputs: outputs[step.name] ?? [:], error: nil, fromEarlierRun: true))
                continue
            }
            if started.contains(step.name) {
                output("[\(index + 1)/\(runbook.steps.count)] \(step.name): was interrupted in an earlier run; running it again")
            }
            let outcome = try await runStep(step, runbook: runbook, position: "\(index + 1)/\(runbook.steps.count)", vars: vars,
                outputs: outputs, journal: journal)
            records.append(outcome.record)
            switch outcome.record.status {
            case .ok:
                outputs[step.name] = outcome.record.outputs
            case .interrupted:
                return try finish(.interrupted)
            case .failed, .skipped:
                if outcome.notConfirmed { return try finish(.notConfirmed) }
                switch step.onFailure {
                case .continue:
                    continue
                case .stop:
                    return try finish(.failed)
                case .compensate(let steps):
                    output("running \(steps.count) compensating step(s)")
                    for comp in steps {
                        let r = try await runStep(comp, runbook: runbook, position: "compensate", vars: vars, outputs: outputs, journal: journal)
                        records.append(r.record)
                        if r.record.status == .ok { outputs[comp.name] = r.record.outputs }
                    }
                    return try finish(.failed)
                }
            }
        }
        return try finish(.succeeded)
    }

    private func runStep(_ step: Runbook.Step, runbook: Runbook, position: String, vars: [String: String],
        outputs: [String: [String: String]], journal: RunJournal) async throws -> (record: StepRecord, notConfirmed: Bool)
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
        if needsConfirmation(step, runbook), !assumeYes {
            let question = (step.confirm ?? "This step changes production.") + "\n  It will: \(what)"
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
                let out = try await Self.withTimeout(step.timeout, name: step.name) { try await action.run(inputs, context) }
                let seconds = Date().timeIntervalSince(began)
                try journal.append(JournalEvent(event: .stepFinished, step: step.name, attempt: attempt, status: .ok, seconds: seconds, outputs: out))
                FaultPoint.reached("runbook.finished:\(step.name)")
                output("[\(position)] \(step.name): ✓ \(HumanDuration.format(seconds))\(out.isEmpty ? "" : " " + out.keys.sorted().map { "\($0)=\(out[$0] ?? "")" }.joined(separator: " ").prefix(200))")
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

import Foundation
import LifeboatCore
import Yams

/// A runbook: named steps, each an action with inputs, run in order by `RunbookExecutor`.
/// The format is documented in `docs/runbooks.md`.
public struct Runbook: Sendable, Equatable {
    public enum OnFailure: Sendable, Equatable {
        /// Stop the run (the default); it can be resumed after the cause is fixed.
        case stop
        /// Record the failure and go on with the next step.
        case `continue`
        /// Run these steps, then stop.
        case compensate([Step])
    }

    public struct Step: Sendable, Equatable {
        public var name: String
        public var action: String
        /// Inputs; values may contain `${vars.x}`, `${steps.<name>.<output>}` and `${env.X}`.
        public var with: [String: InputValue]
        public var description: String?
        /// Ask a human before running, showing this text.
        public var confirm: String?
        public var timeout: TimeInterval?
        public var retries: Int
        public var retryDelay: TimeInterval
        public var onFailure: OnFailure
        /// In a drill, whether the step's time counts toward the RTO (`rto: false` for clean-up).
        public var countsTowardRTO: Bool = true
        /// Post-conditions of this step: read-only steps run right after it; the step fails if one does.
        public var expect: [Step] = []
    }

    public var name: String
    public var description: String
    /// Marks a runbook that acts on production: its destructive steps always need confirmation.
    public var production: Bool
    public var vars: [String: String]
    public var steps: [Step]
    /// Post-conditions of the whole run (every service at its desired count and steady, the cluster
    /// available, an HTTP 200): read-only steps run after the last step; the run is reported ok only
    /// when all of them pass.
    public var expect: [Step]

    static let stepKeys: Set<String> = ["name", "action", "with", "description", "confirm", "timeout", "retries", "retry_delay", "on_failure",
        "rto", "expect"]
    static let topKeys: Set<String> = ["name", "description", "production", "vars", "steps", "expect"]

    /// Every step, post-conditions and compensations included.
    var allSteps: [Step] { (steps + expect).flatMap { [$0] + $0.compensations + $0.expect } }

    /// Parses and validates YAML; errors name the step and key.
    public init(yaml: String) throws {
        let loaded: Any?
        do {
            loaded = try Yams.load(yaml: yaml)
        } catch {
            throw LifeboatError(.invalidUsage, "the runbook is not valid YAML", cause: error)
        }
        guard let top = loaded as? [String: Any] else { throw LifeboatError(.invalidUsage, "a runbook must be a mapping with name and steps") }
        for key in top.keys where !Self.topKeys.contains(key) {
            throw LifeboatError(.invalidUsage, "unknown runbook key '\(key)'", hint: "valid keys: \(Self.topKeys.sorted().joined(separator: ", "))")
        }
        guard let name = top["name"] as? String, !name.isEmpty else { throw LifeboatError(.invalidUsage, "the runbook needs a name") }
        self.name = name
        description = top["description"].map { "\($0)" } ?? ""
        production = (top["production"] as? Bool) ?? false
        var vars: [String: String] = [:]
        if let v = top["vars"] {
            guard let map = v as? [String: Any] else { throw LifeboatError(.invalidUsage, "vars must be a mapping") }
            for (k, value) in map { vars[k] = "\(value)" }
        }
        self.vars = vars
        guard let list = top["steps"] as? [Any], !list.isEmpty else { throw LifeboatError(.invalidUsage, "the runbook needs a list of steps") }
        steps = try list.enumerated().map { try Self.step($1, index: $0) }
        if let e = top["expect"] {
            guard let items = e as? [Any] else { throw LifeboatError(.invalidUsage, "expect must be a list of steps") }
            expect = try items.enumerated().map { try Self.step($1, index: $0) }
        } else {
            expect = []
        }
        var seen = Set<String>()
        for s in allSteps {
            guard seen.insert(s.name).inserted else { throw LifeboatError(.invalidUsage, "two steps are named '\(s.name)'") }
            guard RunbookActions.names.contains(s.action) else {
                throw LifeboatError(.invalidUsage, "step '\(s.name)' uses unknown action '\(s.action)'",
                    hint: "actions: \(RunbookActions.names.sorted().joined(separator: ", "))")
            }
        }
        for s in expect + steps.flatMap(\.expect) where RunbookActions.all[s.action]?.destructive ?? true {
            throw LifeboatError(.invalidUsage, "post-condition '\(s.name)' uses \(s.action), which changes things",
                hint: "post-conditions only check: use a status, expect, verify or http.check action")
        }
    }

    static func step(_ raw: Any, index: Int) throws -> Step {
        guard let map = raw as? [String: Any] else { throw LifeboatError(.invalidUsage, "step \(index + 1) must be a mapping") }
        let label = (map["name"] as? String) ?? "#\(index + 1)"
        for key in map.keys where !stepKeys.contains(key) {
            throw LifeboatError(.invalidUsage, "unknown key '\(key)' in step '\(label)'", hint: "valid keys: \(stepKeys.sorted().joined(separator: ", "))")
        }
        guard let name = map["name"] as? String, !name.isEmpty else { throw LifeboatError(.invalidUsage, "step \(index + 1) needs a name") }
        guard let action = map["action"] as? String else { throw LifeboatError(.invalidUsage, "step '\(name)' needs an action") }
        var inputs: [String: InputValue] = [:]
        if let w = map["with"] {
            guard let m = w as? [String: Any] else { throw LifeboatError(.invalidUsage, "'with' of step '\(name)' must be a mapping") }
            for (k, v) in m { inputs[k] = try InputValue(v, at: "\(name).with.\(k)") }
        }
        var onFailure = OnFailure.stop
        switch map["on_failure"] {
        case nil: break
        case let s as String where s == "stop": onFailure = .stop
        case let s as String where s == "continue": onFailure = .continue
        case let list as [Any]: onFailure = .compensate(try list.enumerated().map { try step($1, index: $0) })
        default:
            throw LifeboatError(.invalidUsage, "on_failure of step '\(name)' must be stop, continue or a list of steps")
        }
        var expect: [Step] = []
        if let e = map["expect"] {
            guard let items = e as? [Any] else { throw LifeboatError(.invalidUsage, "expect of step '\(name)' must be a list of steps") }
            expect = try items.enumerated().map { try step($1, index: $0) }
        }
        return Step(name: name, action: action, with: inputs, description: map["description"].map { "\($0)" },
            confirm: map["confirm"].map { "\($0)" }, timeout: try map["timeout"].map { try HumanDuration.parse("\($0)") },
            retries: (map["retries"] as? Int) ?? 0, retryDelay: try map["retry_delay"].map { try HumanDuration.parse("\($0)") } ?? 2,
            onFailure: onFailure, countsTowardRTO: (map["rto"] as? Bool) ?? true, expect: expect)
    }
}

extension Runbook.Step {
    var compensations: [Runbook.Step] {
        if case .compensate(let steps) = onFailure { return steps }
        return []
    }
}

/// An input value: text (with `${...}` references), a list or a mapping of them.
public indirect enum InputValue: Sendable, Equatable {
    case text(String)
    case list([InputValue])
    case map([String: InputValue])

    public init(_ raw: Any, at path: String) throws {
        switch raw {
        case let s as String: self = .text(s)
        case let b as Bool: self = .text(b ? "true" : "false")
        case let i as Int: self = .text(String(i))
        case let d as Double: self = .text(String(d))
        case let l as [Any]: self = .list(try l.enumerated().map { try InputValue($1, at: "\(path)[\($0)]") })
        case let m as [String: Any]: self = .map(try m.mapValues { try InputValue($0, at: path) })
        default: throw LifeboatError(.invalidUsage, "\(path) has a value of an unsupported kind")
        }
    }

    /// Replaces `${...}` references; an unknown reference is an error naming it.
    public func resolved(_ lookup: (String) -> String?) throws -> InputValue {
        switch self {
        case .text(let s): return .text(try Self.substitute(s, lookup))
        case .list(let l): return .list(try l.map { try $0.resolved(lookup) })
        case .map(let m): return .map(try m.mapValues { try $0.resolved(lookup) })
        }
    }

    public static func substitute(_ text: String, _ lookup: (String) -> String?) throws -> String {
        var out = ""
        var rest = Substring(text)
        while let open = rest.range(of: "${") {
            out += rest[..<open.lowerBound]
            guard let close = rest[open.upperBound...].firstIndex(of: "}") else {
                throw LifeboatError(.invalidUsage, "unclosed ${ in '\(text)'")
            }
            let ref = String(rest[open.upperBound..<close])
            guard let value = lookup(ref) else {
                throw LifeboatError(.invalidUsage, "unknown reference ${\(ref)}",
                    hint: "use ${vars.NAME}, ${steps.STEP.OUTPUT} of an earlier step, or ${env.NAME}")
            }
            out += value
            rest = rest[rest.index(after: close)...]
        }
        return out + rest
    }

    public var text: String? {
        if case .text(let s) = self { return s }
        return nil
    }
}

/// A step's resolved inputs, with typed accessors whose errors name the step and input.
public struct StepInputs: Sendable {
    public var step: String
    public var values: [String: InputValue]

    public func string(_ key: String) throws -> String {
        guard let v = values[key]?.text else { throw LifeboatError(.invalidUsage, "step '\(step)' needs input '\(key)'") }
        return v
    }

    public func optional(_ key: String) -> String? { values[key]?.text }

    public func int(_ key: String, default d: Int? = nil) throws -> Int {
        guard let text = values[key]?.text else {
            if let d { return d }
            throw LifeboatError(.invalidUsage, "step '\(step)' needs input '\(key)'")
        }
        guard let v = Int(text) else { throw LifeboatError(.invalidUsage, "input '\(key)' of step '\(step)' must be a whole number") }
        return v
    }

    public func duration(_ key: String, default d: TimeInterval) throws -> TimeInterval {
        guard let text = values[key]?.text else { return d }
        return try HumanDuration.parse(text)
    }

    public func bool(_ key: String, default d: Bool) -> Bool {
        guard let text = values[key]?.text else { return d }
        return ["true", "yes", "on", "1"].contains(text.lowercased())
    }

    public func map(_ key: String) -> [String: String] {
        guard case .map(let m)? = values[key] else { return [:] }
        return m.compactMapValues(\.text)
    }

    public func list(_ key: String) -> [InputValue] {
        guard case .list(let l)? = values[key] else { return [] }
        return l
    }
}

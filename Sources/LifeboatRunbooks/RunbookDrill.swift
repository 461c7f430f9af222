import Foundation
import LifeboatCore
import LifeboatRepository

/// Drills that time a runbook end to end: the seed's "service restart" (10 minutes) and "full
/// infrastructure rebuild" (4 hours), and restores Lifeboat does not drive itself (an Aurora
/// snapshot restore on AWS: `builtin:aws-restore-drill`, timed against the scenario's objective). Lifeboat cannot know how a team restarts its services or
/// rebuilds its infrastructure, so the team's runbook says it (its last steps should prove the
/// service healthy: `http.check`, `verify`); the drill runs it journaled, counts every step toward
/// the RTO (confirmations included: a human answering is part of a real recovery), turns each step
/// into a check, and records the report in the repository next to the restore drills.
public struct RunbookDrill: Sendable {
    public var repository: Repository
    public var executor: RunbookExecutor

    public init(repository: Repository, executor: RunbookExecutor) {
        self.repository = repository
        self.executor = executor
    }

    public func run(scenario: DrillScenario, runbook: Runbook, text: String, vars: [String: String], objectives: DrillObjectives)
        async throws -> DrillReport
    {
        let started = Date()
        var failure: String?
        var result: RunResult?
        do {
            result = try await executor.run(runbook, text: text, vars: vars)
        } catch let error as LifeboatError {
            failure = error.message
        }
        let steps = result?.steps ?? []
        let uncounted = Set((runbook.steps + runbook.steps.flatMap(\.compensations)).filter { !$0.countsTowardRTO }.map(\.name))
        let phases = steps.map {
            DrillReport.Phase(name: "\($0.name) (\($0.action))", seconds: $0.seconds, countsTowardRTO: !uncounted.contains($0.name))
        }
        var checks = steps.map { step in
            DrillReport.CheckResult(name: step.name, passed: step.status == .ok,
                detail: step.error ?? "\(step.status.rawValue) in \(HumanDuration.format(step.seconds))\(step.attempts > 1 ? " after \(step.attempts) attempts" : "")")
        }
        if let result, result.status != .succeeded {
            failure = failure ?? "the runbook run ended \(result.status.rawValue); resume it with `lifeboat runbook resume \(result.runID)`"
            checks.append(.init(name: "runbook finished", passed: false, detail: result.status.rawValue))
        } else if result == nil {
            checks.append(.init(name: "runbook started", passed: false, detail: failure ?? "no run"))
        }
        // The whole run (confirmations and pauses between steps included) minus clean-up steps.
        let rto = (result?.totalSeconds ?? Date().timeIntervalSince(started)) - phases.filter { !$0.countsTowardRTO }.reduce(0) { $0 + $1.seconds }
        let rtoMet = failure == nil && rto <= objectives.rtoSeconds
        // A step that restores to the latest point says how far that point trailed (`rpo_seconds`,
        // aws.rds.restore to the latest restorable time): the drill's measured RPO.
        let rpo = steps.compactMap { $0.outputs["rpo_seconds"].flatMap(Double.init) }.max()
        var rpoMet: Bool?
        if let limit = objectives.rpoSeconds {
            rpoMet = rpo.map { $0 <= limit } ?? false
            checks.append(.init(name: "RPO measured", passed: rpo != nil,
                detail: rpo.map { String(format: "%.3f s (objective %@)", $0, HumanDuration.format(limit)) } ?? "no step reported rpo_seconds: the runbook does not restore to the latest point"))
        }
        let passed = failure == nil && rtoMet && rpoMet != false && checks.allSatisfy(\.passed)
        let id = TimestampID.make(started)
        let report = DrillReport(id: id, scenario: scenario, host: ProcessInfo.processInfo.hostName, startedAt: started,
            finishedAt: Date(), backupID: nil, backupStopTime: nil, targetTime: nil, achievedTime: nil, runbook: runbook.name,
            runID: result?.runID, achievedLSN: nil, productionLSNAtTarget: nil, archiveLagSeconds: nil, phases: phases,
            rtoSeconds: rto, rpoSeconds: rpo, objectives: objectives, checks: checks, rtoMet: rtoMet, rpoMet: rpoMet, passed: passed,
            scratchDirectory: nil, error: failure)
        try await DrillHistory.record(report, in: repository)
        return report
    }
}

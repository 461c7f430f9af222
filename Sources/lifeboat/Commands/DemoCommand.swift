import ArgumentParser
import Foundation
import LifeboatConfiguration
import LifeboatCore
import LifeboatPostgres

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "demo",
        abstract: "Run a complete disaster and point-in-time recovery on a throwaway local cluster and report.")

    @Option(help: "pgbench scale (100,000 accounts each; default 5).") var scale: Int = 5
    @Flag(help: "Keep the work directory (clusters stopped) for inspection.") var keep = false
    @Option(name: .customLong("log-level"), help: "Log level (default warning).") var logLevel: LogLevelName?
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        guard (1...1000).contains(scale) else { throw ValidationError("--scale must be between 1 and 1000") }
    }

    func run() async throws {
        let logger = Context(settings: try LifeboatSettings(options: CommandLineValues(logLevel: logLevel))).makeLogger()
        let quiet = json
        if !quiet { print("Lifeboat demo: a disaster and a point-in-time recovery on a throwaway PostgreSQL cluster\n") }
        let report = try await Demo(scale: scale, keep: keep, binary: LifeboatInvocation.currentExecutable, logger: logger).run { line in
            if !quiet { print(line) }
        }
        if json {
            try Output.json(report)
        } else {
            print("\nReport")
            print("  recovery time (RTO): \(HumanDuration.format(report.recoverySeconds)) from `restore` to a promoted server answering queries")
            let window = report.dataLossWindowSeconds.map { String(format: "%.3f s", $0) } ?? "-"
            print("  data loss (RPO): \(report.transactionsLost) transactions lost; last recovered commit \(window) before T")
            print("  backup: \(Output.bytes(report.backupLogicalBytes)) read, \(Output.bytes(report.backupStoredBytes)) stored")
            for (name, ok) in report.checks.sorted(by: { $0.key < $1.key }) { print("  \(ok ? "✓" : "✗") \(name)") }
            print(report.passed ? "\nRESULT: PASSED" : "\nRESULT: FAILED")
            if keep { print("work directory kept: \(report.workDirectory)") }
        }
        if !report.passed { throw LifeboatError(.recoveryFailed, "the restored data did not match what it was at T") }
    }
}

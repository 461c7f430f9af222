import Foundation
import LifeboatAWSCore
import LifeboatCore
import LifeboatPostgres
import LifeboatRunbooks
import LifeboatTesting

/// A runbook executor for AWS steps only: `explicit` is the configuration's `aws:` section (moto's
/// endpoint and keys), every confirmation answered yes, no repository.
func awsExecutor(_ explicit: AWSAccountOverrides, sandbox: TestSandbox) -> RunbookExecutor {
    let context = RunbookContext(repository: { throw LifeboatError(.invalidUsage, "no repository in this test") },
        production: PostgresEndpoint(), pgdata: nil, invocation: LifeboatInvocation(executable: "/bin/false"), aws: explicit, logger: TestSandbox.logger())
    return RunbookExecutor(context: context, stateDirectory: sandbox.path("runs"), assumeYes: true)
}

/// Runs one runbook text with the executor above.
func runAWSRunbook(_ yaml: String, vars: [String: String] = [:], explicit: AWSAccountOverrides, sandbox: TestSandbox) async throws -> RunResult {
    try await awsExecutor(explicit, sandbox: sandbox).run(try Runbook(yaml: yaml), text: yaml, vars: vars)
}

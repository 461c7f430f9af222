import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatRunbooks
import LifeboatTesting
import Testing

struct RunbookModelTests {
    let executor = RunbookExecutor(
        context: RunbookContext(repository: { throw LifeboatError(.repository, "no repository in this test") },
            production: PostgresEndpoint(), pgdata: nil, invocation: LifeboatInvocation(executable: "/bin/false"), logger: TestSandbox.logger()),
        stateDirectory: "/nonexistent")

    @Test(arguments: BuiltinRunbooks.all.keys.sorted())
    func everyBuiltinParsesAndPlans(_ name: String) throws {
        let book = try Runbook(yaml: try BuiltinRunbooks.load("builtin:\(name)"))
        #expect(book.name == name)
        let plan = executor.plan(book, vars: [:])
        #expect(plan.count == book.steps.count + 1 + book.expect.count + book.steps.reduce(0) { $0 + $1.expect.count })
        // Variables that refer to variables are expanded in the plan, questions included.
        #expect(!plan.joined().contains("${vars."))
        if book.production {
            #expect(plan.contains { $0.contains("⚠ asks: \"") })
        }
    }

    @Test func errorsNameTheStepAndKey() {
        func message(_ yaml: String) -> String {
            do {
                _ = try Runbook(yaml: yaml)
                return "parsed"
            } catch let e as LifeboatError {
                return e.message
            } catch {
                return "\(error)"
            }
        }
        #expect(message("name: x\nsteps:\n  - { name: a, action: shell, retires: 2 }") == "unknown key 'retires' in step 'a'")
        #expect(message("name: x\nsteps:\n  - { name: a, action: reboot-the-world }").contains("unknown action 'reboot-the-world'"))
        #expect(message("name: x\nsteps:\n  - { name: a, action: wait }\n  - { name: a, action: wait }") == "two steps are named 'a'")
        #expect(message("name: x\nsteps: []") == "the runbook needs a list of steps")
        #expect(message("name: x\nstep:\n  - { name: a, action: wait }").contains("unknown runbook key 'step'"))
        #expect(message("name: x\nsteps:\n  - { name: a, action: wait, on_failure: panic }").contains("on_failure"))
    }

    @Test func referencesResolveAndUnknownOnesFail() throws {
        let book = try Runbook(yaml: """
            name: refs
            vars: { host: db1, url: "postgres://${vars.host}/app" }
            steps:
              - { name: a, action: shell, with: { command: "echo ${vars.url} ${steps.earlier.out}" } }
            """)
        let plan = executor.plan(book, vars: ["host": "db2"])
        #expect(plan[1].contains("echo postgres://db2/app ${steps.earlier.out}"))
    }

    @Test func substitutionRules() throws {
        let lookup: (String) -> String? = { ["vars.a": "1", "steps.s.port": "5433"][$0] }
        #expect(try InputValue.text("x=${vars.a} p=${steps.s.port}").resolved(lookup) == .text("x=1 p=5433"))
        #expect(throws: LifeboatError.self) { try InputValue.text("${vars.missing}").resolved(lookup) }
        #expect(throws: LifeboatError.self) { try InputValue.text("${vars.a").resolved(lookup) }
    }
}

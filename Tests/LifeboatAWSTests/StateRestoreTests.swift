import Foundation
import LifeboatAWS
import LifeboatAWSCore
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository
import LifeboatRunbooks
import LifeboatTesting
import Testing

/// Scenario 4's first step for real: a Terraform state in a versioned bucket on an S3 API server
/// made what it was before a destroy, the restore undone, and the refusals.
@Suite(.serialized) struct StateRestoreTests {
    func run(_ yaml: String, explicit: AWSAccountOverrides, sandbox: TestSandbox) async throws -> RunResult {
        try await runAWSRunbook(yaml, explicit: explicit, sandbox: sandbox)
    }

    func step(_ url: String, _ selector: String) -> String {
        """
        name: restore-state
        steps:
          - name: restore
            action: s3.restore-version
            with: { url: "\(url)", \(selector) }
        """
    }

    @Test func terraformStateIsRestoredToBeforeTheDestroyAndBack() async throws {
        let sandbox = try TestSandbox("tfstate")
        defer { Task { await sandbox.remove() } }
        let settings = try await MotoServer.shared.bucket(prefix: "")
        let s3 = try S3Client(settings.s3Bucket)
        let store = S3Versions(s3)
        let explicit = MotoServer.overrides(settings.endpoint, region: settings.region)
        let key = "production/terraform.tfstate"
        let url = "s3://\(settings.bucket)/\(key)"

        // Without versioning there is nothing to go back to: refused, named.
        try await s3.put(key, data: Data(#"{"serial":1}"#.utf8))
        let unversioned = try await run(step(url, "before: \"\(Timestamp.format(Date()))\""), explicit: explicit, sandbox: sandbox)
        #expect(unversioned.status == .failed && unversioned.steps.first?.error?.contains("does not keep versions") == true)

        try await s3.setVersioning(true)
        let states = [#"{"serial":2,"resources":["aurora","ecs"]}"#, #"{"serial":3,"resources":["aurora","ecs","alb"]}"#,
                      #"{"serial":4,"resources":[]}"#]
        var times: [Date] = []
        for state in states {
            try await Task.sleep(for: .milliseconds(1100))
            times.append(Date())
            try await s3.put(key, data: Data(state.utf8))
        }
        // S3 keeps modification times to the second: the destroy's own second is "not before" it.
        let destroyedAt = Date(timeIntervalSince1970: times[2].timeIntervalSince1970.rounded(.down))
        let restored = try await run(step(url, "before: \"\(Timestamp.format(destroyedAt))\""), explicit: explicit, sandbox: sandbox)
        #expect(restored.status == .succeeded, "\(restored.steps.first?.error ?? "")")
        let out = try #require(restored.steps.first?.outputs)
        #expect(out["changed"] == "true")
        #expect(String(decoding: try await store.get(key), as: UTF8.self) == states[1], "the state before the destroy")
        let versions = try await store.versions(of: key)
        #expect(versions.count == 5 && versions.first?.versionID == out["new_version"], "the destroyed state stays in the history")

        // Undone by version id: the destroyed state is current again.
        let undo = try await run(step(url, "version_id: \"\(try #require(out["previous_version"]))\""), explicit: explicit, sandbox: sandbox)
        #expect(undo.status == .succeeded)
        #expect(String(decoding: try await store.get(key), as: UTF8.self) == states[2])

        // Nothing that old, and a version that does not exist: refused, the state untouched.
        let tooEarly = try await run(step(url, "before: \"2020-01-01T00:00:00Z\""), explicit: explicit, sandbox: sandbox)
        #expect(tooEarly.status == .failed && tooEarly.steps.first?.error?.contains("no version written before") == true)
        let unknown = try await run(step(url, "version_id: \"nope\""), explicit: explicit, sandbox: sandbox)
        #expect(unknown.status == .failed)
        #expect(String(decoding: try await store.get(key), as: UTF8.self) == states[2])
    }
}

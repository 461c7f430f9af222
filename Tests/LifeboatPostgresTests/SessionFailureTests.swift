import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatTesting
import Testing

/// A query whose server dies under it fails; it never waits forever (a tool that hangs on the bad
/// day is worse than one that fails).
@Suite(.serialized) struct SessionFailureTests {
    @Test func aQueryWaitingWhenThePostmasterIsKilledFails() async throws {
        let sandbox = try TestSandbox("session-kill")
        defer { Task { await sandbox.remove() } }
        // A commit waits for a synchronous standby that never comes.
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: nil)
        _ = try await pg.query("CREATE TABLE t (n int)")
        _ = try await pg.query("ALTER SYSTEM SET synchronous_standby_names = 'nobody'")
        _ = try await pg.query("SELECT pg_reload_conf()")
        try await Task.sleep(for: .milliseconds(500))
        let session = try await PostgresSession.connect(pg.endpoint, logger: TestSandbox.logger())
        let began = Date()
        let insert = Task { try await session.query("INSERT INTO t VALUES (1)") }
        try await Task.sleep(for: .seconds(1))
        pg.cluster.kill()
        let text = await Self.outcome(within: 30) { try await insert.value }
        #expect(text.hasPrefix("failed"), "\(text) after \(Date().timeIntervalSince(began)) s")
        // A session whose connection closed fails at once, too.
        let again = await Self.outcome(within: 10) { try await session.query("SELECT 1") }
        #expect(again.hasPrefix("failed"), "\(again)")
        await session.close()
    }

    /// Whichever comes first: the body's outcome or the time limit. The race never waits on the
    /// body, so a test using it fails instead of hanging when the bug is back.
    static func outcome(within seconds: Int, _ body: @escaping @Sendable () async throws -> some Sendable) async -> String {
        await withCheckedContinuation { (continuation: CheckedContinuation<String, Never>) in
            let once = Once(continuation)
            Task {
                do {
                    _ = try await body()
                    once.resume("succeeded")
                } catch {
                    once.resume("failed: \(error)")
                }
            }
            Task {
                try? await Task.sleep(for: .seconds(seconds))
                once.resume("still waiting after \(seconds) s")
            }
        }
    }
}

/// Resumes a continuation once; later calls are ignored.
private final class Once: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<String, Never>?
    init(_ continuation: CheckedContinuation<String, Never>) { self.continuation = continuation }
    func resume(_ value: String) {
        lock.lock()
        let pending = continuation
        continuation = nil
        lock.unlock()
        pending?.resume(returning: value)
    }
}

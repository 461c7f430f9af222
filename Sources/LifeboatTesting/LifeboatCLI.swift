import Foundation
import LifeboatCore
import LifeboatPostgres

/// Runs the built `lifeboat` binary as a user would, stdout and stderr kept apart.
public enum LifeboatCLI {
    @discardableResult
    public static func run(_ arguments: [String], environment: [String: String] = [:], timeout: TimeInterval = 300)
        async throws -> CommandResult
    {
        try await CommandRunner.runSeparately(TestSandbox.lifeboatBinary, arguments, environment: environment, check: false,
            timeout: timeout)
    }

    /// Connection environment for the binary to reach a test cluster.
    public static func environment(for pg: TestPostgres) -> [String: String] {
        ["PGHOST": pg.cluster.socketDirectory, "PGPORT": String(pg.port), "PGUSER": pg.cluster.superuser, "PGDATA": pg.cluster.dataDirectory]
    }

    public static func json(_ result: CommandResult) throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any] else {
            throw LifeboatError(.internalError, "not a JSON object: \(result.output)")
        }
        return object
    }
}

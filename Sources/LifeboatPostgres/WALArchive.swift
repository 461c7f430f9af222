import Foundation
import LifeboatCore
import LifeboatRepository
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The two commands PostgreSQL runs: `archive_command` (push) and `restore_command` (fetch).
public struct WALArchive: Sendable {
    public var repository: Repository
    public var logger: Logger

    public init(repository: Repository, logger: Logger) {
        self.repository = repository
        self.logger = logger
    }

    /// Archives the file at `path` (PostgreSQL's `%p`, relative to PGDATA or absolute).
    public func push(path: String) async throws -> WALPushResult {
        let name = (path as NSString).lastPathComponent
        guard let data = FileManager.default.contents(atPath: path) else {
            throw LifeboatError(.notFound, "cannot read WAL file \(path)", hint: "archive_command must pass %p")
        }
        let result = try await repository.pushWAL(name: name, data: data)
        logger.info("wal pushed", metadata: [LogKey.walFile: .string(name), "lifeboat.result": "\(result)"])
        return result
    }

    /// Writes archived `name` to `destination` (PostgreSQL's `%p`), atomically.
    public func fetch(name: String, destination: String) async throws {
        let data = try await repository.fetchWAL(name: name)
        let dir = (destination as NSString).deletingLastPathComponent
        let temp = (dir.isEmpty ? "." : dir) + "/.lifeboat-fetch-\(getpid())-\(name)"
        guard FileManager.default.createFile(atPath: temp, contents: data) else {
            throw LifeboatError(.io, "cannot write \(temp)", hint: "check free space and permissions in \(dir)")
        }
        if rename(temp, destination) != 0 {
            let err = errno
            unlink(temp)
            throw FileStore.ioError("cannot move WAL into place", errno: err, path: destination)
        }
    }
}

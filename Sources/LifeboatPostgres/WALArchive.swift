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

/// SQL about the server's own archiver.
public enum PostgresArchive {
    /// True once `segment` is archived: no `.ready` status, and either a `.done` status or no file
    /// left (a later checkpoint recycled it; PostgreSQL never removes a segment before archiving).
    /// `pg_stat_archiver.last_archived_wal` is no substitute: a `.backup` history file archived after
    /// a later segment makes it go backwards.
    public static func archivedCondition(_ segment: String) -> String {
        "NOT EXISTS (SELECT 1 FROM pg_ls_archive_statusdir() WHERE name = '\(segment).ready') AND (EXISTS (SELECT 1 FROM pg_ls_archive_statusdir() WHERE name = '\(segment).done') OR NOT EXISTS (SELECT 1 FROM pg_ls_waldir() WHERE name = '\(segment)'))"
    }
}

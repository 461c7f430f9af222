import Foundation
import LifeboatCore
import LifeboatFileSystem
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

    /// Archives the file at `path` (PostgreSQL's `%p`, relative to PGDATA or absolute) into this
    /// repository, which must take it (its failure fails `archive_command`), then into each mirror,
    /// best effort with a bound (see `MirrorSet.pushWAL`).
    public func push(path: String, mirrors: MirrorSet? = nil) async throws -> WALPushResult {
        let name = (path as NSString).lastPathComponent
        guard let data = FileManager.default.contents(atPath: path) else {
            throw LifeboatError(.notFound, "cannot read WAL file \(path)", hint: "archive_command must pass %p")
        }
        let result = try await repository.pushWAL(name: name, data: data)
        logger.info("wal pushed", metadata: [LogKey.walFile: .string(name), "lifeboat.result": "\(result)"])
        if let mirrors, !mirrors.isEmpty { _ = await mirrors.pushWAL(name: name, data: data, logger: logger) }
        return result
    }

    /// Writes archived `name` to `destination` (PostgreSQL's `%p`), atomically. For a segment, the next
    /// `prefetch` segments are fetched too (two at a time) into the spool next to `destination`, so the
    /// calls PostgreSQL makes for them find their file there without opening the repository.
    public func fetch(name: String, destination: String, prefetch: Int = 0) async throws {
        let guardian = try TablespaceGuard.forDestination(destination)
        var data = try await repository.fetchWAL(name: name)
        if let guardian { data = try guardian.process(name: name, data: data) }
        try WALPrefetchSpool.writeAtomically(data, to: destination)
        guard prefetch > 0, case .segment(let segment)? = WALFileName(name), data.count > 0 else { return }
        let spool = WALPrefetchSpool(destination: destination)
        spool.discard(before: segment)
        // A segment is wal_segment_size long: a power of two from 1 MiB to 1 GiB (16 MiB by default).
        let size = data.count >= 1 << 20 && data.count <= 1 << 30 && data.count & (data.count - 1) == 0 ? UInt64(data.count) : 16 << 20
        let next = (1...prefetch).map { WALSegment(timeline: segment.timeline, number: segment.number(segmentSize: size) + UInt64($0), segmentSize: size) }
            .filter { !spool.holds($0.name) }
        // Best effort: a segment not archived yet or a failure here only means PostgreSQL's own call
        // for it fetches it directly.
        let archive = self
        _ = try? await forEachBounded(next, parallelism: 1) { await archive.spool($0, into: spool, guard: guardian) }
    }

    /// Fetches `segment` into `spool`, through the restore's tablespace guard; false (logged) when
    /// it is not archived or cannot be stored. A segment the guard refuses is left out of the spool:
    /// the server's own call for it then fails as fatally as it must.
    func spool(_ segment: WALSegment, into spool: WALPrefetchSpool, guard guardian: TablespaceGuard?) async -> Bool {
        do {
            var data = try await repository.fetchWAL(name: segment.name)
            if let guardian { data = try guardian.process(name: segment.name, data: data, owner: spool.owner.map(\.fileOwner)) }
            try spool.put(data, name: segment.name)
            return true
        } catch {
            logger.debug("prefetch stopped", metadata: [LogKey.walFile: .string(segment.name), "lifeboat.error": "\(error)"])
            return false
        }
    }
}

extension WALArchive {
    /// Keeps up to `ahead` segments, from `first` on, in `spool` while a restored server recovers,
    /// so its `restore_command` calls take them from there: run by `restore --start`, which has the
    /// repository open already. With `graph`, follows the line of `timeline` across switches (the
    /// segments the server will ask for); stops at the first segment not archived, or when cancelled.
    public func prefetch(into spool: WALPrefetchSpool, from first: WALSegment, segmentSize: UInt64, ahead: Int,
        guard guardian: TablespaceGuard? = nil, graph: TimelineGraph? = nil, timeline: UInt32? = nil) async
    {
        var number = first.number(segmentSize: segmentSize)
        while !Task.isCancelled {
            if spool.count() >= ahead {
                try? await Task.sleep(for: .milliseconds(20))
                continue
            }
            let segment = graph.flatMap { g in timeline.map { g.segment(number, on: $0) } }
                ?? WALSegment(timeline: first.timeline, number: number, segmentSize: segmentSize)
            number += 1
            if spool.holds(segment.name) { continue }
            guard await self.spool(segment, into: spool, guard: guardian) else { return }
        }
    }

    /// Whether `name` is archived, asked of the store alone: no key needed, so a `restore_command`
    /// call for a file that is not there (PostgreSQL asks for timeline histories that never existed)
    /// answers at once. A missing repository is an error, never "not archived".
    public static func isArchived(name: String, store: any ObjectStore) async throws -> Bool {
        guard let file = WALFileName(name) else { return false }
        if try await store.info(Repository.walKey(file)) != nil { return true }
        guard try await store.info("config") != nil else {
            throw LifeboatError(.repository, "no lifeboat repository at \(store.location)",
                hint: "check the restore_command's --config / --repo")
        }
        return false
    }
}

/// WAL segments fetched ahead of PostgreSQL's requests during recovery, in `pg_wal/.lifeboat-prefetch`
/// of the cluster being recovered. Files arrive by rename after being authenticated and decrypted, so
/// a file in the spool is always whole; archived segments never change, so a spooled one never goes stale.
public struct WALPrefetchSpool: Sendable {
    public static let directoryName = ".lifeboat-prefetch"
    public let directory: String
    /// Owner given to the spool and its files (a restore running as root prefetches for a server
    /// running as the data directory's owner).
    public var owner: OSUser?

    /// The spool for a `restore_command` destination (`%p`, e.g. `pg_wal/RECOVERYXLOG`).
    public init(destination: String) {
        let dir = (destination as NSString).deletingLastPathComponent
        directory = (dir.isEmpty ? "." : dir) + "/" + Self.directoryName
    }

    /// The spool of a data directory.
    public init(dataDirectory: String) {
        directory = dataDirectory + "/pg_wal/" + Self.directoryName
    }

    func holds(_ name: String) -> Bool { access(directory + "/" + name, F_OK) == 0 }

    /// Whether the spool exists (a restore fetched ahead into it).
    var exists: Bool { access(directory, F_OK) == 0 }

    /// Moves a spooled `name` to `destination`; false if it is not spooled.
    public func take(_ name: String, destination: String) -> Bool {
        guard WALFileName(name) != nil else { return false }
        if rename(directory + "/" + name, destination) == 0 {
            if case .segment(let segment)? = WALFileName(name) { discard(before: segment) }
            return true
        }
        return false
    }

    func put(_ data: Data, name: String) throws {
        try FileIO.makeDirectory(directory, mode: 0o700, owner: owner?.fileOwner)
        try WALPrefetchSpool.writeAtomically(data, to: directory + "/" + name, owner: owner)
    }

    /// Spooled segments not yet taken.
    func count() -> Int {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { !$0.hasPrefix(".") }.count
    }

    /// Removes spooled segments of `segment`'s timeline that come before it: recovery has passed them.
    func discard(before segment: WALSegment) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        for name in names {
            if case .segment(let s)? = WALFileName(name), s.timeline == segment.timeline, s.name < segment.name {
                unlink(directory + "/" + name)
            }
        }
    }

    /// Removes the spool (after recovery has ended).
    public func remove() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// WAL is private to the cluster (0600). Not fsynced: a segment lost in a crash is fetched again.
    static func writeAtomically(_ data: Data, to destination: String, owner: OSUser? = nil) throws {
        try FileIO.replaceAtomically(destination, with: data, mode: 0o600, owner: owner?.fileOwner, durability: .atomicOnly)
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

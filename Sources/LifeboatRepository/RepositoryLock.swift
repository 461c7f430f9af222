import Foundation
import LifeboatCore
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Repository locks. Backups hold a shared lock while they decide which chunks already exist;
/// `expire` holds an exclusive one while it deletes. WAL pushes take none: expire only removes WAL
/// older than every kept backup, which a new push never is.
///
/// Protocol: write our lock object, then list all locks; on a conflict with a live lock, remove
/// ours and fail. Two racing writers both see each other and both back off, never both proceed.
/// A lock is stale when it was not refreshed for `staleAfter`, or when it was taken on this host by
/// a process that no longer exists (a `kill -9`); stale locks are removed by whoever finds them.
public struct LockRecord: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable {
        case shared
        case exclusive
    }

    public var id: String
    public var kind: Kind
    public var purpose: String
    public var host: String
    public var pid: Int32
    public var created: Date
    public var refreshed: Date

    public init(id: String, kind: Kind, purpose: String, host: String, pid: Int32, created: Date, refreshed: Date) {
        self.id = id
        self.kind = kind
        self.purpose = purpose
        self.host = host
        self.pid = pid
        self.created = created
        self.refreshed = refreshed
    }
}

public final class RepositoryLock: Sendable {
    public let record: LockRecord
    let store: any ObjectStore
    let logger: Logger

    public static let staleAfter: TimeInterval = 15 * 60

    private init(record: LockRecord, store: any ObjectStore, logger: Logger) {
        self.record = record
        self.store = store
        self.logger = logger
    }

    static func key(_ id: String) -> String { RepositoryObject.lock(id: id).key }

    public static func acquire(_ kind: LockRecord.Kind, purpose: String, repository: Repository) async throws -> RepositoryLock {
        let store = repository.store
        let now = Date()
        let record = LockRecord(id: UUID().uuidString.lowercased(), kind: kind, purpose: purpose, host: ProcessInfo.processInfo.hostName,
            pid: getpid(), created: now, refreshed: now)
        try await store.put(key(record.id), data: try RepositoryJSON.encoder().encode(record), class: .bookkeeping)
        let lock = RepositoryLock(record: record, store: store, logger: repository.logger)
        do {
            for other in try await others(store: store, excluding: record.id, logger: repository.logger) {
                if kind == .exclusive || other.kind == .exclusive {
                    throw LifeboatError(.locked,
                        "the repository is locked by \(other.purpose) (pid \(other.pid) on \(other.host), since \(Timestamp.format(other.created)))",
                        hint: kind == .exclusive
                            ? "wait for it to finish and run again; a lock is considered stale after \(Int(staleAfter / 60)) minutes without refresh"
                            : "expire is running; retry when it has finished")
                }
            }
        } catch {
            try? await lock.release()
            throw error
        }
        return lock
    }

    /// Live locks other than ours; removes stale ones on the way.
    static func others(store: any ObjectStore, excluding: String, logger: Logger) async throws -> [LockRecord] {
        var live: [LockRecord] = []
        let host = ProcessInfo.processInfo.hostName
        for (_, info) in try await store.list(.locks) where !info.key.hasSuffix(excluding) {
            guard let data = try? await store.get(info.key),
                let other = try? RepositoryJSON.decoder().decode(LockRecord.self, from: data)
            else { continue }
            let deadProcess = other.host == host && kill(other.pid, 0) != 0 && errno == ESRCH
            if deadProcess || Date().timeIntervalSince(other.refreshed) > staleAfter {
                logger.notice("removing stale lock", metadata: [LogKey.lock: "\(other.purpose) pid \(other.pid) on \(other.host)"])
                try await store.deleteBookkeeping(info.key)
                continue
            }
            live.append(other)
        }
        return live
    }

    /// Rewrites the lock with a fresh timestamp so others keep seeing it as live.
    public func refresh() async throws {
        var updated = record
        updated.refreshed = Date()
        try await store.put(Self.key(record.id), data: try RepositoryJSON.encoder().encode(updated), class: .bookkeeping)
    }

    public func release() async throws {
        try await store.deleteBookkeeping(Self.key(record.id))
    }

    /// Runs `body` while holding the lock, refreshing it every minute, releasing it afterwards.
    public static func withLock<T: Sendable>(_ kind: LockRecord.Kind, purpose: String, repository: Repository,
        _ body: @escaping @Sendable () async throws -> T) async throws -> T
    {
        let lock = try await acquire(kind, purpose: purpose, repository: repository)
        do {
            let result = try await withThrowingTaskGroup(of: T?.self) { group in
                group.addTask {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: .seconds(60))
                        if Task.isCancelled { break }
                        try? await lock.refresh()
                    }
                    return nil
                }
                group.addTask { try await body() }
                var value: T?
                while let next = try await group.next() {
                    if let next {
                        value = next
                        group.cancelAll()
                    }
                }
                guard let value else { throw LifeboatError(.internalError, "locked operation produced no result") }
                return value
            }
            try await lock.release()
            return result
        } catch {
            try? await lock.release()
            throw error
        }
    }
}

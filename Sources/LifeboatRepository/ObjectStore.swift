/// LifeboatRepository owns recovery data at rest: the object store interface and its backends, the
/// encrypted, compressed, content-addressed repository format built on it, locks, retention
/// (expire) and verification. It knows nothing about PostgreSQL processes or connections.
import Foundation
import LifeboatCore
import LifeboatFileSystem

/// What a listing or a lookup says about one stored object.
public struct ObjectInfo: Sendable, Equatable {
    public var key: String
    public var size: Int
    public var modified: Date

    public init(key: String, size: Int, modified: Date) {
        self.key = key
        self.size = size
        self.modified = modified
    }
}

/// What an object is to a store: recovery data (written once, may be locked: Object Lock,
/// append-only) or bookkeeping (locks: replaced and deleted freely, never locked). The repository
/// tells the store (`RepositoryObject.objectClass`); stores never guess from key names.
public enum ObjectClass: Sendable, Equatable {
    case recoveryData
    case bookkeeping
}

/// The small interface every storage backend implements. Keys are `/`-separated relative names
/// without leading slash. Objects are immutable once written except where `put` says otherwise.
///
/// Errors are `LifeboatError`: `.notFound` for a missing object where it matters, `.io` for the rest.
public protocol ObjectStore: Sendable {
    /// Where the store is, for messages (never containing credentials).
    var location: String { get }

    /// Stores `data` under `key` unless an object already exists there.
    /// Atomic: a reader sees either no object or the whole of it; a crash leaves no object.
    /// Returns true if this call created the object, false if it existed (and was left untouched).
    func putIfAbsent(_ key: String, data: Data, class: ObjectClass) async throws -> Bool

    /// Stores or replaces `key` atomically. Used only for mutable bookkeeping (locks).
    func put(_ key: String, data: Data, class: ObjectClass) async throws

    /// The whole object. Throws `.notFound` if it does not exist.
    func get(_ key: String) async throws -> Data

    /// Size and time of an object, nil if it does not exist.
    func info(_ key: String) async throws -> ObjectInfo?

    /// All objects whose key starts with `prefix`, in no particular order. Never returns partial
    /// (still being written) objects.
    func list(prefix: String) async throws -> [ObjectInfo]

    /// The same, handed over a page at a time (an S3 listing page, a directory), so a caller that
    /// folds them into something smaller (the chunk index) never holds every key as text. After a
    /// retried failure pages may come again: the caller must tolerate seeing an object twice.
    func list(prefix: String, eachPage: ([ObjectInfo]) throws -> Void) async throws

    /// True when the store holds no object at all (a new location; `repo init` refuses anything else).
    /// A missing directory or an empty bucket prefix is empty.
    func isEmpty() async throws -> Bool

    /// Removes `key`. Idempotent: removing a missing object succeeds. Refused (`.repository`) while
    /// the object is protected (see `protectedUntil`).
    func delete(_ key: String) async throws

    /// Until when a recovery-data object may not be deleted (S3 Object Lock, append-only file store);
    /// nil when it may be deleted now. Nothing in Lifeboat shortens a protection.
    func protectedUntil(_ key: String) async throws -> Date?

    /// True when the store may protect objects from deletion (Object Lock, append-only); when false,
    /// `protectedUntil` is always nil and callers need not ask.
    var locksObjects: Bool { get }

    /// Makes a recovery-data object's protection last at least until `until`; never shortens it.
    /// Bookkeeping objects are never protected.
    func extendProtection(_ key: String, until: Date, class: ObjectClass) async throws

    /// Removes a bookkeeping object (a lock), which no protection covers. Idempotent.
    func deleteBookkeeping(_ key: String) async throws

    /// A new, empty file on the store's own file system (never listed as an object) into which an
    /// object of many MiB can be written as it is made, then stored by `putIfAbsent(_:spooledFile:)`
    /// without being held in memory; nil for a store with no local file system (S3).
    func makeSpoolFile(for key: String) throws -> StoreSpoolFile?

    /// Removes what writes killed half way left behind (a file store's `.tmp-` files, never listed
    /// as objects) last modified before `olderThan`; returns how many files and bytes. Called by
    /// `expire` under the exclusive lock, so no backup is writing; WAL pushes run unlocked, hence
    /// the age.
    func removeAbandonedPartials(olderThan: Date) async throws -> (files: Int, bytes: Int)

    /// The file holding object `key`, for a store that keeps objects as files (read a part at a
    /// time instead of whole); nil for any other store.
    func localFile(_ key: String) -> String?

    /// Stores a file made by `makeSpoolFile` under `key` unless an object exists there (as
    /// `putIfAbsent` does); the file is gone afterwards either way.
    func putIfAbsent(_ key: String, spooledFile: StoreSpoolFile, class: ObjectClass) async throws -> Bool
}

/// A file an object is written into before it is stored (see `ObjectStore.makeSpoolFile`); the
/// writer closes `descriptor` before handing it back.
public struct StoreSpoolFile: Sendable {
    public let path: String
    public let descriptor: Int32

    public init(path: String, descriptor: Int32) {
        self.path = path
        self.descriptor = descriptor
    }
}

extension ObjectStore {
    public func makeSpoolFile(for key: String) throws -> StoreSpoolFile? { nil }
    public func localFile(_ key: String) -> String? { nil }
    public func removeAbandonedPartials(olderThan: Date) async throws -> (files: Int, bytes: Int) { (0, 0) }

    /// Reads the file back and stores it as any object (a store without spool files of its own
    /// never made one; a wrapper that forwards nothing still stores it correctly).
    public func putIfAbsent(_ key: String, spooledFile: StoreSpoolFile, class objectClass: ObjectClass) async throws -> Bool {
        defer { unlink(spooledFile.path) }
        let data = try FileIO.read(spooledFile.path)
        return try await putIfAbsent(key, data: data, class: objectClass)
    }

    public func protectedUntil(_ key: String) async throws -> Date? { nil }
    public var locksObjects: Bool { false }
    public func extendProtection(_ key: String, until: Date, class: ObjectClass) async throws {}
    public func deleteBookkeeping(_ key: String) async throws { try await delete(key) }

    /// A recovery-data object, the usual case.
    public func putIfAbsent(_ key: String, data: Data) async throws -> Bool {
        try await putIfAbsent(key, data: data, class: .recoveryData)
    }

    public func extendProtection(_ key: String, until: Date) async throws {
        try await extendProtection(key, until: until, class: .recoveryData)
    }
}

extension ObjectStore {
    /// One page: the whole listing (stores without pages of their own).
    public func list(prefix: String, eachPage: ([ObjectInfo]) throws -> Void) async throws {
        try eachPage(try await list(prefix: prefix))
    }
}

import Foundation
import LifeboatCore
import Logging

/// Retries operations whose error is `retryable` (throttling, 5xx, timeouts, dropped or truncated
/// transfers) with exponential backoff and full jitter; permanent errors pass straight through.
/// Every operation of `ObjectStore` is safe to repeat: puts are create-if-absent or whole-object
/// replaces, deletes are idempotent.
public struct RetryingStore: ObjectStore {
    public let base: any ObjectStore
    public var policy: RetryPolicy
    let logger: Logger

    public init(_ base: any ObjectStore, policy: RetryPolicy = RetryPolicy(), logger: Logger) {
        self.base = base
        self.policy = policy
        self.logger = logger
    }

    public var location: String { base.location }

    func retrying<T>(_ what: String, _ body: () async throws -> T) async throws -> T {
        try await policy.run({ _ in try await body() }) { attempt, error in
            logger.notice("retrying after a transient error", metadata: [LogKey.object: .string(what), "lifeboat.attempt": "\(attempt)",
                "lifeboat.error": .string(error.message)])
        }
    }

    public func makeSpoolFile(for key: String) throws -> StoreSpoolFile? { try base.makeSpoolFile(for: key) }
    public func localFile(_ key: String) -> String? { base.localFile(key) }
    public func removeAbandonedPartials(olderThan: Date) async throws -> (files: Int, bytes: Int) {
        try await base.removeAbandonedPartials(olderThan: olderThan)
    }

    /// Not retried: a local link either works or fails for good (and the file is gone after it).
    public func putIfAbsent(_ key: String, spooledFile: StoreSpoolFile, class objectClass: ObjectClass) async throws -> Bool {
        try await base.putIfAbsent(key, spooledFile: spooledFile, class: objectClass)
    }

    public func putIfAbsent(_ key: String, data: Data, class objectClass: ObjectClass) async throws -> Bool {
        var first = true
        return try await retrying(key) {
            defer { first = false }
            let created = try await base.putIfAbsent(key, data: data, class: objectClass)
            // A retried create may find the object its own failed attempt wrote; same bytes, so
            // it counts as created only if it is ours (checked by content).
            if !created, !first, let existing = try? await base.get(key), existing == data { return true }
            return created
        }
    }

    public func put(_ key: String, data: Data, class objectClass: ObjectClass) async throws {
        try await retrying(key) { try await base.put(key, data: data, class: objectClass) }
    }
    public func get(_ key: String) async throws -> Data { try await retrying(key) { try await base.get(key) } }
    public func info(_ key: String) async throws -> ObjectInfo? { try await retrying(key) { try await base.info(key) } }
    public func list(prefix: String) async throws -> [ObjectInfo] { try await retrying(prefix) { try await base.list(prefix: prefix) } }
    public func list(prefix: String, eachPage: ([ObjectInfo]) throws -> Void) async throws {
        // A retry lists again from the start: pages already handed over come again.
        try await withoutActuallyEscaping(eachPage) { each in
            try await retrying(prefix) { try await base.list(prefix: prefix, eachPage: each) }
        }
    }
    public func isEmpty() async throws -> Bool { try await retrying("") { try await base.isEmpty() } }
    public func delete(_ key: String) async throws { try await retrying(key) { try await base.delete(key) } }
    public func deleteBookkeeping(_ key: String) async throws { try await retrying(key) { try await base.deleteBookkeeping(key) } }
    public func protectedUntil(_ key: String) async throws -> Date? { try await retrying(key) { try await base.protectedUntil(key) } }
    public var locksObjects: Bool { base.locksObjects }
    public func extendProtection(_ key: String, until: Date, class objectClass: ObjectClass) async throws {
        try await retrying(key) { try await base.extendProtection(key, until: until, class: objectClass) }
    }
}

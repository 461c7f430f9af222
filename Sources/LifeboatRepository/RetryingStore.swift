import Foundation
import LifeboatCore
import Logging

/// Retries operations whose error is `retryable` (throttling, 5xx, timeouts, dropped or truncated
/// transfers) with exponential backoff and full jitter; permanent errors pass straight through.
/// Every operation of `ObjectStore` is safe to repeat: puts are create-if-absent or whole-object
/// replaces, deletes are idempotent.
public struct RetryingStore: ObjectStore {
    public let base: any ObjectStore
    public var attempts: Int
    public var baseDelay: TimeInterval
    public var maxDelay: TimeInterval
    let logger: Logger

    public init(_ base: any ObjectStore, attempts: Int = 6, baseDelay: TimeInterval = 0.2, maxDelay: TimeInterval = 10, logger: Logger) {
        self.base = base
        self.attempts = max(1, attempts)
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        self.logger = logger
    }

    public var location: String { base.location }

    func retrying<T>(_ what: String, _ body: () async throws -> T) async throws -> T {
        var attempt = 1
        while true {
            do {
                return try await body()
            } catch let error as LifeboatError where error.retryable && attempt < attempts {
                let delay = Double.random(in: 0...min(maxDelay, baseDelay * pow(2, Double(attempt - 1))))
                logger.notice("retrying after a transient error", metadata: [LogKey.object: .string(what), "lifeboat.attempt": "\(attempt)",
                    "lifeboat.error": .string(error.message)])
                try await Task.sleep(for: .seconds(delay))
                attempt += 1
            }
        }
    }

    public func putIfAbsent(_ key: String, data: Data) async throws -> Bool {
        var first = true
        return try await retrying(key) {
            defer { first = false }
            let created = try await base.putIfAbsent(key, data: data)
            // A retried create may find the object its own failed attempt wrote; same bytes, so
            // it counts as created only if it is ours (checked by content).
            if !created, !first, let existing = try? await base.get(key), existing == data { return true }
            return created
        }
    }

    public func put(_ key: String, data: Data) async throws { try await retrying(key) { try await base.put(key, data: data) } }
    public func get(_ key: String) async throws -> Data { try await retrying(key) { try await base.get(key) } }
    public func info(_ key: String) async throws -> ObjectInfo? { try await retrying(key) { try await base.info(key) } }
    public func list(prefix: String) async throws -> [ObjectInfo] { try await retrying(prefix) { try await base.list(prefix: prefix) } }
    public func delete(_ key: String) async throws { try await retrying(key) { try await base.delete(key) } }
    public func protectedUntil(_ key: String) async throws -> Date? { try await retrying(key) { try await base.protectedUntil(key) } }
    public var locksObjects: Bool { base.locksObjects }
    public func extendProtection(_ key: String, until: Date) async throws {
        try await retrying(key) { try await base.extendProtection(key, until: until) }
    }
}

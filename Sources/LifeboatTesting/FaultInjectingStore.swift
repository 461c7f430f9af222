import Foundation
import LifeboatCore
import LifeboatRepository

/// Wraps a real store and makes chosen operations fail, to test that failures lose nothing and
/// leave nothing visible half-done.
public final class FaultInjectingStore: ObjectStore, @unchecked Sendable {
    public enum Fault: Sendable {
        /// Writes of keys with this prefix fail as a full disk would, after `after` successful ones.
        case diskFull(prefix: String, after: Int)
        /// Reads of keys with this prefix fail with an I/O error.
        case readError(prefix: String)
        /// Every `every`-th operation on keys with this prefix fails like a 503 burst or a timeout
        /// (retryable), the request never reaching the store.
        case transient(prefix: String, every: Int)
        /// Every `every`-th read of keys with this prefix comes back truncated (retryable).
        case truncatedRead(prefix: String, every: Int)
        /// Every write of keys with this prefix is refused as a 403 would be (permanent).
        case forbidden(prefix: String)
    }

    /// How many faults were injected so far.
    public var injected: Int { lock.withLock { injectedCount } }
    private var injectedCount = 0
    private var operations: [String: Int] = [:]

    private func transient(_ key: String, read: Bool) throws {
        try lock.withLock {
            for fault in faults {
                switch fault {
                case .transient(let prefix, let every) where key.hasPrefix(prefix):
                    operations["t" + prefix, default: 0] += 1
                    if operations["t" + prefix, default: 0] % every == 0 {
                        injectedCount += 1
                        throw LifeboatError(.io, "HTTP 503 SlowDown on \(key) (injected)", retryable: true)
                    }
                case .truncatedRead(let prefix, let every) where read && key.hasPrefix(prefix):
                    operations["r" + prefix, default: 0] += 1
                    if operations["r" + prefix, default: 0] % every == 0 {
                        injectedCount += 1
                        throw LifeboatError(.io, "\(key) arrived truncated (injected)", retryable: true)
                    }
                case .forbidden(let prefix) where !read && key.hasPrefix(prefix):
                    injectedCount += 1
                    throw LifeboatError(.repository, "cannot store \(key): AccessDenied (injected)")
                default:
                    continue
                }
            }
        }
    }

    let base: any ObjectStore
    private let lock = NSLock()
    private var faults: [Fault]
    private var writes: [String: Int] = [:]

    public init(_ base: any ObjectStore, faults: [Fault]) {
        self.base = base
        self.faults = faults
    }

    public var location: String { base.location + " (fault-injecting)" }

    private func checkWrite(_ key: String) throws {
        try lock.withLock {
            for case .diskFull(let prefix, let after) in faults where key.hasPrefix(prefix) {
                let n = writes[prefix, default: 0]
                if n >= after {
                    throw LifeboatError(.io, "could not store \(key): no space left on device (injected)")
                }
                writes[prefix] = n + 1
            }
        }
    }

    private func checkRead(_ key: String) throws {
        for case .readError(let prefix) in lock.withLock({ faults }) where key.hasPrefix(prefix) {
            throw LifeboatError(.io, "could not read \(key): input/output error (injected)")
        }
    }

    public func putIfAbsent(_ key: String, data: Data, class objectClass: ObjectClass) async throws -> Bool {
        try checkWrite(key)
        try transient(key, read: false)
        return try await base.putIfAbsent(key, data: data, class: objectClass)
    }

    public func put(_ key: String, data: Data, class objectClass: ObjectClass) async throws {
        try checkWrite(key)
        try transient(key, read: false)
        try await base.put(key, data: data, class: objectClass)
    }

    public func get(_ key: String) async throws -> Data {
        try checkRead(key)
        try transient(key, read: true)
        return try await base.get(key)
    }

    public func info(_ key: String) async throws -> ObjectInfo? {
        try transient(key, read: true)
        return try await base.info(key)
    }

    public func list(prefix: String) async throws -> [ObjectInfo] {
        try transient(prefix, read: true)
        return try await base.list(prefix: prefix)
    }
    public func isEmpty() async throws -> Bool { try await base.isEmpty() }
    public func delete(_ key: String) async throws { try await base.delete(key) }
    public func deleteBookkeeping(_ key: String) async throws { try await base.deleteBookkeeping(key) }
    public func protectedUntil(_ key: String) async throws -> Date? { try await base.protectedUntil(key) }
    public var locksObjects: Bool { base.locksObjects }
    public func extendProtection(_ key: String, until: Date, class objectClass: ObjectClass) async throws {
        try await base.extendProtection(key, until: until, class: objectClass)
    }
}

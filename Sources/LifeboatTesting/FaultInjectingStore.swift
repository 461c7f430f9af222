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

    public func putIfAbsent(_ key: String, data: Data) async throws -> Bool {
        try checkWrite(key)
        return try await base.putIfAbsent(key, data: data)
    }

    public func put(_ key: String, data: Data) async throws {
        try checkWrite(key)
        try await base.put(key, data: data)
    }

    public func get(_ key: String) async throws -> Data {
        try checkRead(key)
        return try await base.get(key)
    }

    public func info(_ key: String) async throws -> ObjectInfo? { try await base.info(key) }
    public func list(prefix: String) async throws -> [ObjectInfo] { try await base.list(prefix: prefix) }
    public func delete(_ key: String) async throws { try await base.delete(key) }
}

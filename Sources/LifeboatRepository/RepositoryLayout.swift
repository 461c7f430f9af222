import Foundation
import LifeboatCore

/// Every kind of object a repository holds, and the one place that spells their keys (as restic's
/// `layout`): code names an object by its kind and id, never by a prefix string. The format is
/// documented in `docs/repository-format.md`.
public enum RepositoryObject: Sendable, Hashable {
    /// The clear-text configuration (format, KDF parameters, wrapped master key).
    case config
    /// A chunk stored whole, named by its keyed content hash.
    case chunk(id: String)
    /// A chunk stored as a delta against `base` (itself stored whole).
    case deltaChunk(id: String, base: String)
    /// Small chunks packed into one object (format 3), named by a random id.
    case pack(id: String)
    /// A committed backup's record (its presence makes the backup exist).
    case backup(id: String)
    /// A backup's file list, written before its record.
    case manifest(backupID: String)
    /// An archived WAL file: segment, partial segment, backup or timeline history.
    case wal(WALFileName)
    /// A process's lock (bookkeeping).
    case lock(id: String)
    /// A drill report.
    case drill(id: String)
    /// Another encrypted record kept by a feature (`records/<kind>/<id>`), e.g. exported AWS state.
    case record(kind: String, id: String)

    /// The families of objects, for listing.
    public enum Family: String, Sendable, CaseIterable {
        case chunks, packs, backups, manifests, wal, locks, drills, records

        /// The prefix every key of the family starts with.
        public var prefix: String { rawValue + "/" }
    }

    public var key: String {
        switch self {
        case .config: return "config"
        case .chunk(let id): return "chunks/\(id.prefix(2))/\(id)"
        case .deltaChunk(let id, let base): return "chunks/\(id.prefix(2))/\(id)-\(base)"
        case .pack(let id): return "packs/\(id.prefix(2))/\(id)"
        case .backup(let id): return "backups/\(id)"
        case .manifest(let id): return "manifests/\(id)"
        case .wal(let file):
            switch file {
            case .history: return "wal/history/\(file)"
            case .segment(let s), .partial(let s), .backupHistory(let s, _): return "wal/\(s.name.prefix(8))/\(file)"
            }
        case .lock(let id): return "locks/\(id)"
        case .drill(let id): return "drills/\(id)"
        case .record(let kind, let id): return "records/\(kind)/\(id)"
        }
    }

    /// Locks are replaced and deleted freely; everything else is recovery data.
    public var objectClass: ObjectClass {
        if case .lock = self { return .bookkeeping }
        return .recoveryData
    }

    /// What a key names; nil for a key no lifeboat writes (a stray file, a temporary object).
    public init?(key: String) {
        if key == "config" {
            self = .config
            return
        }
        let parts = key.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 2, let family = Family(rawValue: parts[0]) else { return nil }
        switch (family, parts.count) {
        case (.chunks, 3):
            let name = parts[2].split(separator: "-").map(String.init)
            guard !name.isEmpty, name.allSatisfy({ !$0.isEmpty }), parts[1] == String(name[0].prefix(2)) else { return nil }
            switch name.count {
            case 1: self = .chunk(id: name[0])
            case 2: self = .deltaChunk(id: name[0], base: name[1])
            default: return nil
            }
        case (.packs, 3) where !parts[2].isEmpty && parts[1] == String(parts[2].prefix(2)) && !parts[2].contains("-"):
            self = .pack(id: parts[2])
        case (.backups, 2) where !parts[1].isEmpty: self = .backup(id: parts[1])
        case (.manifests, 2) where !parts[1].isEmpty: self = .manifest(backupID: parts[1])
        case (.wal, 3):
            guard let file = WALFileName(parts[2]) else { return nil }
            self = .wal(file)
        case (.locks, 2) where !parts[1].isEmpty: self = .lock(id: parts[1])
        case (.drills, 2) where !parts[1].isEmpty: self = .drill(id: parts[1])
        case (.records, 3) where !parts[1].isEmpty && !parts[2].isEmpty: self = .record(kind: parts[1], id: parts[2])
        default: return nil
        }
    }

    /// The chunk a chunk object holds, and its base for a delta.
    public var chunk: (id: String, base: String?)? {
        switch self {
        case .chunk(let id): return (id, nil)
        case .deltaChunk(let id, let base): return (id, base)
        default: return nil
        }
    }

    /// The pack id of a pack object.
    public var packID: String? {
        if case .pack(let id) = self { return id }
        return nil
    }

    /// The archived WAL file an object holds.
    public var walFile: WALFileName? {
        if case .wal(let f) = self { return f }
        return nil
    }

    /// Whether this object is encrypted (all but the config, and locks, which are plain JSON).
    public var isSealed: Bool {
        switch self {
        case .config, .lock: return false
        default: return true
        }
    }
}

extension ObjectStore {
    /// Every object of a family, with what each key names (keys no lifeboat writes are left out).
    public func list(_ family: RepositoryObject.Family) async throws -> [(object: RepositoryObject, info: ObjectInfo)] {
        try await list(prefix: family.prefix).compactMap { info in RepositoryObject(key: info.key).map { ($0, info) } }
    }

    /// Stores an object unless present, told its class.
    public func putIfAbsent(_ object: RepositoryObject, data: Data) async throws -> Bool {
        try await putIfAbsent(object.key, data: data, class: object.objectClass)
    }

    /// Removes an object, bookkeeping or not.
    public func delete(_ object: RepositoryObject) async throws {
        if object.objectClass == .bookkeeping { try await deleteBookkeeping(object.key) } else { try await delete(object.key) }
    }
}

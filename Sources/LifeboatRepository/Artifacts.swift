import Foundation
import LifeboatCore

/// One document of an artifact (a task definition revision, a state file, a metadata list).
public struct ArtifactItem: Codable, Sendable, Equatable {
    public var name: String
    /// The content's address (keyed hash, as chunks): the same document is stored once.
    public var blob: String
    public var bytes: Int
}

/// A set of documents backed up together from outside PostgreSQL (the seed's application,
/// infrastructure and configuration backups): encrypted, deduplicated, listed by `info`.
public struct ArtifactRecord: Codable, Sendable, Equatable {
    public var format: Int
    public var id: String
    /// `ecs-task-definitions`, `terraform-state`, `secrets-metadata`, ...
    public var kind: String
    public var created: Date
    public var items: [ArtifactItem]
    /// What the export was of (region, cluster, source URL, ...).
    public var metadata: [String: String]

    public var bytes: Int { items.reduce(0) { $0 + $1.bytes } }
}

/// What storing an artifact cost.
public struct ArtifactWrite: Sendable, Equatable {
    public var record: ArtifactRecord
    /// Documents not already in the repository.
    public var newItems: Int
    public var newBytes: Int
}

extension Repository {
    static let artifactKind = "artifact"
    static let artifactBlobKind = "artifact-blob"

    /// Stores the documents (each once: a document already held is referenced, not written again),
    /// then the record naming them, written last.
    public func putArtifact(kind: String, items: [(name: String, data: Data)], metadata: [String: String], now: Date = Date())
        async throws -> ArtifactWrite
    {
        guard !kind.isEmpty, kind.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
            throw LifeboatError(.invalidUsage, "artifact kind '\(kind)' must be letters, digits and dashes")
        }
        var written: [ArtifactItem] = []
        var newItems = 0
        var newBytes = 0
        for item in items {
            let id = chunkID(for: item.data)
            if let stored = try await writeSealed(RepositoryObject.record(kind: Self.artifactBlobKind, id: id).key, plaintext: item.data) {
                newItems += 1
                newBytes += stored
            }
            written.append(ArtifactItem(name: item.name, blob: id, bytes: item.data.count))
        }
        let record = ArtifactRecord(format: 1, id: TimestampID.make(now, name: kind), kind: kind, created: now, items: written, metadata: metadata)
        try await writeRecord(RepositoryObject.record(kind: Self.artifactKind, id: record.id).key, record)
        return ArtifactWrite(record: record, newItems: newItems, newBytes: newBytes)
    }

    /// Every artifact (of one kind when given), oldest first.
    public func artifacts(kind: String? = nil) async throws -> [ArtifactRecord] {
        var out: [ArtifactRecord] = []
        for info in try await store.list(prefix: "records/\(Self.artifactKind)/") {
            let record = try await readRecord(info.key, as: ArtifactRecord.self)
            if kind == nil || record.kind == kind { out.append(record) }
        }
        return out.sorted { ($0.created, $0.id) < ($1.created, $1.id) }
    }

    /// One artifact by id, or the newest of a kind (`latest:<kind>`).
    public func artifact(_ reference: String) async throws -> ArtifactRecord {
        if reference.hasPrefix("latest:") {
            let kind = String(reference.dropFirst("latest:".count))
            guard let newest = try await artifacts(kind: kind).last else {
                throw LifeboatError(.notFound, "the repository holds no \(kind) artifact", hint: "`lifeboat info` lists what it holds")
            }
            return newest
        }
        do {
            return try await readRecord(RepositoryObject.record(kind: Self.artifactKind, id: reference).key, as: ArtifactRecord.self)
        } catch let e as LifeboatError where e.code == .notFound {
            throw LifeboatError(.notFound, "no artifact \(reference) in the repository", hint: "`lifeboat aws artifacts` lists them")
        }
    }

    /// The content of one document, checked against its address.
    public func artifactContent(_ item: ArtifactItem) async throws -> Data {
        let data = try await readSealed(RepositoryObject.record(kind: Self.artifactBlobKind, id: item.blob).key)
        guard chunkID(for: data) == item.blob else {
            throw LifeboatError(.integrity, "artifact document \(item.name) does not match its address \(item.blob)")
        }
        return data
    }
}

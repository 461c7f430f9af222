import Foundation
import LifeboatCore

/// Packs (repository format 3): small chunks, the files of a cluster's many small relations, sealed
/// one by one and written together into objects of a few MiB, so the number of objects and requests
/// a backup costs grows with its bytes, not with its file count (pgBackRest's `repo-bundle`, restic's
/// packs). The backup's manifest says where each packed chunk lies (`PackedChunk`); the pack also
/// names every chunk it holds, so `verify` checks a pack without any manifest.
///
/// Layout: `"LBP1"`, then records `length (u32 LE) | chunk id (64 ASCII hex) | sealed chunk`, where the
/// sealed chunk is exactly the object the chunk would be stored as alone (its key, `chunks/xx/<id>`, is
/// its associated data), so a chunk is authenticated by itself wherever it lies.
public enum PackFormat {
    static let magic: [UInt8] = Array("LBP1".utf8)
    static let idLength = 64
    static let recordHeader = 4 + idLength

    /// One record of a pack: the chunk it holds and where its sealed bytes are.
    public struct Record: Sendable, Equatable {
        public var chunkID: String
        public var offset: Int
        public var length: Int
    }

    /// The records of a pack, in order; throws `.integrity` for a pack that is truncated or not one.
    public static func records(_ data: Data, key: String) throws -> [Record] {
        let bytes = [UInt8](data)
        guard bytes.count >= magic.count, Array(bytes[0..<magic.count]) == magic else {
            throw LifeboatError(.integrity, "object \(key) is not a lifeboat pack")
        }
        var records: [Record] = []
        var at = magic.count
        while at < bytes.count {
            guard at + recordHeader <= bytes.count else {
                throw LifeboatError(.integrity, "pack \(key) is truncated after \(records.count) chunk(s)")
            }
            let length = Int(bytes[at]) | Int(bytes[at + 1]) << 8 | Int(bytes[at + 2]) << 16 | Int(bytes[at + 3]) << 24
            let id = String(decoding: bytes[(at + 4)..<(at + recordHeader)], as: UTF8.self)
            let start = at + recordHeader
            guard length > 0, start + length <= bytes.count, id.allSatisfy(\.isHexDigit) else {
                throw LifeboatError(.integrity, "pack \(key) is damaged at byte \(at) (after \(records.count) chunk(s))")
            }
            records.append(Record(chunkID: id, offset: start, length: length))
            at = start + length
        }
        return records
    }
}

/// Collects sealed small chunks of one writer (a backup, a copy) into packs and stores each pack when
/// it reaches its target size. Memory: the pack being filled plus those being written.
public actor PackWriter {
    let repository: Repository
    let target: Int
    private var packID: String
    private var buffer: Data
    private var chunksInBuffer = 0
    private(set) public var packsWritten = 0
    private(set) public var bytesWritten = 0

    /// Packs of about `target` bytes (2 MiB: 8 ms of a 250 MB/s link, a hundred or more small files
    /// each; the pack being filled and those being written are what a backup of many small files
    /// holds, so 4 MiB packs cost it ~4 MiB more at its peak for no measurable speed).
    public init(repository: Repository, target: Int = 2 << 20) {
        self.repository = repository
        self.target = target
        packID = Self.newID()
        buffer = Data(PackFormat.magic)
        buffer.reserveCapacity(target + (256 << 10))
    }

    static func newID() -> String {
        (UUID().uuidString + UUID().uuidString).replacingOccurrences(of: "-", with: "").lowercased().prefix(32).description
    }

    /// Adds a chunk sealed by `Repository.sealChunk`; returns where it will lie. The pack is stored
    /// when full; a failure to store it fails this call (and so the backup).
    public func add(id: String, sealed: Data) async throws -> PackedChunk {
        guard id.utf8.count == PackFormat.idLength, sealed.count < Int(UInt32.max) else {
            throw LifeboatError(.internalError, "chunk \(id) cannot be packed")
        }
        var length = UInt32(sealed.count).littleEndian
        withUnsafeBytes(of: &length) { buffer.append(contentsOf: $0) }
        buffer.append(contentsOf: Array(id.utf8))
        let location = PackedChunk(pack: packID, offset: buffer.count, length: sealed.count)
        buffer.append(sealed)
        chunksInBuffer += 1
        if buffer.count >= target { try await flush() }
        return location
    }

    /// Stores the pack being filled, if it holds anything. Call once every `add` has returned.
    public func finish() async throws {
        if chunksInBuffer > 0 { try await flush() }
    }

    private func flush() async throws {
        let full = buffer
        let key = RepositoryObject.pack(id: packID).key
        packID = Self.newID()
        buffer = Data(PackFormat.magic)
        buffer.reserveCapacity(target + (256 << 10))
        chunksInBuffer = 0
        guard try await repository.store.putIfAbsent(key, data: full) else {
            throw LifeboatError(.repository, "pack \(key) already exists", hint: "run the backup again")
        }
        packsWritten += 1
        bytesWritten += full.count
    }
}

extension Repository {
    /// Whether this repository's format packs small chunks (older lifeboat could not read packs).
    public var storesPacks: Bool { config.format >= 3 }

    /// Chunks smaller than this are packed (a quarter of the chunk size: 256 KiB by default), when the
    /// whole file is one such chunk; larger ones stay objects of their own (and delta bases).
    public var packLimit: Int { config.chunkSize / 4 }

    /// Seals a chunk as its own object would be sealed, for a pack.
    public func sealChunk(id: String, data: Data) throws -> Data {
        try codec.seal(data, key: Self.chunkKey(id))
    }

    static func packKey(_ id: String) -> String { RepositoryObject.pack(id: id).key }

    /// Reads chunk `id` from the pack bytes `pack` at `location`, checking its length when given.
    public func unpackChunk(id: String, from pack: Data, at location: PackedChunk, verifyContent: Bool = true) throws -> Data {
        let key = Self.packKey(location.pack)
        let start = pack.startIndex + location.offset
        guard location.offset >= PackFormat.recordHeader, location.length > 0, start + location.length <= pack.endIndex else {
            throw LifeboatError(.integrity, "chunk \(id) lies outside pack \(key) (\(pack.count) bytes)",
                hint: "run `lifeboat verify`; restore from another backup")
        }
        let sealed = Data(pack[start..<(start + location.length)])
        let data = try codec.open(sealed, key: Self.chunkKey(id))
        if verifyContent, chunkID(for: data) != id {
            throw LifeboatError(.integrity, "pack \(key) holds content that does not match chunk \(id)")
        }
        return data
    }

    /// A whole pack object.
    public func pack(_ id: String) async throws -> Data { try await store.get(Self.packKey(id)) }

    /// Reads chunk `id` as `manifest` stores it: from its pack, as a delta, or whole.
    public func chunk(id: String, in manifest: BackupManifest, verifyContent: Bool = true) async throws -> Data {
        if let location = manifest.packedChunk(id) {
            return try unpackChunk(id: id, from: try await pack(location.pack), at: location, verifyContent: verifyContent)
        }
        return try await chunk(id: id, base: manifest.deltaBase(of: id), verifyContent: verifyContent)
    }

    /// Checks every chunk of a pack (authentication and content hash); returns its records.
    public func verifyPack(key: String) async throws -> [PackFormat.Record] {
        let data = try await store.get(key)
        let records = try PackFormat.records(data, key: key)
        for record in records {
            let sealed = Data(data[(data.startIndex + record.offset)..<(data.startIndex + record.offset + record.length)])
            let content: Data
            do {
                content = try codec.open(sealed, key: Self.chunkKey(record.chunkID))
            } catch let error as LifeboatError {
                throw LifeboatError(.integrity, "pack \(key): chunk \(record.chunkID) at byte \(record.offset): \(error.message)")
            }
            guard chunkID(for: content) == record.chunkID else {
                throw LifeboatError(.integrity, "pack \(key) holds content that does not match chunk \(record.chunkID)")
            }
        }
        return records
    }

    /// Where the newest backup's packed chunks lie, for a writer's `ChunkIndex` (packs are not listed
    /// chunk by chunk), keeping only packs still present.
    /// The same as the chunk index keeps them, read as the manifest is read.
    public func newestPackedChunkTable() async throws -> PackedChunkTable {
        guard let last = try await newestBackup() else { return PackedChunkTable() }
        var table = PackedChunkTable()
        _ = try await manifest(for: last, eachEntry: { _ in }, eachPackedChunk: { id, location in table.insert(id, at: location) })
        if table.count > 0 { table.keepPacks(in: try await packIDs()) }
        return table
    }

    public func newestPackedChunks() async throws -> [String: PackedChunk] {
        guard let last = try await newestBackup() else { return [:] }
        let packed = try await manifest(for: last).packedChunks ?? [:]
        if packed.isEmpty { return [:] }
        let present = try await packIDs()
        return packed.filter { present.contains($0.value.pack) }
    }

    /// Ids of the packs in the repository.
    public func packIDs() async throws -> Set<String> {
        Set(try await store.list(.packs).compactMap { $0.object.packID })
    }
}

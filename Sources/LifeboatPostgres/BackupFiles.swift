import Foundation
import LifeboatCore
import LifeboatFileSystem
import LifeboatRepository

#if canImport(Glibc)
import Glibc
#endif

/// The newest committed backup, as the next backup uses it: chunk lists by path (delta bases and
/// files taken over unread), where its packed chunks lie, and when it started.
struct PreviousBackup: Sendable {
    /// What the next backup needs of a file the previous one stored (its path is the key).
    struct File: Sendable {
        var size: UInt64
        var modified: Date
        var chunks: [String]
    }

    var entries: [String: File]
    var packed: [String: PackedChunk]
    var startTime: Date
    var chunkSize: Int

    /// nil when the repository holds no backup.
    static func load(_ repository: Repository) async throws -> PreviousBackup? {
        guard let last = try await repository.newestBackup() else { return nil }
        var entries: [String: File] = [:]
        entries.reserveCapacity(last.fileCount)
        // Entries are kept as they are read, not first collected: only one form of them is held.
        let manifest = try await repository.manifest(for: last) { entry in
            if entry.type == .file { entries[entry.path] = File(size: entry.size, modified: entry.modified, chunks: entry.chunks) }
        }
        var packed = manifest.packedChunks ?? [:]
        if !packed.isEmpty {
            // Only packs still there (a pack is never removed while a backup uses it, but the
            // listing costs little and keeps a damaged repository from spreading).
            let present = try await repository.packIDs()
            packed = packed.filter { present.contains($0.value.pack) }
        }
        return PreviousBackup(entries: entries, packed: packed, startTime: last.startTime, chunkSize: manifest.chunkSize)
    }

    /// The previous backup's entry for `item` when the file cannot have changed since that backup
    /// read it: same size and modification time, modified more than a second before that backup
    /// started (timestamps are coarser than writes), and every chunk still in the repository.
    /// pg_control and postgresql.auto.conf are always read (the latter is rewritten for the backup).
    func unchanged(_ item: DataDirectoryScan.Item, known: ChunkIndex) async -> ManifestEntry? {
        guard item.type == .file, item.path != "global/pg_control", item.path != "postgresql.auto.conf",
            let entry = entries[item.path], entry.size == item.size, item.modified < startTime.addingTimeInterval(-1),
            // Manifests keep times to the millisecond.
            Self.milliseconds(entry.modified) == Self.milliseconds(item.modified), entry.chunks.count == Self.chunkCount(entry.size, chunkSize: chunkSize)
        else { return nil }
        for id in entry.chunks where !(await known.contains(id)) { return nil }
        return ManifestEntry(path: item.path, type: .file, mode: item.mode, size: entry.size, modified: item.modified, chunks: entry.chunks)
    }

    static func milliseconds(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded()) }

    static func chunkCount(_ size: UInt64, chunkSize: Int) -> Int {
        Int((size + UInt64(chunkSize) - 1) / UInt64(chunkSize))
    }
}

/// Reads files of a backup in chunk-size blocks and stores the blocks the repository lacks: small
/// files into packs (format 3), changed chunks as deltas against the previous backup's (format 2),
/// the rest whole.
struct ChunkWriter: Sendable {
    var repository: Repository
    var chunkSize: Int
    var known: ChunkIndex
    var packs: PackWriter?
    var stats: BackupStats

    /// The file's manifest entry; nil when it vanished before it was opened (a dropped table: WAL
    /// replay recreates the truth).
    func store(item: DataDirectoryScan.Item, previous: [String]?) async throws -> ManifestEntry? {
        guard item.type == .file else {
            return ManifestEntry(path: item.path, type: item.type, mode: item.mode, size: 0, modified: item.modified, chunks: [])
        }
        let fd = open(item.source, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw FileIO.error("cannot read", errno: errno, path: item.source)
        }
        defer { close(fd) }
        if item.path == "postgresql.auto.conf" {
            // The backup's copy never carries a recovery target or Lifeboat's recovery block (from
            // an earlier restore of this cluster): the next restore must not inherit them.
            let text = String(decoding: try FileIO.readAll(fd: fd, path: item.source), as: UTF8.self)
            return try await storeWhole(Data(ServerConfiguration.autoConfForBackup(text).utf8), item: item)
        }
        var chunks: [String] = []
        var size: UInt64 = 0
        // A small file gets a buffer its size (and a little room to grow), not a whole chunk: with
        // 80,000 files of a few KiB, chunk-sized buffers were most of the allocations.
        var buffer = Data(count: item.size < UInt64(chunkSize) ? min(chunkSize, Int(item.size) + 16384) : chunkSize)
        while true {
            var filled = 0
            while filled < chunkSize {
                if filled == buffer.count { buffer.count = chunkSize }  // it grew since the scan
                let n = try buffer.withUnsafeMutableBytes { (buf: UnsafeMutableRawBufferPointer) -> Int in
                    guard let base = buf.baseAddress else { return 0 }
                    while true {
                        let n = read(fd, base + filled, buf.count - filled)
                        if n < 0 {
                            if errno == EINTR { continue }
                            throw FileIO.error("cannot read", errno: errno, path: item.source)
                        }
                        return n
                    }
                }
                if n == 0 { break }
                filled += n
            }
            if filled == 0 { break }
            let block = filled == buffer.count ? buffer : buffer.prefix(filled)
            let candidate = previous.flatMap { chunks.count < $0.count ? $0[chunks.count] : nil }
            chunks.append(try await storeChunk(Data(block), wholeFile: chunks.isEmpty && filled < chunkSize, previous: candidate))
            size += UInt64(filled)
            if filled < chunkSize { break }
        }
        return ManifestEntry(path: item.path, type: .file, mode: item.mode, size: size, modified: item.modified, chunks: chunks)
    }

    /// Stores a small file's content given whole (a rewritten configuration file).
    func storeWhole(_ data: Data, item: DataDirectoryScan.Item) async throws -> ManifestEntry {
        var chunks: [String] = []
        var offset = 0
        while offset < data.count {
            let block = data.subdata(in: offset..<min(offset + chunkSize, data.count))
            chunks.append(try await storeChunk(block, wholeFile: data.count < chunkSize, previous: nil))
            offset += block.count
        }
        return ManifestEntry(path: item.path, type: .file, mode: item.mode, size: UInt64(data.count), modified: item.modified, chunks: chunks)
    }

    /// Stores one block unless the repository (or this backup) already has it: packed when it is a
    /// whole small file, else as a delta against `previous`'s whole form when that pays, else whole.
    /// Returns the block's chunk id.
    private func storeChunk(_ block: Data, wholeFile: Bool, previous: String?) async throws -> String {
        let id = repository.chunkID(for: block)
        var stored = 0
        if await known.claim(id) {
            if wholeFile, let packs, block.count <= repository.packLimit {
                let sealed = try repository.sealChunk(id: id, data: block)
                let location = try await packs.add(id: id, sealed: sealed)
                await known.record(id, packedAt: location)
                stored = sealed.count + 68
            } else {
                let base = previous == nil ? nil : await known.wholeBase(for: previous ?? "")
                let result = try await repository.putChunk(id: id, data: block, deltaBase: base)
                stored = result.written
                await known.record(id, base: result.base)
            }
            if FaultPoint.isArmed { FaultPoint.counted("backup.chunks", await stats.storedChunks()) }
        }
        await stats.add(logical: block.count, stored: stored, isNew: stored > 0)
        return id
    }
}

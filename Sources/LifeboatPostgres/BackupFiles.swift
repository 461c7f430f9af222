import Foundation
import LifeboatCore
import LifeboatFileSystem
import LifeboatRepository

#if canImport(Glibc)
import Glibc
#endif

/// The newest committed backup, as the next backup uses it: each file's size, modification time and
/// chunk list (delta bases, files taken over unread), and when it started. Kept compact, since a
/// cluster of many small relations has a file per relation fork: a file is a 40-byte record (a
/// 16-byte key made of two independent 64-bit hashes of its path, no path string) in one array
/// sorted by key, its chunks 32-byte keys in another; about 72 bytes a file against some 280 for
/// strings in a dictionary (and a dictionary's buckets, a power of two, are up to 2.7 times its
/// entries).
struct PreviousBackup: Sendable {
    /// Two independent hashes of a path: FNV-1a and the standard library's seeded SipHash. Files that
    /// collide in both (about one chance in 2^128 a pair) would also need the same size and time.
    struct PathKey: Hashable, Comparable, Sendable {
        var fnv: UInt64
        var sip: Int

        init(_ path: String) {
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            for byte in path.utf8 { h = (h ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
            fnv = h
            sip = path.hashValue
        }

        static func < (l: PathKey, r: PathKey) -> Bool { (l.fnv, l.sip) < (r.fnv, r.sip) }
    }

    /// What the next backup needs of a file the previous one stored.
    struct File: Sendable {
        var size: UInt64
        /// Milliseconds since 1970, as manifests keep times.
        var modified: Int64
        /// Its chunks: `chunkKeys[firstChunk ..< firstChunk + chunkCount]`.
        var firstChunk: UInt32
        var chunkCount: UInt32
    }

    private struct Record: Sendable {
        var key: PathKey
        var file: File
    }

    /// Sorted by key once loaded.
    private var records: ContiguousArray<Record> = []
    private var chunkKeys: ContiguousArray<ChunkKey> = []
    var startTime: Date
    var chunkSize: Int

    /// The previous backup's files, and (filled as the manifest is read) the locations of its packed
    /// chunks in packs that still exist, for the chunk index. nil when the repository holds no backup.
    static func load(_ repository: Repository) async throws -> (previous: PreviousBackup, packed: PackedChunkTable)? {
        guard let last = try await repository.newestBackup() else { return nil }
        var previous = PreviousBackup(startTime: last.startTime, chunkSize: 0)
        previous.records.reserveCapacity(last.fileCount)
        previous.chunkKeys.reserveCapacity(last.totalChunks)
        var packed = PackedChunkTable()
        packed.reserveCapacity(last.totalChunks)  // at most one location per chunk the backup used
        // Entries and pack locations are kept as they are read, not first collected: only the
        // compact form of them is held.
        let manifest = try await repository.manifest(for: last, eachEntry: { entry in
            if entry.type == .file { previous.add(entry) }
        }, eachPackedChunk: { id, location in packed.insert(id, at: location) })
        previous.chunkSize = manifest.chunkSize
        previous.records.sort { $0.key < $1.key }
        if packed.count > 0 {
            // Only packs still there (a pack is never removed while a backup uses it, but the
            // listing costs little and keeps a damaged repository from spreading).
            packed.keepPacks(in: try await repository.packIDs())
        }
        return (previous, packed)
    }

    private init(startTime: Date, chunkSize: Int) {
        self.startTime = startTime
        self.chunkSize = chunkSize
    }

    private mutating func add(_ entry: ManifestEntry) {
        let first = chunkKeys.count
        for id in entry.chunks {
            guard let key = ChunkKey(id) else {
                // Not an id this repository makes: the file is read again as if new.
                chunkKeys.removeSubrange(first...)
                return
            }
            chunkKeys.append(key)
        }
        guard let firstChunk = UInt32(exactly: first), let count = UInt32(exactly: entry.chunks.count) else { return }
        records.append(Record(key: PathKey(entry.path),
            file: File(size: entry.size, modified: Self.milliseconds(entry.modified), firstChunk: firstChunk, chunkCount: count)))
    }

    /// The previous backup's record of the file at `path` (a binary search).
    func file(at path: String) -> File? {
        let key = PathKey(path)
        var low = 0
        var high = records.count
        while low < high {
            let middle = (low + high) / 2
            if records[middle].key < key { low = middle + 1 } else { high = middle }
        }
        return low < records.count && records[low].key == key ? records[low].file : nil
    }

    /// The previous backup's chunk ids of the file at `path`, in order.
    func chunks(of path: String) -> [String]? {
        file(at: path).map(chunks(of:))
    }

    private func chunks(of file: File) -> [String] {
        let first = Int(file.firstChunk)
        return chunkKeys[first..<(first + Int(file.chunkCount))].map(\.id)
    }

    /// The previous backup's entry for `item` when the file cannot have changed since that backup
    /// read it: same size and modification time, modified more than a second before that backup
    /// started (timestamps are coarser than writes), and every chunk still in the repository.
    /// pg_control and postgresql.auto.conf are always read (the latter is rewritten for the backup).
    func unchanged(_ item: DataDirectoryScan.Item, known: ChunkIndex) async -> ManifestEntry? {
        guard item.type == .file, item.path != "global/pg_control", item.path != "postgresql.auto.conf",
            let file = file(at: item.path), file.size == item.size, item.modified < startTime.addingTimeInterval(-1),
            // Manifests keep times to the millisecond.
            file.modified == Self.milliseconds(item.modified), Int(file.chunkCount) == Self.chunkCount(file.size, chunkSize: chunkSize)
        else { return nil }
        let ids = chunks(of: file)
        for id in ids where !(await known.contains(id)) { return nil }
        return ManifestEntry(path: item.path, type: .file, mode: item.mode, size: file.size, modified: item.modified, chunks: ids)
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

import Foundation
import LifeboatCore
import Logging

/// What `copy` did.
public struct CopyReport: Codable, Sendable {
    public var copiedBackups: [String]
    /// Already in the target (a copy is idempotent).
    public var presentBackups: [String]
    public var chunksCopied: Int
    public var chunksPresent: Int
    public var walFilesCopied: Int
    public var walFilesPresent: Int
    public var bytesWritten: Int
    public var verifyProblems: [VerifyReport.Problem]?
}

/// Copies backups, and the WAL they need, into another repository, re-encrypting under the
/// target's own key (the seed's cross-region snapshot copy under that region's KMS key). Chunks are
/// decrypted and checked in the source, re-named by the target's keyed hash and sealed with its key;
/// delta chunks stay deltas (their bodies do not depend on the key), their bases copied whole.
/// Idempotent and resumable: what the target holds is skipped, and a backup appears in the target
/// only when its record is written, last.
public struct RepositoryCopier: Sendable {
    public var source: Repository
    public var target: Repository
    public var parallelism: Int
    public var logger: Logger

    public init(source: Repository, target: Repository, parallelism: Int = 4, logger: Logger) {
        self.source = source
        self.target = target
        self.parallelism = parallelism
        self.logger = logger
    }

    /// Copies `backupIDs` (nil: every backup), then verifies the target unless `verify` is false.
    public func run(backupIDs: [String]?, verify: Bool = true) async throws -> CopyReport {
        guard source.config.repositoryID != target.config.repositoryID else {
            throw LifeboatError(.invalidUsage, "source and target are the same repository")
        }
        return try await RepositoryLock.withLock(.shared, purpose: "copy from \(source.store.location)", repository: target) {
            try await copyLocked(backupIDs: backupIDs, verify: verify)
        }
    }

    private func copyLocked(backupIDs: [String]?, verify: Bool) async throws -> CopyReport {
        let all = try await source.backups()
        let wanted: [BackupRecord]
        if let ids = backupIDs {
            wanted = try ids.map { id in
                guard let b = all.first(where: { $0.id == id }) else {
                    throw LifeboatError(.notFound, "backup \(id) is not in \(source.store.location)")
                }
                return b
            }
        } else {
            wanted = all
        }
        let existing = Set(try await target.backups().map(\.id))
        var report = CopyReport(copiedBackups: [], presentBackups: [], chunksCopied: 0, chunksPresent: 0, walFilesCopied: 0,
            walFilesPresent: 0, bytesWritten: 0)
        let known = ChunkIndex(try await target.chunkListing(), table: try await target.newestPackedChunkTable())
        let stats = CopyStats()
        let src = source
        let dst = target

        // WAL first: everything any wanted backup needs that the target lacks, whether the backup
        // is new there or already present (a replica that was down catches up here).
        let targetWAL = Set(try await target.walFiles().map { "\($0.file)" })
        let neededWAL = try await source.walFiles().filter { file, _ in
            !targetWAL.contains("\(file)") && ExpirePlan.walNeeded(file, keptBackups: wanted)
        }
        _ = try await forEachBounded(neededWAL.map(\.file), parallelism: parallelism) { file -> Bool in
            let data = try await src.fetchWAL(name: "\(file)")
            switch try await dst.pushWAL(name: "\(file)", data: data) {
            case .stored(let bytes): await stats.wal(written: bytes)
            case .alreadyArchived: await stats.wal(written: nil)
            }
            return true
        }
        report.walFilesPresent = targetWAL.count

        for record in wanted {
            if existing.contains(record.id) {
                report.presentBackups.append(record.id)
                continue
            }
            let manifest = try await source.manifest(for: record)
            let packs = dst.storesPacks ? PackWriter(repository: dst) : nil
            // Every chunk the backup uses, translated to the target's names: packed ones a pack at a
            // time (one read each), the others one by one.
            var packedByPack: [String: [(id: String, location: PackedChunk)]] = [:]
            var loose = Set<String>()
            for list in manifest.allChunkIDs {
                for id in list {
                    if let location = manifest.packedChunk(id) { packedByPack[location.pack, default: []].append((id, location)) } else { loose.insert(id) }
                }
            }
            let fromPacks = try await forEachBounded(packedByPack.map { ($0.key, $0.value) }, parallelism: parallelism) { pack, chunks -> [(String, String)] in
                let data = try await src.pack(pack)
                var names: [(String, String)] = []
                var done = Set<String>()
                for (id, location) in chunks where done.insert(id).inserted {
                    let content = try src.unpackChunk(id: id, from: data, at: location)
                    names.append((id, try await Self.store(content, small: true, into: dst, known: known, packs: packs, stats: stats)))
                }
                return names
            }
            let fromLoose = try await forEachBounded(Array(loose), parallelism: parallelism) { id -> (String, String) in
                let chunk = try await src.chunkForCopy(id: id, base: manifest.deltaBase(of: id))
                let newID = dst.chunkID(for: chunk.data)
                if await known.claim(newID) {
                    var written = 0
                    var base: String?
                    if let delta = chunk.delta, dst.storesDeltas {
                        // The delta body is key-independent: only the names change. Its base goes
                        // first, whole (a base is whole in the source, so it is whole here too).
                        let newBase = dst.chunkID(for: delta.base)
                        if await known.claim(newBase) {
                            written += try await dst.putChunk(id: newBase, data: delta.base)
                            await known.record(newBase, base: nil)
                        }
                        if await known.wholeBase(for: newBase) == newBase {
                            written += try await dst.putCopiedDelta(id: newID, base: newBase, wireValue: delta.wireValue,
                                body: delta.body, plaintextLength: chunk.data.count)
                            base = newBase
                        }
                    }
                    if base == nil { written += try await dst.putChunk(id: newID, data: chunk.data) }
                    await known.record(newID, base: base)
                    await stats.chunk(written: written)
                } else {
                    await stats.chunk(written: nil)
                }
                return (id, newID)
            }
            try await packs?.finish()
            var names: [String: String] = [:]
            for list in fromPacks { for (old, new) in list { names[old] = new } }
            for (old, new) in fromLoose { names[old] = new }
            func translate(_ entry: ManifestEntry) throws -> ManifestEntry {
                var copy = entry
                copy.chunks = try entry.chunks.map { id in
                    guard let new = names[id] else { throw LifeboatError(.internalError, "chunk \(id) of \(entry.path) was not copied") }
                    return new
                }
                return copy
            }
            let entries = try manifest.entries.map(translate)
            let externals = try manifest.externalFiles?.map { external -> ExternalFile in
                var copy = external
                copy.entry = try translate(external.entry)
                return copy
            }
            var copied = record
            // A file list left by an interrupted copy of this backup has no record pointing at it
            // (we checked) and expire cannot run meanwhile (we hold a lock): replace it.
            try await target.store.delete(Repository.manifestKey(record.id))
            let deltas = await known.deltasOnly()
            let chunkLists = entries.map(\.chunks) + (externals ?? []).map(\.entry.chunks)
            var deltaBases: [String: String] = [:]
            for list in chunkLists {
                for chunk in list { if let base = deltas[chunk] { deltaBases[chunk] = base } }
            }
            let packed = await known.packedLocations(for: chunkLists)
            copied.manifestObject = try await target.writeManifest(BackupManifest(backupID: record.id, chunkSize: manifest.chunkSize,
                entries: entries, deltaBases: deltaBases.isEmpty ? nil : deltaBases, externalFiles: externals,
                packedChunks: packed.isEmpty ? nil : packed))
            let s = await stats.snapshot()
            copied.newChunks = s.chunksCopied - report.chunksCopied
            copied.newStoredBytes = UInt64(max(0, s.bytes - report.bytesWritten))
            try await target.commitBackup(copied)
            report.copiedBackups.append(record.id)
            report.chunksCopied = s.chunksCopied
            report.chunksPresent = s.chunksPresent
            report.bytesWritten = s.bytes
            logger.info("backup copied", metadata: [LogKey.backupID: .string(record.id)])
        }
        let s = await stats.snapshot()
        report.chunksCopied = s.chunksCopied
        report.chunksPresent = s.chunksPresent
        report.walFilesCopied = s.walCopied
        report.walFilesPresent += s.walPresent
        report.bytesWritten = s.bytes
        if verify {
            report.verifyProblems = try await Verifier(repository: target, parallelism: parallelism).run().problems
        }
        return report
    }
}

extension RepositoryCopier {
    /// Stores a chunk's content in the target under its name there (packed when it was packed in the
    /// source and the target packs); returns that name.
    static func store(_ content: Data, small: Bool, into dst: Repository, known: ChunkIndex, packs: PackWriter?,
        stats: CopyStats) async throws -> String
    {
        let newID = dst.chunkID(for: content)
        guard await known.claim(newID) else {
            await stats.chunk(written: nil)
            return newID
        }
        if small, let packs, content.count <= dst.packLimit {
            let sealed = try dst.sealChunk(id: newID, data: content)
            await known.record(newID, packedAt: try await packs.add(id: newID, sealed: sealed))
            await stats.chunk(written: sealed.count + 68)
        } else {
            await stats.chunk(written: try await dst.putChunk(id: newID, data: content))
            await known.record(newID, base: nil)
        }
        return newID
    }
}

actor CopyStats {
    private var chunksCopied = 0
    private var chunksPresent = 0
    private var walCopied = 0
    private var walPresent = 0
    private var bytes = 0

    func chunk(written: Int?) {
        if let written, written > 0 {
            chunksCopied += 1
            bytes += written
        } else {
            chunksPresent += 1
        }
    }

    func wal(written: Int?) {
        if let written {
            walCopied += 1
            bytes += written
        } else {
            walPresent += 1
        }
    }

    func snapshot() -> (chunksCopied: Int, chunksPresent: Int, walCopied: Int, walPresent: Int, bytes: Int) {
        (chunksCopied, chunksPresent, walCopied, walPresent, bytes)
    }
}

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
        let known = ChunkIndex(try await target.chunkCatalog())
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
            var entries: [ManifestEntry] = []
            entries.reserveCapacity(manifest.entries.count)
            let translated = try await forEachBounded(manifest.entries, parallelism: parallelism) { entry -> ManifestEntry in
                var copy = entry
                copy.chunks = []
                for id in entry.chunks {
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
                    copy.chunks.append(newID)
                }
                return copy
            }
            entries = translated
            var copied = record
            // A file list left by an interrupted copy of this backup has no record pointing at it
            // (we checked) and expire cannot run meanwhile (we hold a lock): replace it.
            try await target.store.delete(Repository.manifestKey(record.id))
            let deltas = await known.deltasOnly()
            var deltaBases: [String: String] = [:]
            for entry in entries {
                for chunk in entry.chunks { if let base = deltas[chunk] { deltaBases[chunk] = base } }
            }
            copied.manifestObject = try await target.writeManifest(BackupManifest(backupID: record.id, chunkSize: manifest.chunkSize,
                entries: entries, deltaBases: deltaBases.isEmpty ? nil : deltaBases))
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

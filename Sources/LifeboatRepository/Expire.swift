import Foundation
import LifeboatCore
import Logging

/// What `expire` did (or, with `dryRun`, would do).
public struct ExpireReport: Codable, Sendable {
    public struct BackupDecision: Codable, Sendable {
        public var id: String
        public var kind: BackupKind
        public var keep: Bool
        public var reason: String
    }

    public var dryRun: Bool
    public var backups: [BackupDecision]
    public var chunksRemoved: Int
    public var chunkBytesRemoved: Int
    public var walFilesRemoved: Int
    public var walBytesRemoved: Int
    public var orphanManifestsRemoved: Int
    /// Objects the policy would remove but that are still locked (Object Lock, append-only).
    public var protectedObjects: Int
    /// When the first of them becomes deletable (a later expire removes it).
    public var nextDeletableAt: Date?
    /// Files that writes killed half way left (a local repository's `.tmp-` files over an hour old).
    public var partialWritesRemoved: Int = 0
}

/// Applies the retention policy: removes expired backups, then chunks no remaining backup uses,
/// then WAL no remaining backup needs. Runs under the exclusive lock, so no backup is deciding
/// which chunks exist while chunks are swept.
public struct Expirer: Sendable {
    public var repository: Repository
    public var policy: RetentionPolicy

    public init(repository: Repository, policy: RetentionPolicy) {
        self.repository = repository
        self.policy = policy
    }

    public func run(dryRun: Bool, now: Date = Date()) async throws -> ExpireReport {
        try await RepositoryLock.withLock(.exclusive, purpose: "expire", repository: repository) {
            try await runLocked(dryRun: dryRun, now: now)
        }
    }

    private func runLocked(dryRun: Bool, now: Date) async throws -> ExpireReport {
        let repo = repository
        let backups = try await repo.backups()
        var plan = ExpirePlan.make(backups: backups, policy: policy, now: now)
        let byID = Dictionary(uniqueKeysWithValues: backups.map { ($0.id, $0) })
        var protectedCount = 0
        var nextDeletable: Date?
        // Only stores that protect objects are asked (on S3 each question is a HEAD request).
        let protects = repo.store.locksObjects
        func protected(_ key: String) async throws -> Bool {
            guard protects, let until = try await repo.store.protectedUntil(key) else { return false }
            protectedCount += 1
            nextDeletable = min(nextDeletable ?? until, until)
            return true
        }
        // Never try to delete a locked object: a backup whose record or file list is still locked
        // stays, and says until when.
        for (i, d) in plan.decisions.enumerated() where protects && !d.keep {
            guard let b = byID[d.backupID] else { continue }
            for key in [Repository.backupKey(b.id), b.manifestObject] {
                if let until = try await repo.store.protectedUntil(key) {
                    plan.decisions[i] = .init(backupID: b.id, keep: true,
                        reason: "\(d.reason), but locked until \(Timestamp.format(until)); expired after that")
                    protectedCount += 1
                    nextDeletable = min(nextDeletable ?? until, until)
                    break
                }
            }
        }
        let kept = plan.kept.compactMap { byID[$0] }
        let expired = plan.expired.compactMap { byID[$0] }

        // Chunks referenced by the backups that stay. Read every kept manifest before deleting
        // anything: a damaged manifest must stop expire, not make it delete the chunks it names.
        var referenced = Set<String>()
        for b in kept {
            let manifest = try await repo.manifest(for: b)
            for list in manifest.allChunkIDs {
                for chunk in list { referenced.formUnion(Repository.chunkObjectKeys(chunk, in: manifest)) }
            }
        }
        var orphans: [String] = []
        for key in try await repo.orphanManifests() where try await !protected(key) { orphans.append(key) }
        if !dryRun {
            for b in expired {
                try await repo.deleteBackup(b)
                repo.logger.info("backup expired", metadata: [LogKey.backupID: .string(b.id)])
            }
            for key in orphans { try await repo.store.delete(key) }
        }
        // A backup or copy killed half way (kill -9, a crash) leaves its partial files: with the
        // exclusive lock held none is running, and a WAL push's takes seconds.
        let partials = dryRun ? (files: 0, bytes: 0) : try await repo.store.removeAbandonedPartials(olderThan: now.addingTimeInterval(-3600))
        if partials.files > 0 {
            repo.logger.info("partial writes removed", metadata: ["lifeboat.files": "\(partials.files)", "lifeboat.bytes": "\(partials.bytes)"])
        }

        var chunksRemoved = 0
        var chunkBytes = 0
        // Whole and delta chunks, and packs (a pack stays while any kept backup reads a chunk of it).
        for (_, info) in try await repo.store.list(.chunks) + repo.store.list(.packs) {
            if referenced.contains(info.key) { continue }
            if try await protected(info.key) { continue }
            chunksRemoved += 1
            chunkBytes += info.size
            if !dryRun { try await repo.store.delete(info.key) }
        }

        var walRemoved = 0
        var walBytes = 0
        if !kept.isEmpty {
            for (file, info) in try await repo.walFiles() where !ExpirePlan.walNeeded(file, keptBackups: kept) {
                if try await protected(info.key) { continue }
                walRemoved += 1
                walBytes += info.size
                if !dryRun { try await repo.store.delete(info.key) }
            }
        }
        let decisions = plan.decisions.map { d in
            ExpireReport.BackupDecision(id: d.backupID, kind: byID[d.backupID]?.kind ?? .automated, keep: d.keep, reason: d.reason)
        }
        return ExpireReport(dryRun: dryRun, backups: decisions, chunksRemoved: chunksRemoved, chunkBytesRemoved: chunkBytes,
            walFilesRemoved: walRemoved, walBytesRemoved: walBytes, orphanManifestsRemoved: dryRun ? 0 : orphans.count,
            protectedObjects: protectedCount, nextDeletableAt: nextDeletable, partialWritesRemoved: partials.files)
    }
}

import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository
import LifeboatTesting
import Testing

/// A backup written straight through the repository API: chunks, file list, record.
func syntheticBackup(_ repo: Repository, id: String, stoppedAgo: TimeInterval, chunks: [Data], segment: UInt64) async throws -> BackupRecord {
    var ids: [String] = []
    for data in chunks {
        let cid = repo.chunkID(for: data)
        _ = try await repo.putChunk(id: cid, data: data)
        ids.append(cid)
    }
    let stop = Date().addingTimeInterval(-stoppedAgo)
    let entry = ManifestEntry(path: "base/1/\(id)", type: .file, mode: 0o600, size: UInt64(chunks.reduce(0) { $0 + $1.count }),
        modified: stop, chunks: ids)
    let manifestKey = try await repo.writeManifest(BackupManifest(backupID: id, chunkSize: repo.config.chunkSize, entries: [entry]))
    let size: UInt64 = 16 << 20
    let record = BackupRecord(id: id, kind: .automated, tags: [:], retainUntil: nil, startTime: stop.addingTimeInterval(-1), stopTime: stop,
        startLSN: LSN(segment * size), stopLSN: LSN(segment * size + 100), timeline: 1, nextXidAtStop: nil, walSegmentSize: size, postgresVersion: "15",
        systemIdentifier: "1", backupLabel: "", tablespaceMap: "", fileCount: 1, logicalBytes: 1, newStoredBytes: 1, newChunks: 1,
        totalChunks: 1, manifestObject: manifestKey, host: "test", lifeboatVersion: "test")
    try await repo.commitBackup(record)
    _ = try await repo.pushWAL(name: record.startSegment.name, data: Data(id.utf8))
    return record
}

@Suite struct ImmutabilityTests {
    /// On a bucket with Object Lock, every object is written locked; deleting a locked object is
    /// refused by S3 itself; expire leaves locked backups and chunks and says when they can go.
    @Test func objectLockIsWrittenEnforcedAndRespectedByExpire() async throws {
        let settings = try await MotoServer.shared.bucket(objectLock: ObjectLockSettings(mode: .compliance, retention: 3600))
        let store = try S3Store(settings: settings)
        let repo = try await Repository.initialize(store: store, key: .passphrase("p"), logger: TestSandbox.logger())
        let old = try await syntheticBackup(repo, id: "old", stoppedAgo: 30 * 86400, chunks: [Data(repeating: 1, count: 5000)], segment: 2)
        let mid = try await syntheticBackup(repo, id: "mid", stoppedAgo: 8 * 86400, chunks: [Data(repeating: 3, count: 5000)], segment: 3)
        let new = try await syntheticBackup(repo, id: "new", stoppedAgo: 60, chunks: [Data(repeating: 2, count: 5000)], segment: 4)

        let chunkKey = "chunks/" + repo.chunkID(for: Data(repeating: 1, count: 5000)).prefix(2) + "/" + repo.chunkID(for: Data(repeating: 1, count: 5000))
        let until = try #require(try await store.protectedUntil(String(chunkKey)))
        #expect(until > Date().addingTimeInterval(3000) && until < Date().addingTimeInterval(3700))
        #expect(try await store.protectedUntil("locks/none") == nil)

        // S3 itself refuses to delete the locked version.
        let refused = try await CommandRunner.runSeparately(MotoServer.python(), ["-c", """
            import boto3, botocore
            s3 = boto3.client("s3", endpoint_url="\(settings.endpoint.absoluteString)", aws_access_key_id="a", aws_secret_access_key="b", region_name="us-east-1")
            key = "\(settings.prefix)\(chunkKey)"
            v = s3.head_object(Bucket="\(settings.bucket)", Key=key)["VersionId"]
            try:
                s3.delete_object(Bucket="\(settings.bucket)", Key=key, VersionId=v)
                print("deleted")
            except botocore.exceptions.ClientError as e:
                print(e.response["Error"]["Code"])
            """], check: false)
        #expect(refused.output.trimmingCharacters(in: .whitespacesAndNewlines) == "AccessDenied", "\(refused.errors)")
        // And Lifeboat does not even try.
        await #expect { try await store.delete(String(chunkKey)) } throws: { ($0 as? LifeboatError)?.message.contains("locked until") == true }

        let report = try await Expirer(repository: repo, policy: .seedDefault).run(dryRun: false)
        #expect(report.backups.first { $0.id == old.id }?.keep == true)
        #expect(report.backups.first { $0.id == old.id }?.reason.contains("locked until") == true)
        #expect(report.protectedObjects >= 1)
        #expect(report.nextDeletableAt != nil)
        #expect(report.chunksRemoved == 0)
        #expect(try await repo.backups().map(\.id).sorted() == [mid.id, new.id, old.id].sorted())
        #expect(try await Verifier(repository: repo).run().problems == [])
    }

    /// The append-only file store refuses deletion until the retention ends; then expire removes
    /// what the policy allows.
    @Test func appendOnlyFileStoreRefusesEarlyDeletion() async throws {
        let sandbox = try TestSandbox("appendonly")
        defer { Task { await sandbox.remove() } }
        var store = FileStore(root: sandbox.path("repo"))
        store.appendOnlyRetention = 600
        let repo = try await Repository.initialize(store: store, key: .passphrase("p"), logger: TestSandbox.logger())
        let oldBackup = try await syntheticBackup(repo, id: "old", stoppedAgo: 30 * 86400, chunks: [Data(repeating: 1, count: 5000)], segment: 2)
        _ = try await syntheticBackup(repo, id: "mid", stoppedAgo: 8 * 86400, chunks: [Data(repeating: 3, count: 5000)], segment: 3)
        _ = try await syntheticBackup(repo, id: "new", stoppedAgo: 60, chunks: [Data(repeating: 2, count: 5000)], segment: 4)
        await #expect { try await store.delete(Repository.walKey(.segment(oldBackup.startSegment))) } throws: {
            ($0 as? LifeboatError)?.message.contains("append-only") == true
        }
        let early = try await Expirer(repository: repo, policy: .seedDefault).run(dryRun: false)
        #expect(early.backups.first { $0.id == oldBackup.id }?.keep == true)
        #expect(try await repo.backups().count == 3)
        // Time passes: every object is now older than the retention.
        let old = Date().addingTimeInterval(-700)
        for path in FileManager.default.subpaths(atPath: sandbox.path("repo")) ?? [] {
            try FileManager.default.setAttributes([.modificationDate: old], ofItemAtPath: sandbox.path("repo/" + path))
        }
        let later = try await Expirer(repository: repo, policy: .seedDefault).run(dryRun: false)
        #expect(later.backups.first { $0.id == oldBackup.id }?.keep == false)
        #expect(later.chunksRemoved == 1)
        #expect(try await repo.backups().map(\.id).sorted() == ["mid", "new"])
        #expect(try await Verifier(repository: repo).run().problems == [])
    }
}

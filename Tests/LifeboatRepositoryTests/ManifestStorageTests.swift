import Foundation
import LifeboatCore
import LifeboatTesting
import Testing

@testable import LifeboatRepository

/// Manifests are written compressed as they are encoded and read as they are decompressed; what
/// earlier versions stored (Foundation's JSON sealed whole, with the repository's compression) still
/// reads back, and a damaged manifest is refused, never read as a shorter file list.
struct ManifestStorageTests {
    func record(_ id: String, manifest key: String) -> BackupRecord {
        BackupRecord(id: id, kind: .automated, tags: [:], retainUntil: nil, startTime: Date(), stopTime: Date(), startLSN: LSN(0),
            stopLSN: LSN(0), timeline: 1, nextXidAtStop: nil, walSegmentSize: 16 << 20, postgresVersion: "15", systemIdentifier: "1",
            backupLabel: "", tablespaceMap: "", fileCount: 0, logicalBytes: 0, newStoredBytes: 0, newChunks: 0, totalChunks: 0,
            manifestObject: key, host: "h", lifeboatVersion: "t")
    }

    func sample(_ id: String, files: Int) -> BackupManifest {
        let modified = Date(timeIntervalSince1970: 1_764_000_000.125)
        var entries = [ManifestEntry(path: "base", type: .directory, mode: 0o700, size: 0, modified: modified, chunks: [])]
        var packed: [String: PackedChunk] = [:]
        for i in 0..<files {
            let chunk = String(format: "%064x", i * 7919)
            entries.append(ManifestEntry(path: "base/16384/\(16384 + i)", type: .file, mode: 0o600, size: UInt64(8192 * (i % 5 + 1)),
                modified: modified.addingTimeInterval(Double(i)), chunks: [chunk]))
            packed[chunk] = PackedChunk(pack: String(format: "%032x", i / 1000), offset: 4 + (i % 1000) * 200, length: 150)
        }
        return BackupManifest(backupID: id, chunkSize: 1 << 20, entries: entries, packedChunks: packed)
    }

    @Test func streamedAndOlderManifestsReadBackAndDamageIsRefused() async throws {
        let sandbox = try TestSandbox("manifest-storage")
        for compression in [CompressionAlgorithm.zstd, .lz4, .none] {
            let path = sandbox.path("repo-\(compression)")
            let repo = try await Repository.initialize(store: FileStore(root: path), key: .passphrase("pw"),
                options: RepositoryOptions(compression: compression), logger: TestSandbox.logger())
            // Written now: streamed through zstd whatever the repository's compression.
            let manifest = sample("20261203-000000-aaaa", files: 20_000)
            let key = try await repo.writeManifest(manifest)
            #expect(try await repo.manifest(for: record(manifest.backupID, manifest: key)) == manifest)
            let stored = try await repo.store.get(key)
            #expect(stored[4] == CompressionAlgorithm.zstd.wireValue)
            #expect(stored.count < 20_000 * 120, "20,000 entries compress to about 100 bytes each: \(stored.count)")

            // Written the way lifeboat did before: Foundation's encoder, sealed whole with the
            // repository's own compression.
            let older = sample("20261130-000000-bbbb", files: 300)
            let olderKey = Repository.manifestKey(older.backupID)
            #expect(try await repo.writeSealed(olderKey, plaintext: try RepositoryJSON.encoder().encode(older)) != nil)
            #expect(try await repo.manifest(for: record(older.backupID, manifest: olderKey)) == older)

            // One flipped bit, or the object cut short: refused as damaged.
            var damaged = stored
            damaged[damaged.count / 2] ^= 0x10
            try await repo.store.put(key, data: damaged, class: .bookkeeping)
            await #expect(throws: LifeboatError.self) { try await repo.manifest(for: record(manifest.backupID, manifest: key)) }
            try await repo.store.put(key, data: stored.prefix(stored.count - 100), class: .bookkeeping)
            await #expect(throws: LifeboatError.self) { try await repo.manifest(for: record(manifest.backupID, manifest: key)) }
        }
        await sandbox.remove()
    }

    /// A zstd body that authenticates but does not decompress to the promised length (a writer bug,
    /// not damage in transit) is refused too.
    @Test func aFrameShorterThanItsHeaderSaysIsRefused() async throws {
        let sandbox = try TestSandbox("manifest-length")
        let (repo, _) = try await newRepository(sandbox)
        let manifest = sample("20261203-000000-cccc", files: 50)
        let text = ManifestJSON.encode(manifest)
        let body = try Zstd.compress(text, level: 3, prefix: nil)
        let key = Repository.manifestKey(manifest.backupID)
        let sealed = try repo.codec.seal(body: body, wireValue: CompressionAlgorithm.zstd.wireValue, plaintextLength: text.count + 5, key: key)
        try await repo.store.put(key, data: sealed, class: .bookkeeping)
        let error = await #expect(throws: LifeboatError.self) { try await repo.manifest(for: record(manifest.backupID, manifest: key)) }
        #expect(error?.code == .integrity)
        await sandbox.remove()
    }
}

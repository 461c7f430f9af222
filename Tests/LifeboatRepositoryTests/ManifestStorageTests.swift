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
    /// Format 4: a manifest is sealed a frame at a time. Frames are each authenticated with their
    /// index, whether they are the last, and (the last) the plaintext length, so no frame can be
    /// dropped, reordered, cut or moved to another object; format 3 repositories keep manifests
    /// older versions read.
    @Test func framedManifestsReadBackAndEveryRearrangementIsRefused() async throws {
        let sandbox = try TestSandbox("manifest-framed")
        defer { Task { await sandbox.remove() } }
        let (repo, path) = try await newRepository(sandbox)
        #expect(repo.config.format == 4 && repo.framesManifests)
        let manifest = sample("20261207-000000-dddd", files: 20_000)
        let key = try await repo.writeManifest(manifest, frameSize: 64 << 10)
        let stored = try await repo.store.get(key)
        #expect(stored[4] == CompressionAlgorithm.zstd.wireValue && stored[5] == ObjectCodec.framedFlag)
        // The frames, as the format describes them.
        var frames: [Range<Int>] = []
        var at = ObjectCodec.headerSize
        while at < stored.count {
            let n = Int(stored[at]) | Int(stored[at + 1]) << 8 | Int(stored[at + 2]) << 16 | Int(stored[at + 3]) << 24
            frames.append(at..<(at + 4 + n))
            at += 4 + n
        }
        #expect(at == stored.count)
        #expect(frames.count >= 3, "a manifest of \(stored.count) bytes is sealed in 64 KiB frames: \(frames.count)")
        #expect(try await repo.manifest(for: record(manifest.backupID, manifest: key)) == manifest)
        var streamed = 0
        _ = try await repo.manifest(for: record(manifest.backupID, manifest: key), eachEntry: { _ in streamed += 1 }, eachPackedChunk: { _, _ in })
        #expect(streamed == manifest.entries.count)

        func refused(_ bytes: Data, _ why: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
            try await repo.store.put(key, data: bytes, class: .bookkeeping)
            let error = await #expect(throws: LifeboatError.self, "\(why)", sourceLocation: sourceLocation) {
                try await repo.manifest(for: record(manifest.backupID, manifest: key))
            }
            #expect(error?.code == .integrity, "\(why): \(String(describing: error))", sourceLocation: sourceLocation)
        }
        let header = stored.prefix(ObjectCodec.headerSize)
        func assemble(_ order: [Int]) -> Data { order.reduce(Data(header)) { $0 + stored[frames[$1]] } }
        try await refused(assemble(Array(0..<(frames.count - 1))), "the last frame dropped")
        try await refused(assemble([1, 0] + Array(2..<frames.count)), "two frames swapped")
        try await refused(assemble(Array(0..<frames.count) + [frames.count - 1]), "a frame repeated at the end")
        try await refused(assemble([0] + Array(2..<frames.count)), "a middle frame dropped")
        var length = stored
        length[8] ^= 1
        try await refused(length, "the plaintext length changed")
        var unframed = stored
        unframed[5] = 0
        try await refused(unframed, "the framed flag cleared")
        try await refused(stored + Data([0, 0, 0, 0]), "bytes after the last frame")
        // A manifest's frames moved under another backup's name.
        let otherKey = Repository.manifestKey("20261207-000000-eeee")
        try await repo.store.put(otherKey, data: stored, class: .bookkeeping)
        await #expect(throws: LifeboatError.self) { try await repo.manifest(for: record("20261207-000000-eeee", manifest: otherKey)) }
        try await repo.store.put(key, data: stored, class: .bookkeeping)
        #expect(try await repo.manifest(for: record(manifest.backupID, manifest: key)) == manifest, "the original still reads")
        #expect(try await Verifier(repository: repo).run().problems.map(\.object).contains(otherKey))

        // A format 3 repository: manifests sealed whole, as lifeboat 3 reads them.
        var config = try String(contentsOfFile: path + "/config", encoding: .utf8)
        config = config.replacingOccurrences(of: "\"format\":4", with: "\"format\":3")
        try config.write(toFile: path + "/config", atomically: true, encoding: .utf8)
        let format3 = try await Repository.open(store: FileStore(root: path), key: .passphrase("pw-1"), logger: TestSandbox.logger())
        #expect(!format3.framesManifests)
        let older = sample("20261207-000001-ffff", files: 20_000)
        let olderKey = try await format3.writeManifest(older, frameSize: 64 << 10)
        let olderStored = try await format3.store.get(olderKey)
        #expect(olderStored[5] == 0)
        #expect(try await format3.manifest(for: record(older.backupID, manifest: olderKey)) == older)
        #expect(try await format3.manifest(for: record(manifest.backupID, manifest: key)) == manifest, "framed ones it already has still read")
    }

    /// The streaming decompressor fed piece by piece (a framed object's frames) gives the same text
    /// as fed whole, wherever the pieces break, and refuses bytes after the zstd frame.
    @Test func decompressingPieceByPieceMatchesWhole() throws {
        var text: [UInt8] = []
        for i in 0..<200_000 { text.append(contentsOf: "line \(i * 31 % 977)\n".utf8) }
        let body = try Zstd.compress(Data(text), level: 3, prefix: nil)
        for pieceSize in [1, 7, 4096, 65_536, body.count] {
            var offset = 0
            let stream = try ZstdStreamDecompressor(originalSize: text.count, object: "t") {
                guard offset < body.count else { return nil }
                defer { offset += pieceSize }
                return Data(body[offset..<min(body.count, offset + pieceSize)])
            }
            var out: [UInt8] = []
            var buffer: [UInt8] = []
            repeat {
                try stream.refill(&buffer)
                out.append(contentsOf: buffer)
            } while !buffer.isEmpty
            #expect(out == text, "pieces of \(pieceSize)")
        }
        var given = false
        let trailing = try ZstdStreamDecompressor(originalSize: text.count, object: "t") {
            guard !given else { return Data([1]) }
            given = true
            return body
        }
        var buffer: [UInt8] = []
        #expect(throws: LifeboatError.self) { repeat { try trailing.refill(&buffer) } while !buffer.isEmpty }
    }
    /// On a file store the framed manifest is written into a spool file beside its final name as it
    /// is sealed, then linked into place: nothing is left behind whether it is stored or abandoned
    /// (a failed backup), and a store without files of its own reads it from memory alike.
    @Test func aManifestIsSpooledIntoTheFileStoreAndNothingIsLeftBehind() async throws {
        let sandbox = try TestSandbox("manifest-spool")
        defer { Task { await sandbox.remove() } }
        let (repo, path) = try await newRepository(sandbox)
        func spoolFiles() throws -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: path + "/manifests")) ?? []).filter { $0.hasPrefix(".tmp-") }
        }
        do {
            let sealer = try #require(try repo.manifestSealer(key: Repository.manifestKey("20261207-000002-abab"), frameSize: 64 << 10))
            try sealer.append(Data(repeating: 7, count: 300 << 10))
            #expect(try spoolFiles().count == 1, "frames go to the spool file as they are sealed")
        }
        #expect(try spoolFiles().isEmpty, "an abandoned manifest leaves no spool file")

        let manifest = sample("20261207-000003-cdcd", files: 5_000)
        let key = try await repo.writeManifest(manifest, frameSize: 64 << 10)
        #expect(try spoolFiles().isEmpty)
        #expect(try await repo.manifest(for: record(manifest.backupID, manifest: key)) == manifest)
        let remote = try await Repository.open(store: FaultInjectingStore(FileStore(root: path), faults: []), key: .passphrase("pw-1"),
            logger: TestSandbox.logger())
        #expect(try await remote.manifest(for: record(manifest.backupID, manifest: key)) == manifest, "read from memory, frame by frame")
        // The same manifest written through a store without spool files is the same object, bit for
        // bit but for the random nonces: same size, same frames.
        let again = sample("20261207-000004-efef", files: 5_000)
        let viaMemory = try await remote.writeManifest(again, frameSize: 64 << 10)
        #expect(try await repo.manifest(for: record(again.backupID, manifest: viaMemory)).entries == again.entries)
        #expect(try await repo.store.get(viaMemory).count == (try await repo.store.get(key)).count)
        // Written once only: a second manifest under the same key is refused, its spool file removed.
        await #expect(throws: LifeboatError.self) { try await repo.writeManifest(manifest, frameSize: 64 << 10) }
        #expect(try spoolFiles().isEmpty)
    }
    /// verify reads each file list as a stream (chunks as keys, packed locations checked as they go)
    /// and still finds every missing or misplaced chunk, naming the first and the file using it.
    @Test func verifyFindsEveryMissingChunkOfAStreamedFileList() async throws {
        let sandbox = try TestSandbox("verify-stream")
        defer { Task { await sandbox.remove() } }
        let (repo, path) = try await newRepository(sandbox)
        let modified = Date(timeIntervalSince1970: 1_764_000_000)
        var entries = [ManifestEntry(path: "base", type: .directory, mode: 0o700, size: 0, modified: modified, chunks: [])]
        let packs = PackWriter(repository: repo)
        var packed: [String: PackedChunk] = [:]
        for i in 0..<50 {
            let data = Data("small file \(i)".utf8)
            let id = repo.chunkID(for: data)
            packed[id] = try await packs.add(id: id, sealed: try repo.sealChunk(id: id, data: data))
            entries.append(ManifestEntry(path: "base/1/\(i)", type: .file, mode: 0o600, size: UInt64(data.count), modified: modified, chunks: [id]))
        }
        try await packs.finish()
        let big = Data((0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        let bigID = repo.chunkID(for: big)
        _ = try await repo.putChunk(id: bigID, data: big)
        entries.append(ManifestEntry(path: "base/1/big", type: .file, mode: 0o600, size: UInt64(big.count), modified: modified, chunks: [bigID]))
        let manifest = BackupManifest(backupID: "20261207-000005-abcd", chunkSize: 1 << 20, entries: entries, packedChunks: packed)
        let key = try await repo.writeManifest(manifest, frameSize: 4096)
        try await repo.commitBackup(record(manifest.backupID, manifest: key))
        func references() async throws -> [String] {
            try await Verifier(repository: repo).run().problems.filter { $0.message.contains("references") }.map(\.message)
        }
        #expect(try await references() == [])

        // The whole chunk gone: named, with the file using it.
        let bigFile = path + "/" + Repository.chunkKey(bigID)
        try FileManager.default.moveItem(atPath: bigFile, toPath: bigFile + ".away")
        let missingBig = try await references()
        #expect(missingBig.count == 1 && missingBig[0].contains("1 missing chunk(s)") && missingBig[0].contains("used by base/1/big"), "\(missingBig)")
        try FileManager.default.moveItem(atPath: bigFile + ".away", toPath: bigFile)

        // The pack gone: each of its 50 chunks missing, the first named with its file.
        let location = try #require(packed.values.first)
        let packFile = path + "/" + Repository.packKey(location.pack)
        try FileManager.default.moveItem(atPath: packFile, toPath: packFile + ".away")
        let missingPack = try await references()
        #expect(missingPack.count == 1 && missingPack[0].contains("50 missing chunk(s)") && missingPack[0].contains("used by base/1/0"), "\(missingPack)")
        try FileManager.default.moveItem(atPath: packFile + ".away", toPath: packFile)
        #expect(try await references() == [])

        // A file list whose packed location points at another chunk of the pack.
        var moved = packed
        let (firstID, firstLocation) = try #require(packed.first { $0.value.offset > PackFormat.recordHeader + 4 })
        moved[firstID] = PackedChunk(pack: firstLocation.pack, offset: PackFormat.magic.count + PackFormat.recordHeader, length: firstLocation.length)
        let wrong = BackupManifest(backupID: "20261207-000006-abcd", chunkSize: 1 << 20, entries: entries, packedChunks: moved)
        try await repo.commitBackup(record(wrong.backupID, manifest: try await repo.writeManifest(wrong)))
        let misplaced = try await references()
        #expect(misplaced.count == 1 && misplaced[0].contains("chunk \(firstID) at byte"), "\(misplaced)")
    }
    /// What a backup killed half way leaves on a file store (a spool file, a temporary object) is
    /// never listed, and `expire` removes it once it is an hour old; a fresh one may be a WAL push
    /// in flight and stays.
    @Test func expireRemovesPartialWritesKilledHalfWay() async throws {
        let sandbox = try TestSandbox("partials")
        defer { Task { await sandbox.remove() } }
        let (repo, path) = try await newRepository(sandbox)
        var made: [String] = []
        for key in ["manifests/20261207-000007-aaaa", "chunks/ab/abcd", "wal/0000000100000000/000000010000000000000001"] {
            let spool = try #require(try repo.store.makeSpoolFile(for: key))
            let written = Data(repeating: 1, count: 1000).withUnsafeBytes { write(spool.descriptor, $0.baseAddress, $0.count) }
            #expect(written == 1000)
            close(spool.descriptor)
            made.append(spool.path)
        }
        // The first two as a kill two hours ago left them; the last one is a write of a moment ago.
        for file in made.prefix(2) {
            var times = [timespec(tv_sec: time(nil) - 7200, tv_nsec: 0), timespec(tv_sec: time(nil) - 7200, tv_nsec: 0)]
            #expect(utimensat(AT_FDCWD, file, &times, 0) == 0)
        }
        #expect(try await repo.store.list(prefix: "").filter { $0.key.contains(".tmp-") }.isEmpty, "never listed as objects")
        let dry = try await Expirer(repository: repo, policy: .seedDefault).run(dryRun: true)
        #expect(dry.partialWritesRemoved == 0 && made.allSatisfy { FileManager.default.fileExists(atPath: $0) })
        let report = try await Expirer(repository: repo, policy: .seedDefault).run(dryRun: false)
        #expect(report.partialWritesRemoved == 2)
        #expect(made.map { FileManager.default.fileExists(atPath: $0) } == [false, false, true])
        _ = path
    }
}

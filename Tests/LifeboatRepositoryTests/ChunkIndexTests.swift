import Foundation
import LifeboatCore
import LifeboatTesting
import Testing

@testable import LifeboatRepository

/// The chunk index keeps pack locations compactly (a sorted array and a small dictionary merged into
/// it): whatever the order and number of inserts, it answers as a plain dictionary would, and the
/// manifest being written lists exactly the packed chunks it named, ids ascending.
struct ChunkIndexTests {
    static func id(_ n: Int) -> String {
        // Spread over the key space, in no order.
        var h = UInt64(truncatingIfNeeded: n) &* 0x9E37_79B9_7F4A_7C15
        h ^= h >> 29
        return String(format: "%016llx", h) + String(format: "%016llx", UInt64(n)) + String(repeating: "0", count: 32)
    }

    static func location(_ n: Int, pack: Int) -> PackedChunk {
        PackedChunk(pack: String(format: "%032x", pack), offset: 4 + (n % 997) * 300, length: 100 + n % 200)
    }

    @Test func packLocationsAnswerAsADictionaryWouldAndTheManifestListsWhatItNamed() async throws {
        // Loaded from a previous manifest: 30,000 locations (several merges into the sorted array).
        var table = PackedChunkTable()
        var model: [String: PackedChunk] = [:]
        for n in 0..<30_000 {
            let location = Self.location(n, pack: n / 300)
            table.insert(Self.id(n), at: location)
            model[Self.id(n)] = location
        }
        // A pack that no longer exists takes its chunks with it.
        let present = Set((0..<100).filter { $0 != 7 }.map { String(format: "%032x", $0) })
        table.keepPacks(in: present)
        for n in 2100..<2400 { model[Self.id(n)] = nil }
        #expect(table.count == model.count)

        let index = ChunkIndex(ChunkCatalog(), table: table)
        // This backup stores 20,000 more in packs (merged as they come) and names a sample of both.
        var named: [String: PackedChunk] = [:]
        for n in 30_000..<50_000 {
            let id = Self.id(n)
            #expect(await index.claim(id))
            let location = Self.location(n, pack: 200 + n / 300)
            await index.record(id, packedAt: location)
            model[id] = location
        }
        for n in stride(from: 0, to: 50_000, by: 7) {
            let id = Self.id(n)
            let placement = await index.placeInManifest(id)
            if let location = model[id] {
                #expect(placement == .packed)
                named[id] = location
            } else {
                #expect(placement == .whole, "a chunk of the missing pack is not packed any more")
            }
        }
        for n in stride(from: 1, to: 50_000, by: 97) {
            let id = Self.id(n)
            #expect(await index.storage(of: id) == (model[id].map { .packed($0) } ?? .whole))
            #expect(await index.contains(id) == (model[id] != nil))
            #expect(await !index.claim(id) || model[id] == nil)
        }
        let listed = Array(await index.usedPackedChunks())
        #expect(listed.map(\.0) == named.keys.sorted(), "every named packed chunk, once, ids ascending")
        #expect(listed.allSatisfy { named[$0.0] == $0.1 })
    }

    @Test func aManifestAssembledListsThePackedChunksItsEntriesUse() async throws {
        var table = PackedChunkTable()
        for n in 0..<10_000 { table.insert(Self.id(n), at: Self.location(n, pack: n / 500)) }
        let index = ChunkIndex(ChunkCatalog(), table: table)
        let assembler = try ManifestAssembler(backupID: "20261207-000000-test", chunkSize: 1 << 20, known: index)
        let modified = Date(timeIntervalSince1970: 1_765_000_000)
        var expected: [String: PackedChunk] = [:]
        for n in stride(from: 0, to: 10_000, by: 3) {
            try await assembler.append(ManifestEntry(path: "base/5/\(n)", type: .file, mode: 0o600, size: 8192, modified: modified, chunks: [Self.id(n)]))
            expected[Self.id(n)] = Self.location(n, pack: n / 500)
        }
        let (body, length) = try await assembler.finish(externalFiles: [])
        let text = try CompressionAlgorithm.zstd.decompress(body, originalSize: length, object: "test")
        let manifest = try ManifestJSONReader.decode(text)
        #expect(manifest.entries.count == expected.count)
        #expect(manifest.packedChunks == expected)
    }

    /// The chunk objects are folded into the index's keys page by page as the store lists them.
    @Test func theChunkListingIsFoldedInPageByPage() async throws {
        let sandbox = try TestSandbox("chunk-listing")
        defer { Task { await sandbox.remove() } }
        let store = FileStore(root: sandbox.path("repo"))
        let repo = try await Repository.initialize(store: store, key: .passphrase("pw"), logger: TestSandbox.logger())
        let ids = (0..<700).map(Self.id)
        for id in ids { _ = try await repo.putChunk(id: id, data: Data(id.utf8), deltaBase: nil) }
        let listing = try await repo.chunkListing()
        #expect(listing.count == 700)
        let index = ChunkIndex(listing, table: PackedChunkTable())
        for id in ids.prefix(50) { #expect(await index.contains(id)) }
        #expect(await !index.contains(Self.id(10_000)))
    }
}

import Foundation
import LifeboatCore
import LifeboatRepository
import LifeboatTesting
import Testing

/// One suite, every backend: what `ObjectStore` promises must hold for the file store and for a
/// real S3 API server alike. Never skipped: a missing moto server is a failure.
enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case file
    case s3

    var testDescription: String { rawValue }

    func makeStore(_ sandbox: TestSandbox) async throws -> any ObjectStore {
        switch self {
        case .file: return FileStore(root: sandbox.path("store"))
        case .s3:
            let store = S3Store(settings: try await MotoServer.shared.bucket())
            store.multipartThreshold = 6 * 1024 * 1024
            store.partSize = 5 * 1024 * 1024
            return store
        }
    }
}

@Suite struct StoreConformanceTests {
    @Test(arguments: Backend.allCases)
    func createIfAbsentReplaceReadDelete(_ backend: Backend) async throws {
        let sandbox = try TestSandbox("conf-\(backend)")
        defer { Task { await sandbox.remove() } }
        let store = try await backend.makeStore(sandbox)
        #expect(try await store.putIfAbsent("a/b/one", data: Data("first".utf8)))
        #expect(try await !store.putIfAbsent("a/b/one", data: Data("second".utf8)), "an existing object is kept")
        #expect(try await store.get("a/b/one") == Data("first".utf8))
        #expect(try await store.info("a/b/one")?.size == 5)
        #expect(try await store.info("a/b/missing") == nil)
        await #expect { _ = try await store.get("a/b/missing") } throws: { ($0 as? LifeboatError)?.code == .notFound }
        try await store.put("locks/x", data: Data("v1".utf8))
        try await store.put("locks/x", data: Data("v2".utf8))
        #expect(try await store.get("locks/x") == Data("v2".utf8))
        try await store.delete("a/b/one")
        try await store.delete("a/b/one")
        try await store.delete("never/existed")
        #expect(try await store.info("a/b/one") == nil)
        #expect(try await store.putIfAbsent("a/b/one", data: Data("again".utf8)), "a deleted key can be written again")
        #expect(try await store.putIfAbsent("empty", data: Data()))
        #expect(try await store.get("empty") == Data())
    }

    @Test(arguments: Backend.allCases)
    func listsByPrefixAcrossPages(_ backend: Backend) async throws {
        let sandbox = try TestSandbox("list-\(backend)")
        defer { Task { await sandbox.remove() } }
        let store = try await backend.makeStore(sandbox)
        let keys = (0..<1010).map { String(format: "chunks/%02x/%064x", $0 % 256, $0) }
        _ = try await forEachBounded(keys, parallelism: 16) { try await store.putIfAbsent($0, data: Data($0.utf8)) }
        _ = try await store.putIfAbsent("wal/00000001/000000010000000000000001", data: Data("w".utf8))
        _ = try await store.putIfAbsent("walrus", data: Data("x".utf8))
        let chunks = try await store.list(prefix: "chunks/")
        #expect(chunks.count == 1010, "more than one page of 1000")
        #expect(Set(chunks.map(\.key)) == Set(keys))
        #expect(chunks.allSatisfy { $0.size == $0.key.utf8.count })
        #expect(try await store.list(prefix: "wal/").map(\.key) == ["wal/00000001/000000010000000000000001"])
        #expect(try await store.list(prefix: "chunks/00/").count == 4)
        #expect(try await store.list(prefix: "nothing/").isEmpty)
        #expect(try await store.list(prefix: "").count == 1012)
    }

    @Test(arguments: Backend.allCases)
    func largeObjectsRoundTrip(_ backend: Backend) async throws {
        let sandbox = try TestSandbox("large-\(backend)")
        defer { Task { await sandbox.remove() } }
        let store = try await backend.makeStore(sandbox)
        var big = Data(count: 13 * 1024 * 1024 + 17)
        big.withUnsafeMutableBytes { b in for i in stride(from: 0, to: b.count, by: 4096) { b[i] = UInt8(i / 4096 % 251) } }
        #expect(try await store.putIfAbsent("wal/00000001/big", data: big))
        #expect(try await !store.putIfAbsent("wal/00000001/big", data: big))
        #expect(try await store.get("wal/00000001/big") == big)
        #expect(try await store.list(prefix: "wal/").map(\.key) == ["wal/00000001/big"], "no leftover parts are visible")
    }

    @Test(arguments: Backend.allCases)
    func repositoryWorksOnTheStore(_ backend: Backend) async throws {
        let sandbox = try TestSandbox("repo-\(backend)")
        defer { Task { await sandbox.remove() } }
        let store = try await backend.makeStore(sandbox)
        let repo = try await Repository.initialize(store: store, key: .passphrase("pw"), logger: TestSandbox.logger())
        await #expect { _ = try await Repository.initialize(store: store, key: .passphrase("pw"), logger: TestSandbox.logger()) } throws: {
            ($0 as? LifeboatError)?.code == .repository
        }
        await #expect { _ = try await Repository.open(store: store, key: .passphrase("nope"), logger: TestSandbox.logger()) } throws: {
            ($0 as? LifeboatError)?.code == .wrongKey
        }
        let data = Data(repeating: 9, count: 100_000)
        let id = repo.chunkID(for: data)
        #expect(try await repo.putChunk(id: id, data: data) > 0)
        #expect(try await repo.chunk(id: id) == data)
        let name = "000000010000000000000003"
        #expect(try await repo.pushWAL(name: name, data: data) != .alreadyArchived)
        #expect(try await repo.pushWAL(name: name, data: data) == .alreadyArchived)
        await #expect { _ = try await repo.pushWAL(name: name, data: Data(repeating: 8, count: 10)) } throws: {
            ($0 as? LifeboatError)?.code == .walConflict
        }
        #expect(try await Verifier(repository: repo).run().problems == [])
    }
}

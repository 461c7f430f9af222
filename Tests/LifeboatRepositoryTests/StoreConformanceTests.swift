import Foundation
import LifeboatCore
import LifeboatPostgres
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
            var store = try S3Store(settings: try await MotoServer.shared.bucket())
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
        try await store.put("locks/x", data: Data("v1".utf8), class: .bookkeeping)
        try await store.put("locks/x", data: Data("v2".utf8), class: .bookkeeping)
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
        // Page by page: the same objects, each page small (a directory, or up to 1,000 keys).
        var paged: [String] = []
        var largest = 0
        try await store.list(prefix: "chunks/") { page in
            paged += page.map(\.key)
            largest = max(largest, page.count)
        }
        #expect(paged.count == 1010 && Set(paged) == Set(keys))
        #expect(largest <= 1000, "a page holds at most 1000 keys: \(largest)")
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

/// Connections reset in the middle of multipart uploads (a real TCP reset from a proxy in front of
/// moto): the upload is retried whole, the object arrives intact, and no partial upload is left.
struct MultipartResetTests {
    @Test func resetsDuringMultipartAreRetriedAndLeaveNothingPartial() async throws {
        var settings = try await MotoServer.shared.bucket()
        let direct = try S3Store(settings: settings)
        let proxy = try await ResettingProxy.start(upstream: settings.endpoint, resets: 2, match: "partNumber=")
        settings.endpoint = proxy.url
        var proxied = try S3Store(settings: settings)
        proxied.multipartThreshold = 6 * 1024 * 1024
        proxied.partSize = 5 * 1024 * 1024
        let store = RetryingStore(proxied, policy: RetryPolicy(attempts: 6, baseDelay: 0.05, maxDelay: 0.2), logger: TestSandbox.logger())
        var data = Data(count: 13 * 1024 * 1024)
        data.withUnsafeMutableBytes { b in for i in stride(from: 0, to: b.count, by: 512) { b[i] = UInt8(truncatingIfNeeded: i / 512) } }
        #expect(try await store.putIfAbsent("wal/00000001/000000010000000000000042", data: data))
        #expect(proxy.resetsDone() == 2, "two part uploads were cut by a connection reset")
        #expect(try await direct.get("wal/00000001/000000010000000000000042") == data)
        #expect(try await direct.list(prefix: "").map(\.key) == ["wal/00000001/000000010000000000000042"])
        // No multipart upload is left half done in the bucket.
        let uploads = try await CommandRunner.runSeparately(MotoServer.python(), ["-c", """
            import boto3
            s3 = boto3.client("s3", endpoint_url="\(try await MotoServer.shared.url().absoluteString)", aws_access_key_id="a", aws_secret_access_key="b", region_name="us-east-1")
            print(len(s3.list_multipart_uploads(Bucket="\(settings.bucket)").get("Uploads", [])))
            """], check: true)
        #expect(uploads.output.trimmingCharacters(in: .whitespacesAndNewlines) == "0", "\(uploads.errors)")
    }
}

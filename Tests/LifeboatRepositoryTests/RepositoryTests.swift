import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository
import LifeboatTesting
import Testing

func newRepository(_ sandbox: TestSandbox, _ name: String = "repo", passphrase: String = "pw-1") async throws -> (Repository, String) {
    let path = sandbox.path(name)
    let repo = try await Repository.initialize(store: FileStore(root: path), key: .passphrase(passphrase), logger: TestSandbox.logger())
    return (repo, path)
}

func walSegment(_ n: Int, byte: UInt8) -> (String, Data) {
    let name = WALSegment(timeline: 1, number: UInt64(n), segmentSize: 16 << 20).name
    return (name, Data(repeating: byte, count: 64 * 1024) + Data("segment \(n)".utf8))
}

struct RepositoryKeyTests {
    @Test func wrongPassphraseIsRefusedClearly() async throws {
        let sandbox = try TestSandbox("key")
        defer { Task { await sandbox.remove() } }
        let (_, path) = try await newRepository(sandbox)
        let before = try FileManager.default.contentsOfDirectory(atPath: path)
        await #expect {
            _ = try await Repository.open(store: FileStore(root: path), key: .passphrase("pw-2"), logger: TestSandbox.logger())
        } throws: { error in
            guard let e = error as? LifeboatError else { return false }
            return e.code == .wrongKey && e.code.exitCode == 4 && !e.description.contains("pw-2") && !e.description.contains("pw-1")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: path) == before, "nothing written")
        _ = try await Repository.open(store: FileStore(root: path), key: .passphrase("pw-1"), logger: TestSandbox.logger())
        // The right passphrase left the key in the key cache: a wrong one is still refused.
        await #expect {
            _ = try await Repository.open(store: FileStore(root: path), key: .passphrase("pw-2"), logger: TestSandbox.logger())
        } throws: { ($0 as? LifeboatError)?.code == .wrongKey }
        _ = try await Repository.open(store: FileStore(root: path), key: .passphrase("pw-1"), logger: TestSandbox.logger())
    }

    @Test func initRefusesNonEmptyLocationAndNewerFormatIsRefused() async throws {
        let sandbox = try TestSandbox("init")
        defer { Task { await sandbox.remove() } }
        try sandbox.directory("busy")
        try sandbox.file("busy/data.txt", "x")
        await #expect {
            _ = try await Repository.initialize(store: FileStore(root: sandbox.path("busy")), key: .passphrase("p"), logger: TestSandbox.logger())
        } throws: { ($0 as? LifeboatError)?.code == .repository }
        #expect(try FileManager.default.contentsOfDirectory(atPath: sandbox.path("busy")) == ["data.txt"])

        let (_, path) = try await newRepository(sandbox)
        let configPath = path + "/config"
        var config = try String(contentsOfFile: configPath, encoding: .utf8)
        config = config.replacingOccurrences(of: "\"format\":\(RepositoryConfig.currentFormat)", with: "\"format\":99")
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        await #expect {
            _ = try await Repository.open(store: FileStore(root: path), key: .passphrase("pw-1"), logger: TestSandbox.logger())
        } throws: { error in
            guard let e = error as? LifeboatError else { return false }
            return e.code == .repository && e.message.contains("newer")
        }
        await #expect {
            _ = try await Repository.open(store: FileStore(root: sandbox.path("nothing-here")), key: .passphrase("p"), logger: TestSandbox.logger())
        } throws: { ($0 as? LifeboatError)?.code == .repository }
    }
}

struct ObjectIntegrityTests {
    @Test func chunksRoundTripAndAreNamedByKeyedHash() async throws {
        let sandbox = try TestSandbox("chunks")
        defer { Task { await sandbox.remove() } }
        let (repo, path) = try await newRepository(sandbox)
        let (other, _) = try await newRepository(sandbox, "repo2")
        let data = Data((0..<300_000).map { UInt8($0 % 251) })
        let id = repo.chunkID(for: data)
        #expect(id != other.chunkID(for: data), "chunk names depend on the repository key")
        #expect(try await repo.putChunk(id: id, data: data) > 0)
        #expect(try await repo.putChunk(id: id, data: data) == 0, "stored once")
        #expect(try await repo.chunk(id: id) == data)
        // Compressed and encrypted: the plaintext is not in the file.
        let stored = try Data(contentsOf: URL(fileURLWithPath: path + "/chunks/\(id.prefix(2))/\(id)"))
        #expect(stored.count < data.count / 2)
        #expect(stored.range(of: data.prefix(64)) == nil)
    }

    /// A chunk that differs from an older one in a few places is stored as a small delta named after
    /// its base, reads back exactly, and damage to it is found and named; unrelated content is stored
    /// whole, and a format-1 repository (older readers) never gets a delta.
    @Test func changedChunksAreStoredAsDeltasAgainstTheirBase() async throws {
        let sandbox = try TestSandbox("delta")
        defer { Task { await sandbox.remove() } }
        let (repo, path) = try await newRepository(sandbox)
        var generator = SystemRandomNumberGenerator()
        // Page-like content: compressible, but not trivially.
        let base = Data((0..<(1 << 20)).map { i in UInt8(truncatingIfNeeded: (i / 64) &* 31 &+ (i % 7)) })
        var changed = base
        for _ in 0..<100 { changed[Int.random(in: 0..<changed.count, using: &generator)] ^= 0x5a }
        let (baseID, changedID) = (repo.chunkID(for: base), repo.chunkID(for: changed))
        let wholeBytes = try await repo.putChunk(id: baseID, data: base)
        let stored = try await repo.putChunk(id: changedID, data: changed, deltaBase: baseID)
        #expect(stored.base == baseID)
        #expect(stored.written > 0 && stored.written * 4 < wholeBytes, "delta \(stored.written) bytes, whole \(wholeBytes)")
        let deltaFile = path + "/chunks/\(changedID.prefix(2))/\(changedID)-\(baseID)"
        #expect(FileManager.default.fileExists(atPath: deltaFile))
        #expect(try await repo.chunk(id: changedID, base: baseID) == changed)
        // Same length: the XOR form (compression byte 4).
        #expect(try Data(contentsOf: URL(fileURLWithPath: deltaFile))[4] == 4)
        // A chunk that grew (a file's last chunk): the prefix form (byte 3), which also finds moved bytes.
        let grown = Data(base.prefix(700_000)) + Data("appended rows".utf8) + Data(base.suffix(200_000))
        let grownID = repo.chunkID(for: grown)
        let grownStored = try await repo.putChunk(id: grownID, data: grown, deltaBase: baseID)
        #expect(grownStored.base == baseID && grownStored.written < wholeBytes, "\(grownStored.written) vs \(wholeBytes)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: path + "/chunks/\(grownID.prefix(2))/\(grownID)-\(baseID)"))[4] == 3)
        #expect(try await repo.chunk(id: grownID, base: baseID) == grown)
        #expect(try await repo.chunkCatalog().deltas == [changedID: baseID, grownID: baseID])
        #expect(try await repo.chunkIDs() == [baseID, changedID, grownID])

        let noise = Data((0..<(1 << 20)).map { _ in UInt8.random(in: 0...255, using: &generator) })
        #expect(try await repo.putChunk(id: repo.chunkID(for: noise), data: noise, deltaBase: baseID).base == nil)

        var bytes = try Data(contentsOf: URL(fileURLWithPath: deltaFile))
        bytes[bytes.count / 2] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: deltaFile))
        await #expect {
            _ = try await repo.chunk(id: changedID, base: baseID)
        } throws: { error in
            guard let e = error as? LifeboatError else { return false }
            return e.code == .integrity && e.message.contains("\(changedID)-\(baseID)")
        }
        #expect(try await Verifier(repository: repo).run().problems.map(\.object) == ["chunks/\(changedID.prefix(2))/\(changedID)-\(baseID)"])

        // A repository created before deltas existed keeps storing whole chunks.
        let (old, oldPath) = try await newRepository(sandbox, "format1")
        var config = try String(contentsOfFile: oldPath + "/config", encoding: .utf8)
        config = config.replacingOccurrences(of: "\"format\":\(RepositoryConfig.currentFormat)", with: "\"format\":1")
        try config.write(toFile: oldPath + "/config", atomically: true, encoding: .utf8)
        let reopened = try await Repository.open(store: FileStore(root: oldPath), key: .passphrase("pw-1"), logger: TestSandbox.logger())
        #expect(!reopened.storesDeltas)
        _ = try await reopened.putChunk(id: old.chunkID(for: base), data: base)
        #expect(try await reopened.putChunk(id: old.chunkID(for: changed), data: changed, deltaBase: old.chunkID(for: base)).base == nil)
    }

    @Test(arguments: [0, 5, 20, 40, -1])
    func flippedByteAnywhereIsDetectedAndNamed(_ offset: Int) async throws {
        let sandbox = try TestSandbox("flip")
        defer { Task { await sandbox.remove() } }
        let (repo, path) = try await newRepository(sandbox)
        let data = Data(repeating: 7, count: 10_000)
        let id = repo.chunkID(for: data)
        _ = try await repo.putChunk(id: id, data: data)
        let file = path + "/chunks/\(id.prefix(2))/\(id)"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: file))
        bytes[offset >= 0 ? offset : bytes.count - 1] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: file))
        await #expect {
            _ = try await repo.chunk(id: id)
        } throws: { error in
            guard let e = error as? LifeboatError else { return false }
            return e.code == .integrity && e.message.contains(id)
        }
        let report = try await Verifier(repository: repo).run()
        #expect(report.problems.map(\.object) == ["chunks/\(id.prefix(2))/\(id)"])
    }

    @Test func objectMovedToAnotherNameIsDetected() async throws {
        let sandbox = try TestSandbox("swap")
        defer { Task { await sandbox.remove() } }
        let (repo, path) = try await newRepository(sandbox)
        let a = Data(repeating: 1, count: 5000)
        let b = Data(repeating: 2, count: 5000)
        let (ida, idb) = (repo.chunkID(for: a), repo.chunkID(for: b))
        _ = try await repo.putChunk(id: ida, data: a)
        _ = try await repo.putChunk(id: idb, data: b)
        let fa = path + "/chunks/\(ida.prefix(2))/\(ida)"
        let fb = path + "/chunks/\(idb.prefix(2))/\(idb)"
        try FileManager.default.removeItem(atPath: fb)
        try FileManager.default.copyItem(atPath: fa, toPath: fb)
        await #expect { _ = try await repo.chunk(id: idb) } throws: { ($0 as? LifeboatError)?.code == .integrity }
    }
}

struct WALPushTests {
    /// The prefetcher `restore --start` runs keeps `ahead` segments spooled in order, refills as
    /// PostgreSQL takes them, hands over exact content, and stops by itself at the end of the archive.
    @Test func restorePrefetcherKeepsTheSpoolFilledAhead() async throws {
        let sandbox = try TestSandbox("prefetcher")
        defer { Task { await sandbox.remove() } }
        let (repo, _) = try await newRepository(sandbox)
        var segments: [(String, Data)] = []
        for n in 1...5 {
            segments.append(walSegment(n, byte: UInt8(n)))
            _ = try await repo.pushWAL(name: segments[n - 1].0, data: segments[n - 1].1)
        }
        try sandbox.directory("pgdata/pg_wal")
        let spool = WALPrefetchSpool(dataDirectory: sandbox.path("pgdata"))
        func spooled() -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: spool.directory)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
        }
        func waitFor(_ expected: [String]) async throws {
            let deadline = Date().addingTimeInterval(10)
            while spooled() != expected, Date() < deadline { try await Task.sleep(for: .milliseconds(10)) }
            #expect(spooled() == expected)
        }
        let first = WALSegment(timeline: 1, number: 1, segmentSize: 16 << 20)
        let prefetcher = Task {
            await WALArchive(repository: repo, logger: TestSandbox.logger()).prefetch(into: spool, from: first, segmentSize: 16 << 20, ahead: 3)
        }
        try await waitFor(segments[0..<3].map(\.0))
        let target = sandbox.path("pgdata/pg_wal/RECOVERYXLOG")
        for (i, (name, data)) in segments.enumerated() {
            // Refilled up to three ahead, never past the end of the archive.
            try await waitFor(segments[i..<min(i + 3, 5)].map(\.0))
            #expect(spool.take(name, destination: target))
            #expect(try Data(contentsOf: URL(fileURLWithPath: target)) == data)
        }
        await prefetcher.value  // returned by itself: segment 6 is not archived
        #expect(spooled().isEmpty)
    }

    @Test func pushIsIdempotentAndRefusesConflicts() async throws {
        let sandbox = try TestSandbox("walpush")
        defer { Task { await sandbox.remove() } }
        let (repo, _) = try await newRepository(sandbox)
        let (name, data) = walSegment(3, byte: 1)
        guard case .stored = try await repo.pushWAL(name: name, data: data) else { Issue.record("first push stores"); return }
        #expect(try await repo.pushWAL(name: name, data: data) == .alreadyArchived)
        var other = data
        other[100] = 9
        await #expect { _ = try await repo.pushWAL(name: name, data: other) } throws: { error in
            guard let e = error as? LifeboatError else { return false }
            return e.code == .walConflict && e.code.exitCode == 10
        }
        #expect(try await repo.fetchWAL(name: name) == data, "the archived content is untouched")
        await #expect { _ = try await repo.fetchWAL(name: "000000010000000000000099") } throws: { ($0 as? LifeboatError)?.code == .notFound }
        await #expect { _ = try await repo.pushWAL(name: "postmaster.pid", data: data) } throws: { ($0 as? LifeboatError)?.code == .invalidUsage }
    }

    @Test func concurrentPushesOfTheSameSegmentAllSucceedOnce() async throws {
        let sandbox = try TestSandbox("walrace")
        defer { Task { await sandbox.remove() } }
        let (repo, path) = try await newRepository(sandbox)
        let (name, data) = walSegment(7, byte: 3)
        let results = try await withThrowingTaskGroup(of: WALPushResult.self) { group in
            for _ in 0..<16 { group.addTask { try await repo.pushWAL(name: name, data: data) } }
            return try await group.reduce(into: [WALPushResult]()) { $0.append($1) }
        }
        #expect(results.filter { if case .stored = $0 { return true } else { return false } }.count == 1)
        #expect(results.filter { $0 == .alreadyArchived }.count == 15)
        let files = try FileManager.default.contentsOfDirectory(atPath: path + "/wal/00000001")
        #expect(files == [name], "one object, no temporary leftovers")
    }

    @Test func fullDiskDuringPushLeavesNothingVisible() async throws {
        let sandbox = try TestSandbox("walfull")
        defer { Task { await sandbox.remove() } }
        let (_, path) = try await newRepository(sandbox)
        let faulty = FaultInjectingStore(FileStore(root: path), faults: [.diskFull(prefix: "wal/", after: 1)])
        let repo = try await Repository.open(store: faulty, key: .passphrase("pw-1"), logger: TestSandbox.logger())
        let (n1, d1) = walSegment(1, byte: 1)
        let (n2, d2) = walSegment(2, byte: 2)
        _ = try await repo.pushWAL(name: n1, data: d1)
        await #expect { _ = try await repo.pushWAL(name: n2, data: d2) } throws: { ($0 as? LifeboatError)?.code == .io }
        #expect(try await repo.walFiles().map { "\($0.file)" } == [n1])
        // Once space is back, PostgreSQL retries the same segment and it succeeds.
        let healthy = try await Repository.open(store: FileStore(root: path), key: .passphrase("pw-1"), logger: TestSandbox.logger())
        guard case .stored = try await healthy.pushWAL(name: n2, data: d2) else { Issue.record("retry stores"); return }
    }

    /// A real full file system (a 3 MiB tmpfs, which needs root to mount; CI runs as root): pushes
    /// fail with an actionable error, nothing partial is left, everything stored before still reads.
    @Test func realFullFileSystemLosesNothing() async throws {
        guard geteuid() == 0 else { return }
        let sandbox = try TestSandbox("enospc")
        defer { Task { await sandbox.remove() } }
        let mountPoint = try sandbox.directory("small")
        try await CommandRunner.run("/bin/mount", ["-t", "tmpfs", "-o", "size=3m", "tmpfs", mountPoint])
        defer { _ = Task { try? await CommandRunner.run("/bin/umount", ["-l", mountPoint]) } }
        let repo = try await Repository.initialize(store: FileStore(root: mountPoint + "/repo"), key: .passphrase("p"),
            options: RepositoryOptions(compression: .none), logger: TestSandbox.logger())
        var stored: [(String, Data)] = []
        var failure: LifeboatError?
        for n in 1...100 {
            let name = WALSegment(timeline: 1, number: UInt64(n), segmentSize: 16 << 20).name
            let data = Data((0..<(256 * 1024)).map { _ in UInt8.random(in: 0...255) })
            do {
                _ = try await repo.pushWAL(name: name, data: data)
                stored.append((name, data))
            } catch let e as LifeboatError {
                failure = e
                break
            }
        }
        let error = try #require(failure, "the small file system must fill up")
        #expect(error.code == .io && error.message.contains("no space left"), "\(error)")
        #expect(error.hint?.contains("free space") == true)
        #expect(!stored.isEmpty)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: mountPoint + "/repo/wal/00000001")
        #expect(leftovers.sorted() == stored.map(\.0).sorted(), "no partial or temporary files")
        for (name, data) in stored { #expect(try await repo.fetchWAL(name: name) == data) }
    }
}

struct LockTests {
    @Test func exclusiveAndSharedConflictAndDeadHoldersAreStale() async throws {
        let sandbox = try TestSandbox("locks")
        defer { Task { await sandbox.remove() } }
        let (repo, path) = try await newRepository(sandbox)
        let s1 = try await RepositoryLock.acquire(.shared, purpose: "backup 1", repository: repo)
        let s2 = try await RepositoryLock.acquire(.shared, purpose: "backup 2", repository: repo)
        await #expect { _ = try await RepositoryLock.acquire(.exclusive, purpose: "expire", repository: repo) } throws: { error in
            guard let e = error as? LifeboatError else { return false }
            return e.code == .locked && e.message.contains("backup")
        }
        try await s1.release()
        try await s2.release()
        let x = try await RepositoryLock.acquire(.exclusive, purpose: "expire", repository: repo)
        await #expect { _ = try await RepositoryLock.acquire(.shared, purpose: "backup 3", repository: repo) } throws: { ($0 as? LifeboatError)?.code == .locked }
        try await x.release()

        // A lock left by a process that no longer exists (kill -9) is removed by the next taker.
        let dead = LockRecord(id: "dead", kind: .exclusive, purpose: "expire", host: ProcessInfo.processInfo.hostName, pid: 999_999,
            created: Date(), refreshed: Date())
        try RepositoryJSON.encoder().encode(dead).write(to: URL(fileURLWithPath: path + "/locks/dead"))
        let y = try await RepositoryLock.acquire(.shared, purpose: "backup 4", repository: repo)
        #expect(!FileManager.default.fileExists(atPath: path + "/locks/dead"))
        try await y.release()
        // An old lock from another host is stale after its refresh deadline.
        let old = LockRecord(id: "old", kind: .exclusive, purpose: "expire", host: "elsewhere", pid: 1,
            created: Date(timeIntervalSinceNow: -7200), refreshed: Date(timeIntervalSinceNow: -3600))
        try RepositoryJSON.encoder().encode(old).write(to: URL(fileURLWithPath: path + "/locks/old"))
        let z = try await RepositoryLock.acquire(.shared, purpose: "backup 5", repository: repo)
        try await z.release()
        // A fresh lock from another host is respected.
        let live = LockRecord(id: "live", kind: .exclusive, purpose: "expire", host: "elsewhere", pid: 1, created: Date(), refreshed: Date())
        try RepositoryJSON.encoder().encode(live).write(to: URL(fileURLWithPath: path + "/locks/live"))
        await #expect { _ = try await RepositoryLock.acquire(.shared, purpose: "backup 6", repository: repo) } throws: { ($0 as? LifeboatError)?.code == .locked }
    }
}

struct FileStoreTests {
    @Test func putIfAbsentListAndDelete() async throws {
        let sandbox = try TestSandbox("store")
        defer { Task { await sandbox.remove() } }
        let store = FileStore(root: sandbox.path("s"))
        #expect(try await store.putIfAbsent("a/b/c", data: Data("one".utf8)))
        #expect(try await !store.putIfAbsent("a/b/c", data: Data("two".utf8)))
        #expect(try await store.get("a/b/c") == Data("one".utf8))
        try await store.put("a/b/c2", data: Data("x".utf8), class: .bookkeeping)
        try await store.put("a/b/c2", data: Data("y".utf8), class: .bookkeeping)
        #expect(try await store.get("a/b/c2") == Data("y".utf8))
        // A temporary file from a crashed writer is never listed.
        try Data("partial".utf8).write(to: URL(fileURLWithPath: sandbox.path("s/a/b/.tmp-crashed")))
        #expect(try await store.list(prefix: "a/").map(\.key).sorted() == ["a/b/c", "a/b/c2"])
        #expect(try await store.list(prefix: "a/b/c2").map(\.key) == ["a/b/c2"])
        #expect(try await store.list(prefix: "zzz/").isEmpty)
        try await store.delete("a/b/c")
        try await store.delete("a/b/c")
        #expect(try await store.info("a/b/c") == nil)
        await #expect { _ = try await store.get("a/b/c") } throws: { ($0 as? LifeboatError)?.code == .notFound }
    }
}

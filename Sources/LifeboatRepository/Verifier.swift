import Foundation
import LifeboatCore
import Logging

/// The result of `verify`: every problem found, each naming the object concerned.
public struct VerifyReport: Codable, Sendable {
    public struct Problem: Codable, Sendable, Equatable {
        public var object: String
        public var message: String
    }

    public var objectsChecked: Int
    public var bytesChecked: Int
    public var backupsChecked: Int
    public var walFilesChecked: Int
    public var problems: [Problem]
    /// What is worth knowing but is no problem (an abandoned timeline tail).
    public var notes: [String] = []
    /// Lag of the cluster's further repositories (shown, not counted as problems of this one).
    public var mirrors: [MirrorStatus] = []
    public var ok: Bool { problems.isEmpty }
}

/// Authenticates every object, checks that every manifest's chunks exist, and that the archive
/// holds all WAL from each automated backup's start to the end of the archive (from each manual
/// backup's start to its stop).
public struct Verifier: Sendable {
    public var repository: Repository
    public var parallelism: Int

    public init(repository: Repository, parallelism: Int = 4) {
        self.repository = repository
        self.parallelism = max(1, parallelism)
    }

    public func run() async throws -> VerifyReport {
        let repo = repository
        let all = try await repo.store.list(prefix: "")
        var problems: [VerifyReport.Problem] = []

        // 1. Authenticate every encrypted object (chunks also re-hashed against their name).
        let encrypted = all.filter { RepositoryObject(key: $0.key)?.isSealed ?? true }
        let packContents = PackContents()
        let objectProblems = try await forEachBounded(encrypted, parallelism: parallelism) { info -> VerifyReport.Problem? in
            do {
                let object = RepositoryObject(key: info.key)
                if let pack = object?.packID {
                    await packContents.add(pack, try await repo.verifyPack(key: info.key))
                } else if let (id, base) = object?.chunk {
                    _ = try await repo.chunk(id: id, base: base)
                } else if case .manifest? = object {
                    try await repo.checkManifestObject(info.key)
                } else if object == nil {
                    return VerifyReport.Problem(object: info.key, message: "object \(info.key) is not named like any object lifeboat writes")
                } else {
                    _ = try await repo.readSealed(info.key)
                }
                return nil
            } catch let error as LifeboatError {
                return VerifyReport.Problem(object: info.key, message: error.message)
            }
        }
        problems += objectProblems.compactMap { $0 }
        let damaged = Set(problems.map(\.object))

        // 2. Every backup's chunks exist (a packed chunk: in its pack, where the manifest says).
        let chunkObjects = Set(all.filter { RepositoryObject(key: $0.key)?.chunk != nil || RepositoryObject(key: $0.key)?.packID != nil }.map(\.key))
        let packed = await packContents.records
        var backups: [BackupRecord] = []
        for info in all where !damaged.contains(info.key) {
            guard case .backup(let id)? = RepositoryObject(key: info.key) else { continue }
            guard let record = try? await repo.backup(id: id) else { continue }
            backups.append(record)
            guard !damaged.contains(record.manifestObject) else { continue }
            do {
                // The file list is streamed: its chunks kept as 32-byte keys with their entry's
                // index, packed locations checked as they are read, never the whole list in memory.
                var used = ContiguousArray<(key: ChunkKey, entry: Int32)>()
                var malformed: (id: String, entry: Int)?
                var packedIDs = Set<ChunkKey>()
                var badPacked: [ChunkKey: String] = [:]
                var entryCount = 0
                let manifest = try await repo.manifest(for: record, eachEntry: { entry in
                    for chunk in entry.chunks {
                        if let key = ChunkKey(chunk) { used.append((key, Int32(truncatingIfNeeded: entryCount))) } else if malformed == nil { malformed = (chunk, entryCount) }
                    }
                    entryCount += 1
                }, eachPackedChunk: { id, location in
                    guard let key = ChunkKey(id) else { return }
                    packedIDs.insert(key)
                    let packKey = Repository.packKey(location.pack)
                    if !chunkObjects.contains(packKey) {
                        badPacked[key] = packKey
                    } else if !damaged.contains(packKey), packed[location.pack]?[location.offset] != key {
                        badPacked[key] = "chunk \(id) at byte \(location.offset) of pack \(location.pack)"
                    }
                })
                var missing = 0
                var firstMissing: (what: String, entry: Int)?
                func note(_ what: String, _ entry: Int) {
                    if firstMissing == nil { firstMissing = (what, entry) }
                    missing += 1
                }
                if let malformed { note("chunk id '\(malformed.id)'", malformed.entry) }
                let externals = manifest.externalFiles ?? []
                let externalChunks = externals.enumerated().flatMap { i, x in x.entry.chunks.compactMap { ChunkKey($0) }.map { ($0, Int32(entryCount + i)) } }
                for (key, entry) in used + externalChunks {
                    if packedIDs.contains(key) {
                        if let problem = badPacked[key] { note(problem, Int(entry)) }
                        continue
                    }
                    let id = key.id
                    for objectKey in Repository.chunkObjectKeys(id, in: manifest) where !chunkObjects.contains(objectKey) {
                        note(objectKey, Int(entry))
                    }
                }
                if missing > 0, let firstMissing {
                    // Which file it is: read the list again up to that entry (only when something is missing).
                    var path = firstMissing.entry >= entryCount ? externals[firstMissing.entry - entryCount].originalPath : "?"
                    if firstMissing.entry < entryCount {
                        var index = 0
                        _ = try await repo.manifest(for: record, eachEntry: { entry in
                            if index == firstMissing.entry { path = entry.path }
                            index += 1
                        }, eachPackedChunk: { _, _ in })
                    }
                    problems.append(.init(object: Repository.backupKey(id),
                        message: "backup \(id) references \(missing) missing chunk(s), first: \(firstMissing.what) (used by \(path))"))
                }
            } catch let error as LifeboatError {
                problems.append(.init(object: record.manifestObject, message: error.message))
            }
        }

        // 2b. Every artifact's documents exist (task definitions, Terraform state, secret metadata).
        let keys = Set(all.map(\.key))
        for info in all where !damaged.contains(info.key) {
            guard case .record(let kind, _)? = RepositoryObject(key: info.key), kind == Repository.artifactKind,
                let record = try? await repo.readRecord(info.key, as: ArtifactRecord.self) else { continue }
            let missing = record.items.filter { !keys.contains(RepositoryObject.record(kind: Repository.artifactBlobKind, id: $0.blob).key) }
            if let first = missing.first {
                problems.append(.init(object: info.key, message: "artifact \(record.id) (\(record.kind)) misses \(missing.count) document(s), first: \(first.name)"))
            }
        }

        // 3. WAL continuity from each backup to the end of the archive.
        let walFiles = try await repo.walFiles()
        var histories: [UInt32: TimelineHistory] = [:]
        for (file, info) in walFiles {
            if case .history(let tli) = file, !damaged.contains(info.key) {
                do {
                    let text = String(decoding: try await repo.readSealed(info.key), as: UTF8.self)
                    histories[tli] = try TimelineHistory(timeline: tli, text: text)
                } catch let error as LifeboatError {
                    problems.append(.init(object: info.key, message: error.message))
                }
            }
        }
        let segments = Set(walFiles.compactMap { file, info -> WALSegment? in
            if case .segment(let s) = file, !damaged.contains(info.key) { return s }
            return nil
        })
        var notes: [String] = []
        if let size = backups.first?.walSegmentSize {
            let graph = TimelineGraph(segmentSize: size, segments: segments, histories: histories)
            for b in backups {
                // Automated backups promise point-in-time recovery to the end of their line: the newest
                // timeline whose history runs through them (an old primary's tail past a fork is its
                // own timeline's, not the newer one's). Manual snapshots promise only their own end.
                let line = graph.timelines.reversed().first { graph.contains(backupTimeline: b.timeline, stopLSN: b.stopLSN, on: $0) }
                    ?? b.timeline
                let first = b.startSegment.number(segmentSize: size)
                let stop = b.stopSegment.number(segmentSize: size)
                let toEnd = b.kind == .automated
                let last = toEnd ? max(stop, graph.lastSegment(on: line) ?? stop) : stop
                let gaps = graph.gaps(on: toEnd ? line : b.timeline, from: first, through: last)
                let missing = gaps.reduce(0) { $0 + $1.count }
                if missing > 0 {
                    let shown = gaps.prefix(3).map { $0.count == 1 ? $0.firstMissing.name : "\($0.firstMissing.name) and \($0.count - 1) after it" }
                        .joined(separator: ", ")
                    let what = toEnd ? "replay to the end of timeline \(line)" : "become consistent"
                    problems.append(.init(object: Repository.backupKey(b.id),
                        message: "backup \(b.id) cannot \(what): \(missing) WAL segment(s) missing (\(shown)\(gaps.count > 3 ? ", ..." : ""))"))
                }
                for stretch in graph.line(line) where stretch.timeline > 1 && histories[stretch.timeline] == nil {
                    problems.append(.init(object: Repository.walKey(.history(timeline: stretch.timeline)),
                        message: "timeline \(stretch.timeline)'s history file is missing: recovery along timeline \(line) cannot follow it"))
                }
            }
            for summary in graph.summaries() {
                if let tail = summary.abandonedTail {
                    notes.append("timeline \(summary.timeline): \(tail.count) segment(s) \(tail.first.name)..\(tail.last.name) lie past the point where timeline \(graph.latestTimeline)'s history leaves it (an old primary's WAL after a failover): restorable along timeline \(summary.timeline) only")
                }
            }
        }
        return VerifyReport(objectsChecked: encrypted.count, bytesChecked: encrypted.reduce(0) { $0 + $1.size },
            backupsChecked: backups.count, walFilesChecked: walFiles.count, problems: problems, notes: notes)
    }
}

/// Runs `body` over `items` with at most `parallelism` in flight; results in input order.
public func forEachBounded<T: Sendable, R: Sendable>(_ items: [T], parallelism: Int,
    _ body: @escaping @Sendable (T) async throws -> R) async throws -> [R]
{
    try await withThrowingTaskGroup(of: (Int, R).self) { group in
        var results = [R?](repeating: nil, count: items.count)
        var next = 0
        for _ in 0..<min(parallelism, items.count) {
            let i = next
            group.addTask { (i, try await body(items[i])) }
            next += 1
        }
        while let (i, r) = try await group.next() {
            results[i] = r
            if next < items.count {
                let j = next
                group.addTask { (j, try await body(items[j])) }
                next += 1
            }
        }
        return results.compactMap { $0 }
    }
}

/// Runs `body` on every item, `parallelism` at a time, and hands the results to `consume` in the
/// items' order as soon as every earlier one is done. At most `window` items run or wait ahead of the
/// oldest unfinished one, so what is held stays bounded however long the list (a slow large file
/// holds up the consumer, not memory).
public func forEachBoundedInOrder<T: Sendable, R: Sendable>(_ items: [T], parallelism: Int, window: Int = 4096,
    _ body: @escaping @Sendable (T) async throws -> R, consume: (R) async throws -> Void) async throws
{
    var position = 0
    try await forEachBoundedInOrder(next: { () -> T? in
        guard position < items.count else { return nil }
        defer { position += 1 }
        return items[position]
    }, parallelism: parallelism, window: window, body, consume: consume)
}

/// The same over items made one at a time by `next` (nil: no more), called in order on the caller's
/// task, never ahead of the window: a walk of a directory tree need not be a list first.
public func forEachBoundedInOrder<T: Sendable, R: Sendable>(next: () throws -> T?, parallelism: Int, window: Int = 4096,
    _ body: @escaping @Sendable (T) async throws -> R, consume: (R) async throws -> Void) async throws
{
    try await withThrowingTaskGroup(of: (Int, R).self) { group in
        var done: [Int: R] = [:]
        var started = 0
        var emitted = 0
        var running = 0
        var exhausted = false
        let width = max(parallelism, 1)
        func startMore() throws {
            while !exhausted, running < width, started - emitted < window {
                guard let item = try next() else {
                    exhausted = true
                    return
                }
                let i = started
                group.addTask { (i, try await body(item)) }
                started += 1
                running += 1
            }
        }
        try startMore()
        while let (i, r) = try await group.next() {
            running -= 1
            done[i] = r
            while let ready = done.removeValue(forKey: emitted) {
                try await consume(ready)
                emitted += 1
            }
            try startMore()
        }
    }
}

/// What verify found in each pack: chunk id by offset.
actor PackContents {
    private(set) var records: [String: [Int: ChunkKey]] = [:]

    func add(_ pack: String, _ found: [PackFormat.Record]) {
        var byOffset: [Int: ChunkKey] = [:]
        for record in found { if let key = ChunkKey(record.chunkID) { byOffset[record.offset] = key } }
        records[pack] = byOffset
    }
}

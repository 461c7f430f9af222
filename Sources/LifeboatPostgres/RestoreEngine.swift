import CLinuxSys
import Foundation
import LifeboatCore
import LifeboatFileSystem
import LifeboatRepository
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Timed phases and the point actually reached.
public struct RestoreReport: Codable, Sendable {
    public struct Phase: Codable, Sendable {
        public var name: String
        public var seconds: Double
    }

    public var backupID: String
    public var backupTimeline: UInt32
    public var target: String
    /// The timeline recovery followed.
    public var targetTimeline: UInt32
    public var destination: String
    public var files: Int
    public var bytes: UInt64
    public var tablespaces: [RestoredTablespace]
    /// What the restore changed in the copy's configuration (paths of the source neutralised, ...).
    public var configurationChanges: [String]
    /// Set when the restore stopped at a gap in the archive knowingly (`--accept-wal-gap`).
    public var walGap: WALGapReport?
    /// Where the key for `restore_command` waits while a restore that was not started recovers.
    public var keyHandoff: String?
    public var phases: [Phase]
    public var totalSeconds: Double
    public var started: Bool
    /// Set when the server was started: the last transaction replayed, and where WAL replay stopped.
    public var achievedTime: Date?
    public var achievedLSN: String?
    /// The point replay had to reach for the target (latest: the last archived segment's start).
    public var requiredLSN: String?
    /// The timeline the promoted server runs on.
    public var timeline: UInt32?
    public var port: Int?
    public var notes: [String]
}

/// Restores a backup plus WAL into a new data directory, never over existing data, and never
/// reports success for less than it was asked: the WAL it needs is checked before anything is
/// written (`plan`), the point reached is compared with the point asked, a failed restore removes
/// what it wrote, and settings from an earlier recovery or pointing into the source's paths never
/// reach the restored cluster.
public struct RestoreEngine: Sendable {
    public var repository: Repository
    public var logger: Logger

    public init(repository: Repository, logger: Logger) {
        self.repository = repository
        self.logger = logger
    }

    /// What a failed restore must take away, and what it must leave (the server log).
    final class Cleanup: @unchecked Sendable {
        var createdDirectories: [String] = []
        var filledDirectories: [String] = []
        var cluster: LocalCluster?

        func undo() async {
            if let cluster, cluster.isRunning { try? await cluster.stop(mode: "immediate") }
            for dir in filledDirectories {
                for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
                    try? FileManager.default.removeItem(atPath: dir + "/" + name)
                }
            }
            for dir in createdDirectories.reversed() { try? FileManager.default.removeItem(atPath: dir) }
        }
    }

    public func run(_ options: RestoreOptions) async throws -> RestoreReport {
        let began = Date()
        let dest = options.destination
        // 1. Nothing is written before the destination is known to be new or empty and the plan
        //    (backup, timeline, WAL present and continuous) holds.
        try Self.checkNewOrEmpty(dest, what: "the destination")
        let plan = try await self.plan(options)
        try Self.checkNewOrEmpty(dest + ".tablespaces", what: "the restore's tablespace directory")
        for (_, dir) in plan.tablespaceDirectories.sorted(by: { $0.key < $1.key }) {
            try Self.checkNewOrEmpty(dir, what: "the tablespace directory")
        }
        let record = plan.backup
        var log = logger
        log[metadataKey: LogKey.backupID] = .string(record.id)
        log.info("restoring", metadata: [LogKey.path: .string(dest), "lifeboat.target": .string(plan.target.description),
            "lifeboat.timeline": "\(plan.timeline)"])

        let cleanup = Cleanup()
        do {
            return try await execute(options, plan: plan, began: began, cleanup: cleanup, log: log)
        } catch {
            await cleanup.undo()
            throw error
        }
    }

    func execute(_ options: RestoreOptions, plan: RestorePlan, began: Date, cleanup: Cleanup, log: Logger) async throws -> RestoreReport {
        let dest = options.destination
        let record = plan.backup
        let serverUser = OSUser.forServer(dataDirectory: FileManager.default.fileExists(atPath: dest) ? dest
            : (dest as NSString).deletingLastPathComponent)
        try Self.prepare(dest, cleanup: cleanup)
        for (_, dir) in plan.tablespaceDirectories {
            try Self.prepare(dir, cleanup: cleanup)
            serverUser?.own(dir)
        }
        // Where tablespaces created in the WAL after the backup go (the guard, running as the
        // server's user, creates them there); removed at the end of recovery when left empty.
        let tablespaceParent = dest + ".tablespaces"
        if !FileManager.default.fileExists(atPath: tablespaceParent) {
            try Self.prepare(tablespaceParent, cleanup: cleanup)
            serverUser?.own(tablespaceParent)
        }
        if let serverUser {
            // A server running as another user must reach its tablespaces through their parent.
            for parent in Set(plan.tablespaceDirectories.values.map { ($0 as NSString).deletingLastPathComponent }) {
                chown(parent, serverUser.uid, serverUser.gid)
            }
        }

        var phases: [RestoreReport.Phase] = []
        let filesStarted = Date()
        let manifest = try await repository.manifest(for: record)
        try await restoreFiles(manifest: manifest, into: dest, tablespaces: plan.tablespaceDirectories, parallelism: options.parallelism)
        let changes = try await writeConfiguration(record: record, manifest: manifest, plan: plan, options: options, owner: serverUser)
        let handoff = options.standby == nil ? TablespaceGuard.recoveryDirectory(dataDirectory: dest) + "/key" : nil
        try writeRecoveryFiles(record: record, plan: plan, options: options, handoff: handoff, owner: serverUser)
        serverUser?.own(dest, recursive: true)
        for dir in plan.tablespaceDirectories.values { serverUser?.own(dir, recursive: true) }
        try await Self.flushFiles([dest] + plan.tablespaceDirectories.values.sorted(), parallelism: options.parallelism)
        phases.append(.init(name: "restore files", seconds: Date().timeIntervalSince(filesStarted)))

        let bytes = manifest.entries.reduce(UInt64(0)) { $0 + $1.size }
        var report = RestoreReport(backupID: record.id, backupTimeline: record.timeline, target: plan.target.description,
            targetTimeline: plan.timeline, destination: dest, files: manifest.entries.filter { $0.type == .file }.count, bytes: bytes,
            tablespaces: plan.tablespaceDirectories.sorted { $0.key < $1.key }.map { oid, dir in
                RestoredTablespace(oid: oid, name: record.tablespaces?.first { $0.oid == oid }?.name, directory: dir, createdInWAL: false)
            },
            configurationChanges: changes, walGap: plan.gap, keyHandoff: handoff, phases: phases, totalSeconds: 0, started: false,
            requiredLSN: plan.lastNeededSegment.map { $0.startLSN(segmentSize: record.walSegmentSize).description }, notes: plan.notes)

        if options.start {
            try await startAndRecover(options, plan: plan, report: &report, owner: serverUser, cleanup: cleanup, log: log)
        }
        report.totalSeconds = Date().timeIntervalSince(began)
        return report
    }

    // MARK: - starting and checking the point reached

    func startAndRecover(_ options: RestoreOptions, plan: RestorePlan, report: inout RestoreReport, owner: OSUser?, cleanup: Cleanup,
        log: Logger) async throws
    {
        let dest = options.destination
        let record = plan.backup
        let binaries = try PostgresBinaries.locate(explicit: options.binDirectory, majorVersion: record.postgresVersion)
        let cluster = LocalCluster(dataDirectory: dest, port: options.port, socketDirectory: options.socketDirectory,
            listenAddresses: options.listenAddresses, binaries: binaries, user: owner)
        cleanup.cluster = cluster
        let recoveryStarted = Date()
        // Fetch WAL ahead of the server with the repository already open here (and through the
        // tablespace guard): its restore_command calls then find each segment in the spool.
        var spool = WALPrefetchSpool(dataDirectory: dest)
        spool.owner = owner
        let archive = WALArchive(repository: repository, logger: log)
        let guardian = try TablespaceGuard.forDataDirectory(dest)
        let ahead = options.standby == nil ? options.walPrefetch : 0
        let prefetcher = Task { [spool] in
            await archive.prefetch(into: spool, from: record.startSegment, segmentSize: record.walSegmentSize, ahead: ahead, guard: guardian,
                graph: plan.graph, timeline: plan.timeline)
        }
        defer { prefetcher.cancel() }
        do {
            let promotes = Self.promotesAtTarget(options, plan: plan)
            var settings = options.recoveryRunSettings
            // Pausing needs a hot standby: without one PostgreSQL shuts down at the target instead.
            if promotes { settings["hot_standby"] = "on" }
            try await cluster.start(environment: options.invocation.environment, settings: settings, timeout: options.recoveryTimeout)
            if options.standby != nil {
                try await Self.waitForStandby(cluster: cluster, timeout: options.recoveryTimeout, logger: log)
            } else {
                let achieved = try await Self.waitForPromotion(cluster: cluster, timeout: options.recoveryTimeout, promoteWhenPaused: promotes,
                    logger: log)
                report.achievedTime = achieved.time
                report.achievedLSN = achieved.lsn
                report.timeline = achieved.timeline
            }
        } catch let error as LifeboatError {
            throw Self.explain(error, plan: plan, cluster: cluster)
        }
        prefetcher.cancel()
        await prefetcher.value
        spool.remove()
        if options.standby == nil {
            // The point reached against the point asked. Time, xid and name targets PostgreSQL checks
            // itself: it stops with an error when recovery ends before reaching them.
            var needed: LSN?
            switch plan.target {
            case .lsn(let l): needed = l
            case .immediate: needed = record.stopLSN
            case .latest: needed = plan.lastNeededSegment?.startLSN(segmentSize: record.walSegmentSize)
            default: needed = nil
            }
            let reached = report.achievedLSN.flatMap(LSN.init) ?? LSN(0)
            if let needed, reached < needed {
                throw LifeboatError(.recoveryFailed,
                    "recovery stopped at lsn \(reached), before lsn \(needed) that the target \(plan.target) needs"
                        + " (the archive on timeline \(plan.timeline) reaches segment \(plan.lastNeededSegment?.name ?? "?"))",
                    hint: "a WAL segment could not be read or replayed; the server log \(cluster.logFile) tells why; the restore was removed")
            }
            // Where every tablespace lives now, asked of the server: one created in the WAL after the
            // backup was redirected by the guard (the server's recovery_end_command already cleaned up).
            report.tablespaces = try await Self.tablespaces(cluster: cluster, inBackup: Set(plan.tablespaceDirectories.keys), logger: log)
            // What a restore that ends leaves behind: no recovery block, no key, no spool.
            try RecoveryFinish.run(dataDirectory: dest)
            report.keyHandoff = nil
        }
        report.phases.append(.init(name: options.standby == nil ? "recover and promote" : "start as a standby",
            seconds: Date().timeIntervalSince(recoveryStarted)))
        report.started = true
        report.port = options.port
        if options.stopAfterRecovery {
            let stopping = Date()
            try await cluster.stop(mode: "fast")
            report.phases.append(.init(name: "shut down cleanly", seconds: Date().timeIntervalSince(stopping)))
            report.port = nil
        }
        cleanup.cluster = nil
    }

    /// The promoted server's tablespaces and their directories; those the backup did not hold were
    /// created in the WAL.
    static func tablespaces(cluster: LocalCluster, inBackup: Set<UInt32>, logger: Logger) async throws -> [RestoredTablespace] {
        let session = try await PostgresSession.connect(cluster.endpoint(), logger: logger)
        defer { Task { await session.close() } }
        let rows = try await session.query(
            "SELECT oid::text, spcname, pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY oid")
        return rows.compactMap { r in
            guard r.count == 3, let oid = r[0].flatMap({ UInt32($0) }) else { return nil }
            let link = cluster.dataDirectory + "/pg_tblspc/\(oid)"
            let directory = (try? FileManager.default.destinationOfSymbolicLink(atPath: link)) ?? (r[2] ?? "")
            return RestoredTablespace(oid: oid, name: r[1], directory: directory,
                createdInWAL: !inBackup.contains(oid))
        }
    }

    /// Turns "the server stopped" into what happened, with the plan's knowledge of the archive.
    static func explain(_ error: LifeboatError, plan: RestorePlan, cluster: LocalCluster) -> LifeboatError {
        let tail = cluster.logTail(lines: 40)
        if tail.contains("recovery ended before configured recovery target was reached") {
            if let gap = plan.gapAfterPossibleTarget {
                return LifeboatError(.walGap,
                    "the target \(plan.target) lies beyond a gap in the archive: \(gap.count) segment(s) from \(gap.firstMissing.name) are missing",
                    hint: "restore from a copy of the repository that has the segment, or give --accept-wal-gap to restore up to the gap knowingly")
            }
            return LifeboatError(.recoveryFailed, "recovery reached the end of the archive before the target \(plan.target)",
                hint: "nothing committed after the target has been archived yet: restore to a point inside the recovery window (`lifeboat info`), or to the latest point. The server log (\(cluster.logFile)) ends with:\n" + tail)
        }
        if tail.contains("could not restore file") || tail.contains("lifeboat") && tail.contains("error") {
            return LifeboatError(.recoveryFailed, "recovery stopped: restore_command could not deliver the WAL it needs",
                hint: "the server log (\(cluster.logFile)) ends with:\n" + tail)
        }
        return error
    }

    // MARK: - files

    public static func checkNewOrEmpty(_ path: String, what: String) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { return }
        guard isDir.boolValue else {
            throw LifeboatError(.targetNotEmpty, "\(what) \(path) exists and is not a directory", hint: "restore into a new or empty directory")
        }
        let content = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        guard content.isEmpty else {
            throw LifeboatError(.targetNotEmpty, "\(what) \(path) is not empty (\(content.count) entries); lifeboat restores only into a new or empty directory",
                hint: "choose a new directory; to replace a cluster, restore next to it, verify, then switch")
        }
    }

    /// A new private directory for a recovery run's Unix socket, owned by the user the server of
    /// `dataDirectory` runs as; the caller removes it.
    public static func privateSocketDirectory(for dataDirectory: String) throws -> String {
        var template = Array("/tmp/lifeboat-socket-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ buffer in buffer.baseAddress.flatMap { mkdtemp($0) } }) else {
            throw FileIO.error("cannot create a socket directory", errno: errno, path: "/tmp")
        }
        let dir = String(cString: made)
        let parent = FileManager.default.fileExists(atPath: dataDirectory) ? dataDirectory : (dataDirectory as NSString).deletingLastPathComponent
        OSUser.forServer(dataDirectory: parent)?.own(dir)
        return dir
    }

    /// Creates `dir` (0700), remembering what a failure must remove.
    static func prepare(_ dir: String, cleanup: Cleanup) throws {
        if FileManager.default.fileExists(atPath: dir) {
            cleanup.filledDirectories.append(dir)
        } else {
            // Record every directory this creates, outermost first, so a failure removes them all.
            var missing: [String] = []
            var p = dir
            while !p.isEmpty, p != "/", !FileManager.default.fileExists(atPath: p) {
                missing.insert(p, at: 0)
                p = (p as NSString).deletingLastPathComponent
            }
            try FileIO.makeDirectory(dir, mode: 0o700)
            cleanup.createdDirectories += missing
        }
        chmod(dir, 0o700)
    }

    /// Where a manifest path is written: under the destination, or in a tablespace's directory.
    static func physicalPath(_ path: String, dest: String, tablespaces: [UInt32: String]) -> String {
        if path.hasPrefix("pg_tblspc/") {
            let parts = path.split(separator: "/", maxSplits: 2, omittingEmptySubsequences: false)
            if parts.count == 3, let oid = UInt32(parts[1]), let dir = tablespaces[oid] { return dir + "/" + parts[2] }
        }
        return dest + "/" + path
    }

    /// Writes every directory and file of the manifest; each tablespace into its own directory,
    /// linked from `pg_tblspc/<oid>`. The work is split into runs of a few chunks, so a large
    /// relation file is restored by every worker at once; each chunk is authenticated and its
    /// length checked. Writeback starts as each chunk is written; `flushFiles` fsyncs at the end.
    func restoreFiles(manifest: BackupManifest, into dest: String, tablespaces: [UInt32: String], parallelism: Int) async throws {
        @Sendable func place(_ path: String) -> String { Self.physicalPath(path, dest: dest, tablespaces: tablespaces) }
        for entry in manifest.entries where entry.type == .directory {
            let parts = entry.path.split(separator: "/")
            if parts.count == 2, parts[0] == "pg_tblspc", let oid = UInt32(parts[1]), let dir = tablespaces[oid] {
                // The tablespace's root: its directory exists; the data directory links to it.
                guard symlink(dir, dest + "/" + entry.path) == 0 else {
                    throw FileIO.error("cannot link tablespace \(oid)", errno: errno, path: dest + "/" + entry.path)
                }
                continue
            }
            let path = place(entry.path)
            if mkdir(path, mode_t(entry.mode == 0 ? 0o700 : entry.mode)) != 0, errno != EEXIST {
                throw FileIO.error("cannot create directory", errno: errno, path: path)
            }
        }
        let files = manifest.entries.filter { $0.type == .file }
        for entry in files {
            let path = place(entry.path)
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode_t(entry.mode == 0 ? 0o600 : entry.mode))
            if fd < 0 { throw FileIO.error("cannot create", errno: errno, path: path) }
            close(fd)
        }
        /// Work for one worker: a run of a file's chunks stored on their own, or every chunk the
        /// manifest reads from one pack (one GET for a few hundred small files).
        enum Job: Sendable {
            case run(file: Int, first: Int, count: Int)
            case pack(id: String, chunks: [PackedPlace])
        }
        struct PackedPlace: Sendable {
            var file: Int
            var chunk: Int
            var location: PackedChunk
        }
        // 16 MiB runs: each worker writes long sequential stretches (measured at scale 100 with lz4,
        // interleaved with pgBackRest over 8 rounds: 1.70 s against 1.90 s with 4 MiB runs; no
        // difference at scale 20).
        let runLength = 16
        var jobs: [Job] = []
        var byPack: [String: [PackedPlace]] = [:]
        for (i, entry) in files.enumerated() {
            for (k, id) in entry.chunks.enumerated() {
                if let location = manifest.packedChunk(id) { byPack[location.pack, default: []].append(PackedPlace(file: i, chunk: k, location: location)) }
            }
            for first in stride(from: 0, to: entry.chunks.count, by: runLength)
            where entry.chunks[first..<min(first + runLength, entry.chunks.count)].contains(where: { manifest.packedChunk($0) == nil }) {
                jobs.append(.run(file: i, first: first, count: min(runLength, entry.chunks.count - first)))
            }
        }
        jobs = byPack.sorted { $0.key < $1.key }.map { Job.pack(id: $0.key, chunks: $0.value) } + jobs
        let repo = repository
        let chunkSize = manifest.chunkSize
        @Sendable func write(_ data: Data, file: Int, chunk k: Int, fd: Int32) throws {
            let entry = files[file]
            let offset = k * chunkSize
            let expected = k == entry.chunks.count - 1 ? Int(entry.size) - offset : chunkSize
            guard data.count == expected else {
                throw LifeboatError(.integrity, "chunk \(k) of \(entry.path) has \(data.count) bytes, the backup recorded \(expected)",
                    hint: "run `lifeboat verify`; restore from another backup")
            }
            let path = place(entry.path)
            try FileIO.writeAll(fd: fd, data: data, at: offset, path: path)
            // Let the disk start on it now, while the next chunks decompress, rather than all at
            // the final flush (a hint: failures surface at that flush).
            _ = lifeboat_start_writeback(fd, Int64(offset), Int64(data.count))
        }
        @Sendable func openFile(_ file: Int) throws -> Int32 {
            let path = place(files[file].path)
            let fd = open(path, O_WRONLY | O_CLOEXEC)
            if fd < 0 { throw FileIO.error("cannot open", errno: errno, path: path) }
            return fd
        }
        _ = try await forEachBounded(jobs, parallelism: parallelism) { job -> Bool in
            switch job {
            case .run(let file, let first, let count):
                let fd = try openFile(file)
                defer { close(fd) }
                let entry = files[file]
                for k in first..<(first + count) {
                    let id = entry.chunks[k]
                    if manifest.packedChunk(id) != nil { continue }
                    let data = try await repo.chunk(id: id, base: manifest.deltaBase(of: id), verifyContent: false)
                    try write(data, file: file, chunk: k, fd: fd)
                }
            case .pack(let id, let places):
                let pack = try await repo.pack(id)
                for place in places {
                    let data = try repo.unpackChunk(id: files[place.file].chunks[place.chunk], from: pack, at: place.location,
                        verifyContent: false)
                    let fd = try openFile(place.file)
                    defer { close(fd) }
                    try write(data, file: place.file, chunk: place.chunk, fd: fd)
                }
            }
            return true
        }
        for entry in files {
            let t = entry.modified.timeIntervalSince1970
            let stamp = timespec(tv_sec: Int(t), tv_nsec: Int((t - t.rounded(.down)) * 1e9))
            var times = [stamp, stamp]
            utimensat(AT_FDCWD, place(entry.path), &times, 0)
        }
    }

    /// Makes everything restored under `roots` durable: every file, then every directory, fsynced,
    /// files in parallel (their writeback started as they were written, so each waits on little). Only
    /// what the restore wrote is flushed: a syncfs(2) was as fast alone but also waited on every other
    /// dirty page of the filesystem (measured: 1.9 s against 2.7 s with 1 GiB written by someone else).
    static func flushFiles(_ roots: [String], parallelism: Int) async throws {
        var files: [String] = []
        var directories: [String] = []
        for root in roots {
            directories.append(root)
            guard let walker = FileManager.default.enumerator(atPath: root) else {
                throw LifeboatError(.io, "cannot list \(root) to flush it to disk")
            }
            while let relative = walker.nextObject() as? String {
                let path = root + "/" + relative
                var st = stat()
                guard lstat(path, &st) == 0 else { continue }
                switch st.st_mode & S_IFMT {
                case S_IFREG: files.append(path)
                case S_IFDIR: directories.append(path)
                default: break
                }
            }
        }
        _ = try await forEachBounded(files, parallelism: max(parallelism, 8)) { path -> Bool in
            try FileIO.fsync(path)
            return true
        }
        for dir in directories.reversed() { try FileIO.fsync(dir) }
        for root in roots { try FileIO.fsyncDirectory(containing: root) }
    }

    // MARK: - configuration

    /// The copy's configuration: files the server read from outside the source's data directory
    /// put in place, every setting naming the source's paths neutralised; returns what changed.
    func writeConfiguration(record: BackupRecord, manifest: BackupManifest, plan: RestorePlan, options: RestoreOptions,
        owner: OSUser?) async throws -> [String]
    {
        let dest = options.destination
        var changes: [ServerConfiguration.Change] = []
        var notes: [String] = []
        for external in manifest.externalFiles ?? [] {
            let path = dest + "/" + external.restoredName
            if FileManager.default.fileExists(atPath: path) {
                notes.append("\(external.setting) was \(external.originalPath); the backup's copy of the data directory has its own \(external.restoredName), kept")
                continue
            }
            var data = Data()
            for id in external.entry.chunks { data += try await repository.chunk(id: id, in: manifest) }
            try FileIO.replaceAtomically(path, with: data, mode: 0o600, owner: owner?.fileOwner)
            notes.append("\(external.setting) was \(external.originalPath) outside the data directory: restored as \(external.restoredName)")
        }
        for name in ["postgresql.conf", "postgresql.auto.conf"] {
            let path = dest + "/" + name
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { continue }
            let result = ServerConfiguration.neutralisePaths(text, file: name, sourceDataDirectory: record.dataDirectory, restoredDataDirectory: dest)
            if !result.changes.isEmpty {
                try FileIO.replaceAtomically(path, with: Data(result.text.utf8), mode: 0o600, owner: owner?.fileOwner)
                changes += result.changes
            }
        }
        return notes + changes.map(\.description)
    }

    /// backup_label, recovery.signal (or standby.signal), and the settings in postgresql.auto.conf:
    /// the restored copy's (kept) and its recovery's (removed when recovery ends), replacing those
    /// of any earlier restore. With `handoff`, the repository key for `restore_command`.
    func writeRecoveryFiles(record: BackupRecord, plan: RestorePlan, options: RestoreOptions, handoff: String?, owner: OSUser?) throws {
        let dest = options.destination
        let fileOwner = owner?.fileOwner
        try FileIO.replaceAtomically(dest + "/backup_label", with: Data(record.backupLabel.utf8), mode: 0o600, owner: fileOwner)
        // Tablespaces are linked from pg_tblspc by the restore, so no tablespace_map is written: it
        // would point the restored cluster at the original tablespace locations.
        var restored: [(key: String, value: String)] = []
        // A standby keeps its archive settings: promoted in a failover, it is production.
        if options.archiveMode == .off, options.standby == nil { restored.append(("archive_mode", "off")) }
        var recovery: [(key: String, value: String)] = []
        if let standby = options.standby {
            guard !standby.configuredByCaller else {
                // The caller (Patroni) writes the standby's configuration itself: only the settings
                // of an earlier restore are taken out.
                try FileIO.replaceAtomically(dest + "/postgresql.auto.conf",
                    with: Data(ServerConfiguration.autoConfAfterRecovery((try? String(contentsOfFile: dest + "/postgresql.auto.conf", encoding: .utf8)) ?? "").utf8),
                    mode: 0o600, owner: fileOwner)
                return
            }
            try FileIO.replaceAtomically(dest + "/standby.signal", with: Data(), mode: 0o600, owner: fileOwner)
            restored += [("primary_conninfo", standby.primaryConnInfo ?? ""), ("primary_slot_name", standby.primarySlotName ?? ""),
                ("restore_command", options.invocation.adding(["--soft-errors"]).restoreCommand), ("recovery_target_timeline", "latest")]
        } else {
            try FileIO.replaceAtomically(dest + "/recovery.signal", with: Data(), mode: 0o600, owner: fileOwner)
            var invocation = options.invocation
            if let handoff {
                try FileIO.makeDirectory((handoff as NSString).deletingLastPathComponent, mode: 0o700, owner: fileOwner)
                try repository.writeKeyHandoff(to: handoff, owner: fileOwner)
                invocation = invocation.adding(["--key-handoff", handoff])
            }
            try TablespaceGuard.write(TablespaceGuard.Plan(dataDirectory: dest,
                directories: Dictionary(uniqueKeysWithValues: plan.tablespaceDirectories.map { (String($0.key), $0.value) }),
                defaultParent: dest + ".tablespaces"), owner: fileOwner)
            recovery = Self.recoveryTarget(plan.target, record: record).recoverySettings(pauseAtTarget: Self.promotesAtTarget(options, plan: plan))
            recovery += [("recovery_target_timeline", String(plan.timeline)), ("restore_command", invocation.spoolingRestoreCommand),
                ("recovery_end_command", LifeboatInvocation.command([invocation.executable, "wal", "recovery-end", dest])),
                ("primary_conninfo", ""), ("primary_slot_name", "")]
        }
        let path = dest + "/postgresql.auto.conf"
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        let rewritten = ServerConfiguration.autoConfForRestore(text, restored: restored, recovery: recovery,
            comment: "lifeboat restore of backup \(record.id) to \(plan.target), timeline \(plan.timeline)")
        try FileIO.replaceAtomically(path, with: Data(rewritten.utf8), mode: 0o600, owner: fileOwner)
    }

    // MARK: - waiting

    /// Polls until recovery has ended and the server is promoted; fails if the server dies.
    /// The target PostgreSQL is given for `target`. The end of a standby's backup is its stop LSN,
    /// given as an LSN target: `recovery_target = 'immediate'` would stop where the backup is first
    /// consistent, the minimum recovery point of the pg_control it copied last, which the standby
    /// may have moved on from by the time pg_backup_stop read it as the stop LSN, and which can lie
    /// before rows the backup covers (seen after a Patroni failover: none of them). A primary's
    /// backup is consistent at its stop LSN (the backup-end record): `immediate` is that point.
    static func recoveryTarget(_ target: RecoveryTarget, record: BackupRecord) -> RecoveryTarget {
        if target == .immediate, record.source?.role == .standby { return .lsn(record.stopLSN) }
        return target
    }

    /// Whether the restore starts the server paused at its target and promotes it itself
    /// (`RecoveryTarget.recoverySettings(pauseAtTarget:)`): a started, promoted restore to a target.
    static func promotesAtTarget(_ options: RestoreOptions, plan: RestorePlan) -> Bool {
        options.start && options.standby == nil && plan.target != .latest
    }

    /// Polls until the server left recovery; with `promoteWhenPaused`, promotes it with `pg_promote`
    /// once replay paused at the target.
    static func waitForPromotion(cluster: LocalCluster, timeout: TimeInterval, promoteWhenPaused: Bool = false, logger: Logger) async throws
        -> (time: Date?, lsn: String?, timeline: UInt32?)
    {
        let deadline = Date().addingTimeInterval(timeout)
        var promoteRequested = false
        while Date() < deadline {
            guard cluster.isRunning else {
                throw LifeboatError(.recoveryFailed, "PostgreSQL stopped during recovery of \(cluster.dataDirectory)",
                    hint: "the server log (\(cluster.logFile)) ends with:\n" + cluster.logTail())
            }
            if let session = try? await PostgresSession.connect(cluster.endpoint(), logger: logger) {
                var answer: [String?]?
                let recovering = try? await session.value("SELECT pg_is_in_recovery()::text")
                if recovering == "true", promoteWhenPaused, !promoteRequested,
                    (try? await session.value("SELECT pg_is_wal_replay_paused()::text")) == "true"
                {
                    // At the target: promote. The startup process, paused, checks for a promotion
                    // request only when it wakes, and the request does not wake it: it would sleep out
                    // its second. Resuming wakes it; pausing again at once keeps it in its pause loop,
                    // where it then sees the request and promotes (an end-of-recovery record, the
                    // checkpoint in the background). Should it see the resume first, it leaves the
                    // pause and promotes with a checkpoint instead: the same point either way.
                    logger.info("recovery paused at its target; promoting")
                    promoteRequested = true
                    _ = try? await session.value("SELECT pg_promote(false)::text")
                    _ = try? await session.query("SELECT pg_wal_replay_resume(), pg_wal_replay_pause()")
                    await session.close()
                    try await Task.sleep(for: .milliseconds(20))
                    continue
                }
                if recovering == "false" {
                    answer = try? await session.query("""
                        SELECT 'false', pg_last_xact_replay_timestamp()::text, pg_last_wal_replay_lsn()::text,
                               substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)
                        """).first
                }
                await session.close()
                if let row = answer, row.first == "false" {
                    let time = row[1].flatMap { try? Timestamp.parse($0) }
                    return (time, row[2] ?? nil, row[3].flatMap { UInt32($0, radix: 16) })
                }
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw LifeboatError(.timeout, "recovery of \(cluster.dataDirectory) did not finish within \(HumanDuration.format(timeout))",
            hint: "see \(cluster.logFile); the restore was removed")
    }

    /// Polls until a standby accepts connections and is in recovery.
    static func waitForStandby(cluster: LocalCluster, timeout: TimeInterval, logger: Logger) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            guard cluster.isRunning else {
                throw LifeboatError(.recoveryFailed, "the standby on \(cluster.dataDirectory) stopped",
                    hint: "the server log (\(cluster.logFile)) ends with:\n" + cluster.logTail())
            }
            if let session = try? await PostgresSession.connect(cluster.endpoint(), logger: logger) {
                let recovering = try? await session.value("SELECT pg_is_in_recovery()::text")
                await session.close()
                if recovering == "true" { return }
                if recovering == "false" {
                    throw LifeboatError(.recoveryFailed, "the server on \(cluster.dataDirectory) was promoted instead of staying a standby")
                }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw LifeboatError(.timeout, "the standby on \(cluster.dataDirectory) did not come up within \(HumanDuration.format(timeout))")
    }
}

/// What ends a restore's recovery: Lifeboat's recovery settings out of `postgresql.auto.conf`, the
/// tablespaces redirected during replay linked straight, the key handoff and the prefetch spool
/// removed. Run by the restored server itself (`recovery_end_command = 'lifeboat wal recovery-end
/// DIR'`) and again by `restore --start` after promotion; idempotent.
public enum RecoveryFinish {
    public static func run(dataDirectory: String) throws {
        let path = dataDirectory + "/postgresql.auto.conf"
        if let text = try? String(contentsOfFile: path, encoding: .utf8) {
            let after = ServerConfiguration.autoConfAfterRecovery(text)
            if after != text {
                var st = stat()
                let owner = stat(path, &st) == 0 ? FileIO.Owner(uid: st.st_uid, gid: st.st_gid) : nil
                try FileIO.replaceAtomically(path, with: Data(after.utf8), mode: 0o600, owner: owner)
            }
        }
        let guardian = try TablespaceGuard.forDataDirectory(dataDirectory)
        guardian?.finish()
        if let parent = guardian?.plan.defaultParent, (try? FileManager.default.contentsOfDirectory(atPath: parent))?.isEmpty == true {
            rmdir(parent)
        }
        try? FileManager.default.removeItem(atPath: TablespaceGuard.recoveryDirectory(dataDirectory: dataDirectory))
        WALPrefetchSpool(dataDirectory: dataDirectory).remove()
    }
}

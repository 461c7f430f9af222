import CLinuxSys
import Foundation
import LifeboatCore
import LifeboatFileSystem
import LifeboatRepository
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// What to back up and how.
public struct BackupOptions: Sendable {
    public var pgdata: String
    public var endpoint: PostgresEndpoint
    public var kind: BackupKind
    public var tags: [String: String]
    /// For manual backups: how long to keep it (nil: the policy's manual retention).
    public var retain: TimeInterval?
    public var policy: RetentionPolicy
    /// Files read and chunks uploaded at once.
    public var parallelism: Int
    /// How long to wait for the WAL the backup needs to reach the repository.
    public var walTimeout: TimeInterval
    /// When backing up a standby: its primary (nil: the node the standby streams from). The
    /// primary switches WAL so the backup's last segment is archived; credentials are `endpoint`'s.
    public var primary: PostgresEndpoint?
    /// Read every file, also those whose size and modification time say they did not change since
    /// the newest backup (which are otherwise taken over from it unread).
    public var readAllFiles = false

    public init(pgdata: String, endpoint: PostgresEndpoint, kind: BackupKind = .automated, tags: [String: String] = [:],
        retain: TimeInterval? = nil, policy: RetentionPolicy = .seedDefault, parallelism: Int = 4, walTimeout: TimeInterval = 600,
        primary: PostgresEndpoint? = nil)
    {
        self.primary = primary
        self.pgdata = pgdata
        self.endpoint = endpoint
        self.kind = kind
        self.tags = tags
        self.retain = retain
        self.policy = policy
        self.parallelism = parallelism
        self.walTimeout = walTimeout
    }
}

/// A finished backup and how long it took.
public struct BackupResult: Codable, Sendable {
    public var backup: BackupRecord
    public var durationSeconds: Double
}

/// Takes consistent base backups of a running PostgreSQL cluster into a repository.
public struct BackupEngine: Sendable {
    public var repository: Repository
    public var logger: Logger

    public init(repository: Repository, logger: Logger) {
        self.repository = repository
        self.logger = logger
    }

    public func run(_ options: BackupOptions) async throws -> BackupResult {
        let began = Date()
        let pgdata = try Self.canonical(options.pgdata)
        guard FileManager.default.fileExists(atPath: pgdata + "/PG_VERSION") else {
            throw LifeboatError(.invalidUsage, "\(options.pgdata) is not a PostgreSQL data directory (no PG_VERSION)",
                hint: "give the cluster's data directory with --pgdata or PGDATA")
        }
        let session = try await PostgresSession.connect(options.endpoint, logger: logger)
        do {
            let result = try await RepositoryLock.withLock(.shared, purpose: "backup of \(pgdata)", repository: repository) {
                try await self.backup(session: session, pgdata: pgdata, options: options, began: began)
            }
            await session.close()
            return result
        } catch {
            // Closing the session makes PostgreSQL abort a backup still in progress.
            await session.close()
            throw error
        }
    }

    private func backup(session: PostgresSession, pgdata: String, options: BackupOptions, began: Date) async throws -> BackupResult {
        let repo = repository
        let settings = try await session.query("""
            SELECT current_setting('server_version_num'), current_setting('data_directory'),
                   (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'),
                   current_setting('archive_mode'), current_setting('archive_command'),
                   (SELECT system_identifier::text FROM pg_control_system()), pg_is_in_recovery()::text,
                   current_setting('config_file'), current_setting('hba_file'), current_setting('ident_file')
            """)
        guard let row = settings.first, row.count == 10 else { throw LifeboatError(.postgres, "unexpected answer to the settings query") }
        let versionNum = row[0] ?? "0"
        let serverDataDir = try Self.canonical(row[1] ?? "")
        guard serverDataDir == pgdata else {
            throw LifeboatError(.invalidUsage, "\(pgdata) is not the data directory of the server at \(options.endpoint.display) (it uses \(serverDataDir))",
                hint: "point --pgdata and the connection options at the same cluster")
        }
        let archiveCommand = row[4] ?? ""
        let nodeArchives = row[3] != "off" && !archiveCommand.isEmpty && archiveCommand != "(disabled)"
        let fromStandby = row[6] == "true"
        let systemIdentifier = row[5] ?? ""
        // A standby's backup: its files come from here, its WAL is archived by the primary (or by
        // the standby itself with archive_mode = always), and the primary switches WAL at the end.
        var primary: StandbyUpstream.Primary?
        let upstream = StandbyUpstream(logger: logger)
        if fromStandby {
            primary = try await upstream.locate(standby: session, credentials: options.endpoint, explicit: options.primary)
            if let primary, primary.systemIdentifier != systemIdentifier {
                throw LifeboatError(.invalidUsage,
                    "the primary \(primary.endpoint.display) is another cluster (system identifier \(primary.systemIdentifier), the standby's is \(systemIdentifier))")
            }
            let standbyArchives = row[3] == "always" && nodeArchives
            guard standbyArchives || primary?.archives == true else {
                throw LifeboatError(.invalidUsage,
                    primary == nil
                        ? "\(options.endpoint.display) is a standby that streams from no primary, and does not archive itself (archive_mode is \(row[3] ?? "?"))"
                        : "neither the standby \(options.endpoint.display) (archive_mode = \(row[3] ?? "?")) nor its primary \(primary?.endpoint.display ?? "") archives WAL",
                    hint: "set archive_mode = on and archive_command = 'lifeboat wal push %p' on every node (the primary archives; archive_mode = always also makes standbys archive), or give the primary with --primary-host/--primary-port")
            }
            if primary == nil {
                logger.warning("the standby streams from no primary: the backup waits for its last WAL segment to be archived (archive_timeout on the primary)")
            }
        } else {
            guard nodeArchives else {
                throw LifeboatError(.invalidUsage, "WAL archiving is not enabled on \(options.endpoint.display)",
                    hint: "set archive_mode = on and archive_command = 'lifeboat wal push %p' (with your --config), then restart PostgreSQL")
            }
        }
        guard let segmentSize = UInt64(row[2] ?? "") else { throw LifeboatError(.postgres, "cannot read wal_segment_size") }
        let major = String((Int(versionNum) ?? 0) / 10000)
        let id = Self.newBackupID(at: began)
        var log = logger
        log[metadataKey: LogKey.backupID] = .string(id)

        let tablespaces = try await session.query("""
            SELECT oid::text, spcname, pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')
            """).compactMap { r -> TablespaceRecord? in
            guard r.count == 3, let oid = r[0].flatMap({ UInt32($0) }) else { return nil }
            return TablespaceRecord(oid: oid, name: r[1] ?? "", location: r[2] ?? "")
        }
        // The newest backup's files: a changed chunk is stored as a delta against the chunk that held
        // the same bytes of the same file then; a file unchanged since is not read again.
        var loaded = try await PreviousBackup.load(repo)
        let known = ChunkIndex(try await repo.chunkListing(), table: loaded?.packed ?? PackedChunkTable())
        let previous = loaded?.previous
        loaded = nil  // the index's copy of the pack locations is then the only one, and grows in place
        _ = lifeboat_release_free_memory()  // the reader's buffers
        let packs = repo.storesPacks ? PackWriter(repository: repo) : nil
        log.debug("previous backup and chunk catalog loaded", metadata: ["lifeboat.memory": .string(ProcessMemory.summary)])
        let reuse = options.readAllFiles ? nil : previous
        guard let startText = try await session.value("SELECT pg_backup_start(\(PostgresSession.literal("lifeboat \(id)")), true)::text"),
            let startLSN = LSN(startText)
        else { throw LifeboatError(.postgres, "pg_backup_start returned no LSN") }
        let startTime = Date()
        log.info("backup started", metadata: ["lifeboat.lsn.start": .string(startLSN.description)])
        FaultPoint.reached("backup.started")

        let chunkSize = repo.config.chunkSize
        let stats = BackupStats()
        // pg_control is read last: in a standby's backup its minimum recovery point is where
        // recovery becomes consistent, so it must be at least as late as every page read before.
        let control = "global/pg_control"
        let writer = ChunkWriter(repository: repo, chunkSize: chunkSize, known: known, packs: packs, stats: stats)
        // The data directory is walked as its files are stored, and the file list goes into the
        // manifest as the files are done, in the walk's order: neither is ever held whole.
        var walk = try DataDirectoryScan.Walk(pgdata)
        var controlItems: [DataDirectoryScan.Item] = []
        let assembler = try ManifestAssembler(backupID: id, chunkSize: chunkSize, known: known, repository: repo)
        var consumed = 0
        try await forEachBoundedInOrder(next: { () throws -> DataDirectoryScan.Item? in
            while let item = try walk.next() {
                if item.path == control { controlItems.append(item) } else { return item }
            }
            return nil
        }, parallelism: options.parallelism) { item -> ManifestEntry? in
            if let entry = await reuse?.unchanged(item, known: known) {
                await stats.reuse(entry)
                return entry
            }
            return try await writer.store(item: item, previous: previous?.chunks(of: item.path))
        } consume: { entry in
            if let entry { try await assembler.append(entry) }
            consumed += 1
            // Buffers freed between long-lived entries leave holes malloc keeps: give them back
            // now and then, so resident memory follows what is live (a few ms per call).
            if consumed % 16384 == 0 { _ = lifeboat_release_free_memory() }
        }
        _ = lifeboat_release_free_memory()
        log.debug("data directory stored", metadata: ["lifeboat.items": "\(consumed)", "lifeboat.memory": .string(ProcessMemory.summary)])
        for item in controlItems {
            if let entry = try await writer.store(item: item, previous: previous?.chunks(of: item.path)) {
                try await assembler.append(entry)
            }
        }
        // Configuration the server reads from outside its data directory (Debian's /etc/postgresql).
        var externals: [ExternalFile] = []
        for (setting, path) in [("config_file", row[7]), ("hba_file", row[8]), ("ident_file", row[9])] {
            guard let path, !path.isEmpty, let real = try? Self.canonical(path), !real.hasPrefix(pgdata + "/") else { continue }
            let item = DataDirectoryScan.Item(path: setting, source: real, type: .file, mode: 0o600, modified: Date())
            if let entry = try await writer.store(item: item, previous: nil) {
                externals.append(ExternalFile(setting: setting, originalPath: real, entry: entry))
            }
        }
        try await packs?.finish()
        log.debug("files stored", metadata: ["lifeboat.memory": .string(ProcessMemory.summary)])

        let stop: [String?]
        do {
            guard let row = try await session.query("SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(false)").first, row.count == 3 else {
                throw LifeboatError(.postgres, "pg_backup_stop returned nothing usable")
            }
            stop = row
        } catch let error as LifeboatError where fromStandby && error.message.contains("promoted") {
            throw LifeboatError(.postgres, "the standby \(options.endpoint.display) was promoted during the backup; the backup was not committed",
                hint: "PostgreSQL cannot finish a backup started in recovery on a promoted server; run the backup again (against the new primary, or a standby)")
        }
        guard let stopLSN = LSN(stop[0] ?? "") else { throw LifeboatError(.postgres, "pg_backup_stop returned no LSN") }
        let stopTime = Date()
        FaultPoint.reached("backup.stopped")
        let nextXid = try await session.value("SELECT pg_snapshot_xmax(pg_current_snapshot())::text").flatMap { UInt64($0) }
        let label = stop[1] ?? ""
        let timeline = Self.labelTimeline(label) ?? 1
        if fromStandby {
            // Still a standby, still on the timeline the backup started on: otherwise a failover
            // happened while the files were read, and the WAL that makes them consistent is not
            // on one timeline of the archive.
            guard let state = try await session.query(
                "SELECT pg_is_in_recovery()::text, (SELECT min_recovery_end_timeline::text FROM pg_control_recovery())").first, state.count == 2
            else { throw LifeboatError(.postgres, "cannot read the standby's recovery state") }
            guard state[0] == "true" else {
                throw LifeboatError(.postgres, "the standby \(options.endpoint.display) was promoted during the backup; the backup was not committed",
                    hint: "run the backup again (against the new primary, or a standby)")
            }
            if let text = state[1] ?? nil, let now = UInt32(text), now != timeline {
                throw LifeboatError(.postgres,
                    "the standby \(options.endpoint.display) moved from timeline \(timeline) to \(now) during the backup (its primary failed over); the backup was not committed",
                    hint: "run the backup again")
            }
            if let primary {
                try await upstream.switchWAL(on: primary.endpoint,
                    stop: WALSegment(timeline: timeline, containing: stopLSN.value > 0 ? LSN(stopLSN.value - 1) : stopLSN, segmentSize: segmentSize),
                    systemIdentifier: systemIdentifier)
            }
        }
        log.info("backup stopped; waiting for its WAL", metadata: ["lifeboat.lsn.stop": .string(stopLSN.description)])

        let record0 = BackupRecord(id: id, kind: options.kind, tags: options.tags,
            retainUntil: options.kind == .manual ? stopTime.addingTimeInterval(options.retain ?? options.policy.manualRetention) : nil,
            startTime: startTime, stopTime: stopTime, startLSN: startLSN, stopLSN: stopLSN, timeline: timeline,
            nextXidAtStop: nextXid, walSegmentSize: segmentSize, postgresVersion: major,
            systemIdentifier: row[5] ?? "", backupLabel: label, tablespaceMap: stop[2] ?? "", fileCount: 0,
            logicalBytes: 0, newStoredBytes: 0, newChunks: 0, totalChunks: 0, manifestObject: "", host: ProcessInfo.processInfo.hostName,
            lifeboatVersion: LifeboatVersion.current)
        try await waitForWAL(record: record0, session: session, timeout: options.walTimeout)

        var record = record0
        record.dataDirectory = pgdata
        record.tablespaces = tablespaces
        let node = "\(ProcessInfo.processInfo.hostName) \(options.endpoint.host):\(options.endpoint.port) \(pgdata)"
        record.source = fromStandby
            ? BackupSource(role: .standby, node: node, primary: primary.map { "\($0.endpoint.host):\($0.endpoint.port)" })
            : BackupSource(role: .primary, node: node)
        _ = lifeboat_release_free_memory()
        record.manifestObject = try await repo.writeManifest(assembler, externalFiles: externals)
        log.debug("manifest written", metadata: ["lifeboat.memory": .string(ProcessMemory.summary)])
        FaultPoint.reached("backup.manifest")
        let totals = await stats.totals()
        record.fileCount = await assembler.fileCount
        record.logicalBytes = totals.logical
        record.newStoredBytes = totals.stored
        record.newChunks = totals.newChunks
        record.totalChunks = totals.chunks
        record.unchangedFiles = totals.unchangedFiles
        record.newPacks = await packs?.packsWritten
        try await repo.commitBackup(record)
        if repo.store.locksObjects {
            // The manifest is read back for its chunk list: only object-locking stores pay for that.
            try await extendLocks(record: record, manifest: try await repo.manifest(for: record), policy: options.policy,
                parallelism: options.parallelism)
        }
        log.info("backup committed", metadata: ["lifeboat.bytes.logical": "\(totals.logical)", "lifeboat.bytes.stored": "\(totals.stored)",
            "lifeboat.files.unchanged": "\(totals.unchangedFiles)", "lifeboat.packs": "\(record.newPacks ?? 0)"])
        return BackupResult(backup: record, durationSeconds: Date().timeIntervalSince(began))
    }

    /// Immutable repositories: every object this backup needs stays locked at least as long as the
    /// backup is kept, including chunks written by earlier backups and reused here. Manual backups
    /// until their own retention; automated ones for the recovery window past their end, plus a day.
    func extendLocks(record: BackupRecord, manifest: BackupManifest, policy: RetentionPolicy, parallelism: Int) async throws {
        let until = record.retainUntil ?? record.stopTime.addingTimeInterval(policy.recoveryWindow + 86400)
        var keys = Set(manifest.allChunkIDs.flatMap { $0.flatMap { Repository.chunkObjectKeys($0, in: manifest) } })
        keys.insert(Repository.backupKey(record.id))
        keys.insert(record.manifestObject)
        let size = record.walSegmentSize
        for n in record.startSegment.number(segmentSize: size)...record.stopSegment.number(segmentSize: size) {
            keys.insert(Repository.walKey(.segment(WALSegment(timeline: record.timeline, number: n, segmentSize: size))))
        }
        let store = repository.store
        _ = try await forEachBounded(Array(keys), parallelism: max(parallelism, 8)) { key -> Bool in
            try await store.extendProtection(key, until: until)
            return true
        }
    }

    /// Waits until every segment from the backup's start to its stop is in the repository.
    func waitForWAL(record: BackupRecord, session: PostgresSession, timeout: TimeInterval) async throws {
        let size = record.walSegmentSize
        let needed = (record.startSegment.number(segmentSize: size)...record.stopSegment.number(segmentSize: size)).map {
            WALSegment(timeline: record.timeline, number: $0, segmentSize: size)
        }
        let deadline = Date().addingTimeInterval(timeout)
        var missing = needed
        while true {
            var still: [WALSegment] = []
            for segment in missing where try await repository.store.info(Repository.walKey(.segment(segment))) == nil {
                still.append(segment)
            }
            missing = still
            if missing.isEmpty { return }
            if Date() > deadline {
                let failure = try? await session.query("SELECT coalesce(last_failed_wal, ''), coalesce(last_failed_time::text, '') FROM pg_stat_archiver").first
                let lastFailedWAL = (failure?[0] ?? nil) ?? ""
                let failed = lastFailedWAL.isEmpty ? "" : "; the archiver last failed on \(lastFailedWAL) at \((failure?[1] ?? nil) ?? "")"
                throw LifeboatError(.timeout,
                    "WAL segment \(missing[0].name) needed by backup \(record.id) did not reach the repository within \(HumanDuration.format(timeout))\(failed)",
                    hint: "check archive_command (it must run `lifeboat wal push %p` against this repository) and the server log; the backup was not committed")
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    static func labelTimeline(_ label: String) -> UInt32? {
        for line in label.split(separator: "\n") where line.hasPrefix("START TIMELINE:") {
            return UInt32(line.dropFirst("START TIMELINE:".count).trimmingCharacters(in: .whitespaces))
        }
        return nil
    }

    static func newBackupID(at date: Date) -> String { TimestampID.make(date) }

    static func canonical(_ path: String) throws -> String {
        guard let resolved = realpath(path, nil) else {
            throw LifeboatError(.invalidUsage, "\(path) does not exist", hint: "check --pgdata / PGDATA")
        }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}

actor BackupStats {
    private var logical: UInt64 = 0
    private var stored: UInt64 = 0
    private var newChunks = 0
    private var chunks = 0
    private var unchangedFiles = 0

    /// A file taken over from the previous backup without reading it.
    func reuse(_ entry: ManifestEntry) {
        logical += entry.size
        chunks += entry.chunks.count
        unchangedFiles += 1
    }

    func add(logical l: Int, stored s: Int, isNew: Bool) {
        logical += UInt64(l)
        stored += UInt64(s)
        chunks += 1
        if isNew { newChunks += 1 }
    }

    func storedChunks() -> Int { newChunks }

    func totals() -> (logical: UInt64, stored: UInt64, newChunks: Int, chunks: Int, unchangedFiles: Int) {
        (logical, stored, newChunks, chunks, unchangedFiles)
    }
}

import Foundation
import LifeboatAWSCore
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository
import LifeboatTesting
import Testing

/// Lifeboat on a real S3 API server (moto on loopback), as on disk.
@Suite(.serialized) struct S3RepositoryTests {
    /// init, a backup under pgbench, WAL pushed by PostgreSQL's archiver, point-in-time restore:
    /// all through the binary against `s3://bucket/prefix`, with credentials from the environment.
    @Test func fullCycleOnS3() async throws {
        let sandbox = try TestSandbox("s3cycle")
        defer { Task { await sandbox.remove() } }
        let s3 = try await MotoServer.shared.bucket(prefix: "prod/main")
        let keyFile = try sandbox.file("s3.key", "s3 passphrase\n", mode: 0o600)
        let config = try sandbox.file("s3.yaml", """
            repo: s3://\(s3.bucket)/\(s3.prefix)
            key_file: \(keyFile)
            s3:
              endpoint: \(s3.endpoint.absoluteString)
              region: us-east-1
              access_key_id: \(s3.accessKeyID)
              secret_access_key: \(s3.secretAccessKey)
            """)
        #expect(try await LifeboatCLI.run(["repo", "init", "--config", config]).status == 0)
        // The archiver reaches the bucket through the same config file.
        let repo = TestRepository(path: "", keyFile: keyFile, configFile: config,
            repository: try await Repository.open(store: try S3Store(settings: s3), key: .keyFile(keyFile), logger: TestSandbox.logger()))
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: repo)
        try await pg.pgbench(["-i", "-s", "1", "-q"])
        let env = LifeboatCLI.environment(for: pg)
        async let load: Void = pg.pgbench(["-c", "2", "-T", "5", "-n"])
        try await Task.sleep(for: .seconds(1))
        let backup = try await LifeboatCLI.run(["backup", "--config", config], environment: env)
        try await load
        #expect(backup.status == 0, "\(backup.errors)")
        try await pg.pgbench(["-t", "200", "-n"])
        let target = try await pg.now()
        let historyAtTarget = try await pg.value("SELECT count(*) FROM pgbench_history")
        try await Task.sleep(for: .milliseconds(50))
        _ = try await pg.query("DELETE FROM pgbench_history")
        try await pg.archiveCurrentWAL()

        let info = try LifeboatCLI.json(try await LifeboatCLI.run(["info", "--json", "--config", config]))
        #expect((info["backups"] as? [Any])?.count == 1)
        #expect((info["walFiles"] as? Int ?? 0) >= 3)
        #expect(try await LifeboatCLI.run(["verify", "--config", config]).status == 0)
        let dest = sandbox.path("from-s3")
        let port = TestSandbox.freePort()
        let restore = try await LifeboatCLI.run(["restore", "--config", config, "--to", dest, "--target-time", Timestamp.format(target),
            "--start", "--port", String(port), "--socket-dir", sandbox.root])
        #expect(restore.status == 0, "\(restore.errors)")
        let restored = TestPostgres.attach(dest, port: port, like: pg)
        #expect(try await restored.value("SELECT count(*) FROM pgbench_history") == historyAtTarget)
        let b = try await restored.pgbenchBalances()
        let invariant = b.accounts == b.tellers && b.tellers == b.branches && b.branches == b.history
        #expect(invariant, "\(b)")
        try await restored.stop()
    }

    /// 503 bursts, timeouts and truncated bodies are retried and the backup and restore succeed;
    /// a permanent error stops the backup with nothing visible and no WAL lost.
    @Test func transientFaultsAreRetriedAndPermanentOnesLeaveNothingVisible() async throws {
        let sandbox = try TestSandbox("s3faults")
        defer { Task { await sandbox.remove() } }
        let s3 = try await MotoServer.shared.bucket()
        let keyFile = try sandbox.file("k", "pw\n", mode: 0o600)
        let direct = try S3Store(settings: s3)
        _ = try await Repository.initialize(store: direct, key: .keyFile(keyFile), logger: TestSandbox.logger())
        let config = try sandbox.file("s3.yaml", "repo: s3://\(s3.bucket)/\(s3.prefix)\nkey_file: \(keyFile)\n")
        let s3env = MotoServer.environment(s3).filter { $0.key != "LIFEBOAT_REPO" }
        let archiving = TestRepository(path: "", keyFile: keyFile, configFile: config,
            repository: try await Repository.open(store: direct, key: .keyFile(keyFile), logger: TestSandbox.logger()))
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: archiving, settings: [:])
        // The archiver needs the AWS variables: restart it with them in its environment.
        try await pg.stop()
        try await pg.cluster.start(environment: s3env)
        try await pg.pgbench(["-i", "-s", "1", "-q"])

        let faulty = FaultInjectingStore(direct, faults: [.transient(prefix: "chunks/", every: 3), .transient(prefix: "packs/", every: 2), .truncatedRead(prefix: "", every: 5),
            .transient(prefix: "backups/", every: 2), .transient(prefix: "manifests/", every: 2)])
        let flaky = RetryingStore(faulty, policy: RetryPolicy(attempts: 8, baseDelay: 0.01, maxDelay: 0.05), logger: TestSandbox.logger())
        let repo = try await Repository.open(store: flaky, key: .keyFile(keyFile), logger: TestSandbox.logger())
        let record = try await BackupEngine(repository: repo, logger: TestSandbox.logger())
            .run(BackupOptions(pgdata: pg.cluster.dataDirectory, endpoint: pg.endpoint)).backup
        #expect(faulty.injected > 10, "faults were injected: \(faulty.injected)")
        try await pg.pgbench(["-t", "100", "-n"])
        try await pg.archiveCurrentWAL()
        let report = try await RestoreEngine(repository: repo, logger: TestSandbox.logger()).run(RestoreOptions(
            destination: sandbox.path("restored"), target: .latest,
            invocation: LifeboatInvocation(executable: TestSandbox.lifeboatBinary, arguments: ["--config", config], environment: s3env),
            start: true, port: TestSandbox.freePort(), socketDirectory: sandbox.root, recoveryTimeout: 120))
        #expect(report.backupID == record.id)
        let restored = TestPostgres.attach(sandbox.path("restored"), port: report.port ?? 0, like: pg)
        #expect(try await restored.value("SELECT count(*) FROM pgbench_history") == "100")
        try await restored.stop()

        // Permanent: writes of the backup record are refused. Nothing becomes visible.
        let denied = FaultInjectingStore(direct, faults: [.forbidden(prefix: "backups/")])
        let deniedRepo = try await Repository.open(store: RetryingStore(denied, logger: TestSandbox.logger()), key: .keyFile(keyFile),
            logger: TestSandbox.logger())
        let started = Date()
        await #expect {
            _ = try await BackupEngine(repository: deniedRepo, logger: TestSandbox.logger())
                .run(BackupOptions(pgdata: pg.cluster.dataDirectory, endpoint: pg.endpoint))
        } throws: { ($0 as? LifeboatError)?.code == .repository }
        #expect(Date().timeIntervalSince(started) < 60, "permanent errors are not retried for long")
        let visible = try await Repository.open(store: direct, key: .keyFile(keyFile), logger: TestSandbox.logger())
        #expect(try await visible.backups().map(\.id) == [record.id])
        try await pg.archiveCurrentWAL()
        #expect(try await Verifier(repository: visible).run().problems == [], "no WAL lost, nothing broken")
    }

    /// With moto's authentication on, our SigV4 signatures are accepted with the right secret and a
    /// wrong secret is refused at once as a permanent error with a hint.
    ///
    /// The repository sits at the bucket root: moto 5.2.1 canonicalizes the query string after
    /// decoding it, so a `/` in a query value (signed as `%2F`, as AWS specifies and as the AWS
    /// example vector in SigV4Tests checks) does not verify there.
    @Test func signaturesAreCheckedWhenAuthenticationIsOn() async throws {
        let moto = MotoServer()
        let endpoint = try await moto.url()
        let keys = try await moto.enableAuthentication()
        let good = try S3Settings.resolve(url: "s3://signed-bucket", overrides: AWSAccountOverrides(endpoint: endpoint.absoluteString,
            accessKeyID: keys.id, secretAccessKey: keys.secret), environment: [:])
        let store = try S3Store(settings: good)
        try await store.createBucket()
        #expect(try await store.putIfAbsent("k", data: Data("signed".utf8)))
        #expect(try await store.get("k") == Data("signed".utf8))
        #expect(try await store.list(prefix: "").map(\.key) == ["k"])

        var bad = good
        bad.secretAccessKey = keys.secret + "x"
        let badStore = RetryingStore(try S3Store(settings: bad), logger: TestSandbox.logger())
        let started = Date()
        await #expect { _ = try await badStore.get("k") } throws: { error in
            guard let e = error as? LifeboatError else { return false }
            return e.code == .repository && !e.retryable && e.message.contains("SignatureDoesNotMatch") && e.hint?.contains("secret") == true
        }
        #expect(Date().timeIntervalSince(started) < 5, "not retried")
        var unknown = good
        unknown.accessKeyID = "AKIDNOBODYKNOWS"
        await #expect { _ = try await S3Store(settings: unknown).get("k") } throws: { ($0 as? LifeboatError)?.retryable == false }
    }

    /// The seed's cross-region copy: backups and their WAL copied from a local repository to an S3
    /// one under a different key; a failed copy resumes; the copy restores on its own.
    @Test func copyToASecondRepositoryUnderItsOwnKeyAndRestoreFromIt() async throws {
        let sandbox = try TestSandbox("copy")
        defer { Task { await sandbox.remove() } }
        let primary = try await TestRepository.make(in: sandbox)
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: primary)
        try await pg.pgbench(["-i", "-s", "1", "-q"])
        let env = LifeboatCLI.environment(for: pg)
        #expect(try await LifeboatCLI.run(["backup", "--manual", "--tag", "Purpose=pre-migration", "--config", primary.configFile],
            environment: env).status == 0)
        try await pg.pgbench(["-t", "200", "-n"])
        // Rows changed all over the table: the second backup stores its chunks as deltas.
        _ = try await pg.query("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 100 = 7")
        _ = try await pg.query("CHECKPOINT")
        #expect(try await LifeboatCLI.run(["backup", "--config", primary.configFile], environment: env).status == 0)
        let primaryLatest = try #require(try await primary.reopen().backups().last)
        #expect(!(try await primary.reopen().manifest(for: primaryLatest).deltaBases ?? [:]).isEmpty)
        try await pg.pgbench(["-t", "300", "-n"])
        try await pg.archiveCurrentWAL()

        let s3 = try await MotoServer.shared.bucket(prefix: "us-west-2")
        let secondKey = try sandbox.file("second.key", "the second region's own key\n", mode: 0o600)
        let secondConfig = try sandbox.file("second.yaml", """
            repo: s3://\(s3.bucket)/\(s3.prefix)
            key_file: \(secondKey)
            s3: { endpoint: "\(s3.endpoint.absoluteString)", access_key_id: \(s3.accessKeyID), secret_access_key: \(s3.secretAccessKey) }
            """)
        #expect(try await LifeboatCLI.run(["repo", "init", "--config", secondConfig]).status == 0)
        let second = try await Repository.open(store: try S3Store(settings: s3), key: .keyFile(secondKey), logger: TestSandbox.logger())

        // A first attempt dies when it tries to commit: nothing visible in the target.
        let failing = try await Repository.open(store: FaultInjectingStore(try S3Store(settings: s3), faults: [.forbidden(prefix: "backups/")]),
            key: .keyFile(secondKey), logger: TestSandbox.logger())
        await #expect {
            _ = try await RepositoryCopier(source: try await primary.reopen(), target: failing, logger: TestSandbox.logger()).run(backupIDs: nil)
        } throws: { ($0 as? LifeboatError) != nil }
        #expect(try await second.backups().isEmpty)

        // The real copy resumes: chunks the failed attempt stored are not copied again.
        let copy = try await LifeboatCLI.run(["copy", "--config", primary.configFile, "--to-config", secondConfig, "--all", "--json"])
        #expect(copy.status == 0, "\(copy.errors)")
        let report = try LifeboatCLI.json(copy)
        #expect((report["copiedBackups"] as? [String])?.count == 2)
        #expect((report["chunksPresent"] as? Int ?? 0) > 0, "resumed from the failed attempt")
        #expect((report["verifyProblems"] as? [Any])?.isEmpty == true)
        let again = try LifeboatCLI.json(try await LifeboatCLI.run(["copy", "--config", primary.configFile, "--to-config", secondConfig,
            "--all", "--json"]))
        #expect((again["copiedBackups"] as? [String])?.isEmpty == true && (again["presentBackups"] as? [String])?.count == 2)

        // Re-encrypted: different chunk names, and the primary's key does not open the copy.
        let sourceChunks = try await primary.reopen().chunkIDs()
        let copiedChunks = try await second.chunkIDs()
        #expect(!copiedChunks.isEmpty && sourceChunks.isDisjoint(with: copiedChunks))
        await #expect { _ = try await Repository.open(store: try S3Store(settings: s3), key: .keyFile(primary.keyFile), logger: TestSandbox.logger()) }
            throws: { ($0 as? LifeboatError)?.code == .wrongKey }
        #expect(try await second.backups().first?.tags == ["Purpose": "pre-migration"])
        // Deltas stay deltas in the copy (their bodies do not depend on the key), under the copy's names.
        let copiedLatest = try #require(try await second.backups().last)
        let copiedDeltas = try await second.manifest(for: copiedLatest).deltaBases ?? [:]
        #expect(!copiedDeltas.isEmpty && Set(copiedDeltas.keys).isDisjoint(with: sourceChunks))
        #expect(try await second.chunkCatalog().deltas.count >= copiedDeltas.count)

        // The primary is gone: restore from the copy alone.
        let history = try await pg.value("SELECT count(*) FROM pgbench_history")
        let accounts = try await pg.value("SELECT md5(string_agg(aid::text || ':' || abalance, ',' ORDER BY aid)) FROM pgbench_accounts")
        try await pg.stop()
        try FileManager.default.removeItem(atPath: primary.path)
        let dest = sandbox.path("from-second-region")
        let port = TestSandbox.freePort()
        let restore = try await LifeboatCLI.run(["restore", "--config", secondConfig, "--to", dest, "--start", "--port", String(port),
            "--socket-dir", sandbox.root])
        #expect(restore.status == 0, "\(restore.errors)")
        let restored = TestPostgres.attach(dest, port: port, like: pg)
        #expect(try await restored.value("SELECT count(*) FROM pgbench_history") == history)
        #expect(try await restored.value("SELECT md5(string_agg(aid::text || ':' || abalance, ',' ORDER BY aid)) FROM pgbench_accounts") == accounts)
        try await restored.stop()
    }

    /// Immutable mode: a backup's objects, including chunks reused from earlier backups, stay
    /// locked at least as long as the backup is kept, and no lock is ever shortened.
    @Test func locksCoverTheRetentionOfEveryBackupUsingAnObject() async throws {
        let sandbox = try TestSandbox("s3lock")
        defer { Task { await sandbox.remove() } }
        let s3 = try await MotoServer.shared.bucket(objectLock: ObjectLockSettings(mode: .compliance, retention: 3600))
        let store = try S3Store(settings: s3)
        let keyFile = try sandbox.file("k", "pw\n", mode: 0o600)
        let config = try sandbox.file("s3.yaml", """
            repo: s3://\(s3.bucket)/\(s3.prefix)
            key_file: \(keyFile)
            s3: { endpoint: "\(s3.endpoint.absoluteString)", access_key_id: \(s3.accessKeyID), secret_access_key: \(s3.secretAccessKey),
                  object_lock_mode: COMPLIANCE, object_lock_retention: 1h }
            """)
        #expect(try await LifeboatCLI.run(["repo", "init", "--config", config]).status == 0)
        let repo = try await Repository.open(store: store, key: .keyFile(keyFile), logger: TestSandbox.logger())
        let pg = try await TestPostgres.start(in: sandbox, archiveTo: TestRepository(path: "", keyFile: keyFile, configFile: config,
            repository: repo))
        _ = try await pg.query("CREATE TABLE t AS SELECT generate_series(1, 20000) AS id")
        let env = LifeboatCLI.environment(for: pg)

        // A manual backup kept 10 days: its objects are locked ~10 days, though the bucket default is 1h.
        let manual = try await LifeboatCLI.run(["backup", "--manual", "--retain", "10d", "--json", "--config", config], environment: env)
        #expect(manual.status == 0, "\(manual.errors)")
        let manualID = try #require((try LifeboatCLI.json(manual)["backup"] as? [String: Any])?["id"] as? String)
        let record = try await repo.backup(id: manualID)
        let manifest = try await repo.manifest(for: record)
        let chunk = try #require(manifest.entries.first { $0.path.hasPrefix("base/") && !$0.chunks.isEmpty }?.chunks.first)
        // Its object: a chunk of its own, or the pack it lies in (small files), locked alike.
        let chunkKey = Repository.chunkObjectKey(chunk, in: manifest)
        let tenDays = Date().addingTimeInterval(10 * 86400)
        for key in [chunkKey, "backups/\(manualID)", record.manifestObject, Repository.walKey(.segment(record.startSegment))] {
            let until = try #require(try await store.protectedUntil(key), "\(key) is locked")
            #expect(abs(until.timeIntervalSince(tenDays)) < 600, "\(key) locked until \(until)")
        }

        // An automated backup reuses that chunk: its lock grows to cover the automated backup's
        // window (7 days + 1) only if that is later; here 10 days is later, so it stays.
        _ = try await pg.query("INSERT INTO t SELECT generate_series(1, 10)")
        #expect(try await LifeboatCLI.run(["backup", "--config", config], environment: env).status == 0)
        let after = try #require(try await store.protectedUntil(chunkKey))
        #expect(abs(after.timeIntervalSince(tenDays)) < 600, "never shortened: \(after)")

        // A chunk written by the automated backup alone, reused by a later manual one kept 20 days.
        _ = try await pg.query("CREATE TABLE u AS SELECT generate_series(1, 30000) AS id")
        _ = try await pg.query("CHECKPOINT")
        let auto = try LifeboatCLI.json(try await LifeboatCLI.run(["backup", "--json", "--config", config], environment: env))
        let autoID = try #require((auto["backup"] as? [String: Any])?["id"] as? String)
        let autoRecord = try await repo.backup(id: autoID)
        let autoManifest = try await repo.manifest(for: autoRecord)
        let autoChunks = Set(autoManifest.entries.flatMap(\.chunks))
        let manualChunks = Set(try await repo.manifest(for: record).entries.flatMap(\.chunks))
        let fresh = try #require(autoChunks.subtracting(manualChunks).first)
        // The chunk's own object, and for a delta its base (whose lock may already reach further).
        let freshKeys = Repository.chunkObjectKeys(fresh, in: autoManifest)
        let eightDays = autoRecord.stopTime.addingTimeInterval(8 * 86400)
        #expect(abs((try await store.protectedUntil(freshKeys[0]) ?? .distantPast).timeIntervalSince(eightDays)) < 600)
        for key in freshKeys {
            #expect((try await store.protectedUntil(key) ?? .distantPast) > eightDays.addingTimeInterval(-600), "\(key) locked")
        }
        #expect(try await LifeboatCLI.run(["backup", "--manual", "--retain", "20d", "--config", config], environment: env).status == 0)
        for key in freshKeys {
            let extended = try #require(try await store.protectedUntil(key))
            #expect(abs(extended.timeIntervalSince(Date().addingTimeInterval(20 * 86400))) < 600, "reused chunk extended: \(key) \(extended)")
        }
    }
}

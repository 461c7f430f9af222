import Foundation
import LifeboatConfiguration
import LifeboatCore
import Testing

/// The configuration as types: unknown keys refused with their path, values typed, precedence
/// option > environment > file > default, without running the binary.
struct ConfigurationTests {
    func parse(_ yaml: String) throws -> ConfigurationFile { try ConfigurationFile.parse(yaml, path: "/etc/lifeboat.yaml") }

    func failure(_ yaml: String) -> String {
        do {
            _ = try parse(yaml)
            return "accepted"
        } catch let e as LifeboatError {
            return e.message + " | " + (e.hint ?? "")
        } catch {
            return "\(error)"
        }
    }

    @Test func everySectionDecodesTyped() throws {
        let file = try parse("""
            repo: /var/lib/lifeboat/repo
            key_file: key
            pgport: 5433
            parallelism: 8
            compression: lz4
            wal_timeout: 15m
            log_level: info
            retention: { recovery_window: 14d, manual: 30d, keep_last: 3 }
            s3: { region: eu-west-1, path_style: true, object_lock_mode: compliance, object_lock_retention: 40d }
            mirrors: [second.yaml]
            serve:
              listen: ":9999"
              backup_window: "03:00-04:00"
              drill_every: 30d
              verify_every: off
              expire: no
            drill:
              objectives: { point-in-time: { rto: 45m, rpo: 5m } }
              checks:
                - { name: users, sql: "SELECT count(*) FROM users", min: 1 }
            aws: { region: us-east-1, profile: dr }
            """)
        #expect(file.repo == "/var/lib/lifeboat/repo")
        #expect(file.pgport == 5433)
        #expect(file.compression == .lz4)
        #expect(file.walTimeout?.seconds == 900)
        #expect(file.retention?.recoveryWindow?.seconds == 14.0 * 86400)
        #expect(file.retention?.keepLast == 3)
        #expect(file.s3?.objectLockMode == .compliance)
        #expect(file.s3?.pathStyle == true)
        #expect(file.serve?.listen == .address(host: "127.0.0.1", port: 9999))
        #expect(file.serve?.backupWindow == BackupWindow(startMinute: 180, endMinute: 240))
        #expect(file.serve?.resolvedVerifyEvery == nil)
        #expect(file.serve?.resolvedDrillEvery == 30.0 * 86400)
        #expect(file.serve?.resolvedExpire == false)
        #expect(file.drill?.objectives?["point-in-time"]?.rpo?.seconds == 300)
        #expect(file.drill?.checks?.first?.min == 1)
        #expect(file.aws?.profile == "dr")
        #expect(file.warnings.isEmpty)
    }

    @Test func unknownKeysAreRefusedWithTheirPath() {
        #expect(failure("repo: /x\nrepos: /y\n").contains("unknown configuration key 'repos'"))
        let serve = failure("serve:\n  backup_windw: \"03:00-04:00\"\n")
        #expect(serve.contains("'serve.backup_windw'"), "\(serve)")
        #expect(serve.contains("valid keys under serve:") && serve.contains("backup_window"))
        let check = failure("drill:\n  checks:\n    - { sql: SELECT 1, expected: 1 }\n")
        #expect(check.contains("drill.checks[0].expected"), "\(check)")
        #expect(failure("retention: { window: 7d }").contains("retention.window"))
    }

    @Test func badValuesNameTheirKey() {
        #expect(failure("wal_timeout: soon").contains("wal_timeout"))
        #expect(failure("pgport: many").contains("pgport must be a whole number"))
        let window = failure("serve: { backup_window: '3-4' }")
        #expect(window.contains("serve.backup_window"), "\(window)")
        #expect(failure("compression: brotli").contains("compression"))
        #expect(failure("s3: { object_lock_mode: forever }").contains("COMPLIANCE or GOVERNANCE"))
        #expect(failure("- a\n- b\n").contains("must be a mapping"))
        #expect(failure("serve: { listen: nowhere }").contains("HOST:PORT"))
    }

    @Test func replicasIsAcceptedWithAWarning() throws {
        let file = try parse("replicas: [second.yaml]\nserve: { copy_to_replicas: false }\n")
        #expect(file.warnings.count == 2)
        let settings = LifeboatSettings(options: CommandLineValues(), file: file, configPath: "/etc/lifeboat/lifeboat.yaml", environment: [:],
            workingDirectory: "/root")
        #expect(settings.mirrorConfigs == ["/etc/lifeboat/second.yaml"])
        #expect(settings.serve.resolvedCopyToMirrors == false)
    }

    @Test func precedenceIsOptionThenEnvironmentThenFileThenDefault() throws {
        let file = try parse("repo: repo-from-file\npghost: /file/socket\npgport: 6000\nparallelism: 6\nlog_level: error\nkey_file: file.key\n")
        func settings(_ options: CommandLineValues, _ env: [String: String]) -> LifeboatSettings {
            LifeboatSettings(options: options, file: file, configPath: "/etc/lb/lifeboat.yaml", environment: env, workingDirectory: "/work")
        }
        // File only: relative paths are relative to the file.
        let f = settings(CommandLineValues(), [:])
        #expect(f.repoLocationText == "repo-from-file")
        #expect(try f.repository() == .directory("/etc/lb/repo-from-file", appendOnly: nil))
        #expect(try f.connection().host == "/file/socket" && (try f.connection().port) == 6000)
        #expect(try f.parallelism() == 6)
        #expect(f.logLevel == .error)
        #expect(try f.key() == .keyFile("/etc/lb/file.key"))
        // Environment over the file.
        let e = settings(CommandLineValues(), ["LIFEBOAT_REPO": "/env/repo", "PGHOST": "/env/socket", "PGPORT": "7000",
            "LIFEBOAT_LOG_LEVEL": "debug", "LIFEBOAT_PASSPHRASE": "secret"])
        #expect(try e.repository() == .directory("/env/repo", appendOnly: nil))
        #expect(try e.connection().host == "/env/socket" && (try e.connection().port) == 7000)
        #expect(e.logLevel == .debug)
        #expect(try e.key() == .passphrase("secret"))
        // Options over both.
        var o = CommandLineValues(repo: "opt-repo", keyFile: "opt.key", logLevel: .trace)
        o.pghost = "/opt/socket"
        o.pgport = 8000
        o.parallelism = 12
        let all = settings(o, ["LIFEBOAT_REPO": "/env/repo", "PGPORT": "7000", "LIFEBOAT_PASSPHRASE": "secret"])
        #expect(try all.repository() == .directory("/work/opt-repo", appendOnly: nil))
        #expect(try all.connection().port == 8000 && (try all.connection().host) == "/opt/socket")
        #expect(try all.parallelism() == 12)
        #expect(all.logLevel == .trace)
        #expect(try all.key() == .keyFile("/work/opt.key"))
        // Defaults when nothing says.
        let none = LifeboatSettings(options: CommandLineValues(), file: ConfigurationFile(), configPath: nil, environment: [:], workingDirectory: "/w")
        #expect(try none.parallelism() == Defaults.parallelism.defaultValue)
        #expect(try none.walTimeout() == Defaults.walTimeout)
        #expect(try none.walPrefetch() == 8)
        #expect(try none.connection().port == 5432)
        #expect(throws: LifeboatError.self) { try none.repository() }
        #expect(throws: LifeboatError.self) { try none.key() }
    }

    @Test func rangesComeFromTheDefaultsTable() throws {
        let file = try parse("parallelism: 100\nwal_prefetch: 65\n")
        let s = LifeboatSettings(options: CommandLineValues(), file: file, configPath: nil, environment: [:], workingDirectory: "/")
        #expect(throws: LifeboatError.self) { try s.parallelism() }
        #expect(throws: LifeboatError.self) { try s.walPrefetch() }
        #expect(throws: LifeboatError.self) { try s.chunkSize(kib: 8) }
        #expect(try s.chunkSize(kib: 1024) == 1 << 20)
    }

    @Test func s3RepositoriesCarryTheirSection() throws {
        let file = try parse("repo: s3://bucket/prefix\ns3: { endpoint: 'http://127.0.0.1:9000', object_lock_mode: GOVERNANCE }\n")
        let s = LifeboatSettings(options: CommandLineValues(), file: file, configPath: nil, environment: [:], workingDirectory: "/")
        guard case .s3(let url, let account, _, let lock) = try s.repository() else {
            Issue.record("not an S3 repository")
            return
        }
        #expect(url == "s3://bucket/prefix")
        #expect(account.endpoint == "http://127.0.0.1:9000")
        #expect(lock?.mode == .governance && lock?.retention == Defaults.objectLockRetention)
    }

    @Test func theExitCodeTableComesFromTheCodes() {
        let table = LifeboatError.Code.exitCodeTable
        for code in LifeboatError.Code.allCases { #expect(table.contains("\(code.exitCode) \(code.summary)")) }
        #expect(table.hasPrefix("1 internal, 2 usage"))
    }
}

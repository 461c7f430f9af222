import Crypto
import Foundation
import LifeboatTesting
import Testing

@testable import LifeboatRepository

#if canImport(Glibc)
import Glibc
#endif

/// The key cache that spares each `wal push` a scrypt: only on tmpfs, only in a private directory,
/// only for the right passphrase, only for an hour.
struct KeyCacheTests {
    func privateDirectory() throws -> String {
        let dir = "/dev/shm/lifeboat-test-keycache-\(UUID().uuidString.prefix(8))"
        #expect(mkdir(dir, 0o700) == 0)
        return dir + "/cache"
    }

    @Test func remembersOnlyForTheRightSecretOnTmpfsPrivatelyAndForAnHour() throws {
        let dir = try privateDirectory()
        defer { try? FileManager.default.removeItem(atPath: (dir as NSString).deletingLastPathComponent) }
        let cache = try #require(KeyCache.current(environment: ["LIFEBOAT_KEY_CACHE": dir]))
        let key = SymmetricKey(size: .bits256)
        let secret = Data("right passphrase".utf8)
        cache.remember(key, repositoryID: "repo-1", salt: "salt-1", secret: secret)
        let found = try #require(cache.key(repositoryID: "repo-1", salt: "salt-1", secret: secret))
        #expect(found.withUnsafeBytes { Data($0) } == key.withUnsafeBytes { Data($0) })
        #expect(cache.key(repositoryID: "repo-1", salt: "salt-1", secret: Data("wrong passphrase".utf8)) == nil, "a wrong passphrase finds nothing")
        #expect(cache.key(repositoryID: "repo-1", salt: "salt-2", secret: secret) == nil, "a repository initialized again finds nothing")
        #expect(cache.key(repositoryID: "repo-2", salt: "salt-1", secret: secret) == nil)
        var st = stat()
        #expect(stat(cache.path("repo-1"), &st) == 0 && st.st_mode & 0o777 == 0o600)
        #expect(stat(dir, &st) == 0 && st.st_mode & 0o777 == 0o700)

        // Older than an hour: ignored.
        let old = Date().addingTimeInterval(-2 * 3600).timeIntervalSince1970
        var times = [timespec(tv_sec: Int(old), tv_nsec: 0), timespec(tv_sec: Int(old), tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, cache.path("repo-1"), &times, 0) == 0)
        #expect(cache.key(repositoryID: "repo-1", salt: "salt-1", secret: secret) == nil)

        // Readable by others: ignored; a directory others may enter: no cache at all.
        cache.remember(key, repositoryID: "repo-1", salt: "salt-1", secret: secret)
        #expect(chmod(cache.path("repo-1"), 0o644) == 0)
        #expect(cache.key(repositoryID: "repo-1", salt: "salt-1", secret: secret) == nil)
        #expect(chmod(dir, 0o755) == 0)
        #expect(KeyCache.current(environment: ["LIFEBOAT_KEY_CACHE": dir]) == nil)
    }

    /// `repo init` derived the key: the first command after it (a backup, a WAL push) finds it and
    /// runs no scrypt of its own.
    @Test func aNewRepositoryIsRememberedByItsInitialization() async throws {
        let sandbox = try TestSandbox("key-cache-init")
        defer { Task { await sandbox.remove() } }
        guard let cache = KeyCache.current() else { return }  // no private tmpfs here: nothing to remember in
        let repo = try await Repository.initialize(store: FileStore(root: sandbox.path("repo")), key: .passphrase("init pass"),
            logger: TestSandbox.logger())
        #expect(cache.key(repositoryID: repo.config.repositoryID, salt: repo.config.kdf.salt, secret: try KeySource.passphrase("init pass").secret()) != nil)
        #expect(cache.key(repositoryID: repo.config.repositoryID, salt: repo.config.kdf.salt, secret: try KeySource.passphrase("other").secret()) == nil)
    }

    @Test func neverOnADiskOrWhenTurnedOff() throws {
        let sandbox = try TestSandbox("keycache-disk")
        defer { Task { await sandbox.remove() } }
        if !KeyCache.isTmpfs(sandbox.root) {
            #expect(KeyCache.current(environment: ["LIFEBOAT_KEY_CACHE": sandbox.path("cache")]) == nil, "no key is written to a disk")
            #expect(!FileManager.default.fileExists(atPath: sandbox.path("cache")))
        }
        #expect(KeyCache.current(environment: ["LIFEBOAT_KEY_CACHE": "off"]) == nil)
    }
}

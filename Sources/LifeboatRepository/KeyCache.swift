import CLinuxSys
import Crypto
import Foundation
import LifeboatCore
import LifeboatFileSystem

#if canImport(Glibc)
import Glibc
#endif

/// Remembers a repository's key-encryption key in memory-backed storage for an hour, so the
/// processes PostgreSQL starts for every WAL segment (`wal push`, `wal fetch`) do not each run
/// scrypt (about 0.1 s of CPU and a 32 MiB work area per call). The repository's key at rest is not
/// weakened: its config still wraps the master key under scrypt.
///
/// The cache is a file per repository in a private directory (0700, owned by the user) on tmpfs:
/// `$XDG_RUNTIME_DIR/lifeboat` or `/dev/shm/lifeboat-<uid>`; it is never written to a disk-backed
/// filesystem. It holds the key-encryption key and a verifier (HMAC of the caller's passphrase under
/// that key), so a wrong passphrase is still refused. Whoever can read it can open the repository,
/// like whoever can read the key file; it is readable only by the same user (and root).
/// `LIFEBOAT_KEY_CACHE=off` disables it; `LIFEBOAT_KEY_CACHE=<directory>` moves it (a tmpfs directory).
struct KeyCache: Sendable {
    let directory: String
    static let lifetime: TimeInterval = 3600

    struct Entry: Codable {
        var salt: String
        var verifier: String
        var key: String
    }

    /// The cache for this process, nil when disabled or when no private tmpfs directory is available.
    static func current(environment: [String: String] = ProcessInfo.processInfo.environment) -> KeyCache? {
        let setting = environment["LIFEBOAT_KEY_CACHE"] ?? ""
        if ["off", "0", "false", "no"].contains(setting.lowercased()) { return nil }
        let directory: String
        if !setting.isEmpty {
            directory = setting
        } else if let runtime = environment["XDG_RUNTIME_DIR"], !runtime.isEmpty, FileManager.default.fileExists(atPath: runtime) {
            directory = runtime + "/lifeboat"
        } else {
            directory = "/dev/shm/lifeboat-\(geteuid())"
        }
        let parent = (directory as NSString).deletingLastPathComponent
        guard isTmpfs(parent.isEmpty ? "/" : parent) else { return nil }
        if mkdir(directory, 0o700) != 0, errno != EEXIST { return nil }
        var st = stat()
        guard lstat(directory, &st) == 0, st.st_mode & S_IFMT == S_IFDIR, st.st_uid == geteuid(), st.st_mode & 0o077 == 0 else { return nil }
        return KeyCache(directory: directory)
    }

    static func isTmpfs(_ path: String) -> Bool { lifeboat_is_tmpfs(path) == 1 }

    func path(_ repositoryID: String) -> String {
        directory + "/" + repositoryID.filter { $0.isLetter || $0.isNumber || $0 == "-" }
    }

    static func verifier(_ secret: Data, key: SymmetricKey) -> String {
        Data(HMAC<SHA256>.authenticationCode(for: Data("lifeboat key cache v1".utf8) + secret, using: key)).base64EncodedString()
    }

    /// The cached key-encryption key for `secret`, if one younger than an hour is there and the
    /// secret matches it.
    func key(repositoryID: String, salt: String, secret: Data) -> SymmetricKey? {
        let file = path(repositoryID)
        var st = stat()
        guard lstat(file, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_uid == geteuid(), st.st_mode & 0o077 == 0,
            Date().timeIntervalSince1970 - TimeInterval(st.st_mtim.tv_sec) < Self.lifetime,
            let data = try? FileIO.read(file), let entry = try? JSONDecoder().decode(Entry.self, from: data),
            entry.salt == salt, let raw = Data(base64Encoded: entry.key), raw.count == 32
        else { return nil }
        let key = SymmetricKey(data: raw)
        guard Self.verifier(secret, key: key) == entry.verifier else { return nil }
        return key
    }

    /// Remembers a key derived (and proven by opening the wrapped master key) for `secret`.
    func remember(_ key: SymmetricKey, repositoryID: String, salt: String, secret: Data) {
        let entry = Entry(salt: salt, verifier: Self.verifier(secret, key: key), key: key.withUnsafeBytes { Data($0).base64EncodedString() })
        guard let data = try? JSONEncoder().encode(entry) else { return }
        try? FileIO.replaceAtomically(path(repositoryID), with: data, mode: 0o600, durability: .atomicOnly)
    }
}

import Crypto
import Foundation
import LifeboatCore
import _CryptoExtras

/// Where the secret that opens a repository comes from. The passphrase itself is never logged.
public enum KeySource: Sendable {
    case passphrase(String)
    case keyFile(String)
    /// A restore's handoff file: the repository's master key itself, written 0600 by `lifeboat
    /// restore` for the restored server's `restore_command` and removed when recovery ends (see
    /// `Repository.writeKeyHandoff`). Opens without key derivation.
    case handoff(String)

    /// The secret bytes: the passphrase, or the key file's content without a trailing newline.
    func secret() throws -> Data {
        switch self {
        case .passphrase(let p):
            guard !p.isEmpty else { throw LifeboatError(.invalidUsage, "the passphrase is empty") }
            return Data(p.utf8)
        case .keyFile(let path):
            guard var data = FileManager.default.contents(atPath: path) else {
                throw LifeboatError(.invalidUsage, "cannot read key file \(path)",
                    hint: "check the path and that the user running lifeboat may read it")
            }
            while let last = data.last, last == 0x0A || last == 0x0D { data.removeLast() }
            guard !data.isEmpty else { throw LifeboatError(.invalidUsage, "key file \(path) is empty") }
            return data
        case .handoff(let path):
            throw LifeboatError(.internalError, "the key handoff \(path) holds no passphrase")
        }
    }
}

/// The keys derived from a repository's master key: one encrypts objects (AES-256-GCM), the other
/// names chunks (HMAC-SHA256), so chunk names reveal nothing without the key.
/// `@unchecked`: swift-crypto 3 does not mark `SymmetricKey` Sendable, but it is an immutable value
/// and these are `let`s set once at init.
struct RepositoryKeys: @unchecked Sendable {
    let master: SymmetricKey
    let dataKey: SymmetricKey
    let chunkIDKey: SymmetricKey

    init(master: SymmetricKey) {
        self.master = master
        dataKey = HKDF<SHA256>.deriveKey(inputKeyMaterial: master, info: Data("lifeboat data v1".utf8), outputByteCount: 32)
        chunkIDKey = HKDF<SHA256>.deriveKey(inputKeyMaterial: master, info: Data("lifeboat chunk id v1".utf8), outputByteCount: 32)
    }
}

/// Key-derivation parameters stored (in clear) in the repository config.
struct KDFParameters: Codable, Sendable, Equatable {
    var algorithm: String
    var n: Int
    var r: Int
    var p: Int
    var salt: String

    static func fresh() -> KDFParameters {
        let salt = SymmetricKey(size: .bits256).withUnsafeBytes { Data($0).base64EncodedString() }
        return KDFParameters(algorithm: "scrypt", n: 1 << 15, r: 8, p: 1, salt: salt)
    }

    func keyEncryptionKey(secret: Data) throws -> SymmetricKey {
        guard algorithm == "scrypt", let saltData = Data(base64Encoded: salt) else {
            throw LifeboatError(.repository, "the repository uses key derivation '\(algorithm)', which this lifeboat does not know",
                hint: "upgrade lifeboat")
        }
        do {
            return try KDF.Scrypt.deriveKey(from: secret, salt: saltData, outputByteCount: 32, rounds: n, blockSize: r,
                parallelism: p, maxMemory: 256 * 1024 * 1024)
        } catch {
            throw LifeboatError(.internalError, "key derivation failed", cause: error)
        }
    }
}

import Crypto
import Foundation
import LifeboatCore

/// The envelope of every object but `config` and locks:
///
/// `"LBO1"` | compression (1 byte) | 3 reserved zero bytes | plaintext length (8 bytes, little endian)
/// | AES-256-GCM nonce (12) | ciphertext | tag (16).
///
/// The header and the object key are authenticated as associated data, so a flipped bit anywhere,
/// a truncated object or an object copied under another name is detected.
struct ObjectCodec: Sendable {
    static let magic: [UInt8] = Array("LBO1".utf8)
    static let headerSize = 16

    let keys: RepositoryKeys
    let compression: CompressionAlgorithm
    let level: Int32

    func seal(_ plaintext: Data, key: String) throws -> Data {
        var algorithm = compression
        var body = try compression.compress(plaintext, level: level)
        if body.count >= plaintext.count {
            // Incompressible (or tiny): store as is, never larger than needed.
            algorithm = .none
            body = plaintext
        }
        var header = Data(Self.magic)
        header.append(algorithm.wireValue)
        header.append(contentsOf: [0, 0, 0])
        var length = UInt64(plaintext.count).littleEndian
        withUnsafeBytes(of: &length) { header.append(contentsOf: $0) }
        let aad = header + Data(key.utf8)
        let box = try AES.GCM.seal(body, using: keys.dataKey, authenticating: aad)
        guard let combined = box.combined else { throw LifeboatError(.internalError, "AES-GCM produced no output") }
        return header + combined
    }

    func open(_ sealed: Data, key: String) throws -> Data {
        let bytes = [UInt8](sealed.prefix(Self.headerSize))
        guard sealed.count >= Self.headerSize + 28, Array(bytes[0..<4]) == Self.magic else {
            throw LifeboatError(.integrity, "object \(key) is not a lifeboat object or is truncated",
                hint: "run `lifeboat verify` to list every damaged object")
        }
        guard let algorithm = CompressionAlgorithm(wireValue: bytes[4]) else {
            throw LifeboatError(.integrity, "object \(key) names an unknown compression (\(bytes[4]))")
        }
        var length: UInt64 = 0
        for i in 0..<8 { length |= UInt64(bytes[8 + i]) << (8 * UInt64(i)) }
        let header = Data(bytes)
        let body: Data
        do {
            let box = try AES.GCM.SealedBox(combined: sealed.dropFirst(Self.headerSize))
            body = try AES.GCM.open(box, using: keys.dataKey, authenticating: header + Data(key.utf8))
        } catch {
            throw LifeboatError(.integrity, "object \(key) failed authentication: it was modified, truncated or damaged",
                hint: "run `lifeboat verify` to list every damaged object; restore from another backup or repository copy")
        }
        guard length <= 1 << 34 else { throw LifeboatError(.integrity, "object \(key) claims an impossible size") }
        return try algorithm.decompress(body, originalSize: Int(length), object: key)
    }
}

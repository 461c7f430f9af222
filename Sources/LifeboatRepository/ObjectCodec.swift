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

    /// Compression byte of a chunk stored as a zstd delta against its base chunk (named in the key).
    static let deltaWireValue: UInt8 = 3
    /// Compression byte of a chunk stored as zstd(chunk XOR base), for a base of the same length.
    static let xorDeltaWireValue: UInt8 = 4

    func seal(_ plaintext: Data, key: String) throws -> Data {
        var algorithm = compression
        var body = try compression.compress(plaintext, level: level)
        if body.count >= plaintext.count {
            // Incompressible (or tiny): store as is, never larger than needed.
            algorithm = .none
            body = plaintext
        }
        return try seal(body: body, wireValue: algorithm.wireValue, plaintextLength: plaintext.count, key: key)
    }

    /// Seals an already compressed body (a delta frame, or a body compressed to choose between forms).
    /// The body is consumed: once encrypted it is released before the sealed object is assembled, so
    /// a large one (a manifest) is held twice at most, not three times.
    func seal(body: consuming Data, wireValue: UInt8, plaintextLength: Int, key: String) throws -> Data {
        var header = Data(Self.magic)
        header.append(wireValue)
        header.append(contentsOf: [0, 0, 0])
        var length = UInt64(plaintextLength).littleEndian
        withUnsafeBytes(of: &length) { header.append(contentsOf: $0) }
        let aad = header + Data(key.utf8)
        let box = try AES.GCM.seal(body, using: keys.dataKey, authenticating: aad)
        _ = consume body
        guard let combined = box.combined else { throw LifeboatError(.internalError, "AES-GCM produced no output") }
        var sealed = Data(capacity: header.count + combined.count)
        sealed.append(header)
        sealed.append(combined)
        return sealed
    }

    func open(_ sealed: Data, key: String) throws -> Data {
        let (wire, body, length) = try openBody(sealed, key: key)
        guard let algorithm = CompressionAlgorithm(wireValue: wire) else {
            throw LifeboatError(.integrity, "object \(key) names an unknown compression (\(wire))")
        }
        return try algorithm.decompress(body, originalSize: length, object: key)
    }

    /// Authenticates and decrypts; returns the compression byte, the still compressed body and the
    /// plaintext length.
    func openBody(_ sealed: Data, key: String) throws -> (wireValue: UInt8, body: Data, length: Int) {
        let bytes = [UInt8](sealed.prefix(Self.headerSize))
        guard sealed.count >= Self.headerSize + 28, Array(bytes[0..<4]) == Self.magic else {
            throw LifeboatError(.integrity, "object \(key) is not a lifeboat object or is truncated",
                hint: "run `lifeboat verify` to list every damaged object")
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
        return (bytes[4], body, Int(length))
    }
}

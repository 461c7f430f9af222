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
///
/// Framed (format 4, manifests): the first reserved byte is 1 and the body after the header is a
/// sequence of frames `length of the rest (u32 LE) | nonce (12) | ciphertext | tag (16)`, each sealed
/// on its own with associated data `header bytes 0..<8 | key | frame index (u32 LE) | last (1 byte)`,
/// the last frame's also with the plaintext length. So an object of many MiB is sealed (and opened)
/// a frame at a time while the writer (reader) holds it once, not twice; a frame dropped, moved, cut
/// short or taken from another object fails authentication.
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

    /// Flag in the first reserved header byte: the body is a sequence of frames.
    static let framedFlag: UInt8 = 1

    /// Seals a body handed over in pieces (`append`) as a framed object, each piece of at least
    /// `frameSize` bytes becoming a frame as soon as it is complete.
    final class FramedSealer {
        let codec: ObjectCodec
        let key: String
        let wireValue: UInt8
        let frameSize: Int
        private(set) var sealed = Data()
        private var pending = Data()
        private var index: UInt32 = 0

        init(codec: ObjectCodec, key: String, wireValue: UInt8, frameSize: Int = 1 << 20, expectedSize: Int = 0) {
            self.codec = codec
            self.key = key
            self.wireValue = wireValue
            self.frameSize = frameSize
            sealed.reserveCapacity(expectedSize)
            sealed.append(contentsOf: ObjectCodec.magic)
            sealed.append(contentsOf: [wireValue, ObjectCodec.framedFlag, 0, 0])
            sealed.append(contentsOf: [UInt8](repeating: 0, count: 8))  // the plaintext length, at the end
        }

        /// Adds body bytes; seals whole frames of them.
        func append(_ bytes: Data) throws {
            pending.append(bytes)
            while pending.count >= frameSize {
                let frame = pending.prefix(frameSize)
                try seal(Data(frame), last: false, plaintextLength: nil)
                pending = Data(pending.dropFirst(frameSize))
            }
        }

        /// Seals what is left as the last frame and returns the object.
        func finish(plaintextLength: Int) throws -> Data {
            try seal(pending, last: true, plaintextLength: plaintextLength)
            pending = Data()
            var length = UInt64(plaintextLength).littleEndian
            withUnsafeBytes(of: &length) { sealed.replaceSubrange(8..<16, with: $0) }
            defer { sealed = Data() }
            return sealed
        }

        private func seal(_ frame: Data, last: Bool, plaintextLength: Int?) throws {
            let aad = ObjectCodec.frameAAD(prefix: sealed.prefix(8), key: key, index: index, last: last, plaintextLength: plaintextLength)
            let box = try AES.GCM.seal(frame, using: codec.keys.dataKey, authenticating: aad)
            guard let combined = box.combined, combined.count < Int(UInt32.max) else {
                throw LifeboatError(.internalError, "AES-GCM produced no output")
            }
            var length = UInt32(combined.count).littleEndian
            withUnsafeBytes(of: &length) { sealed.append(contentsOf: $0) }
            sealed.append(combined)
            index += 1
        }
    }

    static func frameAAD(prefix: Data, key: String, index: UInt32, last: Bool, plaintextLength: Int?) -> Data {
        var aad = Data(prefix)
        aad.append(Data(key.utf8))
        var i = index.littleEndian
        withUnsafeBytes(of: &i) { aad.append(contentsOf: $0) }
        aad.append(last ? 1 : 0)
        if let plaintextLength {
            var length = UInt64(plaintextLength).littleEndian
            withUnsafeBytes(of: &length) { aad.append(contentsOf: $0) }
        }
        return aad
    }

    /// Whether a sealed object is framed (its frames can be opened one by one).
    static func isFramed(_ sealed: Data) -> Bool {
        sealed.count >= headerSize && sealed[sealed.startIndex + 5] == framedFlag
    }

    /// Opens a framed object frame by frame, handing each decrypted frame to `each`; returns the
    /// compression byte and the plaintext length.
    func openFrames(_ sealed: Data, key: String, _ each: (Data) throws -> Void) throws -> (wireValue: UInt8, length: Int) {
        let frames = try FrameOpener(codec: self, sealed: sealed, key: key)
        while let frame = try frames.next() { try each(frame) }
        return (frames.wireValue, frames.length)
    }

    /// The frames of a framed object, decrypted one per `next()` (nil after the last). Throws
    /// `.integrity` for a frame that fails authentication, an object cut short, or one not framed.
    final class FrameOpener {
        let codec: ObjectCodec
        let sealed: Data
        let key: String
        let wireValue: UInt8
        let length: Int
        private let prefix: Data
        private var at: Int
        private var index: UInt32 = 0
        private var ended = false

        init(codec: ObjectCodec, sealed: Data, key: String) throws {
            let start = sealed.startIndex
            guard sealed.count >= ObjectCodec.headerSize + 4 + 28, Array(sealed[start..<(start + 4)]) == ObjectCodec.magic,
                ObjectCodec.isFramed(sealed)
            else {
                throw LifeboatError(.integrity, "object \(key) is not a framed lifeboat object or is truncated",
                    hint: "run `lifeboat verify` to list every damaged object")
            }
            var length: UInt64 = 0
            for i in 0..<8 { length |= UInt64(sealed[start + 8 + i]) << (8 * UInt64(i)) }
            guard length <= 1 << 34 else { throw LifeboatError(.integrity, "object \(key) claims an impossible size") }
            self.codec = codec
            self.sealed = sealed
            self.key = key
            self.wireValue = sealed[start + 4]
            self.length = Int(length)
            prefix = Data(sealed[start..<(start + 8)])
            at = start + ObjectCodec.headerSize
        }

        func next() throws -> Data? {
            guard !ended else { return nil }
            guard at + 4 <= sealed.endIndex else {
                throw LifeboatError(.integrity, "object \(key) is truncated after \(index) frame(s)", hint: "run `lifeboat verify`")
            }
            let n = Int(sealed[at]) | Int(sealed[at + 1]) << 8 | Int(sealed[at + 2]) << 16 | Int(sealed[at + 3]) << 24
            guard n >= 28, at + 4 + n <= sealed.endIndex else {
                throw LifeboatError(.integrity, "object \(key) is truncated or damaged in frame \(index)", hint: "run `lifeboat verify`")
            }
            let body = (at + 4)..<(at + 4 + n)
            let last = body.upperBound == sealed.endIndex
            let plain: Data
            do {
                let box = try AES.GCM.SealedBox(combined: sealed[body])
                plain = try AES.GCM.open(box, using: codec.keys.dataKey,
                    authenticating: ObjectCodec.frameAAD(prefix: prefix, key: key, index: index, last: last, plaintextLength: last ? length : nil))
            } catch {
                throw LifeboatError(.integrity, "object \(key) failed authentication in frame \(index): it was modified, truncated or damaged",
                    hint: "run `lifeboat verify` to list every damaged object; restore from another backup or repository copy")
            }
            at = body.upperBound
            index += 1
            ended = last
            return plain
        }
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
        if Self.isFramed(sealed) {
            var body = Data()
            let (wire, length) = try openFrames(sealed, key: key) { body.append($0) }
            return (wire, body, length)
        }
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

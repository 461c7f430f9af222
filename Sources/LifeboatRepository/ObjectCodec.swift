import Crypto
import Foundation
import LifeboatCore
import LifeboatFileSystem

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

    /// A framed object, sealed: in memory, or in a store's spool file (closed, not yet stored).
    enum SealedObject {
        case data(Data)
        case spooled(StoreSpoolFile)
    }

    /// Seals a body handed over in pieces (`append`) as a framed object, each piece of at least
    /// `frameSize` bytes becoming a frame as soon as it is complete. With a spool file, frames go
    /// to it as they are sealed and only the frame being made is in memory.
    final class FramedSealer {
        let codec: ObjectCodec
        let key: String
        let wireValue: UInt8
        let frameSize: Int
        private var sealed = Data()
        private var spool: StoreSpoolFile?
        private var spoolBytes = 0
        private var pending = Data()
        private var index: UInt32 = 0
        private let prefix: Data

        init(codec: ObjectCodec, key: String, wireValue: UInt8, frameSize: Int = 1 << 20, spool: StoreSpoolFile? = nil) throws {
            self.codec = codec
            self.key = key
            self.wireValue = wireValue
            self.frameSize = frameSize
            self.spool = spool
            prefix = Data(ObjectCodec.magic + [wireValue, ObjectCodec.framedFlag, 0, 0])
            try write(prefix + Data(count: 8))  // the plaintext length, at the end
        }

        deinit {
            // Never finished (the backup failed): the spool file is not left behind.
            if let spool {
                close(spool.descriptor)
                unlink(spool.path)
            }
        }

        /// Adds body bytes; seals whole frames of them.
        func append(_ bytes: Data) throws {
            pending.append(bytes)
            while pending.count >= frameSize {
                try seal(Data(pending.prefix(frameSize)), last: false, plaintextLength: nil)
                pending = Data(pending.dropFirst(frameSize))
            }
        }

        /// Seals what is left as the last frame and returns the object.
        func finish(plaintextLength: Int) throws -> SealedObject {
            try seal(pending, last: true, plaintextLength: plaintextLength)
            pending = Data()
            var length = UInt64(plaintextLength).littleEndian
            let lengthBytes = withUnsafeBytes(of: &length) { Data($0) }
            if let file = spool {
                try FileIO.writeAll(fd: file.descriptor, data: lengthBytes, at: 8, path: file.path)
                spool = nil
                guard close(file.descriptor) == 0 else {
                    unlink(file.path)
                    throw FileIO.error("could not write", errno: errno, path: file.path)
                }
                return .spooled(file)
            }
            sealed.replaceSubrange(8..<16, with: lengthBytes)
            defer { sealed = Data() }
            return .data(sealed)
        }

        private func write(_ bytes: Data) throws {
            if let file = spool {
                try FileIO.writeAll(fd: file.descriptor, data: bytes, path: file.path)
                spoolBytes += bytes.count
            } else {
                sealed.append(bytes)
            }
        }

        private func seal(_ frame: Data, last: Bool, plaintextLength: Int?) throws {
            let aad = ObjectCodec.frameAAD(prefix: prefix, key: key, index: index, last: last, plaintextLength: plaintextLength)
            let box = try AES.GCM.seal(frame, using: codec.keys.dataKey, authenticating: aad)
            guard let combined = box.combined, combined.count < Int(UInt32.max) else {
                throw LifeboatError(.internalError, "AES-GCM produced no output")
            }
            var length = UInt32(combined.count).littleEndian
            try write(withUnsafeBytes(of: &length) { Data($0) } + combined)
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

    /// The frames of a framed object, decrypted one per `next()` (nil after the last), read from
    /// the object's bytes or, for a local store, from its file a frame at a time. Throws
    /// `.integrity` for a frame that fails authentication, an object cut short, or one not framed.
    final class FrameOpener {
        enum Source {
            case data(Data)
            case file(descriptor: Int32, size: Int, path: String)
        }

        let codec: ObjectCodec
        let source: Source
        let key: String
        private(set) var wireValue: UInt8
        private(set) var length: Int
        private let size: Int
        private var prefix: Data
        private var at: Int
        private var index: UInt32 = 0
        private var ended = false

        convenience init(codec: ObjectCodec, sealed: Data, key: String) throws {
            try self.init(codec: codec, source: .data(sealed), key: key)
        }

        /// The file stays open (and is closed) by the caller.
        init(codec: ObjectCodec, source: Source, key: String) throws {
            self.codec = codec
            self.source = source
            self.key = key
            switch source {
            case .data(let d): size = d.count
            case .file(_, let n, _): size = n
            }
            at = 0
            prefix = Data()
            wireValue = 0
            length = 0
            let header = try read(0, min(size, ObjectCodec.headerSize))
            guard size >= ObjectCodec.headerSize + 4 + 28, Array(header.prefix(4)) == ObjectCodec.magic, ObjectCodec.isFramed(header) else {
                throw LifeboatError(.integrity, "object \(key) is not a framed lifeboat object or is truncated",
                    hint: "run `lifeboat verify` to list every damaged object")
            }
            var n: UInt64 = 0
            for i in 0..<8 { n |= UInt64(header[header.startIndex + 8 + i]) << (8 * UInt64(i)) }
            guard n <= 1 << 34 else { throw LifeboatError(.integrity, "object \(key) claims an impossible size") }
            wireValue = header[header.startIndex + 4]
            length = Int(n)
            prefix = Data(header.prefix(8))
            at = ObjectCodec.headerSize
        }

        private func read(_ offset: Int, _ count: Int) throws -> Data {
            switch source {
            case .data(let d):
                return Data(d[(d.startIndex + offset)..<(d.startIndex + offset + count)])
            case .file(let fd, _, let path):
                var out = Data(count: count)
                let got = try out.withUnsafeMutableBytes { (buf: UnsafeMutableRawBufferPointer) -> Int in
                    guard let base = buf.baseAddress else { return 0 }
                    var done = 0
                    while done < count {
                        let r = pread(fd, base + done, count - done, off_t(offset + done))
                        if r < 0 {
                            if errno == EINTR { continue }
                            throw FileIO.error("could not read", errno: errno, path: path)
                        }
                        if r == 0 { break }
                        done += r
                    }
                    return done
                }
                guard got == count else {
                    throw LifeboatError(.integrity, "object \(key) is shorter than it was a moment ago", hint: "run `lifeboat verify`")
                }
                return out
            }
        }

        func next() throws -> Data? {
            guard !ended else { return nil }
            guard at + 4 <= size else {
                throw LifeboatError(.integrity, "object \(key) is truncated after \(index) frame(s)", hint: "run `lifeboat verify`")
            }
            let word = try read(at, 4)
            let n = Int(word[0]) | Int(word[1]) << 8 | Int(word[2]) << 16 | Int(word[3]) << 24
            guard n >= 28, at + 4 + n <= size else {
                throw LifeboatError(.integrity, "object \(key) is truncated or damaged in frame \(index)", hint: "run `lifeboat verify`")
            }
            let last = at + 4 + n == size
            let frame = try read(at + 4, n)
            let plain: Data
            do {
                let box = try AES.GCM.SealedBox(combined: frame)
                plain = try AES.GCM.open(box, using: codec.keys.dataKey,
                    authenticating: ObjectCodec.frameAAD(prefix: prefix, key: key, index: index, last: last, plaintextLength: last ? length : nil))
            } catch {
                throw LifeboatError(.integrity, "object \(key) failed authentication in frame \(index): it was modified, truncated or damaged",
                    hint: "run `lifeboat verify` to list every damaged object; restore from another backup or repository copy")
            }
            at += 4 + n
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

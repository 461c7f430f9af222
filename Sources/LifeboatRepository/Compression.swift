import CLZ4
import CZstd
import Foundation
import LifeboatCore
import Synchronization

extension CompressionAlgorithm {
    var wireValue: UInt8 {
        switch self {
        case .none: return 0
        case .zstd: return 1
        case .lz4: return 2
        }
    }

    init?(wireValue: UInt8) {
        switch wireValue {
        case 0: self = .none
        case 1: self = .zstd
        case 2: self = .lz4
        default: return nil
        }
    }

    func compress(_ input: Data, level: Int32) throws -> Data {
        switch self {
        case .none:
            return input
        case .zstd:
            return try Zstd.compress(input, level: level, prefix: nil)
        case .lz4:
            let bound = Int(LZ4_compressBound(Int32(input.count)))
            var out = Data(count: max(bound, 1))
            let written = out.withUnsafeMutableBytes { o in
                input.withUnsafeBytes { i in
                    LZ4_compress_default(i.baseAddress?.assumingMemoryBound(to: CChar.self),
                        o.baseAddress?.assumingMemoryBound(to: CChar.self), Int32(input.count), Int32(bound))
                }
            }
            if written <= 0, !input.isEmpty { throw LifeboatError(.internalError, "lz4 compression failed") }
            out.count = Int(written)
            return out
        }
    }

    func decompress(_ input: Data, originalSize: Int, object: String) throws -> Data {
        switch self {
        case .none:
            return input
        case .zstd:
            return try Zstd.decompress(input, originalSize: originalSize, prefix: nil, object: object)
        case .lz4:
            var out = Data(count: originalSize)
            let n = out.withUnsafeMutableBytes { o in
                input.withUnsafeBytes { i in
                    LZ4_decompress_safe(i.baseAddress?.assumingMemoryBound(to: CChar.self),
                        o.baseAddress?.assumingMemoryBound(to: CChar.self), Int32(input.count), Int32(originalSize))
                }
            }
            if Int(n) != originalSize {
                throw LifeboatError(.integrity, "object \(object) does not decompress", hint: "run `lifeboat verify`")
            }
            return out
        }
    }
}

/// Delta compression of a chunk against an older version of it: a zstd frame that uses the base
/// as a prefix, so unchanged runs cost a few bytes. The frame carries zstd's content checksum, so
/// a wrong base is detected on decompression, not written out.
enum ZstdDelta {
    static func compress(_ input: Data, base: Data, level: Int32) throws -> Data {
        try Zstd.compress(input, level: level, prefix: base)
    }

    static func decompress(_ frame: Data, base: Data, originalSize: Int, object: String) throws -> Data {
        try Zstd.decompress(frame, originalSize: originalSize, prefix: base, object: object)
    }
}

/// zstd one-shot (de)compression on pooled contexts, optionally against a prefix (a delta's base:
/// then with zstd's content checksum, so a wrong base is caught on decompression).
enum Zstd {
    /// The output goes into a buffer from malloc, shrunk to the frame's size and handed to the
    /// returned `Data` without a copy: a `Data(count:)` of the bound would zero a chunk's size (and
    /// touch every page of it) for a frame a twentieth of that.
    static func compress(_ input: Data, level: Int32, prefix: Data?) throws -> Data {
        let bound = ZSTD_compressBound(input.count)
        guard let out = malloc(max(bound, 1)) else { throw LifeboatError(.internalError, "out of memory compressing \(input.count) bytes") }
        var owned = true
        defer { if owned { free(out) } }
        let written = try ZstdContexts.shared.withCompressor { cctx -> Int in
            ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters)
            ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level)
            let run = { () -> Int in
                input.withUnsafeBytes { i in ZSTD_compress2(cctx, out, bound, i.baseAddress, input.count) }
            }
            guard let prefix else { return run() }
            ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1)
            return prefix.withUnsafeBytes { b -> Int in
                let r = ZSTD_CCtx_refPrefix(cctx, b.baseAddress, prefix.count)
                return ZSTD_isError(r) != 0 ? r : run()
            }
        }
        if ZSTD_isError(written) != 0 {
            throw LifeboatError(.internalError, "zstd compression failed: \(String(cString: ZSTD_getErrorName(written)))")
        }
        // Shrinking keeps the block where it is; the tail goes back to malloc.
        let frame = realloc(out, max(written, 1)) ?? out
        owned = false
        return Data(bytesNoCopy: frame, count: written, deallocator: .free)
    }

    /// Into a buffer from malloc that the returned `Data` takes over (every byte of it is written:
    /// the length is checked), not one zeroed first.
    static func decompress(_ input: Data, originalSize: Int, prefix: Data?, object: String) throws -> Data {
        guard let out = malloc(max(originalSize, 1)) else {
            throw LifeboatError(.internalError, "out of memory decompressing \(object) (\(originalSize) bytes)")
        }
        var owned = true
        defer { if owned { free(out) } }
        let n = try ZstdContexts.shared.withDecompressor { dctx -> Int in
            ZSTD_DCtx_reset(dctx, ZSTD_reset_session_and_parameters)
            let run = { () -> Int in
                input.withUnsafeBytes { i in ZSTD_decompressDCtx(dctx, out, originalSize, i.baseAddress, input.count) }
            }
            guard let prefix else { return run() }
            ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, 30)
            return prefix.withUnsafeBytes { b -> Int in
                let r = ZSTD_DCtx_refPrefix(dctx, b.baseAddress, prefix.count)
                return ZSTD_isError(r) != 0 ? r : run()
            }
        }
        if ZSTD_isError(n) != 0 || n != originalSize {
            throw LifeboatError(.integrity, prefix == nil ? "object \(object) does not decompress" : "object \(object) does not rebuild from its base chunk",
                hint: "run `lifeboat verify`")
        }
        owned = false
        return Data(bytesNoCopy: out, count: originalSize, deallocator: .free)
    }
}

/// The cheaper delta for chunks of equal length: the chunk XOR its base, compressed. PostgreSQL pages
/// stay at their offsets, so a page changed in a few bytes XORs to a run of zeros that zstd squeezes
/// at gigabytes per second (the prefix delta costs a full match search over the base).
enum XORDelta {
    static func apply(_ data: Data, _ base: Data) -> Data {
        var out = data
        out.withUnsafeMutableBytes { (o: UnsafeMutableRawBufferPointer) in
            base.withUnsafeBytes { (b: UnsafeRawBufferPointer) in
                let n = min(o.count, b.count)
                let words = n / 8
                if let ob = o.baseAddress, let bb = b.baseAddress {
                    for i in 0..<words {
                        let x = ob.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self) ^ bb.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)
                        ob.storeBytes(of: x, toByteOffset: i * 8, as: UInt64.self)
                    }
                }
                for i in (words * 8)..<n { o[i] ^= b[i] }
            }
        }
        return out
    }
}

/// zstd contexts kept for reuse: a context allocates megabytes of tables, and allocating them per
/// chunk showed up as page faults in the profile. Each call takes one (or makes one) and returns it;
/// at most `keep` of each kind stay cached, so memory is bounded by the parallelism.
final class ZstdContexts: Sendable {
    static let shared = ZstdContexts()
    private enum Kind { case compressor, decompressor }
    private struct Cached: @unchecked Sendable {
        var shelves: [Kind: [OpaquePointer]] = [:]
    }
    private let cache = Mutex(Cached())
    private let keep = 8

    func withCompressor<R>(_ body: (OpaquePointer) -> R) throws -> R {
        try with(.compressor, create: { ZSTD_createCCtx() }, free: { _ = ZSTD_freeCCtx($0) }, body)
    }

    func withDecompressor<R>(_ body: (OpaquePointer) -> R) throws -> R {
        try with(.decompressor, create: { ZSTD_createDCtx() }, free: { _ = ZSTD_freeDCtx($0) }, body)
    }

    private func with<R>(_ kind: Kind, create: () -> OpaquePointer?,
        free: (OpaquePointer) -> Void, _ body: (OpaquePointer) -> R) throws -> R
    {
        let taken = cache.withLock { $0.shelves[kind]?.popLast() }
        guard let context = taken ?? create() else {
            throw LifeboatError(.internalError, "zstd could not allocate a context: out of memory")
        }
        let result = body(context)
        let kept = cache.withLock { c -> Bool in
            guard c.shelves[kind, default: []].count < keep else { return false }
            c.shelves[kind, default: []].append(context)
            return true
        }
        if !kept { free(context) }
        return result
    }
}

/// zstd streaming compression: text handed in slices (a manifest as it is written) comes out as one
/// frame, so the whole plaintext is never held.
final class ZstdStreamCompressor {
    private let context: OpaquePointer
    private(set) var output = Data()
    private(set) var inputBytes = 0
    private var scratch = [UInt8](repeating: 0, count: ZSTD_CStreamOutSize())

    init(level: Int32) throws {
        guard let context = ZSTD_createCCtx() else {
            throw LifeboatError(.internalError, "zstd could not allocate a context: out of memory")
        }
        self.context = context
        ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, level)
        ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1)
    }

    deinit { ZSTD_freeCCtx(context) }

    func append(_ bytes: [UInt8]) throws {
        inputBytes += bytes.count
        try run(bytes, end: false)
    }

    /// Hands over the compressed bytes produced so far (a framed object seals them as they come).
    func takeOutput() -> Data {
        defer { output = Data() }
        return output
    }

    /// Ends the frame and hands it over (the compressor keeps no reference to it).
    func finish() throws -> Data {
        try run([], end: true)
        defer { output = Data() }
        return output
    }

    private func run(_ bytes: [UInt8], end: Bool) throws {
        try bytes.withUnsafeBytes { (source: UnsafeRawBufferPointer) in
            var input = ZSTD_inBuffer(src: source.baseAddress, size: source.count, pos: 0)
            while true {
                let (remaining, produced) = scratch.withUnsafeMutableBytes { (o: UnsafeMutableRawBufferPointer) -> (Int, Int) in
                    var out = ZSTD_outBuffer(dst: o.baseAddress, size: o.count, pos: 0)
                    let r = ZSTD_compressStream2(context, &out, &input, end ? ZSTD_e_end : ZSTD_e_continue)
                    return (r, out.pos)
                }
                if ZSTD_isError(remaining) != 0 {
                    throw LifeboatError(.internalError, "zstd compression failed: \(String(cString: ZSTD_getErrorName(remaining)))")
                }
                output.append(contentsOf: scratch[0..<produced])
                if end ? remaining == 0 : input.pos == input.size { return }
            }
        }
    }
}

/// zstd streaming decompression: a frame read back slice by slice (a manifest as it is parsed), so
/// the whole plaintext is never held. Checks the length the object's header promised.
final class ZstdStreamDecompressor {
    private let context: OpaquePointer
    private var input: Data
    private var inputPosition = 0
    /// More compressed input (the next frame of a framed object), nil at its end.
    private let moreInput: (() throws -> Data?)?
    private var inputEnded: Bool
    private var produced = 0
    private let expected: Int
    private let object: String
    private var finished = false
    private let sliceSize = 256 * 1024
    private var temp = [UInt8](repeating: 0, count: 256 * 1024)

    init(_ input: Data, originalSize: Int, object: String) throws {
        guard let context = ZSTD_createDCtx() else {
            throw LifeboatError(.internalError, "zstd could not allocate a context: out of memory")
        }
        self.context = context
        self.input = input
        self.moreInput = nil
        self.inputEnded = true
        self.expected = originalSize
        self.object = object
    }

    /// Input handed over piece by piece by `next` (nil when there is no more).
    init(originalSize: Int, object: String, next: @escaping () throws -> Data?) throws {
        guard let context = ZSTD_createDCtx() else {
            throw LifeboatError(.internalError, "zstd could not allocate a context: out of memory")
        }
        self.context = context
        self.input = Data()
        self.moreInput = next
        self.inputEnded = false
        self.expected = originalSize
        self.object = object
    }

    deinit { ZSTD_freeDCtx(context) }

    /// Replaces `buffer` with the next bytes; leaves it empty at the end of the frame.
    func refill(_ buffer: inout [UInt8]) throws {
        buffer.removeAll(keepingCapacity: true)
        guard !finished else { return }
        buffer.reserveCapacity(sliceSize)
        var written = 0
        var last = 1
        while true {
            if inputPosition == input.count, !inputEnded, let moreInput {
                if let next = try moreInput() {
                    input = next
                    inputPosition = 0
                } else {
                    inputEnded = true
                }
            }
            let startWritten = written
            try input.withUnsafeBytes { (source: UnsafeRawBufferPointer) in
                var inBuf = ZSTD_inBuffer(src: source.baseAddress, size: source.count, pos: inputPosition)
                try temp.withUnsafeMutableBytes { (o: UnsafeMutableRawBufferPointer) in
                    var outBuf = ZSTD_outBuffer(dst: o.baseAddress, size: o.count, pos: written)
                    while outBuf.pos < outBuf.size {
                        let r = ZSTD_decompressStream(context, &outBuf, &inBuf)
                        if ZSTD_isError(r) != 0 {
                            throw LifeboatError(.integrity, "object \(object) does not decompress", hint: "run `lifeboat verify`")
                        }
                        last = r
                        if r == 0 || (inBuf.pos == inBuf.size && outBuf.pos < outBuf.size) { break }
                    }
                    written = outBuf.pos
                }
                inputPosition = inBuf.pos
            }
            // Output full, the frame ended, or the input is used up for good: hand over what there is.
            if written == temp.count || last == 0 || (inputPosition == input.count && inputEnded) { break }
            // Input used up but more may come: go on with the next piece (nothing lost if none was made).
            if inputPosition == input.count { continue }
            if written == startWritten { break }
        }
        buffer.append(contentsOf: temp[0..<written])
        produced += written
        if last == 0 || inputPosition == input.count && inputEnded && written == 0 {
            finished = true
            if last == 0, inputPosition == input.count, !inputEnded, let moreInput {
                // Nothing may follow the frame.
                while let extra = try moreInput() {
                    guard extra.isEmpty else {
                        throw LifeboatError(.integrity, "object \(object) has bytes after its compressed frame", hint: "run `lifeboat verify`")
                    }
                }
                inputEnded = true
            }
            guard last == 0, inputPosition == input.count, inputEnded, produced == expected else {
                throw LifeboatError(.integrity, "object \(object) does not decompress to its recorded length", hint: "run `lifeboat verify`")
            }
        }
    }
}

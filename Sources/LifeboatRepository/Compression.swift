import CLZ4
import CZstd
import Foundation
import LifeboatCore

/// The compression applied to each object before encryption.
public enum CompressionAlgorithm: String, Codable, Sendable, CaseIterable {
    case zstd
    case lz4
    case none

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
            let bound = ZSTD_compressBound(input.count)
            var out = Data(count: bound)
            let written = out.withUnsafeMutableBytes { o in
                input.withUnsafeBytes { i in
                    ZSTD_compress(o.baseAddress, bound, i.baseAddress, input.count, level)
                }
            }
            if ZSTD_isError(written) != 0 {
                throw LifeboatError(.internalError, "zstd compression failed: \(String(cString: ZSTD_getErrorName(written)))")
            }
            out.count = written
            return out
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
            var out = Data(count: originalSize)
            let n = out.withUnsafeMutableBytes { o in
                input.withUnsafeBytes { i in ZSTD_decompress(o.baseAddress, originalSize, i.baseAddress, input.count) }
            }
            if ZSTD_isError(n) != 0 || n != originalSize {
                throw LifeboatError(.integrity, "object \(object) does not decompress", hint: "run `lifeboat verify`")
            }
            return out
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
        guard let cctx = ZSTD_createCCtx() else { throw LifeboatError(.internalError, "zstd: out of memory") }
        defer { ZSTD_freeCCtx(cctx) }
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level)
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1)
        let bound = ZSTD_compressBound(input.count)
        var out = Data(count: bound)
        let written = base.withUnsafeBytes { b -> Int in
            let r = ZSTD_CCtx_refPrefix(cctx, b.baseAddress, base.count)
            if ZSTD_isError(r) != 0 { return r }
            return out.withUnsafeMutableBytes { o in
                input.withUnsafeBytes { i in ZSTD_compress2(cctx, o.baseAddress, bound, i.baseAddress, input.count) }
            }
        }
        if ZSTD_isError(written) != 0 {
            throw LifeboatError(.internalError, "zstd delta compression failed: \(String(cString: ZSTD_getErrorName(written)))")
        }
        out.count = written
        return out
    }

    static func decompress(_ frame: Data, base: Data, originalSize: Int, object: String) throws -> Data {
        guard let dctx = ZSTD_createDCtx() else { throw LifeboatError(.internalError, "zstd: out of memory") }
        defer { ZSTD_freeDCtx(dctx) }
        ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, 30)
        var out = Data(count: originalSize)
        let n = base.withUnsafeBytes { b -> Int in
            let r = ZSTD_DCtx_refPrefix(dctx, b.baseAddress, base.count)
            if ZSTD_isError(r) != 0 { return r }
            return out.withUnsafeMutableBytes { o in
                frame.withUnsafeBytes { i in ZSTD_decompressDCtx(dctx, o.baseAddress, originalSize, i.baseAddress, frame.count) }
            }
        }
        if ZSTD_isError(n) != 0 || n != originalSize {
            throw LifeboatError(.integrity, "object \(object) does not rebuild from its base chunk", hint: "run `lifeboat verify`")
        }
        return out
    }
}

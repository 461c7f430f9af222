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

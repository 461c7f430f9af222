import Foundation

/// A manifest's JSON, written and read without Foundation's intermediate trees: the same document
/// `RepositoryJSON` writes and reads (keys in the same sorted order). For a cluster of 80,000 files
/// the encoder's and decoder's trees were most of a backup's peak memory; here the writer hands its
/// text out in slices as it goes (to a streaming compressor) and the reader pulls bytes from a
/// streaming decompressor, so neither the whole text nor a tree of it is ever held.
public enum ManifestJSON {
    /// Bytes handed to the sink at a time.
    public static let sliceSize = 256 * 1024

    /// The whole document (tests, small manifests).
    public static func encode(_ manifest: BackupManifest) -> Data {
        var all = Data()
        encode(manifest) { all.append(contentsOf: $0) }
        return all
    }

    /// Writes the document in slices of about `sliceSize` bytes to `sink`.
    public static func encode(_ manifest: BackupManifest, to sink: ([UInt8]) throws -> Void) rethrows {
        var out = [UInt8]()
        out.reserveCapacity(sliceSize + 4096)
        func flush(_ out: inout [UInt8], force: Bool = false) throws {
            if out.count >= sliceSize || (force && !out.isEmpty) {
                try sink(out)
                out.removeAll(keepingCapacity: true)
            }
        }
        out.append(contentsOf: #"{"backupID":"#.utf8)
        string(manifest.backupID, &out)
        out.append(contentsOf: #","chunkSize":"#.utf8)
        out.append(contentsOf: String(manifest.chunkSize).utf8)
        if let bases = manifest.deltaBases {
            out.append(contentsOf: #","deltaBases":{"#.utf8)
            for (i, key) in bases.keys.sorted().enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                string(key, &out)
                out.append(UInt8(ascii: ":"))
                string(bases[key] ?? "", &out)
                try flush(&out)
            }
            out.append(UInt8(ascii: "}"))
        }
        out.append(contentsOf: #","entries":["#.utf8)
        for (i, e) in manifest.entries.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            entry(e, &out)
            try flush(&out)
        }
        out.append(UInt8(ascii: "]"))
        if let externals = manifest.externalFiles {
            out.append(contentsOf: #","externalFiles":["#.utf8)
            for (i, x) in externals.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                out.append(contentsOf: #"{"entry":"#.utf8)
                entry(x.entry, &out)
                out.append(contentsOf: #","originalPath":"#.utf8)
                string(x.originalPath, &out)
                out.append(contentsOf: #","setting":"#.utf8)
                string(x.setting, &out)
                out.append(UInt8(ascii: "}"))
            }
            out.append(UInt8(ascii: "]"))
        }
        if let packed = manifest.packedChunks {
            out.append(contentsOf: #","packedChunks":{"#.utf8)
            for (i, key) in packed.keys.sorted().enumerated() {
                guard let p = packed[key] else { continue }
                if i > 0 { out.append(UInt8(ascii: ",")) }
                string(key, &out)
                out.append(contentsOf: #":{"length":"#.utf8)
                out.append(contentsOf: String(p.length).utf8)
                out.append(contentsOf: #","offset":"#.utf8)
                out.append(contentsOf: String(p.offset).utf8)
                out.append(contentsOf: #","pack":"#.utf8)
                string(p.pack, &out)
                out.append(UInt8(ascii: "}"))
                try flush(&out)
            }
            out.append(UInt8(ascii: "}"))
        }
        out.append(UInt8(ascii: "}"))
        try flush(&out, force: true)
    }

    // MARK: - a manifest written while its backup runs

    /// The document's start, up to the entries array's opening bracket.
    public static func streamHeader(backupID: String, chunkSize: Int, _ out: inout [UInt8]) {
        out.append(contentsOf: #"{"backupID":"#.utf8)
        string(backupID, &out)
        out.append(contentsOf: #","chunkSize":"#.utf8)
        out.append(contentsOf: String(chunkSize).utf8)
        out.append(contentsOf: #","entries":["#.utf8)
    }

    /// One entry of the array, with the comma before it unless it is the first.
    public static func streamEntry(_ e: ManifestEntry, first: Bool, _ out: inout [UInt8]) {
        if !first { out.append(UInt8(ascii: ",")) }
        entry(e, &out)
    }

    /// The rest after the last entry: delta bases, external files and packed chunks (known only
    /// once every file is stored, so they follow the entries; readers take keys in any order).
    public static func streamTrailer(deltaBases: [String: String], externalFiles: [ExternalFile], packedChunks: [String: PackedChunk],
        _ out: inout [UInt8], flush: (inout [UInt8]) throws -> Void) throws
    {
        let sorted = packedChunks.keys.sorted().lazy.compactMap { key in packedChunks[key].map { (key, $0) } }
        try streamTrailer(deltaBases: deltaBases, externalFiles: externalFiles, packedChunks: sorted, &out, flush: flush)
    }

    /// The same, the packed chunks (ids ascending) made one at a time by a sequence, so the writer
    /// need not hold them as a dictionary of strings.
    public static func streamTrailer<Packed: Sequence>(deltaBases: [String: String], externalFiles: [ExternalFile],
        packedChunks: Packed, _ out: inout [UInt8], flush: (inout [UInt8]) throws -> Void) throws
    where Packed.Element == (String, PackedChunk) {
        out.append(UInt8(ascii: "]"))
        if !deltaBases.isEmpty {
            out.append(contentsOf: #","deltaBases":{"#.utf8)
            for (i, key) in deltaBases.keys.sorted().enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                string(key, &out)
                out.append(UInt8(ascii: ":"))
                string(deltaBases[key] ?? "", &out)
                try flush(&out)
            }
            out.append(UInt8(ascii: "}"))
        }
        if !externalFiles.isEmpty {
            out.append(contentsOf: #","externalFiles":["#.utf8)
            for (i, x) in externalFiles.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                out.append(contentsOf: #"{"entry":"#.utf8)
                entry(x.entry, &out)
                out.append(contentsOf: #","originalPath":"#.utf8)
                string(x.originalPath, &out)
                out.append(contentsOf: #","setting":"#.utf8)
                string(x.setting, &out)
                out.append(UInt8(ascii: "}"))
            }
            out.append(UInt8(ascii: "]"))
        }
        var first = true
        for (key, p) in packedChunks {
            out.append(contentsOf: first ? Array(#","packedChunks":{"#.utf8) : [UInt8(ascii: ",")])
            first = false
            string(key, &out)
            out.append(contentsOf: #":{"length":"#.utf8)
            out.append(contentsOf: String(p.length).utf8)
            out.append(contentsOf: #","offset":"#.utf8)
            out.append(contentsOf: String(p.offset).utf8)
            out.append(contentsOf: #","pack":"#.utf8)
            string(p.pack, &out)
            out.append(UInt8(ascii: "}"))
            try flush(&out)
        }
        if !first { out.append(UInt8(ascii: "}")) }
        out.append(UInt8(ascii: "}"))
    }

    static func entry(_ e: ManifestEntry, _ out: inout [UInt8]) {
        out.append(contentsOf: #"{"chunks":["#.utf8)
        for (i, c) in e.chunks.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            string(c, &out)
        }
        out.append(contentsOf: #"],"mode":"#.utf8)
        out.append(contentsOf: String(e.mode).utf8)
        out.append(contentsOf: #","modified":"#.utf8)
        string(Timestamp.format(e.modified), &out)
        out.append(contentsOf: #","path":"#.utf8)
        string(e.path, &out)
        out.append(contentsOf: #","size":"#.utf8)
        out.append(contentsOf: String(e.size).utf8)
        if let target = e.target {
            out.append(contentsOf: #","target":"#.utf8)
            string(target, &out)
        }
        out.append(contentsOf: #","type":"#.utf8)
        string(e.type.rawValue, &out)
        out.append(UInt8(ascii: "}"))
    }

    /// A JSON string literal (quotes, backslashes and control characters escaped; UTF-8 as is).
    static func string(_ s: String, _ out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0x0A: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(byte >> 4)], hex[Int(byte & 15)]])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

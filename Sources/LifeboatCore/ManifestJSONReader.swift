import Foundation

/// Reads a manifest's JSON (as `ManifestJSON` or `RepositoryJSON` wrote it) from bytes pulled slice
/// by slice, building the manifest directly: no tree of the document, no copy of its whole text.
/// Chunk ids named twice (a file's chunk and its pack location) share one string, and a pack's id
/// one string for all its chunks. Keys it does not know are skipped, as `JSONDecoder` would.
public struct ManifestJSONReader {
    /// Puts the next bytes of the document into the (emptied) buffer; leaves it empty at the end.
    public typealias Refill = (inout [UInt8]) throws -> Void

    public struct ParseError: Error, CustomStringConvertible {
        public var description: String
    }

    private var buffer: [UInt8] = []
    private var position = 0
    private var consumed = 0
    private let refill: Refill
    private var chunkIDs: Set<String> = []
    private var packIDs: Set<String> = []
    private var scratch: [UInt8] = []
    /// Whether chunk ids named twice share one string: a reader that keeps entries wants it; one
    /// that hands each entry and packed chunk on (and keeps them in another form) does not, since
    /// the table would hold every id of the manifest until the end.
    private let interning: Bool

    public init(interning: Bool = true, refill: @escaping Refill) {
        self.interning = interning
        self.refill = refill
    }

    /// Reads a whole document held in memory.
    public static func decode(_ data: Data) throws -> BackupManifest {
        var given = false
        var reader = ManifestJSONReader { buffer in
            guard !given else { return }
            given = true
            buffer.append(contentsOf: data)
        }
        return try reader.manifest()
    }

    /// The manifest; with `eachEntry`, its entries are handed over one by one as they are read and
    /// the returned manifest has none (a caller that keeps only what it needs of each); with
    /// `eachPackedChunk` the same for its packed chunks' locations.
    public mutating func manifest(eachEntry: ((ManifestEntry) throws -> Void)? = nil,
        eachPackedChunk: ((String, PackedChunk) throws -> Void)? = nil) throws -> BackupManifest
    {
        var backupID: String?
        var chunkSize: Int?
        var entries: [ManifestEntry] = []
        var deltaBases: [String: String]?
        var externals: [ExternalFile]?
        var packed: [String: PackedChunk]?
        try object { reader, key in
            switch key {
            case "backupID": backupID = try reader.string()
            case "chunkSize": chunkSize = Int(try reader.integer())
            case "entries":
                try reader.array { reader in
                    let entry = try reader.entry()
                    if let eachEntry { try eachEntry(entry) } else { entries.append(entry) }
                }
            case "deltaBases":
                guard try !reader.null() else { return }
                var bases: [String: String] = [:]
                try reader.object { reader, id in bases[reader.intern(id)] = reader.intern(try reader.string()) }
                deltaBases = bases
            case "externalFiles":
                guard try !reader.null() else { return }
                var list: [ExternalFile] = []
                try reader.array { reader in list.append(try reader.externalFile()) }
                externals = list
            case "packedChunks":
                guard try !reader.null() else { return }
                var locations: [String: PackedChunk] = [:]
                try reader.object { reader, id in
                    let location = try reader.packedChunk()
                    if let eachPackedChunk { try eachPackedChunk(id, location) } else { locations[reader.intern(id)] = location }
                }
                packed = eachPackedChunk == nil ? locations : nil
            default: try reader.skipValue()
            }
        }
        try skipWhitespace()
        guard try peek() == nil else { throw fail("text after the manifest") }
        guard let backupID, let chunkSize else { throw fail("the manifest lacks backupID or chunkSize") }
        return BackupManifest(backupID: backupID, chunkSize: chunkSize, entries: entries, deltaBases: deltaBases,
            externalFiles: externals, packedChunks: packed)
    }

    // MARK: - the manifest's parts

    private mutating func entry() throws -> ManifestEntry {
        var path: String?
        var type: ManifestEntry.EntryType?
        var mode: UInt16 = 0
        var size: UInt64 = 0
        var modified: Date?
        var chunks: [String] = []
        var target: String?
        try object { reader, key in
            switch key {
            case "path": path = try reader.string()
            case "type":
                let text = try reader.string()
                guard let t = ManifestEntry.EntryType(rawValue: text) else { throw reader.fail("unknown entry type \(text)") }
                type = t
            case "mode":
                guard let m = UInt16(exactly: try reader.integer()) else { throw reader.fail("mode out of range") }
                mode = m
            case "size":
                guard let s = UInt64(exactly: try reader.integer()) else { throw reader.fail("size out of range") }
                size = s
            case "modified": modified = try Timestamp.parse(try reader.string())
            case "chunks": try reader.array { reader in chunks.append(reader.intern(try reader.string())) }
            case "target": target = try reader.null() ? nil : try reader.string()
            default: try reader.skipValue()
            }
        }
        guard let path, let type, let modified else { throw fail("an entry lacks path, type or modified") }
        return ManifestEntry(path: path, type: type, mode: mode, size: size, modified: modified, chunks: chunks, target: target)
    }

    private mutating func externalFile() throws -> ExternalFile {
        var setting: String?
        var original: String?
        var entry: ManifestEntry?
        try object { reader, key in
            switch key {
            case "setting": setting = try reader.string()
            case "originalPath": original = try reader.string()
            case "entry": entry = try reader.entry()
            default: try reader.skipValue()
            }
        }
        guard let setting, let original, let entry else { throw fail("an external file lacks setting, originalPath or entry") }
        return ExternalFile(setting: setting, originalPath: original, entry: entry)
    }

    private mutating func packedChunk() throws -> PackedChunk {
        var pack: String?
        var offset: Int?
        var length: Int?
        try object { reader, key in
            switch key {
            case "pack":
                let id = try reader.string()
                pack = reader.packIDs.insert(id).memberAfterInsert
            case "offset": offset = Int(exactly: try reader.integer())
            case "length": length = Int(exactly: try reader.integer())
            default: try reader.skipValue()
            }
        }
        guard let pack, let offset, let length else { throw fail("a packed chunk lacks pack, offset or length") }
        return PackedChunk(pack: pack, offset: offset, length: length)
    }

    /// One string per chunk id, however often the manifest names it.
    private mutating func intern(_ id: String) -> String { interning ? chunkIDs.insert(id).memberAfterInsert : id }

    // MARK: - JSON

    private mutating func peek() throws -> UInt8? {
        if position == buffer.count {
            consumed += buffer.count
            buffer.removeAll(keepingCapacity: true)
            position = 0
            try refill(&buffer)
            if buffer.isEmpty { return nil }
        }
        return buffer[position]
    }

    private mutating func next() throws -> UInt8 {
        guard let byte = try peek() else { throw fail("the manifest ends early") }
        position += 1
        return byte
    }

    private mutating func skipWhitespace() throws {
        while let b = try peek(), b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 { position += 1 }
    }

    private mutating func expect(_ byte: UInt8) throws {
        try skipWhitespace()
        let got = try next()
        guard got == byte else { throw fail("expected '\(Character(Unicode.Scalar(byte)))', found '\(Character(Unicode.Scalar(got)))'") }
    }

    /// Consumes `byte` if it comes next.
    private mutating func take(_ byte: UInt8) throws -> Bool {
        try skipWhitespace()
        guard try peek() == byte else { return false }
        position += 1
        return true
    }

    /// Consumes a `null` if it comes next.
    private mutating func null() throws -> Bool {
        try skipWhitespace()
        guard try peek() == UInt8(ascii: "n") else { return false }
        try literal("null")
        return true
    }

    private mutating func literal(_ word: String) throws {
        for expected in word.utf8 where try next() != expected { throw fail("expected \(word)") }
    }

    private mutating func object(_ member: (inout ManifestJSONReader, String) throws -> Void) throws {
        try expect(UInt8(ascii: "{"))
        if try take(UInt8(ascii: "}")) { return }
        repeat {
            try skipWhitespace()
            let key = try string()
            try expect(UInt8(ascii: ":"))
            try skipWhitespace()
            try member(&self, key)
        } while try take(UInt8(ascii: ","))
        try expect(UInt8(ascii: "}"))
    }

    private mutating func array(_ element: (inout ManifestJSONReader) throws -> Void) throws {
        try expect(UInt8(ascii: "["))
        if try take(UInt8(ascii: "]")) { return }
        repeat {
            try skipWhitespace()
            try element(&self)
        } while try take(UInt8(ascii: ","))
        try expect(UInt8(ascii: "]"))
    }

    private mutating func string() throws -> String {
        try expect(UInt8(ascii: "\""))
        scratch.removeAll(keepingCapacity: true)
        while true {
            let b = try next()
            switch b {
            case UInt8(ascii: "\""):
                return String(decoding: scratch, as: UTF8.self)
            case UInt8(ascii: "\\"):
                let e = try next()
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): scratch.append(e)
                case UInt8(ascii: "n"): scratch.append(0x0A)
                case UInt8(ascii: "r"): scratch.append(0x0D)
                case UInt8(ascii: "t"): scratch.append(0x09)
                case UInt8(ascii: "b"): scratch.append(0x08)
                case UInt8(ascii: "f"): scratch.append(0x0C)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800..<0xDC00).contains(scalar) {
                        guard try next() == UInt8(ascii: "\\"), try next() == UInt8(ascii: "u") else { throw fail("a lone surrogate") }
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw fail("a lone surrogate") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let u = Unicode.Scalar(scalar) else { throw fail("an invalid \\u escape") }
                    scratch.append(contentsOf: Array(String(Character(u)).utf8))
                default: throw fail("an invalid escape")
                }
            case 0..<0x20: throw fail("a control character inside a string")
            default: scratch.append(b)
            }
        }
    }

    private mutating func hex4() throws -> UInt32 {
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = try next()
            let d: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c - UInt8(ascii: "A") + 10
            default: throw fail("an invalid \\u escape")
            }
            v = v << 4 | UInt32(d)
        }
        return v
    }

    /// An integer (the manifest has no other numbers; `1.0` or `1e3` is refused).
    private mutating func integer() throws -> Int64 {
        try skipWhitespace()
        var negative = false
        if try peek() == UInt8(ascii: "-") {
            negative = true
            position += 1
        }
        var value: Int64 = 0
        var digits = 0
        while let b = try peek(), b >= UInt8(ascii: "0"), b <= UInt8(ascii: "9") {
            position += 1
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(Int64(b - UInt8(ascii: "0")))
            guard !o1, !o2 else { throw fail("a number out of range") }
            value = a
            digits += 1
        }
        guard digits > 0 else { throw fail("expected a number") }
        if let b = try peek(), b == UInt8(ascii: ".") || b == UInt8(ascii: "e") || b == UInt8(ascii: "E") {
            throw fail("expected an integer")
        }
        return negative ? -value : value
    }

    /// Skips any JSON value (a key a newer writer added).
    private mutating func skipValue() throws {
        try skipWhitespace()
        switch try peek() {
        case UInt8(ascii: "{"): try object { reader, _ in try reader.skipValue() }
        case UInt8(ascii: "["): try array { reader in try reader.skipValue() }
        case UInt8(ascii: "\""): _ = try string()
        case UInt8(ascii: "t"): try literal("true")
        case UInt8(ascii: "f"): try literal("false")
        case UInt8(ascii: "n"): try literal("null")
        case .some:
            // A number, whatever its form.
            let start = consumed + position
            while let b = try peek(), b == UInt8(ascii: "-") || b == UInt8(ascii: "+") || b == UInt8(ascii: ".")
                || b == UInt8(ascii: "e") || b == UInt8(ascii: "E") || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9"))
            {
                position += 1
            }
            guard consumed + position > start else { throw fail("expected a value") }
        case nil: throw fail("the manifest ends early")
        }
    }

    private func fail(_ what: String) -> ParseError {
        ParseError(description: "\(what) at byte \(consumed + position)")
    }
}

import Foundation

/// Reads the records of one WAL segment as PostgreSQL 15 lays them out, to find the few a restore
/// must act on before the server replays them: a `CREATE TABLESPACE` made after the backup would
/// otherwise make the restored server link `pg_tblspc/<oid>` to the original's directory and write
/// into production's files. Pure (bytes in, findings and patched bytes out) and checked against
/// PostgreSQL's own CRC: a record is only ever changed when its CRC proves it was read right.
///
/// Layout (`access/xlog_internal.h`, `access/xlogrecord.h`): 8 KiB pages, each starting with a page
/// header (40 bytes on a segment's first page, 24 on the others) whose `xlp_rem_len` says how many
/// bytes of a record begun earlier continue on it; records are 8-byte aligned, may cross pages, and
/// start with a 24-byte header (`xl_tot_len`, `xl_xid`, `xl_prev`, `xl_info`, `xl_rmid`, 2 bytes of
/// padding, `xl_crc`). The CRC-32C covers the record after its header, then the header up to `xl_crc`.
public struct WALSegmentRecords: Sendable {
    public static let pageSize = 8192
    static let longHeader = 40
    static let shortHeader = 24
    static let recordHeader = 24
    static let tablespaceRmgr: UInt8 = 5
    static let tablespaceCreate: UInt8 = 0x00
    static let magic: UInt16 = 0xD110  // PostgreSQL 15

    /// A `CREATE TABLESPACE` record: where it starts and what it says.
    public struct TablespaceCreate: Sendable, Equatable {
        /// Byte offset of the record's header within the segment.
        public var offset: Int
        public var oid: UInt32
        /// The directory the WAL names (the original cluster's).
        public var location: String
        /// Whether the record continues into the next segment (then it cannot be patched here).
        public var crossesSegment: Bool
    }

    public let bytes: [UInt8]

    public init(_ data: Data) { bytes = Array(data) }

    /// Whether this looks like a PostgreSQL 15 WAL segment (the first page's magic number).
    public var isWAL: Bool { bytes.count >= Self.longHeader && UInt16(bytes[0]) | UInt16(bytes[1]) << 8 == Self.magic }

    func u16(_ o: Int) -> UInt16 { UInt16(bytes[o]) | UInt16(bytes[o + 1]) << 8 }
    func u32(_ o: Int) -> UInt32 { UInt32(bytes[o]) | UInt32(bytes[o + 1]) << 8 | UInt32(bytes[o + 2]) << 16 | UInt32(bytes[o + 3]) << 24 }

    /// The page header length of the page holding byte `offset`.
    func headerLength(page: Int) -> Int { page == 0 ? Self.longHeader : Self.shortHeader }

    /// Physical offsets of `count` logical record bytes starting at physical `from` (skipping page
    /// headers), or nil when they run past the segment.
    func span(from: Int, count: Int) -> [Int]? {
        var out: [Int] = []
        out.reserveCapacity(count)
        var p = from
        while out.count < count {
            if p >= bytes.count { return nil }
            if p % Self.pageSize == 0 { p += headerLength(page: p / Self.pageSize) }
            out.append(p)
            p += 1
        }
        return out
    }

    /// The physical offset `count` logical bytes after `from`, page headers skipped.
    func advance(_ from: Int, by count: Int) -> Int {
        var p = from
        var left = count
        while left > 0 {
            if p % Self.pageSize == 0 { p += headerLength(page: p / Self.pageSize) }
            let room = Self.pageSize - p % Self.pageSize
            let step = min(room, left)
            p += step
            left -= step
        }
        if p % Self.pageSize == 0, p < bytes.count { p += headerLength(page: p / Self.pageSize) }
        return p
    }

    static func align(_ x: Int) -> Int { (x + 7) & ~7 }

    /// Every `CREATE TABLESPACE` record that starts in this segment.
    public func tablespaceCreates() -> [TablespaceCreate] {
        guard isWAL else { return [] }
        var found: [TablespaceCreate] = []
        // The first record starts after the continuation of one begun in an earlier segment.
        let remaining = Int(u32(16))  // xlp_rem_len
        var p = Self.align(advance(Self.longHeader, by: remaining))
        while p + 4 <= bytes.count {
            if p % Self.pageSize == 0 { p += headerLength(page: p / Self.pageSize) }
            // Fast path: the header lies within one page (almost always).
            if p % Self.pageSize + Self.recordHeader <= Self.pageSize, p + Self.recordHeader <= bytes.count {
                let total = Int(u32(p))
                if total < Self.recordHeader { break }
                if bytes[p + 17] == Self.tablespaceRmgr, bytes[p + 16] & 0xF0 == Self.tablespaceCreate {
                    if let all = span(from: p, count: total) {
                        if let create = decodeCreate(at: p, physical: all, total: total) { found.append(create) }
                    } else {
                        found.append(TablespaceCreate(offset: p, oid: 0, location: "", crossesSegment: true))
                    }
                }
                let end = advance(p, by: total)
                if end >= bytes.count { break }
                p = Self.align(end)
                continue
            }
            // A header that does not fit before the page's end continues on the next page.
            guard let header = span(from: p, count: Self.recordHeader) else {
                // The header runs into the next segment: it cannot be a tablespace record we can patch here,
                // but say so if its rmgr byte is readable and is the tablespace manager.
                if let partial = span(from: p, count: 18), bytes[partial[17]] == Self.tablespaceRmgr {
                    found.append(TablespaceCreate(offset: p, oid: 0, location: "", crossesSegment: true))
                }
                break
            }
            let total = Int(UInt32(bytes[header[0]]) | UInt32(bytes[header[1]]) << 8 | UInt32(bytes[header[2]]) << 16
                | UInt32(bytes[header[3]]) << 24)
            // Zeros past the last record (after a WAL switch, or the end of what was written).
            if total < Self.recordHeader { break }
            let info = bytes[header[16]]
            let rmgr = bytes[header[17]]
            if rmgr == Self.tablespaceRmgr, info & 0xF0 == Self.tablespaceCreate {
                if let all = span(from: p, count: total) {
                    if let create = decodeCreate(at: p, physical: all, total: total) { found.append(create) }
                } else {
                    found.append(TablespaceCreate(offset: p, oid: 0, location: "", crossesSegment: true))
                }
            }
            let end = advance(p, by: total)
            if end >= bytes.count { break }
            p = Self.align(end)
        }
        return found
    }

    /// The main data of a tablespace record with no block references: an optional origin or
    /// top-level xid block, then `XLR_BLOCK_ID_DATA_SHORT` (255) + 1-byte length or
    /// `XLR_BLOCK_ID_DATA_LONG` (254) + 4-byte length, then `Oid ts_id; char ts_path[]`.
    func decodeCreate(at offset: Int, physical: [Int], total: Int) -> TablespaceCreate? {
        guard crcMatches(physical, total: total) else { return nil }
        var k = Self.recordHeader
        func byte(_ i: Int) -> UInt8 { bytes[physical[i]] }
        while k < total {
            switch byte(k) {
            case 253: k += 3  // XLR_BLOCK_ID_ORIGIN + RepOriginId
            case 252: k += 5  // XLR_BLOCK_ID_TOPLEVEL_XID + TransactionId
            case 255:
                let length = Int(byte(k + 1))
                return create(offset: offset, physical: physical, dataStart: k + 2, length: length)
            case 254:
                let length = Int(UInt32(byte(k + 1)) | UInt32(byte(k + 2)) << 8 | UInt32(byte(k + 3)) << 16 | UInt32(byte(k + 4)) << 24)
                return create(offset: offset, physical: physical, dataStart: k + 5, length: length)
            default:
                return nil
            }
        }
        return nil
    }

    func create(offset: Int, physical: [Int], dataStart: Int, length: Int) -> TablespaceCreate? {
        guard length > 4, dataStart + length <= physical.count else { return nil }
        let oid = (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[physical[dataStart + $1]]) << (8 * $1) }
        var path: [UInt8] = []
        for i in (dataStart + 4)..<(dataStart + length) {
            let b = bytes[physical[i]]
            if b == 0 { break }
            path.append(b)
        }
        return TablespaceCreate(offset: offset, oid: oid, location: String(decoding: path, as: UTF8.self), crossesSegment: false)
    }

    func crcMatches(_ physical: [Int], total: Int) -> Bool {
        let stored = UInt32(bytes[physical[20]]) | UInt32(bytes[physical[21]]) << 8 | UInt32(bytes[physical[22]]) << 16
            | UInt32(bytes[physical[23]]) << 24
        return Self.crc(bytes, physical, total: total) == stored
    }

    static func crc(_ bytes: [UInt8], _ physical: [Int], total: Int) -> UInt32 {
        var crc = CRC32C()
        for i in recordHeader..<total { crc.update(bytes[physical[i]]) }
        for i in 0..<20 { crc.update(bytes[physical[i]]) }
        return crc.value
    }

    /// This segment with the location of tablespace `create` replaced by `location`, which must have
    /// the same length in bytes; the record's CRC is computed again. Nil when the record cannot be
    /// patched here (it crosses into the next segment) or no longer checks.
    public func replacingLocation(of create: TablespaceCreate, with location: String) -> Data? {
        guard !create.crossesSegment else { return nil }
        let old = Array(create.location.utf8)
        let new = Array(location.utf8)
        guard old.count == new.count, let header = span(from: create.offset, count: Self.recordHeader) else { return nil }
        let total = Int(UInt32(bytes[header[0]]) | UInt32(bytes[header[1]]) << 8 | UInt32(bytes[header[2]]) << 16
            | UInt32(bytes[header[3]]) << 24)
        guard let physical = span(from: create.offset, count: total), crcMatches(physical, total: total) else { return nil }
        // Find the path bytes: the main data after the oid.
        var patched = bytes
        var k = Self.recordHeader
        var dataStart = -1
        while k < total, dataStart < 0 {
            switch bytes[physical[k]] {
            case 253: k += 3
            case 252: k += 5
            case 255: dataStart = k + 2
            case 254: dataStart = k + 5
            default: return nil
            }
        }
        guard dataStart > 0, dataStart + 4 + old.count <= total else { return nil }
        for (i, b) in new.enumerated() { patched[physical[dataStart + 4 + i]] = b }
        let crc = Self.crc(patched, physical, total: total)
        for i in 0..<4 { patched[physical[20 + i]] = UInt8((crc >> (8 * UInt32(i))) & 0xFF) }
        return Data(patched)
    }
}

/// CRC-32C (Castagnoli), reflected, as PostgreSQL's `pg_crc32c`.
public struct CRC32C: Sendable {
    static let table: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0x82F6_3B78 ^ (c >> 1) : c >> 1 }
        return c
    }

    var state: UInt32 = 0xFFFF_FFFF

    public init() {}

    public mutating func update(_ byte: UInt8) {
        state = Self.table[Int((state ^ UInt32(byte)) & 0xFF)] ^ (state >> 8)
    }

    public mutating func update(_ bytes: [UInt8]) { for b in bytes { update(b) } }

    public var value: UInt32 { state ^ 0xFFFF_FFFF }
}

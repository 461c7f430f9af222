import Foundation
import LifeboatCore

/// A chunk id (64 hex digits of an HMAC-SHA256) held as its 32 bytes: a quarter of the memory of
/// the text, which Swift stores out of line (a 64-byte string costs about 112 bytes of heap plus 16
/// inline), so an index of 120,000 chunks takes 4 MiB instead of 15.
public struct ChunkKey: Hashable, Sendable {
    var a: UInt64, b: UInt64, c: UInt64, d: UInt64

    public init?(_ id: String) {
        var w: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        var count = 0
        for byte in id.utf8 {
            let nibble: UInt64
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): nibble = UInt64(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): nibble = UInt64(byte - UInt8(ascii: "a") + 10)
            default: return nil
            }
            switch count / 16 {
            case 0: w.0 = w.0 << 4 | nibble
            case 1: w.1 = w.1 << 4 | nibble
            case 2: w.2 = w.2 << 4 | nibble
            case 3: w.3 = w.3 << 4 | nibble
            default: return nil
            }
            count += 1
        }
        guard count == 64 else { return nil }
        (a, b, c, d) = w
    }

    /// The id's text again.
    public var id: String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(32)
        for word in [a, b, c, d] {
            for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: word >> UInt64(shift))) }
        }
        return Hex.encode(bytes)
    }
}

/// Where packed chunks lie, 16 bytes a chunk beside its 32-byte key: the pack as a number into a
/// table of pack ids (a few hundred chunks share one), offset and length as 32-bit values (a pack
/// is a few MiB), and whether the manifest being written uses the chunk. A location that does not
/// fit (none the pack writer makes) is kept as it is beside them.
///
/// Most entries sit in one array sorted by key (48 bytes each, found by binary search); new ones go
/// to a small dictionary first, merged into the array when it reaches an eighth of it. A dictionary
/// of them all would take up to 2.7 times the bytes (its buckets are a power of two, at most three
/// quarters full) and twice that while it doubles; an array's capacity beyond its count is never
/// touched, so it costs no resident memory.
public struct PackedChunkTable: Sendable {
    struct Slot: Sendable {
        var pack: UInt32
        var offset: UInt32
        var length: UInt32
        var used: Bool
    }

    struct Entry: Sendable {
        var key: ChunkKey
        var slot: Slot
    }

    private var packIDs: [String] = []
    private var packNumbers: [String: UInt32] = [:]
    private var sorted: ContiguousArray<Entry> = []
    private var recent: [ChunkKey: Slot] = [:]
    private var other: [String: PackedChunk] = [:]

    public init() {}

    public var count: Int { sorted.count + recent.count + other.count }

    /// Room for `n` entries in the sorted array, so merging into it never copies it to a larger one
    /// (for a while twice its size); capacity never written costs no resident memory.
    public mutating func reserveCapacity(_ n: Int) { sorted.reserveCapacity(n) }

    /// Adds (or moves) chunk `id` to `location`.
    public mutating func insert(_ id: String, at location: PackedChunk) {
        guard let key = ChunkKey(id), let offset = UInt32(exactly: location.offset), let length = UInt32(exactly: location.length) else {
            other[id] = location
            return
        }
        let number: UInt32
        if let known = packNumbers[location.pack] {
            number = known
        } else {
            number = UInt32(packIDs.count)
            packIDs.append(location.pack)
            packNumbers[location.pack] = number
        }
        if let i = index(key) {
            sorted[i].slot = Slot(pack: number, offset: offset, length: length, used: sorted[i].slot.used)
            return
        }
        recent[key] = Slot(pack: number, offset: offset, length: length, used: recent[key]?.used ?? false)
        if recent.count >= max(4096, sorted.count / 8) { merge() }
    }

    /// Moves the recent entries into the sorted array, merging from its end in place.
    private mutating func merge() {
        guard !recent.isEmpty else { return }
        var incoming = ContiguousArray(recent.map { Entry(key: $0.key, slot: $0.value) })
        recent = [:]
        incoming.sort { $0.key < $1.key }
        var write = sorted.count + incoming.count - 1
        var left = sorted.count - 1
        var right = incoming.count - 1
        guard let filler = incoming.last else { return }
        sorted.append(contentsOf: repeatElement(filler, count: incoming.count))
        while right >= 0 {
            if left >= 0, incoming[right].key < sorted[left].key {
                sorted[write] = sorted[left]
                left -= 1
            } else {
                sorted[write] = incoming[right]
                right -= 1
            }
            write -= 1
        }
    }

    private func index(_ key: ChunkKey) -> Int? {
        var low = 0
        var high = sorted.count
        while low < high {
            let middle = (low + high) / 2
            if sorted[middle].key < key { low = middle + 1 } else { high = middle }
        }
        return low < sorted.count && sorted[low].key == key ? low : nil
    }

    func slot(_ key: ChunkKey) -> Slot? {
        if let slot = recent[key] { return slot }
        return index(key).map { sorted[$0].slot }
    }

    func location(_ key: ChunkKey) -> PackedChunk? { slot(key).map(location(of:)) }
    func location(other id: String) -> PackedChunk? { other[id] }

    func location(of slot: Slot) -> PackedChunk {
        PackedChunk(pack: packIDs[Int(slot.pack)], offset: Int(slot.offset), length: Int(slot.length))
    }

    func contains(_ key: ChunkKey) -> Bool { slot(key) != nil }
    func contains(other id: String) -> Bool { other[id] != nil }

    /// Marks chunk `key` as used by the manifest being written.
    mutating func markUsed(_ key: ChunkKey) {
        if recent[key] != nil {
            recent[key]?.used = true
        } else if let i = index(key) {
            sorted[i].slot.used = true
        }
    }

    /// Every entry in the sorted array (before `usedEntries`).
    mutating func mergeRecent() { merge() }

    /// The used entries, in key order (a 32-byte key orders as its hex text does), once merged.
    var usedEntries: LazyFilterSequence<ContiguousArray<Entry>> { sorted.lazy.filter(\.slot.used) }

    /// Only the packs in `present` (a damaged repository's missing pack does not spread).
    public mutating func keepPacks(in present: Set<String>) {
        let gone = Set(packIDs.indices.filter { !present.contains(packIDs[$0]) }.map { UInt32($0) })
        if !gone.isEmpty {
            sorted.removeAll { gone.contains($0.slot.pack) }
            recent = recent.filter { !gone.contains($0.value.pack) }
        }
        other = other.filter { present.contains($0.value.pack) }
    }
}

/// The packed chunks a manifest lists, ids ascending, each id's text made as it is reached.
public struct UsedPackedChunks: Sequence, Sendable {
    let table: PackedChunkTable
    var otherUsed: [String: PackedChunk] = [:]

    public struct Iterator: IteratorProtocol {
        let chunks: UsedPackedChunks
        var entries: LazyFilterSequence<ContiguousArray<PackedChunkTable.Entry>>.Iterator
        var pending: (String, PackedChunk)?
        var rest: ArraySlice<String>

        public mutating func next() -> (String, PackedChunk)? {
            if pending == nil, let entry = entries.next() {
                pending = (entry.key.id, chunks.table.location(of: entry.slot))
            }
            if let first = rest.first, pending.map({ first < $0.0 }) ?? true {
                // An id that is not a chunk key comes first (none the repository makes).
                rest = rest.dropFirst()
                if let location = chunks.otherUsed[first] { return (first, location) }
                return next()
            }
            defer { pending = nil }
            return pending
        }
    }

    public func makeIterator() -> Iterator {
        Iterator(chunks: self, entries: table.usedEntries.makeIterator(), pending: nil, rest: otherUsed.keys.sorted()[...])
    }
}

extension ChunkKey: Comparable {
    public static func < (l: ChunkKey, r: ChunkKey) -> Bool { (l.a, l.b, l.c, l.d) < (r.a, r.b, r.c, r.d) }
}

/// A repository's chunk objects as the chunk index keeps them (32-byte keys), folded in from the
/// store's listing a page at a time: the listing is never held as text (at 10 TB, some ten million
/// keys of 74 characters).
public struct ChunkListing: Sendable {
    var whole: Set<ChunkKey> = []
    var deltas: [ChunkKey: ChunkKey] = [:]
    /// Ids that are not chunk keys.
    var other = ChunkCatalog()

    public init() {}

    public init(_ catalog: ChunkCatalog) {
        for id in catalog.whole { add(id: id, base: nil) }
        for (id, base) in catalog.deltas { add(id: id, base: base) }
    }

    public var count: Int { whole.count + deltas.count + other.whole.count + other.deltas.count }

    /// A chunk object: whole (`base` nil) or a delta against `base`. Seeing one twice changes nothing.
    public mutating func add(id: String, base: String?) {
        guard let key = ChunkKey(id) else {
            if let base { other.deltas[id] = base } else { other.whole.insert(id) }
            return
        }
        if let base {
            if let baseKey = ChunkKey(base) { deltas[key] = baseKey } else { other.deltas[id] = base }
        } else {
            whole.insert(key)
        }
    }
}

/// Chunks known to be in a repository or being stored by one writer (a backup, a copy), and how each
/// is stored: whole, as a delta against a whole base, or in a pack. Ids are kept as 32-byte keys; an
/// id that is not 64 lower-case hex digits (none the repository makes) is kept as text beside them.
/// A backup's manifest asks it how each chunk it names is stored (`placeInManifest`), which marks the
/// packed ones, so the manifest's list of pack locations is made from here at the end instead of
/// being collected a second time.
public actor ChunkIndex {
    private var whole: Set<ChunkKey> = []
    private var deltas: [ChunkKey: ChunkKey] = [:]
    private var packed: PackedChunkTable
    private var claimed: Set<ChunkKey> = []
    /// Ids that are not chunk keys, by the same four roles.
    private var other = ChunkCatalog()
    private var otherClaimed: Set<String> = []
    private var otherPackedUsed: Set<String> = []

    /// `packed`: chunks known to lie in packs that exist (from the newest backup's manifest: packs
    /// are not listed chunk by chunk).
    public init(_ catalog: ChunkCatalog, packed: [String: PackedChunk] = [:]) {
        var table = PackedChunkTable()
        for (id, location) in packed { table.insert(id, at: location) }
        self.init(ChunkListing(catalog), table: table)
    }

    public init(_ catalog: ChunkCatalog, table: PackedChunkTable) {
        self.init(ChunkListing(catalog), table: table)
    }

    public init(_ listing: ChunkListing, table: PackedChunkTable) {
        whole = listing.whole
        deltas = listing.deltas
        other = listing.other
        packed = table
    }

    /// True if the caller is the first to see `id` and must store it.
    public func claim(_ id: String) -> Bool {
        guard let key = ChunkKey(id) else {
            if other.whole.contains(id) || other.deltas[id] != nil || packed.contains(other: id) { return false }
            return otherClaimed.insert(id).inserted
        }
        if whole.contains(key) || deltas[key] != nil || packed.contains(key) { return false }
        return claimed.insert(key).inserted
    }

    /// Records how a claimed chunk was stored: whole (nil) or as a delta against `base`. The claim
    /// is then dropped: `claimed` holds only chunks being stored, not one key per chunk of the backup.
    public func record(_ id: String, base: String?) {
        guard let key = ChunkKey(id) else {
            if let base { other.deltas[id] = base } else { other.whole.insert(id) }
            otherClaimed.remove(id)
            return
        }
        claimed.remove(key)
        if let base {
            if let baseKey = ChunkKey(base) { deltas[key] = baseKey } else { other.deltas[id] = base }
        } else {
            whole.insert(key)
        }
    }

    /// Whether the repository (or this writer) already holds `id`.
    public func contains(_ id: String) -> Bool {
        guard let key = ChunkKey(id) else {
            return other.whole.contains(id) || other.deltas[id] != nil || packed.contains(other: id) || otherClaimed.contains(id)
        }
        return whole.contains(key) || deltas[key] != nil || packed.contains(key) || claimed.contains(key)
    }

    /// Records a claimed chunk stored in a pack.
    public func record(_ id: String, packedAt location: PackedChunk) {
        packed.insert(id, at: location)
        if let key = ChunkKey(id) { claimed.remove(key) } else { otherClaimed.remove(id) }
    }

    /// Where the manifest of a backup using these chunks reads each of them from a pack: the chunks
    /// stored only in packs (a chunk also stored whole is read whole).
    public func packedLocations(for chunkLists: [[String]]) -> [String: PackedChunk] {
        var result: [String: PackedChunk] = [:]
        for list in chunkLists {
            for id in list {
                if case .packed(let location) = storage(of: id) { result[id] = location }
            }
        }
        return result
    }

    /// The whole chunk a delta of a chunk that replaced `previous` can be based on: `previous` if it is
    /// stored whole, its own base if it is a delta (deltas never chain), nil if it is unknown.
    public func wholeBase(for previous: String) -> String? {
        guard let key = ChunkKey(previous) else {
            return other.whole.contains(previous) ? previous : other.deltas[previous]
        }
        if whole.contains(key) { return previous }
        return deltas[key]?.id ?? other.deltas[previous]
    }

    /// How a backup's manifest must name chunk `id`: read whole, as a delta against a base, from a
    /// pack, or not yet known because the writer that claimed it is still storing it. A chunk stored
    /// whole is read whole even if a pack or a delta holds it too; one the index never saw is whole
    /// (as the listing found it).
    public enum Storage: Sendable, Equatable {
        case whole
        case delta(base: String)
        case packed(PackedChunk)
        case beingStored
    }

    public func storage(of id: String) -> Storage {
        guard let key = ChunkKey(id) else {
            if other.whole.contains(id) { return .whole }
            if let base = other.deltas[id] { return .delta(base: base) }
            if let location = packed.location(other: id) { return .packed(location) }
            return otherClaimed.contains(id) ? .beingStored : .whole
        }
        if whole.contains(key) { return .whole }
        if let base = deltas[key] { return .delta(base: base.id) }
        if let base = other.deltas[id] { return .delta(base: base) }
        if let location = packed.location(key) { return .packed(location) }
        return claimed.contains(key) ? .beingStored : .whole
    }

    /// `storage(of:)` for a chunk the manifest being written names: a packed chunk is marked, to be
    /// listed by `usedPackedChunks()`; a delta's base is returned for the manifest to list.
    public enum Placement: Sendable, Equatable {
        case whole
        case delta(base: String)
        case packed
        case beingStored
    }

    public func placeInManifest(_ id: String) -> Placement {
        switch storage(of: id) {
        case .whole: return .whole
        case .delta(let base): return .delta(base: base)
        case .beingStored: return .beingStored
        case .packed:
            if let key = ChunkKey(id) { packed.markUsed(key) } else { otherPackedUsed.insert(id) }
            return .packed
        }
    }

    /// The packed chunks the manifest being written named, with their locations, in id order.
    public func usedPackedChunks() -> UsedPackedChunks {
        packed.mergeRecent()
        var used = UsedPackedChunks(table: packed)
        for id in otherPackedUsed { used.otherUsed[id] = packed.location(other: id) }
        return used
    }

    /// Chunks stored only as deltas, with their bases.
    public func deltasOnly() -> [String: String] {
        var result: [String: String] = [:]
        for (key, base) in deltas where !whole.contains(key) { result[key.id] = base.id }
        for (id, base) in other.deltas where !other.whole.contains(id) && !(ChunkKey(id).map { whole.contains($0) } ?? false) {
            result[id] = base
        }
        return result
    }
}

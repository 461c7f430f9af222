import Foundation
import LifeboatCore

/// A chunk id (64 hex digits of an HMAC-SHA256) held as its 32 bytes: a quarter of the memory of
/// the text, which Swift stores out of line (a 64-byte string costs about 112 bytes of heap plus 16
/// inline), so an index of 120,000 chunks takes 4 MiB instead of 15.
struct ChunkKey: Hashable, Sendable {
    var a: UInt64, b: UInt64, c: UInt64, d: UInt64

    init?(_ id: String) {
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
    var id: String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(32)
        for word in [a, b, c, d] {
            for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: word >> UInt64(shift))) }
        }
        return Hex.encode(bytes)
    }
}

/// Chunks known to be in a repository or being stored by one writer (a backup, a copy), and how each
/// is stored: whole, as a delta against a whole base, or in a pack. Ids are kept as 32-byte keys; an
/// id that is not 64 lower-case hex digits (none the repository makes) is kept as text beside them.
public actor ChunkIndex {
    private var whole: Set<ChunkKey> = []
    private var deltas: [ChunkKey: ChunkKey] = [:]
    private var packed: [ChunkKey: PackedChunk] = [:]
    private var claimed: Set<ChunkKey> = []
    /// Ids that are not chunk keys, by the same four roles.
    private var other = ChunkCatalog()
    private var otherPacked: [String: PackedChunk] = [:]
    private var otherClaimed: Set<String> = []

    /// `packed`: chunks known to lie in packs that exist (from the newest backup's manifest: packs
    /// are not listed chunk by chunk).
    public init(_ catalog: ChunkCatalog, packed: [String: PackedChunk] = [:]) {
        whole.reserveCapacity(catalog.whole.count)
        for id in catalog.whole {
            if let key = ChunkKey(id) { whole.insert(key) } else { other.whole.insert(id) }
        }
        for (id, base) in catalog.deltas {
            if let key = ChunkKey(id), let baseKey = ChunkKey(base) { deltas[key] = baseKey } else { other.deltas[id] = base }
        }
        self.packed.reserveCapacity(packed.count)
        for (id, location) in packed {
            if let key = ChunkKey(id) { self.packed[key] = location } else { otherPacked[id] = location }
        }
    }

    /// True if the caller is the first to see `id` and must store it.
    public func claim(_ id: String) -> Bool {
        guard let key = ChunkKey(id) else {
            if other.whole.contains(id) || other.deltas[id] != nil || otherPacked[id] != nil { return false }
            return otherClaimed.insert(id).inserted
        }
        if whole.contains(key) || deltas[key] != nil || packed[key] != nil { return false }
        return claimed.insert(key).inserted
    }

    /// Records how a claimed chunk was stored: whole (nil) or as a delta against `base`.
    public func record(_ id: String, base: String?) {
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

    /// Whether the repository (or this writer) already holds `id`.
    public func contains(_ id: String) -> Bool {
        guard let key = ChunkKey(id) else {
            return other.whole.contains(id) || other.deltas[id] != nil || otherPacked[id] != nil || otherClaimed.contains(id)
        }
        return whole.contains(key) || deltas[key] != nil || packed[key] != nil || claimed.contains(key)
    }

    /// Records a claimed chunk stored in a pack.
    public func record(_ id: String, packedAt location: PackedChunk) {
        if let key = ChunkKey(id) { packed[key] = location } else { otherPacked[id] = location }
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
            if let location = otherPacked[id] { return .packed(location) }
            return otherClaimed.contains(id) ? .beingStored : .whole
        }
        if whole.contains(key) { return .whole }
        if let base = deltas[key] { return .delta(base: base.id) }
        if let base = other.deltas[id] { return .delta(base: base) }
        if let location = packed[key] { return .packed(location) }
        return claimed.contains(key) ? .beingStored : .whole
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

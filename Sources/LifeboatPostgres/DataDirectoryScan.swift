import Foundation
import LifeboatCore

#if canImport(Glibc)
import Glibc
#endif

/// Lists what a base backup copies from PGDATA, following PostgreSQL's rules for what to skip
/// ("Making a Base Backup Using the Low Level API"): WAL, temporary and runtime state are left out,
/// their directories kept. Tablespace links in `pg_tblspc` are followed and stored in place.
public enum DataDirectoryScan {
    /// Directories kept empty in a backup.
    static let contentSkipped: Set<String> = [
        "pg_wal", "pg_dynshmem", "pg_notify", "pg_serial", "pg_snapshots", "pg_stat_tmp", "pg_subtrans", "pg_replslot",
    ]
    /// Files at the top level that never belong in a backup.
    static let topLevelSkipped: Set<String> = [
        "postmaster.pid", "postmaster.opts", "backup_label", "backup_label.old", "tablespace_map", "tablespace_map.old",
        "recovery.signal", "standby.signal", "recovery.done",
    ]

    /// One thing to copy: `path` relative to PGDATA, `source` where to read it. Both are made on
    /// demand from the directory's two strings (shared by every item in it) and the item's name,
    /// which is short enough to be stored inline: 120,000 files then cost no string storage each.
    public struct Item: Sendable {
        /// Where its directory is read from, and that directory relative to PGDATA ("" at the top).
        var directory: String
        var parent: String
        var name: String
        /// Read from here instead (a tablespace's link target, a file outside PGDATA).
        var sourceOverride: String?
        public var type: ManifestEntry.EntryType
        public var mode: UInt16
        public var modified: Date
        /// The file's size when scanned (0 for directories).
        public var size: UInt64 = 0

        public var path: String { parent.isEmpty ? name : parent + "/" + name }
        public var source: String { sourceOverride ?? directory + "/" + name }

        init(directory: String, parent: String, name: String, sourceOverride: String? = nil, type: ManifestEntry.EntryType, mode: UInt16,
            modified: Date, size: UInt64 = 0)
        {
            self.directory = directory
            self.parent = parent
            self.name = name
            self.sourceOverride = sourceOverride
            self.type = type
            self.mode = mode
            self.modified = modified
            self.size = size
        }

        /// An item read from anywhere (a configuration file outside PGDATA).
        public init(path: String, source: String, type: ManifestEntry.EntryType, mode: UInt16, modified: Date, size: UInt64 = 0) {
            self.init(directory: "", parent: "", name: path, sourceOverride: source, type: type, mode: mode, modified: modified, size: size)
        }
    }

    /// Every item at once (tests, small directories); a backup walks with `Walk`.
    public static func scan(_ pgdata: String) throws -> [Item] {
        var items: [Item] = []
        var walk = try Walk(pgdata)
        while let item = try walk.next() { items.append(item) }
        return items
    }

    static func isSkipped(relative: String, name: String) -> Bool {
        if relative.isEmpty, topLevelSkipped.contains(name) { return true }
        if name == "pg_internal.init" || name.hasPrefix("pgsql_tmp") { return true }
        return false
    }

    /// The items one at a time, in the order of a depth-first walk with each directory's names
    /// sorted (the order manifests list them in). A directory is listed when the walk enters it, so
    /// what is held is the names of the directories being walked, not an item per file.
    public struct Walk {
        private struct Frame {
            var directory: String
            var relative: String
            var names: [String]
            var next = 0
        }

        private var stack: [Frame] = []
        /// Items that follow the last one returned before the walk goes on (pg_wal's archive_status).
        private var queued: [Item] = []

        public init(_ pgdata: String) throws {
            stack = [try Self.frame(directory: pgdata, relative: "")]
        }

        private static func frame(directory: String, relative: String) throws -> Frame {
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else {
                // A directory dropped while we walk (DROP DATABASE) is not an error: WAL replay recreates the truth.
                if FileManager.default.fileExists(atPath: directory) {
                    throw LifeboatError(.io, "cannot list \(directory)", hint: "check that lifeboat may read the data directory")
                }
                return Frame(directory: directory, relative: relative, names: [])
            }
            return Frame(directory: directory, relative: relative, names: names.sorted())
        }

        /// The next item; nil when the walk is done.
        public mutating func next() throws -> Item? {
            while true {
                if !queued.isEmpty { return queued.removeFirst() }
                guard let top = stack.last else { return nil }
                guard top.next < top.names.count else {
                    stack.removeLast()
                    continue
                }
                let name = top.names[top.next]
                stack[stack.count - 1].next += 1
                let directory = top.directory, relative = top.relative
                if isSkipped(relative: relative, name: name) { continue }
                let rel = relative.isEmpty ? name : relative + "/" + name
                let full = directory + "/" + name
                var st = stat()
                guard lstat(full, &st) == 0 else { continue }
                var kind = st.st_mode & S_IFMT
                var source = full
                if kind == S_IFLNK, relative == "pg_tblspc" {
                    // A tablespace: store its content in place under pg_tblspc/<oid>.
                    guard stat(full, &st) == 0 else { continue }
                    kind = st.st_mode & S_IFMT
                    source = (try? FileManager.default.destinationOfSymbolicLink(atPath: full)).map {
                        $0.hasPrefix("/") ? $0 : directory + "/" + $0
                    } ?? full
                }
                let modified = Date(timeIntervalSince1970: TimeInterval(st.st_mtim.tv_sec) + TimeInterval(st.st_mtim.tv_nsec) / 1e9)
                let mode = UInt16(st.st_mode & 0o7777)
                let override = source == full ? nil : source
                switch kind {
                case S_IFDIR:
                    let item = Item(directory: directory, parent: relative, name: name, sourceOverride: override, type: .directory, mode: mode,
                        modified: modified)
                    if relative.isEmpty, contentSkipped.contains(name) {
                        if name == "pg_wal" {
                            queued.append(Item(directory: source, parent: rel, name: "archive_status", type: .directory, mode: mode, modified: modified))
                        }
                        return item
                    }
                    stack.append(try Self.frame(directory: source, relative: rel))
                    return item
                case S_IFREG:
                    return Item(directory: directory, parent: relative, name: name, sourceOverride: override, type: .file, mode: mode,
                        modified: modified, size: UInt64(max(0, st.st_size)))
                default:
                    continue  // sockets, fifos, other links
                }
            }
        }
    }
}

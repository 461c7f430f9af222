import Foundation

/// Whether a backup follows the schedule and the recovery-window retention (`automated`) or is a
/// tagged snapshot with its own retention (`manual`, the seed's pre-migration snapshots).
public enum BackupKind: String, Codable, Sendable {
    case automated
    case manual
}

/// The summary of one committed backup: the repository object whose presence makes the backup exist.
/// Small, so listing backups never reads file lists.
public struct BackupRecord: Codable, Sendable, Equatable {
    public var id: String
    public var kind: BackupKind
    public var tags: [String: String]
    /// Manual backups: kept until this moment. Automated backups: nil (window-based retention).
    public var retainUntil: Date?
    public var startTime: Date
    public var stopTime: Date
    public var startLSN: LSN
    public var stopLSN: LSN
    public var timeline: UInt32
    /// First transaction id not yet assigned when the backup stopped: any xid at or above it
    /// committed after the backup became consistent.
    public var nextXidAtStop: UInt64?
    public var walSegmentSize: UInt64
    public var postgresVersion: String
    public var systemIdentifier: String
    public var backupLabel: String
    public var tablespaceMap: String
    public var fileCount: Int
    /// Sum of file sizes read from PGDATA.
    public var logicalBytes: UInt64
    /// Bytes of chunk objects this backup added to the repository (after compression and encryption).
    public var newStoredBytes: UInt64
    public var newChunks: Int
    public var totalChunks: Int
    /// Object name of the file list (written before this record).
    public var manifestObject: String
    public var host: String
    public var lifeboatVersion: String
    /// The data directory the backup was read from (nil in backups of lifeboat 0.1).
    public var dataDirectory: String?
    /// The cluster's tablespaces when the backup ran (nil in backups of lifeboat 0.1).
    public var tablespaces: [TablespaceRecord]?
    /// The node the files were read from: the primary, or a standby (nil in older backups).
    public var source: BackupSource?
    /// Files taken over from the previous backup unread: same size and modification time, older
    /// than that backup (nil in older backups).
    public var unchangedFiles: Int?
    /// Pack objects this backup wrote (format 3; nil in older backups).
    public var newPacks: Int?

    public init(id: String, kind: BackupKind, tags: [String: String], retainUntil: Date?, startTime: Date,
        stopTime: Date, startLSN: LSN, stopLSN: LSN, timeline: UInt32, nextXidAtStop: UInt64?,
        walSegmentSize: UInt64, postgresVersion: String, systemIdentifier: String, backupLabel: String,
        tablespaceMap: String, fileCount: Int, logicalBytes: UInt64, newStoredBytes: UInt64, newChunks: Int,
        totalChunks: Int, manifestObject: String, host: String, lifeboatVersion: String)
    {
        self.id = id
        self.kind = kind
        self.tags = tags
        self.retainUntil = retainUntil
        self.startTime = startTime
        self.stopTime = stopTime
        self.startLSN = startLSN
        self.stopLSN = stopLSN
        self.timeline = timeline
        self.nextXidAtStop = nextXidAtStop
        self.walSegmentSize = walSegmentSize
        self.postgresVersion = postgresVersion
        self.systemIdentifier = systemIdentifier
        self.backupLabel = backupLabel
        self.tablespaceMap = tablespaceMap
        self.fileCount = fileCount
        self.logicalBytes = logicalBytes
        self.newStoredBytes = newStoredBytes
        self.newChunks = newChunks
        self.totalChunks = totalChunks
        self.manifestObject = manifestObject
        self.host = host
        self.lifeboatVersion = lifeboatVersion
    }

    /// The tablespace with this name or oid (as `--tablespace-map` names one).
    public func tablespace(named nameOrOID: String) -> TablespaceRecord? {
        tablespaces?.first { $0.name == nameOrOID || String($0.oid) == nameOrOID }
    }

    /// First and last WAL segment the backup needs to become consistent.
    public var startSegment: WALSegment { WALSegment(timeline: timeline, containing: startLSN, segmentSize: walSegmentSize) }
    public var stopSegment: WALSegment {
        // The stop LSN points just past the last record; a stop exactly on a boundary needs no byte
        // of the next segment.
        let last = stopLSN.value > startLSN.value && stopLSN.value % walSegmentSize == 0 ? stopLSN.value - 1 : stopLSN.value
        return WALSegment(timeline: timeline, containing: LSN(last), segmentSize: walSegmentSize)
    }
}

/// A tablespace as a backup saw it.
public struct TablespaceRecord: Codable, Sendable, Equatable {
    public var oid: UInt32
    public var name: String
    /// Where the source cluster kept it.
    public var location: String

    public init(oid: UInt32, name: String, location: String) {
        self.oid = oid
        self.name = name
        self.location = location
    }
}

/// The node a backup's files were read from.
public struct BackupSource: Codable, Sendable, Equatable {
    public enum Role: String, Codable, Sendable {
        case primary
        case standby
    }

    public var role: Role
    /// The node's host, port and data directory, for people.
    public var node: String
    /// For a standby: the primary it followed (host:port), where the WAL switch was done.
    public var primary: String?

    public init(role: Role, node: String, primary: String? = nil) {
        self.role = role
        self.node = node
        self.primary = primary
    }
}

/// A configuration file the server reads from outside its data directory (Debian keeps
/// `postgresql.conf`, `pg_hba.conf` and `pg_ident.conf` in `/etc/postgresql/...`): stored with the
/// backup so a restore on another host has them.
public struct ExternalFile: Codable, Sendable, Equatable {
    /// `config_file`, `hba_file` or `ident_file`.
    public var setting: String
    public var originalPath: String
    public var entry: ManifestEntry

    public init(setting: String, originalPath: String, entry: ManifestEntry) {
        self.setting = setting
        self.originalPath = originalPath
        self.entry = entry
    }

    /// The name the file gets in a restored data directory.
    public var restoredName: String {
        switch setting {
        case "hba_file": return "pg_hba.conf"
        case "ident_file": return "pg_ident.conf"
        default: return "postgresql.conf"
        }
    }
}

/// One entry of a backup's file list, relative to PGDATA.
public struct ManifestEntry: Codable, Sendable, Equatable {
    public enum EntryType: String, Codable, Sendable {
        case file
        case directory
        case symlink
    }

    public var path: String
    public var type: EntryType
    public var mode: UInt16
    public var size: UInt64
    public var modified: Date
    /// Chunk ids in order; each covers `chunkSize` bytes except the last.
    public var chunks: [String]
    /// Symlink target (only for `symlink`).
    public var target: String?

    public init(path: String, type: EntryType, mode: UInt16, size: UInt64, modified: Date, chunks: [String], target: String? = nil) {
        self.path = path
        self.type = type
        self.mode = mode
        self.size = size
        self.modified = modified
        self.chunks = chunks
        self.target = target
    }
}

/// The file list of a backup.
public struct BackupManifest: Codable, Sendable, Equatable {
    public var backupID: String
    public var chunkSize: Int
    public var entries: [ManifestEntry]
    /// Chunks this backup uses that are stored as a delta against another chunk: chunk id to base id.
    /// Absent from repositories of format 1 and from backups without deltas.
    public var deltaBases: [String: String]?
    /// Configuration files read from outside the data directory.
    public var externalFiles: [ExternalFile]?
    /// Chunks this backup uses that are stored inside a pack (format 3: small files), by chunk id.
    public var packedChunks: [String: PackedChunk]?

    public init(backupID: String, chunkSize: Int, entries: [ManifestEntry], deltaBases: [String: String]? = nil,
        externalFiles: [ExternalFile]? = nil, packedChunks: [String: PackedChunk]? = nil)
    {
        self.backupID = backupID
        self.chunkSize = chunkSize
        self.entries = entries
        self.deltaBases = deltaBases
        self.externalFiles = externalFiles
        self.packedChunks = packedChunks
    }

    /// Tablespace oids whose files the backup holds (`pg_tblspc/<oid>` entries).
    public var tablespaceOIDs: [UInt32] {
        entries.compactMap { e -> UInt32? in
            let parts = e.path.split(separator: "/")
            guard parts.count == 2, parts[0] == "pg_tblspc", e.type != .file else { return nil }
            return UInt32(parts[1])
        }
    }

    /// The base of chunk `id` if this backup uses it as a delta.
    public func deltaBase(of id: String) -> String? { deltaBases?[id] }

    /// Where chunk `id` lies if this backup reads it from a pack.
    public func packedChunk(_ id: String) -> PackedChunk? { packedChunks?[id] }

    /// Every chunk id the backup uses: its files' and its external configuration files'.
    public var allChunkIDs: [[String]] { entries.map(\.chunks) + (externalFiles ?? []).map(\.entry.chunks) }
}

/// A chunk stored inside a pack object: the pack's id, and where the chunk's sealed bytes lie in it.
public struct PackedChunk: Codable, Sendable, Equatable, Hashable {
    public var pack: String
    public var offset: Int
    public var length: Int

    public init(pack: String, offset: Int, length: Int) {
        self.pack = pack
        self.offset = offset
        self.length = length
    }
}

/// JSON coding used for every structured object in the repository: ISO 8601 dates, sorted keys,
/// so identical content always encodes to identical bytes.
public enum RepositoryJSON {
    public static func encoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .custom { date, encoder in
            var c = encoder.singleValueContainer()
            try c.encode(Timestamp.format(date))
        }
        e.outputFormatting = [.sortedKeys]
        return e
    }

    public static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .custom { decoder in
            let text = try decoder.singleValueContainer().decode(String.self)
            return try Timestamp.parse(text)
        }
        return d
    }
}

import Foundation
import LifeboatCore
import LifeboatFileSystem
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Keeps a restored server out of the original cluster's tablespaces. Tablespaces in the backup are
/// restored into directories of the restore's own (`RestoreEngine`); a tablespace *created in the
/// WAL after the backup* would be recreated by replay as `pg_tblspc/<oid>` linked to the location
/// the WAL names: the original's, so the restored copy would write into production's files (or, on
/// another host, fail). Every WAL segment handed to the recovering server passes through here:
/// a `CREATE TABLESPACE` record's location is replaced by a path of the same length that leads to
/// the restore's own directory (`--tablespace-map OID=DIR`, else `<destination>.tablespaces/<oid>`),
/// and the record's CRC is computed again. When recovery ends, `pg_tblspc/<oid>` is pointed at the
/// directory directly. What cannot be redirected safely stops recovery (exit status 127 from
/// `restore_command`, which PostgreSQL treats as fatal) instead of writing outside the restore.
public struct TablespaceGuard: Sendable {
    /// The restore's decisions, written beside the recovering cluster's WAL
    /// (`pg_wal/.lifeboat-recovery/tablespaces.json`; `pg_wal` is never backed up).
    public struct Plan: Codable, Sendable, Equatable {
        public var dataDirectory: String
        /// Tablespace oid to directory, for those the restore mapped or restored.
        public var directories: [String: String]
        /// Where unmapped tablespaces created in the WAL go: `<this>/<oid>`.
        public var defaultParent: String
    }

    /// One redirection done, for the end of recovery and the report.
    public struct Redirect: Codable, Sendable, Equatable {
        public var oid: UInt32
        public var originalLocation: String
        public var directory: String
        /// The same-length path written into the WAL record (the directory padded, or a link to it).
        public var walLocation: String
        /// A symlink made to reach `directory` within the original path's length.
        public var alias: String?
    }

    public static let directoryName = ".lifeboat-recovery"
    public let recoveryDirectory: String
    public let plan: Plan

    public init(recoveryDirectory: String, plan: Plan) {
        self.recoveryDirectory = recoveryDirectory
        self.plan = plan
    }

    /// The recovery directory of a data directory.
    public static func recoveryDirectory(dataDirectory: String) -> String { dataDirectory + "/pg_wal/" + directoryName }

    static func planPath(_ dir: String) -> String { dir + "/tablespaces.json" }
    static func redirectsPath(_ dir: String) -> String { dir + "/redirects.json" }

    /// Writes the plan for a restore (before the server starts).
    public static func write(_ plan: Plan, owner: FileIO.Owner?) throws {
        let dir = recoveryDirectory(dataDirectory: plan.dataDirectory)
        try FileIO.makeDirectory(dir, mode: 0o700, owner: owner)
        try FileIO.replaceAtomically(planPath(dir), with: try JSONEncoder().encode(plan), mode: 0o600, owner: owner)
    }

    /// The guard for a `restore_command` destination (`%p`, `pg_wal/RECOVERYXLOG` relative to the
    /// data directory) or a spool file in `pg_wal/...`; nil when no restore planned one (a cluster
    /// recovering by other means).
    public static func forDestination(_ destination: String) throws -> TablespaceGuard? {
        var dir = (destination as NSString).deletingLastPathComponent
        if (dir as NSString).lastPathComponent == WALPrefetchSpool.directoryName { dir = (dir as NSString).deletingLastPathComponent }
        let recovery = (dir.isEmpty ? "." : dir) + "/" + directoryName
        guard FileManager.default.fileExists(atPath: planPath(recovery)) else { return nil }
        return TablespaceGuard(recoveryDirectory: recovery,
            plan: try JSONDecoder().decode(Plan.self, from: try FileIO.read(planPath(recovery))))
    }

    public static func forDataDirectory(_ dataDirectory: String) throws -> TablespaceGuard? {
        try forDestination(dataDirectory + "/pg_wal/RECOVERYXLOG")
    }

    /// Redirections made so far in this recovery.
    public func redirects() -> [Redirect] {
        (try? JSONDecoder().decode([Redirect].self, from: try FileIO.read(Self.redirectsPath(recoveryDirectory)))) ?? []
    }

    /// The segment `name` as the server may replay it: any `CREATE TABLESPACE` redirected.
    public func process(name: String, data: Data, owner: FileIO.Owner? = nil) throws -> Data {
        guard case .segment? = WALFileName(name) else { return data }
        let records = WALSegmentRecords(data)
        let creates = records.tablespaceCreates()
        guard !creates.isEmpty else { return data }
        var current = data
        var done = redirects()
        for create in creates {
            guard !create.crossesSegment else {
                throw LifeboatError(.recoveryFailed,
                    "WAL segment \(name) holds a CREATE TABLESPACE record that continues into the next segment: lifeboat cannot redirect it, and replaying it would write to the original tablespace's directory",
                    hint: "restore from a backup taken after the tablespace was created, or to a point before segment \(name) (--target-lsn)")
            }
            let directory = plan.directories[String(create.oid)] ?? plan.defaultParent + "/\(create.oid)"
            try FileIO.makeDirectory(directory, mode: 0o700, owner: owner)
            let (walLocation, alias) = try Self.sameLengthPath(to: directory, length: create.location.utf8.count, oid: create.oid,
                aliasParents: [(plan.defaultParent as NSString).deletingLastPathComponent, "/tmp"], owner: owner)
            let current2 = WALSegmentRecords(current)
            guard let fresh = current2.tablespaceCreates().first(where: { $0.offset == create.offset }),
                let patched = current2.replacingLocation(of: fresh, with: walLocation)
            else {
                throw LifeboatError(.recoveryFailed, "cannot redirect the CREATE TABLESPACE record of tablespace \(create.oid) in \(name)",
                    hint: "restore from a backup taken after the tablespace was created")
            }
            current = patched
            if !done.contains(where: { $0.oid == create.oid }) {
                done.append(Redirect(oid: create.oid, originalLocation: create.location, directory: directory, walLocation: walLocation, alias: alias))
            }
        }
        try FileIO.replaceAtomically(Self.redirectsPath(recoveryDirectory), with: try JSONEncoder().encode(done), mode: 0o600, owner: owner)
        return current
    }

    /// A path of exactly `length` bytes that leads to `directory`: the directory itself with its
    /// separators doubled to pad it, or, when it is longer, a symlink to it in a shorter place,
    /// padded the same way.
    static func sameLengthPath(to directory: String, length: Int, oid: UInt32, aliasParents: [String], owner: FileIO.Owner?) throws
        -> (path: String, alias: String?)
    {
        if let padded = pad(directory, to: length) { return (padded, nil) }
        for parent in aliasParents where !parent.isEmpty && FileManager.default.isWritableFile(atPath: parent) {
            let base = parent.hasSuffix("/") ? String(parent.dropLast()) : parent
            for name in [".lb\(oid)", "lb\(oid)", "t\(oid)"] {
                let alias = base + "/" + name
                guard alias.utf8.count <= length else { continue }
                unlink(alias)
                guard symlink(directory, alias) == 0 else { continue }
                if let owner { _ = lchown(alias, owner.uid, owner.gid) }
                if let padded = pad(alias, to: length) { return (padded, alias) }
            }
        }
        throw LifeboatError(.recoveryFailed,
            "tablespace \(oid) was created after the backup at a location of \(length) characters; lifeboat cannot give the restored copy a path that short",
            hint: "restore from a backup taken after the tablespace was created, or to a point before its creation")
    }

    /// `path` with `/` repeated after its first component until it is `length` bytes long; nil if it is longer.
    static func pad(_ path: String, to length: Int) -> String? {
        let count = path.utf8.count
        guard count <= length, path.hasPrefix("/"), length - count < 4000 else { return nil }
        if count == length { return path }
        let components = path.split(separator: "/", omittingEmptySubsequences: true)
        guard let first = components.first else { return nil }
        let rest = components.dropFirst().joined(separator: "/")
        let padding = String(repeating: "/", count: length - count)
        return rest.isEmpty ? "/" + first + padding : "/" + first + "/" + padding + rest
    }

    /// At the end of recovery: `pg_tblspc/<oid>` points straight at each redirected directory and
    /// the aliases are gone. Idempotent.
    public func finish() {
        for r in redirects() {
            let link = plan.dataDirectory + "/pg_tblspc/\(r.oid)"
            let temp = link + ".lifeboat-new"
            unlink(temp)
            if symlink(r.directory, temp) == 0 { rename(temp, link) }
            if let alias = r.alias { unlink(alias) }
        }
    }
}

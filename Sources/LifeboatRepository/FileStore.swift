import Foundation
import LifeboatCore
import LifeboatFileSystem

#if canImport(Glibc)
import Glibc
#endif

/// An `ObjectStore` in a local directory. Writes go to a temporary file that is fsynced and then
/// linked (create-if-absent) or renamed (replace) into place, and the directory is fsynced, so a
/// crash or a full disk never leaves a visible partial object.
///
/// When running as root on a directory owned by another user (the PostgreSQL archiver typically runs
/// as `postgres`), new files and directories are given the directory owner's uid and gid, so both
/// can keep writing.
public struct FileStore: ObjectStore {
    public let root: String
    private let owner: (uid: uid_t, gid: gid_t)?
    /// Append-only mode: an object may not be deleted until this long after it was written.
    public var appendOnlyRetention: TimeInterval?

    public var location: String { root }

    public init(root: String) {
        self.root = root.hasSuffix("/") && root.count > 1 ? String(root.dropLast()) : root
        var st = stat()
        if geteuid() == 0, stat(self.root, &st) == 0, st.st_uid != 0 {
            owner = (st.st_uid, st.st_gid)
        } else {
            owner = nil
        }
    }

    private func path(_ key: String) -> String { root + "/" + key }

    public func putIfAbsent(_ key: String, data: Data, class objectClass: ObjectClass) async throws -> Bool {
        let final = path(key)
        let temp = try writeTemp(for: final, data: data)
        defer { unlink(temp) }
        if link(temp, final) != 0 {
            let err = errno
            if err == EEXIST { return false }
            throw FileIO.error("could not store \(key)", errno: err, path: final)
        }
        try FileIO.fsyncDirectory(containing: final)
        return true
    }

    public func localFile(_ key: String) -> String? { path(key) }

    public func removeAbandonedPartials(olderThan: Date) async throws -> (files: Int, bytes: Int) {
        var files = 0
        var bytes = 0
        func sweep(_ dirPath: String) {
            guard let dir = opendir(dirPath) else { return }
            defer { closedir(dir) }
            while let entry = readdir(dir) {
                let name = withUnsafePointer(to: entry.pointee.d_name) {
                    $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
                }
                if name == "." || name == ".." { continue }
                let full = dirPath + "/" + name
                var st = stat()
                guard lstat(full, &st) == 0 else { continue }
                if (st.st_mode & S_IFMT) == S_IFDIR {
                    sweep(full)
                } else if (st.st_mode & S_IFMT) == S_IFREG, name.hasPrefix(".tmp-"),
                    TimeInterval(st.st_mtim.tv_sec) < olderThan.timeIntervalSince1970, unlink(full) == 0
                {
                    files += 1
                    bytes += Int(st.st_size)
                }
            }
        }
        sweep(root)
        return (files, bytes)
    }

    /// A `.tmp-` file in the object's own directory (listings skip those), so storing it is a link.
    public func makeSpoolFile(for key: String) throws -> StoreSpoolFile? {
        let dir = (path(key) as NSString).deletingLastPathComponent
        try ensureDirectory(dir)
        let temp = dir + "/.tmp-" + UUID().uuidString
        let fd = open(temp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o640)
        if fd < 0 { throw FileIO.error("could not create a file", errno: errno, path: temp) }
        if let owner { _ = fchown(fd, owner.uid, owner.gid) }
        return StoreSpoolFile(path: temp, descriptor: fd)
    }

    public func putIfAbsent(_ key: String, spooledFile: StoreSpoolFile, class objectClass: ObjectClass) async throws -> Bool {
        defer { unlink(spooledFile.path) }
        let final = path(key)
        guard spooledFile.path.hasPrefix((final as NSString).deletingLastPathComponent + "/.tmp-") else {
            throw LifeboatError(.internalError, "\(spooledFile.path) is not a spool file for \(key)")
        }
        // Written and closed by the caller; made durable here, as writeTemp does.
        let fd = open(spooledFile.path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw FileIO.error("could not open", errno: errno, path: spooledFile.path) }
        let synced = fsync(fd)
        let err = errno
        close(fd)
        if synced != 0 { throw FileIO.error("could not fsync", errno: err, path: spooledFile.path) }
        if link(spooledFile.path, final) != 0 {
            let err = errno
            if err == EEXIST { return false }
            throw FileIO.error("could not store \(key)", errno: err, path: final)
        }
        try FileIO.fsyncDirectory(containing: final)
        return true
    }

    public func put(_ key: String, data: Data, class objectClass: ObjectClass) async throws {
        let final = path(key)
        let temp = try writeTemp(for: final, data: data)
        if rename(temp, final) != 0 {
            let err = errno
            unlink(temp)
            throw FileIO.error("could not store \(key)", errno: err, path: final)
        }
        try FileIO.fsyncDirectory(containing: final)
    }

    public func get(_ key: String) async throws -> Data {
        let p = path(key)
        let fd = open(p, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            let err = errno
            if err == ENOENT { throw LifeboatError(.notFound, "object \(key) does not exist in \(root)") }
            throw FileIO.error("could not read \(key)", errno: err, path: p)
        }
        defer { close(fd) }
        return try FileIO.readAll(fd: fd, path: p)
    }

    public func info(_ key: String) async throws -> ObjectInfo? {
        var st = stat()
        if stat(path(key), &st) != 0 {
            if errno == ENOENT { return nil }
            throw FileIO.error("could not stat \(key)", errno: errno, path: path(key))
        }
        return ObjectInfo(key: key, size: Int(st.st_size), modified: Date(timeIntervalSince1970: TimeInterval(st.st_mtim.tv_sec)))
    }

    public func list(prefix: String) async throws -> [ObjectInfo] {
        var result: [ObjectInfo] = []
        try await list(prefix: prefix) { result.append(contentsOf: $0) }
        return result
    }

    /// A page per directory (`chunks/ab/`: one of 256).
    public func list(prefix: String, eachPage: ([ObjectInfo]) throws -> Void) async throws {
        // Walk from the deepest directory the prefix names.
        let dirPart = prefix.contains("/") ? String(prefix[..<(prefix.lastIndex(of: "/") ?? prefix.startIndex)]) : ""
        try walk(relative: dirPart, prefix: prefix, eachPage: eachPage)
    }

    public func delete(_ key: String) async throws {
        if let until = try await protectedUntil(key) {
            throw LifeboatError(.repository, "\(key) is append-only until \(Timestamp.format(until)); not deleted",
                hint: "the repository is append-only (append_only in the configuration)")
        }
        try await deleteBookkeeping(key)
    }

    /// Bookkeeping (locks) is never append-only.
    public func deleteBookkeeping(_ key: String) async throws {
        if unlink(path(key)) != 0, errno != ENOENT {
            throw FileIO.error("could not delete \(key)", errno: errno, path: path(key))
        }
    }

    public var locksObjects: Bool { appendOnlyRetention != nil }

    public func protectedUntil(_ key: String) async throws -> Date? {
        guard let retention = appendOnlyRetention, let info = try await info(key) else { return nil }
        let until = info.modified.addingTimeInterval(retention)
        return until > Date() ? until : nil
    }

    /// True if the directory does not exist or holds nothing.
    public func isEmpty() async throws -> Bool { FileIO.isMissingOrEmptyDirectory(root) }

    // MARK: - helpers

    private func walk(relative: String, prefix: String, eachPage: ([ObjectInfo]) throws -> Void) throws {
        let dirPath = relative.isEmpty ? root : root + "/" + relative
        guard let dir = opendir(dirPath) else {
            if errno == ENOENT || errno == ENOTDIR { return }
            throw FileIO.error("could not list \(relative)", errno: errno, path: dirPath)
        }
        defer { closedir(dir) }
        var result: [ObjectInfo] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name == "." || name == ".." || name.hasPrefix(".tmp-") { continue }
            let key = relative.isEmpty ? name : relative + "/" + name
            var st = stat()
            guard lstat(root + "/" + key, &st) == 0 else { continue }
            if (st.st_mode & S_IFMT) == S_IFDIR {
                if prefix.hasPrefix(key + "/") || (key + "/").hasPrefix(prefix) || key.hasPrefix(prefix) {
                    try walk(relative: key, prefix: prefix, eachPage: eachPage)
                }
            } else if (st.st_mode & S_IFMT) == S_IFREG, key.hasPrefix(prefix) {
                result.append(ObjectInfo(key: key, size: Int(st.st_size), modified: Date(timeIntervalSince1970: TimeInterval(st.st_mtim.tv_sec) + TimeInterval(st.st_mtim.tv_nsec) / 1e9)))
            }
        }
        if !result.isEmpty { try eachPage(result) }
    }

    private func ensureDirectory(_ dir: String) throws {
        var st = stat()
        if stat(dir, &st) == 0 { return }
        let parent = (dir as NSString).deletingLastPathComponent
        if parent != dir, !parent.isEmpty { try ensureDirectory(parent) }
        if mkdir(dir, 0o750) != 0, errno != EEXIST {
            throw FileIO.error("could not create directory", errno: errno, path: dir)
        }
        if let owner { _ = chown(dir, owner.uid, owner.gid) }
    }

    private func writeTemp(for final: String, data: Data) throws -> String {
        let dir = (final as NSString).deletingLastPathComponent
        try ensureDirectory(dir)
        let temp = dir + "/.tmp-" + UUID().uuidString
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o640)
        if fd < 0 { throw FileIO.error("could not create a file", errno: errno, path: temp) }
        var ok = false
        defer {
            close(fd)
            if !ok { unlink(temp) }
        }
        if let owner { _ = fchown(fd, owner.uid, owner.gid) }
        try FileIO.writeAll(fd: fd, data: data, path: temp)
        if fsync(fd) != 0 { throw FileIO.error("could not fsync", errno: errno, path: temp) }
        ok = true
        return temp
    }

}

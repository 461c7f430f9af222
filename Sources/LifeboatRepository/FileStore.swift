import Foundation
import LifeboatCore

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

    public func putIfAbsent(_ key: String, data: Data) async throws -> Bool {
        let final = path(key)
        let temp = try writeTemp(for: final, data: data)
        defer { unlink(temp) }
        if link(temp, final) != 0 {
            let err = errno
            if err == EEXIST { return false }
            throw Self.ioError("could not store \(key)", errno: err, path: final)
        }
        try fsyncDirectory(of: final)
        return true
    }

    public func put(_ key: String, data: Data) async throws {
        let final = path(key)
        let temp = try writeTemp(for: final, data: data)
        if rename(temp, final) != 0 {
            let err = errno
            unlink(temp)
            throw Self.ioError("could not store \(key)", errno: err, path: final)
        }
        try fsyncDirectory(of: final)
    }

    public func get(_ key: String) async throws -> Data {
        let p = path(key)
        let fd = open(p, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            let err = errno
            if err == ENOENT { throw LifeboatError(.notFound, "object \(key) does not exist in \(root)") }
            throw Self.ioError("could not read \(key)", errno: err, path: p)
        }
        defer { close(fd) }
        return try Self.readAll(fd: fd, path: p)
    }

    public func info(_ key: String) async throws -> ObjectInfo? {
        var st = stat()
        if stat(path(key), &st) != 0 {
            if errno == ENOENT { return nil }
            throw Self.ioError("could not stat \(key)", errno: errno, path: path(key))
        }
        return ObjectInfo(key: key, size: Int(st.st_size), modified: Date(timeIntervalSince1970: TimeInterval(st.st_mtim.tv_sec)))
    }

    public func list(prefix: String) async throws -> [ObjectInfo] {
        // Walk from the deepest directory the prefix names.
        let dirPart = prefix.contains("/") ? String(prefix[..<(prefix.lastIndex(of: "/") ?? prefix.startIndex)]) : ""
        var result: [ObjectInfo] = []
        try walk(relative: dirPart, prefix: prefix, into: &result)
        return result
    }

    public func delete(_ key: String) async throws {
        if let until = try await protectedUntil(key) {
            throw LifeboatError(.repository, "\(key) is append-only until \(Timestamp.format(until)); not deleted",
                hint: "the repository is append-only (append_only in the configuration)")
        }
        if unlink(path(key)) != 0, errno != ENOENT {
            throw Self.ioError("could not delete \(key)", errno: errno, path: path(key))
        }
    }

    public var locksObjects: Bool { appendOnlyRetention != nil }

    public func protectedUntil(_ key: String) async throws -> Date? {
        guard let retention = appendOnlyRetention, !isBookkeeping(key), let info = try await info(key) else { return nil }
        let until = info.modified.addingTimeInterval(retention)
        return until > Date() ? until : nil
    }

    /// True if the directory does not exist or holds nothing.
    public func isEmptyOrMissing() -> Bool {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: root) else { return true }
        return entries.isEmpty
    }

    // MARK: - helpers

    private func walk(relative: String, prefix: String, into result: inout [ObjectInfo]) throws {
        let dirPath = relative.isEmpty ? root : root + "/" + relative
        guard let dir = opendir(dirPath) else {
            if errno == ENOENT || errno == ENOTDIR { return }
            throw Self.ioError("could not list \(relative)", errno: errno, path: dirPath)
        }
        defer { closedir(dir) }
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
                    try walk(relative: key, prefix: prefix, into: &result)
                }
            } else if (st.st_mode & S_IFMT) == S_IFREG, key.hasPrefix(prefix) {
                result.append(ObjectInfo(key: key, size: Int(st.st_size), modified: Date(timeIntervalSince1970: TimeInterval(st.st_mtim.tv_sec) + TimeInterval(st.st_mtim.tv_nsec) / 1e9)))
            }
        }
    }

    private func ensureDirectory(_ dir: String) throws {
        var st = stat()
        if stat(dir, &st) == 0 { return }
        let parent = (dir as NSString).deletingLastPathComponent
        if parent != dir, !parent.isEmpty { try ensureDirectory(parent) }
        if mkdir(dir, 0o750) != 0, errno != EEXIST {
            throw Self.ioError("could not create directory", errno: errno, path: dir)
        }
        if let owner { _ = chown(dir, owner.uid, owner.gid) }
    }

    private func writeTemp(for final: String, data: Data) throws -> String {
        let dir = (final as NSString).deletingLastPathComponent
        try ensureDirectory(dir)
        let temp = dir + "/.tmp-" + UUID().uuidString
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o640)
        if fd < 0 { throw Self.ioError("could not create a file", errno: errno, path: temp) }
        var ok = false
        defer {
            close(fd)
            if !ok { unlink(temp) }
        }
        if let owner { _ = fchown(fd, owner.uid, owner.gid) }
        try Self.writeAll(fd: fd, data: data, path: temp)
        if fsync(fd) != 0 { throw Self.ioError("could not fsync", errno: errno, path: temp) }
        ok = true
        return temp
    }

    private func fsyncDirectory(of file: String) throws {
        let dir = (file as NSString).deletingLastPathComponent
        let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        _ = fsync(fd)
    }

    /// Replaces `path` with `data` so that readers see the old file or the new one, never a mix, and
    /// a crash leaves one of the two: a temporary file beside it, written and fsynced, given `mode`
    /// and `owner`, renamed over it, the directory fsynced.
    public static func replaceAtomically(_ path: String, with data: Data, mode: mode_t, owner: (uid: uid_t, gid: gid_t)? = nil) throws {
        let temp = path + ".lifeboat-new"
        unlink(temp)
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw ioError("cannot write", errno: errno, path: temp) }
        var ok = false
        defer {
            close(fd)
            if !ok { unlink(temp) }
        }
        try writeAll(fd: fd, data: data, path: temp)
        _ = fchmod(fd, mode)
        if let owner { _ = fchown(fd, owner.uid, owner.gid) }
        guard fsync(fd) == 0 else { throw ioError("cannot fsync", errno: errno, path: temp) }
        guard rename(temp, path) == 0 else { throw ioError("cannot replace", errno: errno, path: path) }
        ok = true
        let dir = open((path as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 {
            _ = fsync(dir)
            close(dir)
        }
    }

    /// Writes all of `data` to `fd`, retrying short writes and interrupts.
    public static func writeAll(fd: Int32, data: Data, path: String) throws {
        try data.withUnsafeBytes { (buf: UnsafeRawBufferPointer) in
            guard let base = buf.baseAddress else { return }
            var offset = 0
            while offset < buf.count {
                let n = write(fd, base + offset, buf.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw ioError("could not write", errno: errno, path: path)
                }
                offset += n
            }
        }
    }

    /// Writes all of `data` at `offset` (pwrite), retrying short writes.
    public static func writeAll(fd: Int32, data: Data, at offset: Int, path: String) throws {
        try data.withUnsafeBytes { (buf: UnsafeRawBufferPointer) in
            guard let base = buf.baseAddress else { return }
            var done = 0
            while done < buf.count {
                let n = pwrite(fd, base + done, buf.count - done, off_t(offset + done))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw ioError("could not write", errno: errno, path: path)
                }
                done += n
            }
        }
    }

    static func readAll(fd: Int32, path: String) throws -> Data {
        var st = stat()
        fstat(fd, &st)
        var data = Data(count: Int(st.st_size))
        var total = 0
        try data.withUnsafeMutableBytes { (buf: UnsafeMutableRawBufferPointer) in
            guard let base = buf.baseAddress else { return }
            while total < buf.count {
                let n = read(fd, base + total, buf.count - total)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw ioError("could not read", errno: errno, path: path)
                }
                if n == 0 { break }
                total += n
            }
        }
        if total < data.count { data.count = total }
        return data
    }

    /// Maps an errno to a human error with a hint for the common cases.
    public static func ioError(_ what: String, errno err: Int32, path: String) -> LifeboatError {
        let reason = String(cString: strerror(err))
        switch err {
        case ENOSPC, EDQUOT:
            return LifeboatError(.io, "\(what) \(path): no space left on device",
                hint: "free space on the file system holding \(path); nothing partial was kept")
        case EACCES, EPERM:
            return LifeboatError(.io, "\(what) \(path): permission denied",
                hint: "check that the user running lifeboat can read and write \(path)")
        case EROFS:
            return LifeboatError(.io, "\(what) \(path): read-only file system")
        default:
            return LifeboatError(.io, "\(what) \(path): \(reason)")
        }
    }
}

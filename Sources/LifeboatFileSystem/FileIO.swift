/// LifeboatFileSystem owns local file I/O: whole writes and reads that survive short writes and
/// interrupts, atomic replacement with an explicit durability choice, private files and directories,
/// and the mapping of errno to human errors, in one place for every module that writes files.
import Foundation
import LifeboatCore

#if canImport(Glibc)
import Glibc
#endif

public enum FileIO {
    /// What a write promises after it returns.
    public enum Durability: Sendable {
        /// The file and its directory entry are on disk (fsync of both): survives a power loss.
        case durable
        /// Readers see the old content or the new, never a mix; a crash may lose the change. For
        /// files rebuilt on demand (a prefetched WAL segment, a spool).
        case atomicOnly
    }

    /// An owner to give new files (a restore running as root writes for the server's user).
    public struct Owner: Sendable, Equatable {
        public var uid: uid_t
        public var gid: gid_t
        public init(uid: uid_t, gid: gid_t) {
            self.uid = uid
            self.gid = gid
        }
    }

    /// Maps an errno to a human error with a hint for the common cases.
    public static func error(_ what: String, errno err: Int32, path: String) -> LifeboatError {
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
        case ENOENT:
            return LifeboatError(.notFound, "\(what) \(path): no such file or directory")
        default:
            return LifeboatError(.io, "\(what) \(path): \(reason)")
        }
    }

    /// Writes all of `data` to `fd`, retrying short writes and interrupts.
    public static func writeAll(fd: Int32, data: Data, path: String) throws {
        try data.withUnsafeBytes { (buf: UnsafeRawBufferPointer) in
            guard let base = buf.baseAddress else { return }
            var offset = 0
            while offset < buf.count {
                let n = Glibc.write(fd, base + offset, buf.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw error("could not write", errno: errno, path: path)
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
                    throw error("could not write", errno: errno, path: path)
                }
                done += n
            }
        }
    }

    /// Reads the whole of an open file.
    public static func readAll(fd: Int32, path: String) throws -> Data {
        var st = stat()
        fstat(fd, &st)
        var data = Data(count: Int(st.st_size))
        var total = 0
        try data.withUnsafeMutableBytes { (buf: UnsafeMutableRawBufferPointer) in
            guard let base = buf.baseAddress else { return }
            while total < buf.count {
                let n = Glibc.read(fd, base + total, buf.count - total)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw error("could not read", errno: errno, path: path)
                }
                if n == 0 { break }
                total += n
            }
        }
        if total < data.count { data.count = total }
        return data
    }

    /// The content of a file; `.notFound` when it does not exist.
    public static func read(_ path: String) throws -> Data {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw error("cannot read", errno: errno, path: path) }
        defer { close(fd) }
        return try readAll(fd: fd, path: path)
    }

    /// Replaces `path` with `data` so that readers see the old file or the new one, never a mix: a
    /// temporary file beside it, written (and for `.durable` fsynced), given `mode` and `owner`,
    /// renamed over it (and for `.durable` the directory fsynced).
    public static func replaceAtomically(_ path: String, with data: Data, mode: mode_t, owner: Owner? = nil,
        durability: Durability = .durable) throws
    {
        let dir = (path as NSString).deletingLastPathComponent
        let temp = (dir.isEmpty ? "." : dir) + "/.lifeboat-\(getpid())-\(UInt32.random(in: 0...UInt32.max))-"
            + (path as NSString).lastPathComponent
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw error("cannot write", errno: errno, path: temp) }
        var ok = false
        defer {
            if !ok { unlink(temp) }
        }
        do {
            defer { close(fd) }
            try writeAll(fd: fd, data: data, path: temp)
            _ = fchmod(fd, mode)
            if let owner { _ = fchown(fd, owner.uid, owner.gid) }
            if durability == .durable, Glibc.fsync(fd) != 0 { throw error("cannot flush to disk", errno: errno, path: temp) }
        }
        guard rename(temp, path) == 0 else { throw error("cannot replace", errno: errno, path: path) }
        ok = true
        if durability == .durable { try fsyncDirectory(containing: path) }
    }

    /// Creates `path` with `data`, refusing an existing file (`O_EXCL`), private by default.
    public static func createNew(_ path: String, with data: Data, mode: mode_t = 0o600, owner: Owner? = nil,
        durability: Durability = .durable) throws
    {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw error("cannot create", errno: errno, path: path) }
        var ok = false
        defer {
            close(fd)
            if !ok { unlink(path) }
        }
        try writeAll(fd: fd, data: data, path: path)
        _ = fchmod(fd, mode)
        if let owner { _ = fchown(fd, owner.uid, owner.gid) }
        if durability == .durable, Glibc.fsync(fd) != 0 { throw error("cannot flush to disk", errno: errno, path: path) }
        ok = true
    }

    /// fsync(2) of a file or directory by path.
    public static func fsync(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw error("cannot open to flush", errno: errno, path: path) }
        defer { close(fd) }
        if Glibc.fsync(fd) != 0 { throw error("cannot flush to disk", errno: errno, path: path) }
    }

    /// fsync(2) of the directory holding `path`, so a rename or a new entry survives a crash.
    public static func fsyncDirectory(containing path: String) throws {
        let dir = (path as NSString).deletingLastPathComponent
        let fd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw error("cannot open to flush", errno: errno, path: dir) }
        defer { close(fd) }
        if Glibc.fsync(fd) != 0 { throw error("cannot flush to disk", errno: errno, path: dir) }
    }

    /// Creates a directory (and missing parents) with `mode`, given to `owner`; an existing directory is fine.
    public static func makeDirectory(_ path: String, mode: mode_t = 0o700, owner: Owner? = nil) throws {
        var st = stat()
        if stat(path, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFDIR else {
                throw LifeboatError(.io, "\(path) exists and is not a directory")
            }
            return
        }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty, parent != path { try makeDirectory(parent, mode: 0o755, owner: nil) }
        if mkdir(path, mode) != 0, errno != EEXIST { throw error("cannot create directory", errno: errno, path: path) }
        _ = chmod(path, mode)
        if let owner { _ = chown(path, owner.uid, owner.gid) }
    }

    /// The absolute, symlink-free form of an existing path.
    public static func canonical(_ path: String) throws -> String {
        guard let resolved = realpath(path, nil) else { throw error("cannot resolve", errno: errno, path: path) }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// True if `path` is a directory holding nothing, or does not exist.
    public static func isMissingOrEmptyDirectory(_ path: String) -> Bool {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: path) else {
            return !FileManager.default.fileExists(atPath: path)
        }
        return entries.isEmpty
    }
}

import Crypto
import Foundation
import LifeboatCore
import LifeboatFileSystem
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The clear-text `config` object: everything needed to open the repository with its key.
public struct RepositoryConfig: Codable, Sendable, Equatable {
    /// Repository format version; a reader refuses a newer one.
    public var format: Int
    public var repositoryID: String
    public var created: Date
    public var chunkSize: Int
    public var compression: CompressionAlgorithm
    public var compressionLevel: Int
    var kdf: KDFParameters
    /// The 32-byte master key, sealed with AES-256-GCM under the key derived from the passphrase.
    var wrappedKey: String

    /// 2: chunks may be stored as deltas (`chunks/xx/<id>-<base>`, compression byte 3).
    /// 3: small chunks may be stored in packs (`packs/xx/<id>`).
    /// 4: manifests are framed objects, sealed and opened a frame at a time (`ObjectCodec`).
    public static let currentFormat = 4
}

/// Options for `repo init`.
public struct RepositoryOptions: Sendable {
    public var chunkSize: Int
    public var compression: CompressionAlgorithm
    public var compressionLevel: Int

    public init(chunkSize: Int = 1 << 20, compression: CompressionAlgorithm = .zstd, compressionLevel: Int = 3) {
        self.chunkSize = chunkSize
        self.compression = compression
        self.compressionLevel = compressionLevel
    }
}

/// What happened to a WAL file on push.
public enum WALPushResult: Sendable, Equatable {
    case stored(bytes: Int)
    case alreadyArchived
}

/// An open, authenticated repository. Every object except `config` and locks is compressed and
/// encrypted; chunks are named by a keyed hash of their content. See `docs/repository-format.md`.
public final class Repository: Sendable {
    public let store: any ObjectStore
    public let config: RepositoryConfig
    let keys: RepositoryKeys
    let codec: ObjectCodec
    let logger: Logger

    static let configKey = RepositoryObject.config.key

    /// Proves the repository is still there: its config object exists (an empty listing alone
    /// cannot tell a moved or deleted repository from an empty one).
    public func checkPresent() async throws {
        guard try await store.info(Self.configKey) != nil else {
            throw LifeboatError(.repository, "the repository at \(store.location) has no config object: it was moved or deleted",
                hint: "check the location; restore the repository from its copy in the second region")
        }
    }

    private init(store: any ObjectStore, config: RepositoryConfig, keys: RepositoryKeys, logger: Logger) {
        self.store = store
        self.config = config
        self.keys = keys
        self.codec = ObjectCodec(keys: keys, compression: config.compression, level: Int32(config.compressionLevel))
        self.logger = logger
    }

    // MARK: - init and open

    /// Creates a new repository in an empty store.
    public static func initialize(store: any ObjectStore, key: KeySource, options: RepositoryOptions = .init(),
        logger: Logger) async throws -> Repository
    {
        guard options.chunkSize >= 64 * 1024, options.chunkSize <= 64 << 20 else {
            throw LifeboatError(.invalidUsage, "chunk size \(options.chunkSize) is out of range", hint: "use 64KiB to 64MiB")
        }
        guard try await store.isEmpty() else {
            throw LifeboatError(.repository, "\(store.location) is not empty",
                hint: "choose a new or empty location for the repository; lifeboat never initializes over existing data")
        }
        let kdf = KDFParameters.fresh()
        let secret = try key.secret()
        let kek = try kdf.keyEncryptionKey(secret: secret)
        let master = SymmetricKey(size: .bits256)
        let sealed = try AES.GCM.seal(master.withUnsafeBytes { Data($0) }, using: kek, authenticating: Data("lifeboat master key".utf8))
        guard let combined = sealed.combined else { throw LifeboatError(.internalError, "could not seal the master key") }
        let config = RepositoryConfig(format: RepositoryConfig.currentFormat, repositoryID: UUID().uuidString.lowercased(),
            created: Date(), chunkSize: options.chunkSize, compression: options.compression,
            compressionLevel: options.compressionLevel, kdf: kdf, wrappedKey: combined.base64EncodedString())
        let data = try RepositoryJSON.encoder().encode(config)
        guard try await store.putIfAbsent(configKey, data: data) else {
            throw LifeboatError(.repository, "\(store.location) was initialized by someone else meanwhile")
        }
        // The key was derived here: remembered as an open would, so the first backup or WAL push
        // does not run scrypt (and its 32 MiB work area) again.
        KeyCache.current()?.remember(kek, repositoryID: config.repositoryID, salt: kdf.salt, secret: secret)
        logger.info("repository initialized", metadata: [LogKey.repository: .string(store.location)])
        return Repository(store: store, config: config, keys: RepositoryKeys(master: master), logger: logger)
    }

    /// Opens an existing repository; fails clearly on a missing repository, a newer format or a wrong key.
    public static func open(store: any ObjectStore, key: KeySource, logger: Logger) async throws -> Repository {
        if case .handoff(let path) = key { return try await open(store: store, handoff: path, logger: logger) }
        let data: Data
        do {
            data = try await store.get(configKey)
        } catch let error as LifeboatError where error.code == .notFound {
            throw LifeboatError(.repository, "no lifeboat repository at \(store.location)",
                hint: "check --repo / LIFEBOAT_REPO, or create one with `lifeboat repo init`")
        }
        let config: RepositoryConfig
        do {
            // Check the format before anything else so a newer repository is refused with a clear message.
            struct FormatOnly: Decodable { var format: Int }
            let format = try JSONDecoder().decode(FormatOnly.self, from: data).format
            guard format <= RepositoryConfig.currentFormat else {
                throw LifeboatError(.repository,
                    "repository format \(format) is newer than this lifeboat understands (\(RepositoryConfig.currentFormat))",
                    hint: "upgrade lifeboat to read this repository")
            }
            config = try RepositoryJSON.decoder().decode(RepositoryConfig.self, from: data)
        } catch let error as LifeboatError {
            throw error
        } catch {
            throw LifeboatError(.integrity, "the repository config at \(store.location) is damaged", cause: error)
        }
        guard let wrapped = Data(base64Encoded: config.wrappedKey) else {
            throw LifeboatError(.integrity, "the repository config holds an unreadable key")
        }
        func unwrap(_ kek: SymmetricKey) -> SymmetricKey? {
            guard let box = try? AES.GCM.SealedBox(combined: wrapped),
                let plain = try? AES.GCM.open(box, using: kek, authenticating: Data("lifeboat master key".utf8))
            else { return nil }
            return SymmetricKey(data: plain)
        }
        let secret = try key.secret()
        let cache = KeyCache.current()
        if let kek = cache?.key(repositoryID: config.repositoryID, salt: config.kdf.salt, secret: secret), let master = unwrap(kek) {
            return Repository(store: store, config: config, keys: RepositoryKeys(master: master), logger: logger)
        }
        let kek = try config.kdf.keyEncryptionKey(secret: secret)
        guard let master = unwrap(kek) else {
            throw LifeboatError(.wrongKey, "the passphrase or key file does not open the repository at \(store.location)",
                hint: "check LIFEBOAT_PASSPHRASE or --key-file; nothing was read or written")
        }
        cache?.remember(kek, repositoryID: config.repositoryID, salt: config.kdf.salt, secret: secret)
        return Repository(store: store, config: config, keys: RepositoryKeys(master: master), logger: logger)
    }

    /// What a key handoff file holds.
    struct KeyHandoff: Codable {
        var repositoryID: String
        var masterKey: String
    }

    /// Writes this repository's master key for a restored server's `restore_command`, so each of its
    /// calls opens the repository without deriving the key (a scrypt per WAL segment) and without a
    /// passphrase in the server's environment. The file is as powerful as the passphrase: it is
    /// created private (0600, the server's user), inside the restored data directory's `pg_wal` (no
    /// backup copies it), and removed when recovery ends.
    public func writeKeyHandoff(to path: String, owner: FileIO.Owner?) throws {
        let handoff = KeyHandoff(repositoryID: config.repositoryID,
            masterKey: keys.master.withUnsafeBytes { Data($0).base64EncodedString() })
        try FileIO.replaceAtomically(path, with: try JSONEncoder().encode(handoff), mode: 0o600, owner: owner)
    }

    static func open(store: any ObjectStore, handoff path: String, logger: Logger) async throws -> Repository {
        let handoff: KeyHandoff
        do {
            handoff = try JSONDecoder().decode(KeyHandoff.self, from: try FileIO.read(path))
        } catch {
            throw LifeboatError(.invalidUsage, "cannot read the key handoff \(path)", hint: "it exists only while a restore recovers", cause: error)
        }
        let data: Data
        do {
            data = try await store.get(configKey)
        } catch let error as LifeboatError where error.code == .notFound {
            throw LifeboatError(.repository, "no lifeboat repository at \(store.location)")
        }
        let config = try RepositoryJSON.decoder().decode(RepositoryConfig.self, from: data)
        guard config.repositoryID == handoff.repositoryID, let master = Data(base64Encoded: handoff.masterKey), master.count == 32 else {
            throw LifeboatError(.wrongKey, "the key handoff \(path) is for another repository than \(store.location)")
        }
        return Repository(store: store, config: config, keys: RepositoryKeys(master: SymmetricKey(data: master)), logger: logger)
    }

    // MARK: - generic encrypted objects

    /// Seals and stores `plaintext` under `key` if absent; returns stored size, or nil if it existed.
    @discardableResult
    func writeSealed(_ key: String, plaintext: Data) async throws -> Int? {
        let sealed = try codec.seal(plaintext, key: key)
        return try await store.putIfAbsent(key, data: sealed) ? sealed.count : nil
    }

    func readSealed(_ key: String) async throws -> Data {
        try codec.open(try await store.get(key), key: key)
    }

    // MARK: - chunks

    /// The content address of a chunk: HMAC-SHA256 under the repository's chunk-id key, in hex.
    public func chunkID(for data: Data) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: data, using: keys.chunkIDKey)
        return Hex.encode(mac)
    }

    static func chunkKey(_ id: String) -> String { RepositoryObject.chunk(id: id).key }

    /// Object key of chunk `id` stored as a delta against chunk `base`; the base is part of the name,
    /// so a listing shows every dependency (expire needs no object reads) and GCM authenticates it.
    static func deltaChunkKey(_ id: String, base: String) -> String { RepositoryObject.deltaChunk(id: id, base: base).key }

    /// The object key holding chunk `id` as `manifest` uses it.
    public static func chunkObjectKey(_ id: String, in manifest: BackupManifest) -> String {
        if let packed = manifest.packedChunk(id) { return packKey(packed.pack) }
        return manifest.deltaBase(of: id).map { deltaChunkKey(id, base: $0) } ?? chunkKey(id)
    }

    /// Every object a backup's chunk needs: its own (or its pack) and, for a delta, its base's.
    public static func chunkObjectKeys(_ id: String, in manifest: BackupManifest) -> [String] {
        if let packed = manifest.packedChunk(id) { return [packKey(packed.pack)] }
        guard let base = manifest.deltaBase(of: id) else { return [chunkKey(id)] }
        return [deltaChunkKey(id, base: base), chunkKey(base)]
    }

    /// The chunk id and, for a delta, the base id an object key under `chunks/` names.
    public static func parseChunkKey(_ key: String) -> (id: String, base: String?)? {
        RepositoryObject(key: key)?.chunk
    }

    /// Whether this repository's format allows delta chunks (older lifeboat could not read them).
    public var storesDeltas: Bool { config.format >= 2 }

    /// Stores a chunk unless present. Returns the bytes written (0 if it was already there).
    public func putChunk(id: String, data: Data) async throws -> Int {
        try await writeSealed(Self.chunkKey(id), plaintext: data) ?? 0
    }

    /// Stores a new chunk as a delta against `deltaBase` (the same place in the file in an earlier
    /// backup, itself stored whole) when that is much smaller: zstd of the XOR with the base when
    /// lengths match and that is small, else a zstd frame using the base as prefix when it is under half
    /// the size of the whole chunk compressed.
    /// Returns the bytes written and the base used, nil when stored whole. A base that cannot be read
    /// only means the chunk is stored whole.
    public func putChunk(id: String, data: Data, deltaBase: String?) async throws -> (written: Int, base: String?) {
        guard let baseID = deltaBase, baseID != id, storesDeltas else { return (try await putChunk(id: id, data: data), nil) }
        let baseData: Data
        let baseStored: Int
        do {
            let sealed = try await store.get(Self.chunkKey(baseID))
            baseStored = sealed.count
            baseData = try codec.open(sealed, key: Self.chunkKey(baseID))
        } catch {
            logger.warning("delta base unreadable; storing the chunk whole",
                metadata: [LogKey.object: .string(Self.chunkKey(baseID)), "lifeboat.error": "\(error)"])
            return (try await putChunk(id: id, data: data), nil)
        }
        let key = Self.deltaChunkKey(id, base: baseID)
        if baseData.count == data.count {
            // Same length: XOR first, it is cheap; small enough settles it.
            let xored = try CompressionAlgorithm.zstd.compress(XORDelta.apply(data, baseData), level: Int32(config.compressionLevel))
            if xored.count <= data.count / 64 || xored.count * 4 <= baseStored {
                let sealed = try codec.seal(body: xored, wireValue: ObjectCodec.xorDeltaWireValue, plaintextLength: data.count, key: key)
                return (try await store.putIfAbsent(key, data: sealed) ? sealed.count : 0, baseID)
            }
        }
        let frame = try ZstdDelta.compress(data, base: baseData, level: Int32(config.compressionLevel))
        // The base's stored size stands in for the new chunk compressed whole (same place of the same
        // file); only a delta near half of it is worth compressing the chunk whole to compare.
        if frame.count > data.count / 64, frame.count * 4 > baseStored {
            let whole = try codec.compression.compress(data, level: codec.level)
            if frame.count * 2 > whole.count {
                let key = Self.chunkKey(id)
                let sealed = whole.count >= data.count
                    ? try codec.seal(body: data, wireValue: CompressionAlgorithm.none.wireValue, plaintextLength: data.count, key: key)
                    : try codec.seal(body: whole, wireValue: codec.compression.wireValue, plaintextLength: data.count, key: key)
                return (try await store.putIfAbsent(key, data: sealed) ? sealed.count : 0, nil)
            }
        }
        let sealed = try codec.seal(body: frame, wireValue: ObjectCodec.deltaWireValue, plaintextLength: data.count, key: key)
        return (try await store.putIfAbsent(key, data: sealed) ? sealed.count : 0, baseID)
    }

    /// Reads a chunk (rebuilding a delta from its base). AES-GCM already proves the object is what a
    /// key holder stored under this name; `verifyContent` also recomputes the content's keyed hash
    /// (verify and copy do; restore skips it, it was a quarter of a restore's CPU).
    public func chunk(id: String, base: String? = nil, verifyContent: Bool = true) async throws -> Data {
        if let base {
            return try await deltaChunk(id: id, base: base, verifyContent: verifyContent).data
        }
        let key = Self.chunkKey(id)
        let data = try await readSealed(key)
        try checkContent(data, id: id, key: key, verify: verifyContent)
        return data
    }

    /// Reads a delta object and its base and rebuilds the chunk; returns the pieces too (copy moves
    /// the delta body as is).
    private func deltaChunk(id: String, base: String, verifyContent: Bool) async throws
        -> (data: Data, wireValue: UInt8, body: Data, base: Data)
    {
        let key = Self.deltaChunkKey(id, base: base)
        // The delta and its base are fetched at once: on S3 a delta chunk then costs one round trip
        // of latency, not two.
        async let deltaObject = store.get(key)
        let baseData = try await chunk(id: base, verifyContent: verifyContent)
        let (wire, body, length) = try codec.openBody(try await deltaObject, key: key)
        let data: Data
        switch wire {
        case ObjectCodec.deltaWireValue:
            data = try ZstdDelta.decompress(body, base: baseData, originalSize: length, object: key)
        case ObjectCodec.xorDeltaWireValue where baseData.count == length:
            data = XORDelta.apply(try CompressionAlgorithm.zstd.decompress(body, originalSize: length, object: key), baseData)
        default:
            throw LifeboatError(.integrity, "object \(key) is named as a delta but does not hold one that fits its base")
        }
        try checkContent(data, id: id, key: key, verify: verifyContent)
        return (data, wire, body, baseData)
    }

    private func checkContent(_ data: Data, id: String, key: String, verify: Bool) throws {
        guard !verify || chunkID(for: data) == id else {
            throw LifeboatError(.integrity, "object \(key) holds content that does not match its name")
        }
    }

    /// A chunk as `copy` needs it: its content, and for a delta, the stored delta body (independent
    /// of the key, so it moves between repositories as is) and its base's content. Content and base
    /// are checked against their keyed hashes; each object is read once.
    public struct ChunkForCopy: Sendable {
        public var data: Data
        public var delta: (wireValue: UInt8, body: Data, base: Data)?
    }

    public func chunkForCopy(id: String, base: String?) async throws -> ChunkForCopy {
        guard let base else { return ChunkForCopy(data: try await chunk(id: id), delta: nil) }
        let d = try await deltaChunk(id: id, base: base, verifyContent: true)
        return ChunkForCopy(data: d.data, delta: (d.wireValue, d.body, d.base))
    }

    /// Stores a delta body read from another repository under this repository's names: `id` as a
    /// delta against `base` (which must be stored whole here). Returns the bytes written.
    public func putCopiedDelta(id: String, base: String, wireValue: UInt8, body: Data, plaintextLength: Int) async throws -> Int {
        let key = Self.deltaChunkKey(id, base: base)
        let sealed = try codec.seal(body: body, wireValue: wireValue, plaintextLength: plaintextLength, key: key)
        return try await store.putIfAbsent(key, data: sealed) ? sealed.count : 0
    }

    /// Ids of every chunk in the repository, whole or delta.
    public func chunkIDs() async throws -> Set<String> {
        Set(try await store.list(.chunks).compactMap { $0.object.chunk?.id })
    }

    /// Every chunk in the repository and how it is stored.
    /// The chunk objects as the chunk index keeps them, the listing folded in page by page.
    public func chunkListing() async throws -> ChunkListing {
        var listing = ChunkListing()
        try await store.list(prefix: RepositoryObject.Family.chunks.prefix) { page in
            for info in page {
                if let (id, base) = RepositoryObject(key: info.key)?.chunk { listing.add(id: id, base: base) }
            }
        }
        return listing
    }

    public func chunkCatalog() async throws -> ChunkCatalog {
        var catalog = ChunkCatalog()
        for (object, _) in try await store.list(.chunks) {
            guard let (id, base) = object.chunk else { continue }
            if let base { catalog.deltas[id] = base } else { catalog.whole.insert(id) }
        }
        return catalog
    }

    // MARK: - backups

    public static func backupKey(_ id: String) -> String { RepositoryObject.backup(id: id).key }
    static func manifestKey(_ id: String) -> String { RepositoryObject.manifest(backupID: id).key }

    /// Writes the file list of a backup (before its record).
    public func writeManifest(_ manifest: BackupManifest) async throws -> String {
        try await writeManifest(manifest, frameSize: 1 << 20)
    }

    func writeManifest(_ manifest: BackupManifest, frameSize: Int) async throws -> String {
        let key = Self.manifestKey(manifest.backupID)
        // Compressed as it is written (always zstd: every reader has it), so the text is never whole.
        let compressor = try ZstdStreamCompressor(level: 3)
        let sealed: ObjectCodec.SealedObject
        if let framer = try manifestSealer(key: key, frameSize: frameSize) {
            try ManifestJSON.encode(manifest) { bytes in
                try compressor.append(bytes)
                try framer.append(compressor.takeOutput())
            }
            try framer.append(try compressor.finish())
            sealed = try framer.finish(plaintextLength: compressor.inputBytes)
        } else {
            try ManifestJSON.encode(manifest) { try compressor.append($0) }
            let body = try compressor.finish()
            sealed = .data(try codec.seal(body: body, wireValue: CompressionAlgorithm.zstd.wireValue, plaintextLength: compressor.inputBytes, key: key))
        }
        guard try await storeSealed(sealed, key: key) else {
            throw LifeboatError(.repository, "a manifest for backup \(manifest.backupID) already exists")
        }
        return key
    }

    /// A sealer for a framed manifest (format 4 and later); nil for an older repository, whose
    /// manifests stay single-sealed objects its older readers open.
    func manifestSealer(key: String, frameSize: Int = 1 << 20) throws -> ObjectCodec.FramedSealer? {
        guard config.format >= 4 else { return nil }
        // Into a spool file where the store has a file system (written as made, then linked in).
        return try ObjectCodec.FramedSealer(codec: codec, key: key, wireValue: CompressionAlgorithm.zstd.wireValue, frameSize: frameSize,
            spool: store.makeSpoolFile(for: key))
    }

    /// Stores a framed object made by a sealer, unless one exists under `key`.
    func storeSealed(_ object: ObjectCodec.SealedObject, key: String) async throws -> Bool {
        switch object {
        case .data(let data): return try await store.putIfAbsent(key, data: data)
        case .spooled(let file): return try await store.putIfAbsent(key, spooledFile: file, class: .recoveryData)
        }
    }

    /// Whether this repository's manifests are framed objects.
    public var framesManifests: Bool { config.format >= 4 }

    /// Writes the file list a backup assembled while it ran (before its record).
    public func writeManifest(_ assembled: ManifestAssembler, externalFiles: [ExternalFile]) async throws -> String {
        let key = Self.manifestKey(assembled.backupID)
        let sealed: ObjectCodec.SealedObject
        if assembled.sealsAsWritten {
            // Sealed (and on a file store written) as the assembler compressed it: never held whole twice.
            sealed = try await assembled.finishSealed(externalFiles: externalFiles)
        } else {
            let (body, length) = try await assembled.finish(externalFiles: externalFiles)
            sealed = .data(try codec.seal(body: consume body, wireValue: CompressionAlgorithm.zstd.wireValue, plaintextLength: length, key: key))
        }
        guard try await storeSealed(sealed, key: key) else {
            throw LifeboatError(.repository, "a manifest for backup \(assembled.backupID) already exists")
        }
        return key
    }

    /// Commits a backup: after this the backup exists.
    public func commitBackup(_ record: BackupRecord) async throws {
        let data = try RepositoryJSON.encoder().encode(record)
        guard try await writeSealed(Self.backupKey(record.id), plaintext: data) != nil else {
            throw LifeboatError(.repository, "backup \(record.id) already exists")
        }
    }

    /// Every committed backup, oldest first.
    public func backups() async throws -> [BackupRecord] {
        var records: [BackupRecord] = []
        for id in try await backupIDs() {
            records.append(try await backup(id: id))
        }
        return records.sorted { $0.stopTime < $1.stopTime }
    }

    /// The ids of committed backups, from the listing alone (no record read); they sort by start time.
    public func backupIDs() async throws -> [String] {
        try await store.list(.backups).compactMap { entry -> String? in
            if case .backup(let id) = entry.object { return id }
            return nil
        }.sorted()
    }

    /// The most recently started committed backup, reading one record instead of all of them; nil if
    /// there is none.
    public func newestBackup() async throws -> BackupRecord? {
        guard let newest = try await backupIDs().last else { return nil }
        return try await backup(id: newest)
    }

    public func backup(id: String) async throws -> BackupRecord {
        let data: Data
        do {
            data = try await readSealed(Self.backupKey(id))
        } catch let error as LifeboatError where error.code == .notFound {
            throw LifeboatError(.notFound, "backup \(id) does not exist", hint: "list backups with `lifeboat info`")
        }
        do {
            return try RepositoryJSON.decoder().decode(BackupRecord.self, from: data)
        } catch {
            throw LifeboatError(.integrity, "backup record \(id) is unreadable", cause: error)
        }
    }

    /// The backup's file list; with `eachEntry`, the entries are handed over one by one as they are
    /// read and the manifest returned has none, so the caller holds only what it keeps of them; with
    /// `eachPackedChunk` the same for the locations of its packed chunks.
    public func manifest(for record: BackupRecord, eachEntry: ((ManifestEntry) throws -> Void)? = nil,
        eachPackedChunk: ((String, PackedChunk) throws -> Void)? = nil) async throws -> BackupManifest
    {
        // A caller handed every part keeps them in its own form: no table of shared ids.
        let interning = eachEntry == nil || eachPackedChunk == nil
        let key = record.manifestObject
        // A framed manifest in a local file is read a frame at a time: never held whole.
        if let path = store.localFile(key) {
            let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                if errno == ENOENT { throw LifeboatError(.notFound, "object \(key) does not exist in \(store.location)") }
                throw FileIO.error("could not read \(key)", errno: errno, path: path)
            }
            defer { close(fd) }
            var st = stat()
            var header = Data(count: ObjectCodec.headerSize)
            let got = header.withUnsafeMutableBytes { pread(fd, $0.baseAddress, ObjectCodec.headerSize, 0) }
            if fstat(fd, &st) == 0, got == ObjectCodec.headerSize, ObjectCodec.isFramed(header) {
                let frames = try ObjectCodec.FrameOpener(codec: codec, source: .file(descriptor: fd, size: Int(st.st_size), path: path), key: key)
                if let manifest = try readFramedManifest(frames, key: key, interning: interning, eachEntry: eachEntry, eachPackedChunk: eachPackedChunk) {
                    return manifest
                }
            }
        }
        let sealed = try await store.get(key)
        if ObjectCodec.isFramed(sealed) {
            // Decrypted a frame at a time as the parser asks for more: never held in plaintext.
            let frames = try ObjectCodec.FrameOpener(codec: codec, sealed: sealed, key: key)
            if let manifest = try readFramedManifest(frames, key: key, interning: interning, eachEntry: eachEntry, eachPackedChunk: eachPackedChunk) {
                return manifest
            }
        }
        return try readSealedManifest(sealed, key: key, interning: interning, eachEntry: eachEntry, eachPackedChunk: eachPackedChunk)
    }

    /// Authenticates a manifest object and checks that it decompresses to its recorded length,
    /// a frame and a slice at a time (verify: the text of a 121,000-file list is ~50 MiB).
    public func checkManifestObject(_ key: String) async throws {
        var buffer: [UInt8] = []
        func drain(_ stream: ZstdStreamDecompressor) throws {
            repeat { try stream.refill(&buffer) } while !buffer.isEmpty
        }
        if let path = store.localFile(key) {
            let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
            if fd >= 0 {
                defer { close(fd) }
                var st = stat()
                var header = Data(count: ObjectCodec.headerSize)
                let got = header.withUnsafeMutableBytes { pread(fd, $0.baseAddress, ObjectCodec.headerSize, 0) }
                if fstat(fd, &st) == 0, got == ObjectCodec.headerSize, ObjectCodec.isFramed(header) {
                    let frames = try ObjectCodec.FrameOpener(codec: codec, source: .file(descriptor: fd, size: Int(st.st_size), path: path), key: key)
                    guard frames.wireValue == CompressionAlgorithm.zstd.wireValue else {
                        throw LifeboatError(.integrity, "manifest \(key) names a compression manifests never use (\(frames.wireValue))")
                    }
                    try drain(try ZstdStreamDecompressor(originalSize: frames.length, object: key) { try frames.next() })
                    return
                }
            }
        }
        let sealed = try await store.get(key)
        if ObjectCodec.isFramed(sealed) {
            let frames = try ObjectCodec.FrameOpener(codec: codec, sealed: sealed, key: key)
            guard frames.wireValue == CompressionAlgorithm.zstd.wireValue else {
                throw LifeboatError(.integrity, "manifest \(key) names a compression manifests never use (\(frames.wireValue))")
            }
            try drain(try ZstdStreamDecompressor(originalSize: frames.length, object: key) { try frames.next() })
            return
        }
        let (wire, body, length) = try codec.openBody(sealed, key: key)
        if wire == CompressionAlgorithm.zstd.wireValue {
            try drain(try ZstdStreamDecompressor(body, originalSize: length, object: key))
        } else {
            _ = try codec.open(sealed, key: key)  // an older manifest, sealed with another compression
        }
    }

    /// A framed zstd manifest parsed as its frames are decrypted; nil when the direct reader does
    /// not follow it (the caller then reads it whole with the general decoder).
    private func readFramedManifest(_ frames: ObjectCodec.FrameOpener, key: String, interning: Bool,
        eachEntry: ((ManifestEntry) throws -> Void)?, eachPackedChunk: ((String, PackedChunk) throws -> Void)?) throws -> BackupManifest?
    {
        guard frames.wireValue == CompressionAlgorithm.zstd.wireValue else { return nil }
        do {
            let stream = try ZstdStreamDecompressor(originalSize: frames.length, object: key) { try frames.next() }
            var reader = ManifestJSONReader(interning: interning) { try stream.refill(&$0) }
            return try reader.manifest(eachEntry: eachEntry, eachPackedChunk: eachPackedChunk)
        } catch let error as LifeboatError {
            throw error
        } catch is ManifestJSONReader.ParseError {
            return nil
        }
    }

    private func readSealedManifest(_ sealed: Data, key: String, interning: Bool,
        eachEntry: ((ManifestEntry) throws -> Void)?, eachPackedChunk: ((String, PackedChunk) throws -> Void)?) throws -> BackupManifest
    {
        let (wire, body, length) = try codec.openBody(sealed, key: key)
        guard let algorithm = CompressionAlgorithm(wireValue: wire) else {
            throw LifeboatError(.integrity, "object \(key) names an unknown compression (\(wire))")
        }
        do {
            if algorithm == .zstd {
                // Parsed as it is decompressed: neither the whole text nor a tree of it is held.
                let stream = try ZstdStreamDecompressor(body, originalSize: length, object: key)
                var reader = ManifestJSONReader(interning: interning) { try stream.refill(&$0) }
                return try reader.manifest(eachEntry: eachEntry, eachPackedChunk: eachPackedChunk)
            }
            let text = try algorithm.decompress(body, originalSize: length, object: key)
            var given = false
            var reader = ManifestJSONReader(interning: interning) { buffer in
                guard !given else { return }
                given = true
                buffer.append(contentsOf: text)
            }
            return try reader.manifest(eachEntry: eachEntry, eachPackedChunk: eachPackedChunk)
        } catch let error as LifeboatError {
            throw error
        } catch let parse as ManifestJSONReader.ParseError {
            // A document the direct reader does not follow (it is authenticated, so it is one some
            // writer made): the general decoder gets the last word, at the cost of its memory.
            do {
                var manifest = try RepositoryJSON.decoder().decode(BackupManifest.self, from: try algorithm.decompress(body, originalSize: length, object: key))
                if let eachEntry {
                    try manifest.entries.forEach(eachEntry)
                    manifest.entries = []
                }
                if let eachPackedChunk, let packed = manifest.packedChunks {
                    for (id, location) in packed { try eachPackedChunk(id, location) }
                    manifest.packedChunks = nil
                }
                logger.warning("manifest read by the general JSON decoder", metadata: [LogKey.object: .string(key), "lifeboat.reason": .string(parse.description)])
                return manifest
            } catch {
                throw LifeboatError(.integrity, "manifest \(key) is unreadable (\(parse.description))", cause: error)
            }
        } catch {
            throw LifeboatError(.integrity, "manifest \(key) is unreadable", cause: error)
        }
    }

    /// Removes a backup: first its record (so it stops existing), then its file list.
    public func deleteBackup(_ record: BackupRecord) async throws {
        try await store.delete(Self.backupKey(record.id))
        try await store.delete(record.manifestObject)
    }

    /// File lists whose backup was never committed (a crashed backup), by object key.
    public func orphanManifests() async throws -> [String] {
        let committed = Set(try await backupIDs())
        return try await store.list(.manifests).compactMap { entry -> String? in
            guard case .manifest(let id) = entry.object, !committed.contains(id) else { return nil }
            return entry.info.key
        }
    }

    // MARK: - WAL

    /// Object key of an archived WAL file.
    public static func walKey(_ file: WALFileName) -> String { RepositoryObject.wal(file).key }

    /// Archives one WAL file. Idempotent: the same name with the same content succeeds again;
    /// the same name with different content is refused.
    public func pushWAL(name: String, data: Data) async throws -> WALPushResult {
        guard let file = WALFileName(name) else {
            throw LifeboatError(.invalidUsage, "'\(name)' is not a WAL file name",
                hint: "archive_command must pass %p, the path of a file in pg_wal")
        }
        let key = Self.walKey(file)
        if let written = try await writeSealed(key, plaintext: data) {
            return .stored(bytes: written)
        }
        let existing = try await readSealed(key)
        if SHA256.hash(data: existing) == SHA256.hash(data: data) {
            return .alreadyArchived
        }
        throw LifeboatError(.walConflict, "WAL file \(name) is already archived with different content",
            hint: "two clusters may be archiving into the same repository, or a restored cluster was promoted without a new timeline; give each cluster its own repository")
    }

    /// The content of an archived WAL file; `.notFound` if it is not archived.
    public func fetchWAL(name: String) async throws -> Data {
        guard let file = WALFileName(name) else {
            throw LifeboatError(.notFound, "'\(name)' is not a WAL file name lifeboat archives")
        }
        do {
            return try await readSealed(Self.walKey(file))
        } catch let error as LifeboatError where error.code == .notFound {
            throw LifeboatError(.notFound, "WAL file \(name) is not in the archive")
        }
    }

    /// The archive's timelines: segments from the listing, history files read and parsed.
    public func timelineGraph(segmentSize: UInt64) async throws -> TimelineGraph {
        var segments = Set<WALSegment>()
        var histories: [UInt32: TimelineHistory] = [:]
        for (file, _) in try await walFiles() {
            switch file {
            case .segment(let s): segments.insert(s)
            case .history(let tli):
                let text = String(decoding: try await fetchWAL(name: file.description), as: UTF8.self)
                histories[tli] = try TimelineHistory(timeline: tli, text: text)
            default: break
            }
        }
        return TimelineGraph(segmentSize: segmentSize, segments: segments, histories: histories)
    }

    /// Every archived WAL file with its object info.
    public func walFiles() async throws -> [(file: WALFileName, info: ObjectInfo)] {
        try await store.list(.wal).compactMap { entry in entry.object.walFile.map { ($0, entry.info) } }
    }

}

/// The chunks of a repository by how they are stored: whole, or as a delta against a base chunk.
public struct ChunkCatalog: Sendable {
    public var whole: Set<String> = []
    public var deltas: [String: String] = [:]
    public init() {}
}

/// Metadata keys used in logs, kept in one place.
public enum LogKey {
    public static let repository = "lifeboat.repository"
    public static let backupID = "lifeboat.backup.id"
    public static let walFile = "lifeboat.wal.file"
    public static let object = "lifeboat.object"
    public static let path = "lifeboat.path"
    public static let lock = "lifeboat.lock"
}

// MARK: - other records

extension Repository {
    /// Stores an encrypted JSON record under `key` (write-once).
    public func writeRecord<T: Encodable>(_ key: String, _ value: T) async throws {
        guard try await writeSealed(key, plaintext: try RepositoryJSON.encoder().encode(value)) != nil else {
            throw LifeboatError(.repository, "\(key) already exists")
        }
    }

    /// Reads an encrypted JSON record.
    public func readRecord<T: Decodable>(_ key: String, as type: T.Type) async throws -> T {
        let data = try await readSealed(key)
        do {
            return try RepositoryJSON.decoder().decode(type, from: data)
        } catch {
            throw LifeboatError(.integrity, "record \(key) is unreadable", cause: error)
        }
    }
}

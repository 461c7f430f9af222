import Foundation
import LifeboatCore

/// A backup's manifest assembled while its files are stored: each entry is written (in the scan's
/// order) into a zstd stream as soon as the files before it are done, so the file list is never held
/// whole, only its compressed text. How each chunk is stored (packed, a delta, whole) is asked of the
/// backup's chunk index when its entry is written; a chunk another file is still storing is asked
/// again at the end. The index marks the packed chunks named, and lists their locations at the end:
/// the assembler keeps only the delta bases (chunks of changed large files).
public actor ManifestAssembler {
    public let backupID: String
    private let known: ChunkIndex
    private let compressor: ZstdStreamCompressor
    private var text: [UInt8] = []
    private var entries = 0
    public private(set) var fileCount = 0
    private var deltaBases: [String: String] = [:]
    private var pending: Set<String> = []
    private var finished = false
    /// Seals the compressed text frame by frame as it grows (a framed manifest, format 4).
    private let framer: ObjectCodec.FramedSealer?
    /// Whether `finishSealed` (not `finish`) ends this manifest.
    nonisolated let sealsAsWritten: Bool

    /// With `repository`, the manifest is sealed for it as it is written, when its format frames
    /// manifests; without, `finish` hands over the compressed text.
    public init(backupID: String, chunkSize: Int, known: ChunkIndex, repository: Repository? = nil) throws {
        self.backupID = backupID
        self.known = known
        framer = try repository?.manifestSealer(key: Repository.manifestKey(backupID))
        sealsAsWritten = framer != nil
        compressor = try ZstdStreamCompressor(level: 3)
        text.reserveCapacity(ManifestJSON.sliceSize + 4096)
        ManifestJSON.streamHeader(backupID: backupID, chunkSize: chunkSize, &text)
    }

    /// Adds the next entry of the file list.
    public func append(_ entry: ManifestEntry) async throws {
        guard !finished else { throw LifeboatError(.internalError, "manifest \(backupID) is already finished") }
        ManifestJSON.streamEntry(entry, first: entries == 0, &text)
        entries += 1
        if entry.type == .file { fileCount += 1 }
        for id in entry.chunks { await place(id) }
        if text.count >= ManifestJSON.sliceSize { try flush() }
    }

    /// Ends the document with the external configuration files; returns the compressed text and
    /// its plaintext length, for the repository to seal.
    func finish(externalFiles: [ExternalFile]) async throws -> (body: Data, plaintextLength: Int) {
        guard framer == nil else { throw LifeboatError(.internalError, "manifest \(backupID) is being sealed as it is written") }
        try await finishText(externalFiles: externalFiles)
        let body = try compressor.finish()
        return (body, compressor.inputBytes)
    }

    /// Ends the document and returns it sealed as a framed object (its frames were sealed as the
    /// compressed text grew, so it is never held twice).
    func finishSealed(externalFiles: [ExternalFile]) async throws -> ObjectCodec.SealedObject {
        guard let framer else { throw LifeboatError(.internalError, "manifest \(backupID) is not being sealed as it is written") }
        try await finishText(externalFiles: externalFiles)
        try framer.append(try compressor.finish())
        return try framer.finish(plaintextLength: compressor.inputBytes)
    }

    private func finishText(externalFiles: [ExternalFile]) async throws {
        guard !finished else { throw LifeboatError(.internalError, "manifest \(backupID) is already finished") }
        finished = true
        for id in externalFiles.flatMap(\.entry.chunks) { await place(id) }
        let waiting = pending
        pending = []
        for id in waiting { await place(id) }
        if let id = pending.first {
            throw LifeboatError(.internalError, "chunk \(id) of backup \(backupID) was claimed but never stored")
        }
        let packed = await known.usedPackedChunks()
        try ManifestJSON.streamTrailer(deltaBases: deltaBases, externalFiles: externalFiles, packedChunks: packed, &text) { out in
            if out.count >= ManifestJSON.sliceSize {
                try compressor.append(out)
                out.removeAll(keepingCapacity: true)
                try handOver()
            }
        }
        try compressor.append(text)
        text = []
    }

    private func place(_ id: String) async {
        switch await known.placeInManifest(id) {
        case .whole, .packed: break
        case .delta(let base): deltaBases[id] = base
        case .beingStored: pending.insert(id)
        }
    }

    private func flush() throws {
        try compressor.append(text)
        text.removeAll(keepingCapacity: true)
        try handOver()
    }

    /// Seals the compressed text made so far, once a sealer is given.
    private func handOver() throws {
        if let framer { try framer.append(compressor.takeOutput()) }
    }
}

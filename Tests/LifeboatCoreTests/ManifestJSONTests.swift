import Foundation
import LifeboatCore
import Testing

/// The manifest writer that skips the encoder's tree writes what the decoder reads back as the same
/// manifest, for every field and for names that need escaping.
struct ManifestJSONTests {
    @Test func writesWhatTheDecoderReadsBackUnchanged() throws {
        let modified = try Timestamp.parse("2026-12-02T10:11:12.345Z")
        let id = String(repeating: "ab", count: 32)
        let base = String(repeating: "cd", count: 32)
        let entries = [
            ManifestEntry(path: "base", type: .directory, mode: 0o700, size: 0, modified: modified, chunks: []),
            ManifestEntry(path: "base/1/1259", type: .file, mode: 0o600, size: 1_500_000, modified: modified, chunks: [id, base]),
            ManifestEntry(path: "odd \"name\"\\with\nnewline\ttab\u{01} and ünïcode", type: .file, mode: 0o640, size: 3, modified: modified,
                chunks: [base]),
            ManifestEntry(path: "pg_tblspc/16384", type: .symlink, mode: 0o777, size: 0, modified: modified, chunks: [], target: "/srv/ts"),
        ]
        let manifest = BackupManifest(backupID: "20261202-101112-abcd", chunkSize: 1 << 20, entries: entries, deltaBases: [id: base],
            externalFiles: [ExternalFile(setting: "hba_file", originalPath: "/etc/postgresql/15/main/pg_hba.conf",
                entry: ManifestEntry(path: "hba_file", type: .file, mode: 0o600, size: 10, modified: modified, chunks: [base]))],
            packedChunks: [base: PackedChunk(pack: String(repeating: "ef", count: 16), offset: 72, length: 100)])
        let written = ManifestJSON.encode(manifest)
        #expect(try RepositoryJSON.decoder().decode(BackupManifest.self, from: written) == manifest)
        let bare = BackupManifest(backupID: "b", chunkSize: 65536, entries: [])
        #expect(try RepositoryJSON.decoder().decode(BackupManifest.self, from: ManifestJSON.encode(bare)) == bare)
        // The same document as the encoder's, but for the slashes it escapes.
        let encoded = String(decoding: try RepositoryJSON.encoder().encode(manifest), as: UTF8.self).replacingOccurrences(of: "\\/", with: "/")
        let ours = String(decoding: written, as: UTF8.self)
        #expect(try JSONSerialization.jsonObject(with: Data(encoded.utf8)) as? NSDictionary == JSONSerialization.jsonObject(with: written) as? NSDictionary)
        #expect(ours.hasPrefix("{\"backupID\":\"20261202-101112-abcd\",\"chunkSize\":1048576,\"deltaBases\":{"))
    }
}

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

    static func sample() throws -> BackupManifest {
        let modified = try Timestamp.parse("2026-12-02T10:11:12.345Z")
        let id = String(repeating: "ab", count: 32)
        let base = String(repeating: "cd", count: 32)
        var entries = [
            ManifestEntry(path: "base", type: .directory, mode: 0o700, size: 0, modified: modified, chunks: []),
            ManifestEntry(path: "odd \"name\"\\with\nnewline\ttab\u{01} and ünïcode 🛟", type: .file, mode: 0o640, size: 3, modified: modified,
                chunks: [base]),
            ManifestEntry(path: "pg_tblspc/16384", type: .symlink, mode: 0o777, size: 0, modified: modified, chunks: [], target: "/srv/ts"),
        ]
        for i in 0..<3000 {
            entries.append(ManifestEntry(path: "base/16384/\(i)", type: .file, mode: 0o600, size: UInt64(i) * 8192 + 1,
                modified: modified.addingTimeInterval(Double(i)), chunks: [String(format: "%064x", i), id]))
        }
        return BackupManifest(backupID: "20261202-101112-abcd", chunkSize: 1 << 20, entries: entries, deltaBases: [id: base],
            externalFiles: [ExternalFile(setting: "hba_file", originalPath: "/etc/postgresql/15/main/pg_hba.conf",
                entry: ManifestEntry(path: "hba_file", type: .file, mode: 0o600, size: 10, modified: modified, chunks: [base]))],
            packedChunks: [base: PackedChunk(pack: String(repeating: "ef", count: 16), offset: 72, length: 100),
                String(format: "%064x", 7): PackedChunk(pack: String(repeating: "ef", count: 16), offset: 500, length: 9)])
    }

    /// The direct reader gives back what either writer wrote, whatever the slices it is fed: ours
    /// (unescaped slashes, written in slices) and Foundation's (escaped slashes, one buffer).
    @Test func readerReadsBothWritersDocumentsInAnySlices() throws {
        let manifest = try Self.sample()
        var slices: [[UInt8]] = []
        ManifestJSON.encode(manifest) { slices.append($0) }
        #expect(slices.count > 1, "a 3,000-entry manifest is written in more than one slice")
        let ours = Data(slices.joined())
        #expect(ours == ManifestJSON.encode(manifest))
        #expect(try ManifestJSONReader.decode(ours) == manifest)
        let foundation = try RepositoryJSON.encoder().encode(manifest)
        #expect(String(decoding: foundation, as: UTF8.self).contains("\\/"))
        #expect(try ManifestJSONReader.decode(foundation) == manifest)
        // Fed in 1 to 7 byte pieces: every token boundary falls inside a refill somewhere.
        for step in [1, 3, 7] {
            var offset = 0
            var reader = ManifestJSONReader { buffer in
                let end = min(offset + step, ours.count)
                buffer.append(contentsOf: ours[offset..<end])
                offset = end
            }
            #expect(try reader.manifest() == manifest)
        }
        // Chunk ids named by entries and by pack locations share one string.
        let read = try ManifestJSONReader.decode(ours)
        #expect(read.packedChunks?.count == 2)
        let bare = BackupManifest(backupID: "b", chunkSize: 65536, entries: [])
        #expect(try ManifestJSONReader.decode(ManifestJSON.encode(bare)) == bare)
    }

    /// Keys a newer writer might add are skipped, whitespace is allowed; malformed documents are
    /// refused with where it went wrong, never read as something else.
    @Test func readerSkipsUnknownKeysAndRefusesMalformedDocuments() throws {
        let text = #"""
            { "zeta": [1, -2.5e3, {"a": [true, false, null]}, "x\/y"], "backupID" : "b1", "chunkSize": 65536,
              "entries": [ {"path": "base\/1", "type": "file", "mode": 384, "size": 5, "modified": "2026-12-02T10:11:12.345Z",
                            "chunks": ["c1"], "target": null, "future": {"k": "v"}} ], "deltaBases": null }
            """#
        let manifest = try ManifestJSONReader.decode(Data(text.utf8))
        #expect(manifest.backupID == "b1")
        #expect(manifest.entries.map(\.path) == ["base/1"])
        #expect(manifest.entries.first?.chunks == ["c1"])
        #expect(manifest.deltaBases == nil)
        let good = ManifestJSON.encode(try Self.sample())
        let broken: [(String, Data)] = [
            ("truncated", good.prefix(good.count - 10)),
            ("trailing text", good + Data(" {}".utf8)),
            ("a float size", Data(#"{"backupID":"b","chunkSize":65536,"entries":[{"path":"p","type":"file","mode":1,"size":1.5,"modified":"2026-12-02T10:11:12Z","chunks":[]}]}"#.utf8)),
            ("an unknown type", Data(#"{"backupID":"b","chunkSize":65536,"entries":[{"path":"p","type":"fifo","mode":1,"size":1,"modified":"2026-12-02T10:11:12Z","chunks":[]}]}"#.utf8)),
            ("no chunk size", Data(#"{"backupID":"b","entries":[]}"#.utf8)),
            ("a raw newline in a string", Data("{\"backupID\":\"b\n\",\"chunkSize\":1,\"entries\":[]}".utf8)),
            ("a lone surrogate", Data(#"{"backupID":"\ud800x","chunkSize":1,"entries":[]}"#.utf8)),
        ]
        for (what, data) in broken {
            #expect(throws: ManifestJSONReader.ParseError.self, "\(what)") { try ManifestJSONReader.decode(data) }
        }
    }
}

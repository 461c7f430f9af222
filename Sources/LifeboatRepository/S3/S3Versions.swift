import Foundation
import LifeboatCore

/// One version of an object in a versioned bucket.
public struct ObjectVersion: Sendable, Equatable, Codable {
    public var key: String
    public var versionID: String
    public var modified: Date
    public var size: Int
    public var isLatest: Bool
    /// A delete marker: the object was deleted at this point (no content).
    public var isDeleteMarker: Bool
}

/// Object versions, for state kept in versioned buckets (Terraform's S3 backend): list the history
/// of one key, read a version, and make an older version current again by copying it over (the
/// versions after it stay in the history, so the restore can itself be undone).
extension S3Store {
    /// Every version of `key` (delete markers included), newest first.
    public func versions(of key: String) async throws -> [ObjectVersion] {
        var result: [ObjectVersion] = []
        var keyMarker: String?
        var versionMarker: String?
        repeat {
            var query: [(String, String)] = [("versions", ""), ("prefix", settings.prefix + key)]
            if let keyMarker { query.append(("key-marker", keyMarker)) }
            if let versionMarker { query.append(("version-id-marker", versionMarker)) }
            let r = try await send("GET", key: nil, query: query)
            guard r.status == 200 else { throw error(r, "list the versions of \(key)") }
            let text = String(decoding: r.body, as: UTF8.self)
            let iso = ISO8601DateFormatter()
            iso.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            let isoPlain = ISO8601DateFormatter()
            for (tag, marker) in [("Version", false), ("DeleteMarker", true)] {
                for block in S3ListParser.blocks(tag, in: text) {
                    guard let full = S3ListParser.element("Key", in: block).map(S3ListParser.unescape), full == settings.prefix + key,
                        let id = S3ListParser.element("VersionId", in: block)
                    else { continue }
                    let modifiedText = S3ListParser.element("LastModified", in: block) ?? ""
                    result.append(ObjectVersion(key: key, versionID: id,
                        modified: iso.date(from: modifiedText) ?? isoPlain.date(from: modifiedText) ?? .distantPast,
                        size: S3ListParser.element("Size", in: block).flatMap(Int.init) ?? 0,
                        isLatest: S3ListParser.element("IsLatest", in: block) == "true", isDeleteMarker: marker))
                }
            }
            let truncated = S3ListParser.value(of: "IsTruncated", in: r.body) == "true"
            keyMarker = truncated ? S3ListParser.value(of: "NextKeyMarker", in: r.body) : nil
            versionMarker = truncated ? S3ListParser.value(of: "NextVersionIdMarker", in: r.body) : nil
        } while keyMarker != nil
        return result.sorted { $0.modified > $1.modified }
    }

    /// The content of one version.
    public func get(_ key: String, versionID: String) async throws -> Data {
        let r = try await send("GET", key: key, query: [("versionId", versionID)])
        switch r.status {
        case 200: return r.body
        case 404: throw LifeboatError(.notFound, "version \(versionID) of \(key) does not exist in \(location)")
        default: throw error(r, "read version \(versionID) of \(key)")
        }
    }

    /// Makes `versionID` the current content of `key` (a server-side copy); returns the new version's id.
    public func restoreVersion(_ key: String, versionID: String) async throws -> String {
        let source = "/\(settings.bucket)/\(SigV4Signer.encodePath(settings.prefix + key))?versionId=\(SigV4Signer.encode(versionID))"
        let r = try await send("PUT", key: key, body: Data(), headers: ["x-amz-copy-source": source])
        guard r.status == 200, S3ListParser.value(of: "Error", in: r.body) == nil else { throw error(r, "restore version \(versionID) of \(key)") }
        return r.headers["x-amz-version-id"] ?? ""
    }

    /// Whether the bucket keeps versions (`Enabled`); restores of state need it.
    public func versioningEnabled() async throws -> Bool {
        let r = try await send("GET", key: nil, query: [("versioning", "")])
        guard r.status == 200 else { throw error(r, "read the versioning of \(settings.bucket)") }
        return S3ListParser.value(of: "Status", in: r.body) == "Enabled"
    }
}

extension S3Store {
    /// Turns versioning on (or suspends it) for the bucket.
    public func setVersioning(_ enabled: Bool) async throws {
        let xml = Data("<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Status>\(enabled ? "Enabled" : "Suspended")</Status></VersioningConfiguration>".utf8)
        let r = try await send("PUT", key: nil, query: [("versioning", "")], body: xml)
        guard r.status == 200 else { throw error(r, "set the versioning of \(settings.bucket)") }
    }
}

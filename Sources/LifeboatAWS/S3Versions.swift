import Foundation
import LifeboatAWSCore
import LifeboatAWSCore
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
public struct S3Versions: Sendable {
    public let s3: S3Client

    public init(_ s3: S3Client) { self.s3 = s3 }

    /// Every version of `key` (delete markers included), newest first.
    public func versions(of key: String) async throws -> [ObjectVersion] {
        var result: [ObjectVersion] = []
        var keyMarker: String?
        var versionMarker: String?
        repeat {
            var query: [(String, String)] = [("versions", ""), ("prefix", key)]
            if let keyMarker { query.append(("key-marker", keyMarker)) }
            if let versionMarker { query.append(("version-id-marker", versionMarker)) }
            let tree = try await s3.exchange("GET", key: nil, query: query, action: "ListObjectVersions") { r, _ in
                guard r.status == 200 else { throw s3.failure(r, "list the versions of \(key)") }
                return try AWSXML.parse(r.body)
            }
            for (tag, marker) in [("Version", false), ("DeleteMarker", true)] {
                for item in tree.children(named: tag) {
                    guard item.children.first(where: { $0.name == "Key" })?.value == key, let id = item.child("VersionId") else { continue }
                    result.append(ObjectVersion(key: key, versionID: id, modified: item.child("LastModified").flatMap(S3Time.parse) ?? .distantPast,
                        size: item.child("Size").flatMap(Int.init) ?? 0, isLatest: item.child("IsLatest") == "true", isDeleteMarker: marker))
                }
            }
            let truncated = tree.child("IsTruncated") == "true"
            keyMarker = truncated ? tree.child("NextKeyMarker") : nil
            versionMarker = truncated ? tree.child("NextVersionIdMarker") : nil
        } while keyMarker != nil
        return result.sorted { $0.modified > $1.modified }
    }

    /// The content of one version.
    public func get(_ key: String, versionID: String) async throws -> Data { try await s3.get(key, versionID: versionID).body }

    /// The current content.
    public func get(_ key: String) async throws -> Data { try await s3.get(key).body }

    /// Makes `versionID` the current content of `key` (a server-side copy); returns the new version's id.
    public func restoreVersion(_ key: String, versionID: String) async throws -> String {
        let source = "/\(s3.bucket.name)/\(SigV4Signer.encodePath(key))?versionId=\(SigV4Signer.encode(versionID))"
        return try await s3.exchange("PUT", key: key, headers: ["x-amz-copy-source": source], action: "CopyObject") { r, _ in
            guard r.status == 200, (try? AWSXML.parse(r.body))?.name != "Error" else { throw s3.failure(r, "restore version \(versionID) of \(key)") }
            return r.headers["x-amz-version-id"] ?? ""
        }
    }

    /// Whether the bucket keeps versions (`Enabled`); restores of state need it.
    public func versioningEnabled() async throws -> Bool { try await s3.versioningEnabled() }
}

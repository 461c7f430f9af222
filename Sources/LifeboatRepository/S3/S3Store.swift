import Crypto
import Foundation
import LifeboatAWSCore
import LifeboatCore

/// Where an S3 repository is: its bucket, the prefix inside it, how to reach it and whether its
/// objects are written locked.
public struct S3Settings: Sendable, Equatable {
    public var bucket: String
    public var prefix: String
    public var region: String
    public var endpoint: URL
    public var pathStyle: Bool
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?
    /// Write every object with this Object Lock mode and retention (immutable repositories).
    public var objectLock: ObjectLockSettings?

    /// Explicit values (the configuration's `s3:` section) win over the environment (`AWS_*`), which
    /// wins over the profile in `~/.aws/credentials` and `~/.aws/config`; see `AWSAccount.resolve`.
    public static func resolve(url: String, overrides: AWSAccountOverrides, pathStyle: Bool? = nil, objectLock: ObjectLockSettings? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment) throws -> S3Settings
    {
        let (bucket, prefix) = try S3Bucket.resolve(url: url, overrides: overrides, pathStyle: pathStyle, environment: environment)
        return S3Settings(bucket: bucket.name, prefix: prefix, region: bucket.region, endpoint: bucket.endpoint, pathStyle: bucket.pathStyle,
            accessKeyID: bucket.account.accessKeyID, secretAccessKey: bucket.account.secretAccessKey,
            sessionToken: bucket.account.sessionToken, objectLock: objectLock)
    }

    /// The bucket, for the shared S3 client.
    public var s3Bucket: S3Bucket {
        S3Bucket(name: bucket, region: region, endpoint: endpoint, pathStyle: pathStyle,
            account: AWSAccount(accessKeyID: accessKeyID, secretAccessKey: secretAccessKey, sessionToken: sessionToken, region: region,
                endpoint: endpoint.absoluteString))
    }
}

/// Object Lock for immutable repositories: every object is written locked until write time plus
/// `retention`. Lifeboat never shortens a lock.
public struct ObjectLockSettings: Sendable, Equatable {
    public enum Mode: String, Sendable, CaseIterable {
        case compliance = "COMPLIANCE"
        case governance = "GOVERNANCE"
    }

    public var mode: Mode
    public var retention: TimeInterval

    public init(mode: Mode, retention: TimeInterval) {
        self.mode = mode
        self.retention = retention
    }
}

/// An `ObjectStore` on any S3 API service (AWS, MinIO, Ceph, moto, ...), over the shared signed AWS
/// client (`S3Client`), which retries throttling, 5xx and dropped connections.
///
/// - `putIfAbsent` is a conditional PUT (`If-None-Match: *`), so two writers never both create; a
///   retried create that finds its own first attempt's object (same bytes) counts as created.
/// - Objects above `multipartThreshold` go up in parts; a failed upload is aborted and never visible.
/// - Errors say whether retrying may help (`retryable`); 403, signature errors and a missing bucket
///   come with a hint.
/// - With Object Lock settings, every recovery-data object is written locked (mode and retain-until
///   date); bookkeeping objects (locks) never are.
public struct S3Store: ObjectStore {
    public let settings: S3Settings
    let s3: S3Client
    public var multipartThreshold = 16 * 1024 * 1024
    public var partSize = 8 * 1024 * 1024

    public var location: String { "s3://\(settings.bucket)/\(settings.prefix)" }

    public init(settings: S3Settings) throws {
        self.settings = settings
        s3 = try S3Client(settings.s3Bucket)
    }

    func full(_ key: String) -> String { settings.prefix + key }

    func failure(_ r: AWSResponse, _ what: String) -> LifeboatError {
        var e = s3.failure(r, what, objectLock: settings.objectLock != nil)
        e.message = e.message.replacingOccurrences(of: "in \(s3.location):", with: "in \(location):")
        return e
    }

    // MARK: - ObjectStore

    public func putIfAbsent(_ key: String, data: Data, class objectClass: ObjectClass) async throws -> Bool {
        if data.count > multipartThreshold {
            if try await info(key) != nil { return false }
            return try await multipartUpload(key, data: data, objectClass: objectClass)
        }
        let headers = lockHeaders(objectClass, data).merging(["If-None-Match": "*"]) { $1 }
        let outcome: Bool? = try await s3.exchange("PUT", key: full(key), headers: headers, body: data, action: "PutObject") { r, attempt in
            switch r.status {
            case 200: return true
            // A retried create may find the object its own earlier attempt wrote: decided below by content.
            case 412: return attempt > 1 ? nil : false
            default: throw failure(r, "store \(key)")
            }
        }
        if let outcome { return outcome }
        return (try? await get(key)) == data
    }

    public func put(_ key: String, data: Data, class objectClass: ObjectClass) async throws {
        try await s3.exchange("PUT", key: full(key), headers: lockHeaders(objectClass, data), body: data, action: "PutObject") { r, _ in
            guard r.status == 200 else { throw failure(r, "store \(key)") }
        }
    }

    public func get(_ key: String) async throws -> Data {
        try await s3.exchange("GET", key: full(key), action: "GetObject") { r, _ in
            switch r.status {
            case 200: return r.body
            case 404: throw LifeboatError(.notFound, "object \(key) does not exist in \(location)")
            default: throw failure(r, "read \(key)")
            }
        }
    }

    public func info(_ key: String) async throws -> ObjectInfo? {
        try await head(key).map { ObjectInfo(key: key, size: $0.size, modified: $0.modified) }
    }

    func head(_ key: String) async throws -> (size: Int, modified: Date, lockedUntil: Date?)? {
        try await s3.exchange("HEAD", key: full(key), action: "HeadObject") { r, _ in
            switch r.status {
            case 200:
                return (r.headers["content-length"].flatMap(Int.init) ?? 0, r.headers["last-modified"].flatMap(S3Time.httpDate) ?? Date(),
                    r.headers["x-amz-object-lock-retain-until-date"].flatMap(S3Time.parse))
            case 404: return nil
            default: throw failure(r, "look up \(key)")
            }
        }
    }

    public func list(prefix: String) async throws -> [ObjectInfo] {
        var result: [ObjectInfo] = []
        try await list(prefix: prefix) { result.append(contentsOf: $0) }
        return result
    }

    /// A page per ListObjectsV2 response (up to 1,000 keys).
    public func list(prefix: String, eachPage: ([ObjectInfo]) throws -> Void) async throws {
        var token: String?
        repeat {
            let page = try await s3.listPage(prefix: settings.prefix + prefix, continuation: token)
            try eachPage(page.objects.filter { $0.key.hasPrefix(settings.prefix) }.map {
                ObjectInfo(key: String($0.key.dropFirst(settings.prefix.count)), size: $0.size, modified: $0.modified)
            })
            token = page.nextContinuationToken
        } while token != nil
    }

    public func isEmpty() async throws -> Bool {
        try await s3.listPage(prefix: settings.prefix, continuation: nil).objects.isEmpty
    }

    public func delete(_ key: String) async throws {
        // On a locked bucket a plain DELETE would only hide the object behind a delete marker;
        // refuse it instead, so expire's accounting stays true.
        if settings.objectLock != nil, let until = try await protectedUntil(key) {
            throw LifeboatError(.repository, "\(key) is locked until \(Timestamp.format(until)); not deleted")
        }
        try await s3.exchange("DELETE", key: full(key), action: "DeleteObject") { r, _ in
            guard r.status == 204 || r.status == 200 || r.status == 404 else { throw failure(r, "delete \(key)") }
        }
    }

    /// Until when Object Lock protects `key` (nil: not locked or the lock has ended).
    public func protectedUntil(_ key: String) async throws -> Date? {
        guard let until = try await head(key)?.lockedUntil else { return nil }
        return until > Date() ? until : nil
    }

    /// Creates the bucket (with Object Lock enabled when `objectLock`); succeeds if it exists and is ours.
    public func createBucket(objectLock: Bool = false) async throws {
        try await s3.createBucket(objectLock: objectLock)
    }

    public var locksObjects: Bool { settings.objectLock != nil }

    /// PutObjectRetention to `until` when the current lock ends earlier. Compares first: a lock is
    /// only ever lengthened (S3 refuses shortening a COMPLIANCE lock; some servers do not).
    public func extendProtection(_ key: String, until: Date, class objectClass: ObjectClass) async throws {
        guard let lock = settings.objectLock, objectClass == .recoveryData else { return }
        if let current = try await protectedUntil(key), current >= until { return }
        let xml = Data("<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>\(lock.mode.rawValue)</Mode><RetainUntilDate>\(S3Time.format(until))</RetainUntilDate></Retention>".utf8)
        try await s3.exchange("PUT", key: full(key), query: [("retention", "")],
            headers: ["Content-MD5": Data(Insecure.MD5.hash(data: xml)).base64EncodedString()], body: xml, action: "PutObjectRetention") { r, _ in
            guard r.status == 200 else { throw failure(r, "extend the lock of \(key)") }
        }
    }

    // MARK: - multipart

    func multipartUpload(_ key: String, data: Data, objectClass: ObjectClass) async throws -> Bool {
        let uploadID: String = try await s3.exchange("POST", key: full(key), query: [("uploads", "")], headers: lockHeaders(objectClass, nil),
            action: "CreateMultipartUpload") { r, _ in
            guard r.status == 200, let id = (try? AWSXML.parse(r.body))?.text("UploadId") else { throw failure(r, "start a multipart upload of \(key)") }
            return id
        }
        do {
            var parts: [(Int, String)] = []
            var offset = 0
            var number = 1
            while offset < data.count {
                let part = data.subdata(in: offset..<min(offset + partSize, data.count))
                let n = number
                let etag: String = try await s3.exchange("PUT", key: full(key), query: [("partNumber", String(n)), ("uploadId", uploadID)],
                    body: part, action: "UploadPart") { r, _ in
                    guard r.status == 200, let etag = r.headers["etag"] else { throw failure(r, "upload part \(n) of \(key)") }
                    return etag
                }
                parts.append((number, etag))
                offset += part.count
                number += 1
            }
            let xml = "<CompleteMultipartUpload>" + parts.map { "<Part><PartNumber>\($0.0)</PartNumber><ETag>\($0.1)</ETag></Part>" }.joined()
                + "</CompleteMultipartUpload>"
            return try await s3.exchange("POST", key: full(key), query: [("uploadId", uploadID)], headers: ["If-None-Match": "*"],
                body: Data(xml.utf8), action: "CompleteMultipartUpload") { r, attempt in
                if r.status == 412 { return attempt > 1 }
                // S3 may answer 200 with an error in the body.
                guard r.status == 200, (try? AWSXML.parse(r.body))?.name != "Error" else { throw failure(r, "complete the multipart upload of \(key)") }
                return true
            }
        } catch {
            _ = try? await s3.exchange("DELETE", key: full(key), query: [("uploadId", uploadID)], action: "AbortMultipartUpload") { _, _ in }
            throw error
        }
    }

    func lockHeaders(_ objectClass: ObjectClass, _ body: Data?) -> [String: String] {
        guard let lock = settings.objectLock, objectClass == .recoveryData else { return [:] }
        var h = ["x-amz-object-lock-mode": lock.mode.rawValue,
            "x-amz-object-lock-retain-until-date": S3Time.format(Date().addingTimeInterval(lock.retention))]
        if let body { h["Content-MD5"] = Data(Insecure.MD5.hash(data: body)).base64EncodedString() }
        return h
    }
}

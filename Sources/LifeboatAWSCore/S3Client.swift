import Foundation
import LifeboatCore

/// A bucket and how to reach it, resolved the way the AWS CLI does: credentials and region from the
/// explicit settings, then the environment, then the profile; a custom endpoint (MinIO, Ceph, moto)
/// implies path-style addressing unless told otherwise.
public struct S3Bucket: Sendable, Equatable {
    public var name: String
    public var region: String
    public var endpoint: URL
    public var pathStyle: Bool
    public var account: AWSAccount

    public init(name: String, region: String, endpoint: URL, pathStyle: Bool, account: AWSAccount) {
        self.name = name
        self.region = region
        self.endpoint = endpoint
        self.pathStyle = pathStyle
        self.account = account
    }

    /// `s3://BUCKET/PREFIX` split into the bucket and the prefix (`""` or ending in `/`).
    public static func parse(url: String) throws -> (bucket: String, prefix: String) {
        guard url.hasPrefix("s3://") else { throw LifeboatError(.invalidUsage, "\(url) is not an s3:// URL") }
        let rest = url.dropFirst("s3://".count)
        let bucket = String(rest.prefix { $0 != "/" })
        guard bucket.count >= 3 else {
            throw LifeboatError(.invalidUsage, "'\(bucket)' is not a bucket name", hint: "write it as s3://BUCKET/PREFIX")
        }
        var prefix = String(rest.dropFirst(bucket.count)).trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        if !prefix.isEmpty { prefix += "/" }
        return (bucket, prefix)
    }

    /// The bucket named by an `s3://` URL, and the URL's prefix.
    public static func resolve(url: String, overrides: AWSAccountOverrides, pathStyle: Bool? = nil,
        environment env: [String: String] = ProcessInfo.processInfo.environment) throws -> (bucket: S3Bucket, prefix: String)
    {
        let (name, prefix) = try parse(url: url)
        let account = try AWSAccount.resolve(overrides, environment: env, service: "S3", what: url)
        let custom = account.endpoint != nil
        guard let endpoint = URL(string: account.endpoint ?? "https://s3.\(account.region).amazonaws.com"), endpoint.host != nil else {
            throw LifeboatError(.invalidUsage, "'\(account.endpoint ?? "")' is not an endpoint URL", hint: "write it as http://127.0.0.1:9000")
        }
        return (S3Bucket(name: name, region: account.region, endpoint: endpoint, pathStyle: pathStyle ?? (custom || name.contains(".")),
            account: account), prefix)
    }
}

/// Requests on one bucket over the shared signed client: the addressing (path or virtual-host
/// style) is decided here once. Object stores, state backups and version restores build on it.
public struct S3Client: Sendable {
    public let bucket: S3Bucket
    public let client: AWSClient

    public init(_ bucket: S3Bucket) throws {
        self.bucket = bucket
        var account = bucket.account
        account.endpoint = bucket.endpoint.absoluteString
        client = try AWSClient(.s3, account: account)
    }

    /// `s3://bucket/` for messages.
    public var location: String { "s3://\(bucket.name)/" }

    var hostAndBasePath: (host: String, base: String) {
        var host = bucket.endpoint.host ?? ""
        if let port = bucket.endpoint.port { host += ":\(port)" }
        return bucket.pathStyle ? (host, "/" + bucket.name) : (bucket.name + "." + host, "")
    }

    /// One signed request on `key` (the full object key, prefix included) or on the bucket itself
    /// (`key` nil); `interpret` sees every answer, whatever its status (see `AWSClient.exchange`).
    public func exchange<T>(_ method: String, key: String?, query: [(String, String)] = [], headers: [String: String] = [:],
        body: Data = Data(), action: String, _ interpret: @Sendable (AWSResponse, Int) throws -> T) async throws -> T
    {
        let (host, base) = hostAndBasePath
        let path = base + "/" + (key ?? "")
        return try await client.exchange(method, host: host, path: path == "/" ? "/" : path, query: query, action: action,
            body: body, headers: headers, interpret)
    }

    /// The error an S3 answer stands for, with the hints an operator needs (`what`: "store chunks/ab/...").
    public func failure(_ response: AWSResponse, _ what: String, objectLock: Bool = false) -> LifeboatError {
        let (code, message) = AWSClient.errorDetail(response)
        let text = "cannot \(what) in \(location): \(code?.rawValue ?? "HTTP \(response.status)")\(message.isEmpty ? "" : " (\(message))")"
        var error: LifeboatError
        switch (response.status, code) {
        case (403, let c):
            let hint = c == .signatureDoesNotMatch
                ? "the secret key does not match the access key, or this machine's clock is off"
                : "check the credentials and that they may read and write \(location)"
            error = LifeboatError(.repository, text, hint: hint)
        case (404, .noSuchBucket?):
            error = LifeboatError(.repository, text, hint: "create the bucket first, in region \(bucket.region)")
        case (400, .invalidRequest?) where objectLock:
            error = LifeboatError(.repository, text, hint: "immutable mode needs a bucket created with Object Lock enabled")
        case (429, _), (500...599, _), (409, .conditionalRequestConflict?), (409, .operationAborted?):
            error = LifeboatError(.io, text, retryable: true)
        case (_, let c?) where c.isThrottling:
            error = LifeboatError(.io, text, retryable: true)
        default:
            error = LifeboatError(.io, text)
        }
        error.remoteCode = code?.rawValue
        return error
    }

    // MARK: - whole objects, for callers outside the repository (state backups, versions)

    /// Reads `key`; `.notFound` when it does not exist.
    public func get(_ key: String, versionID: String? = nil) async throws -> AWSResponse {
        try await exchange("GET", key: key, query: versionID.map { [("versionId", $0)] } ?? [], action: "GetObject") { r, _ in
            if r.status == 404 { throw LifeboatError(.notFound, "\(location)\(key)\(versionID.map { " version \($0)" } ?? "") does not exist") }
            guard r.status == 200 else { throw failure(r, "read \(key)") }
            return r
        }
    }

    /// Writes `key` whole (replacing it), with extra headers (`x-amz-server-side-encryption`, ...);
    /// returns the answer's headers (the new version id).
    @discardableResult
    public func put(_ key: String, data: Data, headers: [String: String] = [:]) async throws -> [String: String] {
        try await exchange("PUT", key: key, headers: headers, body: data, action: "PutObject") { r, _ in
            guard r.status == 200 else { throw failure(r, "store \(key)") }
            return r.headers
        }
    }

    /// Creates the bucket (with Object Lock when asked); succeeds if it exists and is ours.
    public func createBucket(objectLock: Bool = false) async throws {
        var headers: [String: String] = [:]
        if objectLock { headers["x-amz-bucket-object-lock-enabled"] = "true" }
        var body = Data()
        if bucket.region != "us-east-1" { headers["Content-Type"] = "application/xml" }
        if bucket.region != "us-east-1" {
            body = Data("<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>\(bucket.region)</LocationConstraint></CreateBucketConfiguration>".utf8)
        }
        try await exchange("PUT", key: nil, headers: headers, body: body, action: "CreateBucket") { r, _ in
            guard r.status == 200 || AWSClient.errorDetail(r).0 == .bucketAlreadyOwnedByYou else {
                throw failure(r, "create bucket \(bucket.name)")
            }
        }
    }

    /// Whether the bucket keeps versions (`Enabled`).
    public func versioningEnabled() async throws -> Bool {
        try await exchange("GET", key: nil, query: [("versioning", "")], action: "GetBucketVersioning") { r, _ in
            guard r.status == 200 else { throw failure(r, "read the versioning of \(bucket.name)") }
            return (try? AWSXML.parse(r.body))?.text("Status") == "Enabled"
        }
    }

    /// Turns versioning on (or suspends it).
    public func setVersioning(_ enabled: Bool) async throws {
        let xml = Data("<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Status>\(enabled ? "Enabled" : "Suspended")</Status></VersioningConfiguration>".utf8)
        try await exchange("PUT", key: nil, query: [("versioning", "")], headers: ["Content-Type": "application/xml"], body: xml,
            action: "PutBucketVersioning") { r, _ in
            guard r.status == 200 else { throw failure(r, "set the versioning of \(bucket.name)") }
        }
    }

    /// One page of ListObjectsV2 under `prefix`.
    public func listPage(prefix: String, continuation: String?) async throws -> S3ListPage {
        var query = [("list-type", "2"), ("prefix", prefix), ("max-keys", "1000")]
        if let continuation { query.append(("continuation-token", continuation)) }
        return try await exchange("GET", key: nil, query: query, action: "ListObjectsV2") { r, _ in
            guard r.status == 200 else { throw failure(r, "list \(prefix)") }
            return try S3ListPage(try AWSXML.parse(r.body))
        }
    }
}

/// One page of a ListObjectsV2 answer.
public struct S3ListPage: Sendable {
    public struct Object: Sendable {
        public var key: String
        public var size: Int
        public var modified: Date
    }

    public var objects: [Object]
    public var nextContinuationToken: String?

    init(_ tree: AWSXML) throws {
        objects = tree.children(named: "Contents").compactMap { c in
            guard let key = c.children.first(where: { $0.name == "Key" })?.value, !key.isEmpty else { return nil }
            return Object(key: key, size: c.child("Size").flatMap(Int.init) ?? 0,
                modified: c.child("LastModified").flatMap(S3Time.parse) ?? Date())
        }
        nextContinuationToken = tree.child("IsTruncated") == "true" ? tree.child("NextContinuationToken") : nil
    }
}

/// The time formats S3 answers in.
public enum S3Time {
    /// `2026-11-29T03:00:00.000Z` (listings, Object Lock dates).
    public static func parse(_ text: String) -> Date? { try? Timestamp.parse(text) }

    /// `Sun, 29 Nov 2026 03:00:00 GMT` (Last-Modified headers).
    public static func httpDate(_ text: String) -> Date? { Timestamp.parseHTTPDate(text) }

    /// `2026-11-29T03:00:00Z`, as Object Lock headers want it.
    public static func format(_ date: Date) -> String {
        let text = Timestamp.format(date)
        return String(text.prefix(19)) + "Z"
    }
}

import Crypto
import Foundation
import LifeboatCore

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// An `ObjectStore` on any S3 API service (AWS, MinIO, Ceph, moto, ...), signed with SigV4.
///
/// - `putIfAbsent` is a conditional PUT (`If-None-Match: *`), so two writers never both create.
/// - Objects above `multipartThreshold` go up in parts; a failed upload is aborted and never visible.
/// - Errors say whether retrying may help (`retryable`): 5xx, throttling, timeouts and dropped
///   connections do; 403, signature errors and a missing bucket do not and come with a hint.
/// - With Object Lock settings, every object is written locked (mode and retain-until date).
public final class S3Store: ObjectStore, @unchecked Sendable {
    public let settings: S3Settings
    let session: URLSession
    public var multipartThreshold = 16 * 1024 * 1024
    public var partSize = 8 * 1024 * 1024

    public var location: String { "s3://\(settings.bucket)/\(settings.prefix)" }

    public init(settings: S3Settings) {
        self.settings = settings
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = 60
        configuration.httpMaximumConnectionsPerHost = 16
        configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
        session = URLSession(configuration: configuration)
    }

    // MARK: - ObjectStore

    public func putIfAbsent(_ key: String, data: Data) async throws -> Bool {
        if data.count > multipartThreshold {
            if try await info(key) != nil { return false }
            return try await multipartUpload(key, data: data, ifAbsent: true)
        }
        let r = try await send("PUT", key: key, body: data, headers: lockHeaders(key, data).merging(["If-None-Match": "*"]) { $1 })
        switch r.status {
        case 200: return true
        case 412: return false
        default: throw error(r, "store \(key)")
        }
    }

    public func put(_ key: String, data: Data) async throws {
        let r = try await send("PUT", key: key, body: data, headers: lockHeaders(key, data))
        guard r.status == 200 else { throw error(r, "store \(key)") }
    }

    public func get(_ key: String) async throws -> Data {
        let r = try await send("GET", key: key)
        switch r.status {
        case 200:
            if let expected = r.headers["content-length"].flatMap(Int.init), expected != r.body.count {
                throw LifeboatError(.io, "\(location)\(key) arrived truncated (\(r.body.count) of \(expected) bytes)", retryable: true)
            }
            return r.body
        case 404: throw LifeboatError(.notFound, "object \(key) does not exist in \(location)")
        default: throw error(r, "read \(key)")
        }
    }

    public func info(_ key: String) async throws -> ObjectInfo? {
        let r = try await send("HEAD", key: key)
        switch r.status {
        case 200:
            return ObjectInfo(key: key, size: r.headers["content-length"].flatMap(Int.init) ?? 0,
                modified: r.headers["last-modified"].flatMap(Self.httpDate) ?? Date())
        case 404: return nil
        default: throw error(r, "look up \(key)")
        }
    }

    public func list(prefix: String) async throws -> [ObjectInfo] {
        var result: [ObjectInfo] = []
        var token: String?
        repeat {
            var query = [("list-type", "2"), ("prefix", settings.prefix + prefix), ("max-keys", "1000")]
            if let token { query.append(("continuation-token", token)) }
            let r = try await send("GET", key: nil, query: query)
            guard r.status == 200 else { throw error(r, "list \(prefix)") }
            let page = try S3ListParser.parse(r.body)
            for item in page.objects where item.key.hasPrefix(settings.prefix) {
                result.append(ObjectInfo(key: String(item.key.dropFirst(settings.prefix.count)), size: item.size, modified: item.modified))
            }
            token = page.truncated ? page.nextToken : nil
        } while token != nil
        return result
    }

    public func delete(_ key: String) async throws {
        // On a locked bucket a plain DELETE would only hide the object behind a delete marker;
        // refuse it instead, so expire's accounting stays true.
        if settings.objectLock != nil, let until = try await protectedUntil(key) {
            throw LifeboatError(.repository, "\(key) is locked until \(Timestamp.format(until)); not deleted")
        }
        let r = try await send("DELETE", key: key)
        guard r.status == 204 || r.status == 200 || r.status == 404 else { throw error(r, "delete \(key)") }
    }

    /// Until when Object Lock protects `key` (nil: not locked or the lock has ended).
    public func protectedUntil(_ key: String) async throws -> Date? {
        let r = try await send("HEAD", key: key)
        guard r.status == 200, let text = r.headers["x-amz-object-lock-retain-until-date"] else { return nil }
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let date = f.date(from: text) ?? ISO8601DateFormatter().date(from: text)
        return date.flatMap { $0 > Date() ? $0 : nil }
    }

    /// Creates the bucket (with Object Lock enabled when `objectLock`); succeeds if it exists and is ours.
    public func createBucket(objectLock: Bool = false) async throws {
        var headers: [String: String] = [:]
        if objectLock { headers["x-amz-bucket-object-lock-enabled"] = "true" }
        var body: Data?
        if settings.region != "us-east-1" {
            body = Data("<CreateBucketConfiguration><LocationConstraint>\(settings.region)</LocationConstraint></CreateBucketConfiguration>".utf8)
        }
        let r = try await send("PUT", key: nil, body: body, headers: headers)
        guard r.status == 200 || S3ListParser.value(of: "Code", in: r.body) == "BucketAlreadyOwnedByYou" else {
            throw error(r, "create bucket \(settings.bucket)")
        }
    }

    public var locksObjects: Bool { settings.objectLock != nil }

    /// PutObjectRetention to `until` when the current lock ends earlier. Compares first: a lock is
    /// only ever lengthened (S3 refuses shortening a COMPLIANCE lock; some servers do not).
    public func extendProtection(_ key: String, until: Date) async throws {
        guard let lock = settings.objectLock, !isBookkeeping(key) else { return }
        if let current = try await protectedUntil(key), current >= until { return }
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        let xml = Data("<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>\(lock.mode.rawValue)</Mode><RetainUntilDate>\(f.string(from: until))</RetainUntilDate></Retention>".utf8)
        let r = try await send("PUT", key: key, query: [("retention", "")], body: xml,
            headers: ["Content-MD5": Data(Insecure.MD5.hash(data: xml)).base64EncodedString()])
        guard r.status == 200 else { throw error(r, "extend the lock of \(key)") }
    }

    // MARK: - multipart

    func multipartUpload(_ key: String, data: Data, ifAbsent: Bool) async throws -> Bool {
        let start = try await send("POST", key: key, query: [("uploads", "")], headers: lockHeaders(key, nil))
        guard start.status == 200, let uploadID = S3ListParser.value(of: "UploadId", in: start.body) else {
            throw error(start, "start a multipart upload of \(key)")
        }
        do {
            var parts: [(Int, String)] = []
            var offset = 0
            var number = 1
            while offset < data.count {
                let part = data.subdata(in: offset..<min(offset + partSize, data.count))
                let r = try await send("PUT", key: key, query: [("partNumber", String(number)), ("uploadId", uploadID)], body: part)
                guard r.status == 200, let etag = r.headers["etag"] else { throw error(r, "upload part \(number) of \(key)") }
                parts.append((number, etag))
                offset += part.count
                number += 1
            }
            let xml = "<CompleteMultipartUpload>" + parts.map { "<Part><PartNumber>\($0.0)</PartNumber><ETag>\($0.1)</ETag></Part>" }.joined()
                + "</CompleteMultipartUpload>"
            let done = try await send("POST", key: key, query: [("uploadId", uploadID)], body: Data(xml.utf8),
                headers: ifAbsent ? ["If-None-Match": "*"] : [:])
            if done.status == 412 { return false }
            guard done.status == 200, !String(decoding: done.body, as: UTF8.self).contains("<Error>") else {
                throw error(done, "complete the multipart upload of \(key)")
            }
            return true
        } catch {
            _ = try? await send("DELETE", key: key, query: [("uploadId", uploadID)])
            throw error
        }
    }

    // MARK: - HTTP

    struct Response {
        var status: Int
        var headers: [String: String]
        var body: Data
    }

    func lockHeaders(_ key: String, _ body: Data?) -> [String: String] {
        guard let lock = settings.objectLock, !isBookkeeping(key) else { return [:] }
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        var h = ["x-amz-object-lock-mode": lock.mode.rawValue,
            "x-amz-object-lock-retain-until-date": f.string(from: Date().addingTimeInterval(lock.retention))]
        if let body { h["Content-MD5"] = Data(Insecure.MD5.hash(data: body)).base64EncodedString() }
        return h
    }

    func send(_ method: String, key: String?, query: [(String, String)] = [], body: Data? = nil,
        headers: [String: String] = [:]) async throws -> Response
    {
        var path = "/"
        var host = settings.endpoint.host ?? ""
        if settings.pathStyle {
            path += settings.bucket + (key != nil ? "/" : "")
        } else {
            host = settings.bucket + "." + host
        }
        if let key { path += settings.prefix + key }
        if let port = settings.endpoint.port { host += ":\(port)" }
        var components = URLComponents()
        components.scheme = settings.endpoint.scheme
        components.percentEncodedHost = host.split(separator: ":").first.map(String.init)
        components.port = settings.endpoint.port
        components.percentEncodedPath = SigV4Signer.encodePath(path)
        if !query.isEmpty {
            components.percentEncodedQuery = query.map { $0.1.isEmpty && ["uploads", "retention", "versions", "versioning"].contains($0.0) ? $0.0 : "\(SigV4Signer.encode($0.0))=\(SigV4Signer.encode($0.1))" }
                .joined(separator: "&")
        }
        guard let url = components.url else { throw LifeboatError(.internalError, "cannot build a URL for \(path)") }
        var request = URLRequest(url: url)
        request.httpMethod = method
        let payload = body ?? Data()
        let signer = SigV4Signer(accessKeyID: settings.accessKeyID, secretAccessKey: settings.secretAccessKey,
            sessionToken: settings.sessionToken, region: settings.region)
        let signed = signer.sign(method: method, host: host, path: path, query: query, headers: headers,
            payloadHash: SigV4Signer.payloadHash(payload), date: Date())
        for (k, v) in headers.merging(signed, uniquingKeysWith: { $1 }) { request.setValue(v, forHTTPHeaderField: k) }
        do {
            // Bodies go through upload(for:from:): corelibs URLSession can drop `httpBody` on POST.
            let (data, response) = body == nil
                ? try await session.data(for: request) : try await session.upload(for: request, from: payload)
            guard let http = response as? HTTPURLResponse else { throw LifeboatError(.io, "no HTTP response from \(settings.endpoint)", retryable: true) }
            var h: [String: String] = [:]
            for (k, v) in http.allHeaderFields { h["\(k)".lowercased()] = "\(v)" }
            return Response(status: http.statusCode, headers: h, body: data)
        } catch let e as LifeboatError {
            throw e
        } catch {
            throw LifeboatError(.io, "\(method) \(location)\(key ?? "") failed: \(error.localizedDescription)",
                hint: "check that \(settings.endpoint.absoluteString) is reachable", retryable: true)
        }
    }

    func error(_ r: Response, _ what: String) -> LifeboatError {
        let code = S3ListParser.value(of: "Code", in: r.body) ?? "HTTP \(r.status)"
        let message = S3ListParser.value(of: "Message", in: r.body) ?? ""
        let text = "cannot \(what) in \(location): \(code)\(message.isEmpty ? "" : " (\(message))")"
        switch r.status {
        case 403:
            let hint = code == "SignatureDoesNotMatch"
                ? "the secret key does not match the access key, or this machine's clock is off"
                : "check the credentials and that they may read and write s3://\(settings.bucket)/\(settings.prefix)"
            return LifeboatError(.repository, text, hint: hint)
        case 404 where code == "NoSuchBucket":
            return LifeboatError(.repository, text, hint: "create the bucket first, in region \(settings.region)")
        case 400 where code == "InvalidRequest" && settings.objectLock != nil:
            return LifeboatError(.repository, text, hint: "immutable mode needs a bucket created with Object Lock enabled")
        case 429, 500...599:
            return LifeboatError(.io, text, retryable: true)
        case 409 where code == "ConditionalRequestConflict" || code == "OperationAborted":
            return LifeboatError(.io, text, retryable: true)
        default:
            return LifeboatError(.io, text)
        }
    }

    static func httpDate(_ text: String) -> Date? {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return f.date(from: text)
    }
}

/// Reads the few XML answers S3 gives: ListObjectsV2 pages, errors, upload ids.
enum S3ListParser {
    struct Page {
        var objects: [(key: String, size: Int, modified: Date)] = []
        var truncated = false
        var nextToken: String?
    }

    static func parse(_ data: Data) throws -> Page {
        let text = String(decoding: data, as: UTF8.self)
        var page = Page()
        page.truncated = value(of: "IsTruncated", in: data) == "true"
        page.nextToken = value(of: "NextContinuationToken", in: data)
        let iso = ISO8601DateFormatter()
        iso.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let isoPlain = ISO8601DateFormatter()
        for block in blocks("Contents", in: text) {
            guard let key = element("Key", in: block) else { continue }
            let size = element("Size", in: block).flatMap(Int.init) ?? 0
            let modifiedText = element("LastModified", in: block) ?? ""
            let modified = iso.date(from: modifiedText) ?? isoPlain.date(from: modifiedText) ?? Date()
            page.objects.append((unescape(key), size, modified))
        }
        return page
    }

    static func value(of name: String, in data: Data) -> String? {
        element(name, in: String(decoding: data, as: UTF8.self)).map(unescape)
    }

    static func element(_ name: String, in text: String) -> String? {
        guard let open = text.range(of: "<\(name)>"), let close = text.range(of: "</\(name)>", range: open.upperBound..<text.endIndex) else {
            return nil
        }
        return String(text[open.upperBound..<close.lowerBound])
    }

    static func blocks(_ name: String, in text: String) -> [String] {
        var result: [String] = []
        var rest = text[...]
        while let open = rest.range(of: "<\(name)>"), let close = rest.range(of: "</\(name)>", range: open.upperBound..<rest.endIndex) {
            result.append(String(rest[open.upperBound..<close.lowerBound]))
            rest = rest[close.upperBound...]
        }
        return result
    }

    static func unescape(_ s: String) -> String {
        s.replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">").replacingOccurrences(of: "&quot;", with: "\"")
            .replacingOccurrences(of: "&apos;", with: "'").replacingOccurrences(of: "&amp;", with: "&")
    }
}

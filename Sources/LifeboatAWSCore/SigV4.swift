import Crypto
import Foundation
import LifeboatCore

/// AWS Signature Version 4 (the "Authorization header" form, and presigned queries), written from
/// the AWS specification. Pure: takes the request parts and a clock reading, returns what to add.
public struct SigV4Signer: Sendable {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?
    public var region: String
    public var service: String

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil, region: String, service: String = "s3") {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.region = region
        self.service = service
    }

    /// Headers to send: `x-amz-date`, `x-amz-content-sha256`, the session token if any, and
    /// `Authorization`. `headers` are the other headers to sign (names in any case); `host`
    /// includes the port when it is not the scheme's default.
    public func sign(method: String, host: String, path: String, query: [(String, String)], headers: [String: String],
        payloadHash: String, date: Date) -> [String: String]
    {
        let (amzDate, day) = Self.timestamps(date)
        var all: [String: String] = [:]
        for (k, v) in headers { all[k.lowercased()] = v.trimmingCharacters(in: .whitespaces) }
        all["host"] = host
        all["x-amz-date"] = amzDate
        all["x-amz-content-sha256"] = payloadHash
        if let sessionToken { all["x-amz-security-token"] = sessionToken }
        let signedNames = all.keys.sorted()
        let canonicalHeaders = signedNames.map { "\($0):\(all[$0] ?? "")\n" }.joined()
        let signedHeaders = signedNames.joined(separator: ";")
        let canonicalRequest = [method, Self.encodePath(path), Self.canonicalQuery(query), canonicalHeaders, signedHeaders, payloadHash]
            .joined(separator: "\n")
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let signature = self.signature(canonicalRequest, amzDate: amzDate, day: day)
        var result: [String: String] = ["x-amz-date": amzDate, "x-amz-content-sha256": payloadHash]
        if let sessionToken { result["x-amz-security-token"] = sessionToken }
        result["Authorization"] = "AWS4-HMAC-SHA256 Credential=\(accessKeyID)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"
        return result
    }

    /// A presigned request (the "query string" form): the query to send, signature included. Only
    /// `host` is signed and the payload is empty, as for the RDS cross-region `PreSignedUrl`.
    public func presign(method: String, host: String, path: String, query: [(String, String)], date: Date,
        expires: Int) -> [(String, String)]
    {
        let (amzDate, day) = Self.timestamps(date)
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        var all = query + [("X-Amz-Algorithm", "AWS4-HMAC-SHA256"), ("X-Amz-Credential", "\(accessKeyID)/\(scope)"),
            ("X-Amz-Date", amzDate), ("X-Amz-Expires", String(expires)), ("X-Amz-SignedHeaders", "host")]
        if let sessionToken { all.append(("X-Amz-Security-Token", sessionToken)) }
        let canonicalRequest = [method, Self.encodePath(path), Self.canonicalQuery(all), "host:\(host)\n", "host",
            Self.payloadHash(Data())].joined(separator: "\n")
        return all + [("X-Amz-Signature", signature(canonicalRequest, amzDate: amzDate, day: day))]
    }

    func signature(_ canonicalRequest: String, amzDate: String, day: String) -> String {
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let stringToSign = ["AWS4-HMAC-SHA256", amzDate, scope, Self.hex(SHA256.hash(data: Data(canonicalRequest.utf8)))]
            .joined(separator: "\n")
        return Self.hex(HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: signingKey(day: day)))
    }

    static func canonicalQuery(_ query: [(String, String)]) -> String {
        query.map { (encode($0.0), encode($0.1)) }.sorted { $0 < $1 }.map { "\($0.0)=\($0.1)" }.joined(separator: "&")
    }

    func signingKey(day: String) -> SymmetricKey {
        func hmac(_ key: SymmetricKey, _ text: String) -> SymmetricKey {
            SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(text.utf8), using: key)))
        }
        let kDate = hmac(SymmetricKey(data: Data("AWS4\(secretAccessKey)".utf8)), day)
        return hmac(hmac(hmac(kDate, region), service), "aws4_request")
    }

    static func timestamps(_ date: Date) -> (String, String) {
        let amz = Timestamp.compactUTC(date, separator: "T") + "Z"
        return (amz, String(amz.prefix(8)))
    }

    /// RFC 3986 encoding as SigV4 wants it: only unreserved characters stay.
    public static func encode(_ s: String) -> String {
        var out = ""
        for byte in s.utf8 {
            let c = Character(UnicodeScalar(byte))
            if (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x30 && byte <= 0x39) || "-_.~".contains(c) {
                out.append(c)
            } else {
                out += String(format: "%%%02X", byte)
            }
        }
        return out
    }

    public static func encodePath(_ path: String) -> String {
        path.split(separator: "/", omittingEmptySubsequences: false).map { encode(String($0)) }.joined(separator: "/")
    }

    public static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        Hex.encode(digest)
    }

    public static func payloadHash(_ data: Data) -> String { hex(SHA256.hash(data: data)) }
}

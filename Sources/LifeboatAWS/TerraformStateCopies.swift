import Foundation
import LifeboatAWSCore
import LifeboatCore

/// The seed's Terraform state backup: read the state where Terraform keeps it (a local file or the
/// S3 backend's object, whose bucket must keep versions), and copy it to a backup bucket encrypted
/// with SSE-KMS under `<prefix>/YYYY/MM/DD/terraform.tfstate.<time>`.
public struct TerraformStateCopies: Sendable {
    public let overrides: AWSAccountOverrides

    public init(overrides: AWSAccountOverrides) { self.overrides = overrides }

    /// The state's bytes, and for an S3 backend whether its bucket keeps versions (nil for a file).
    public func read(_ source: String) async throws -> (data: Data, versioned: Bool?) {
        if source.hasPrefix("s3://") {
            let (bucket, prefix) = try S3Bucket.resolve(url: source, overrides: overrides)
            let key = String(prefix.dropLast(prefix.hasSuffix("/") ? 1 : 0))
            guard !key.isEmpty else { throw LifeboatError(.invalidUsage, "\(source) names a bucket, not the state object", hint: "write s3://BUCKET/path/terraform.tfstate") }
            let s3 = try S3Client(bucket)
            let data = try await s3.get(key).body
            return (data, try await s3.versioningEnabled())
        }
        guard let data = FileManager.default.contents(atPath: source) else {
            throw LifeboatError(.notFound, "Terraform state \(source) cannot be read", hint: "check aws.terraform.state (a file or s3://BUCKET/KEY)")
        }
        return (data, nil)
    }

    /// Checks that the bytes are a Terraform state (JSON with `version` and `serial`); returns the serial.
    public static func serial(_ data: Data) throws -> Int {
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any], object["version"] != nil,
            let serial = object["serial"] as? Int
        else { throw LifeboatError(.integrity, "the Terraform state is not a state file (no version and serial)") }
        return serial
    }

    /// Writes a copy to `bucket` with SSE-KMS under `kmsKey` (AWS's managed key when nil); returns
    /// its `s3://` URL. The answer must confirm the encryption, or the copy counts as failed.
    public func copy(_ data: Data, bucket: String, prefix: String, kmsKey: String?, now: Date = Date()) async throws -> String {
        let (b, _) = try S3Bucket.resolve(url: "s3://\(bucket)/", overrides: overrides)
        let s3 = try S3Client(b)
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? .current
        let c = calendar.dateComponents([.year, .month, .day], from: now)
        let key = [prefix, String(format: "%04d/%02d/%02d", c.year ?? 0, c.month ?? 0, c.day ?? 0),
            "terraform.tfstate.\(TimestampID.make(now).prefix(15))"].filter { !$0.isEmpty }.joined(separator: "/")
        var headers = ["x-amz-server-side-encryption": "aws:kms"]
        if let kmsKey { headers["x-amz-server-side-encryption-aws-kms-key-id"] = kmsKey }
        let answer = try await s3.put(key, data: data, headers: headers)
        let sse = answer.first { $0.key.lowercased() == "x-amz-server-side-encryption" }?.value
        guard sse == "aws:kms" else {
            throw LifeboatError(.integrity, "s3://\(bucket)/\(key) was stored without SSE-KMS (the answer says \(sse ?? "no encryption"))",
                hint: "check the bucket's encryption settings and the KMS key")
        }
        return "s3://\(bucket)/\(key)"
    }
}

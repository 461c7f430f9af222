import Foundation
import LifeboatCore

/// Where an S3 repository is and how to reach it, resolved the way the AWS CLI does.
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

    /// Explicit values (from the config file's `s3:` section) win over the environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
    /// `AWS_DEFAULT_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`), which win over
    /// the profile in `~/.aws/credentials` and `~/.aws/config` (or `AWS_SHARED_CREDENTIALS_FILE`,
    /// `AWS_CONFIG_FILE`).
    public static func resolve(url: String, explicit: [String: String], objectLock: ObjectLockSettings? = nil,
        environment env: [String: String] = ProcessInfo.processInfo.environment) throws -> S3Settings
    {
        guard url.hasPrefix("s3://") else { throw LifeboatError(.invalidUsage, "\(url) is not an s3:// URL") }
        let rest = url.dropFirst("s3://".count)
        let bucket = String(rest.prefix { $0 != "/" })
        guard bucket.count >= 3 else {
            throw LifeboatError(.invalidUsage, "'\(bucket)' is not a bucket name", hint: "write the repository as s3://BUCKET/PREFIX")
        }
        var prefix = String(rest.dropFirst(bucket.count)).trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        if !prefix.isEmpty { prefix += "/" }

        let account = try AWSAccount.resolve(explicit: explicit, environment: env, service: "S3", what: url)
        let endpointText = account.endpoint
        let region = account.region
        let custom = endpointText != nil
        guard let endpoint = URL(string: endpointText ?? "https://s3.\(region).amazonaws.com"), endpoint.host != nil else {
            throw LifeboatError(.invalidUsage, "'\(endpointText ?? "")' is not an endpoint URL", hint: "write it as http://127.0.0.1:9000")
        }
        let pathStyle = explicit["path_style"].map { ["true", "yes", "1"].contains($0.lowercased()) } ?? (custom || bucket.contains("."))
        return S3Settings(bucket: bucket, prefix: prefix, region: region, endpoint: endpoint, pathStyle: pathStyle,
            accessKeyID: account.accessKeyID, secretAccessKey: account.secretAccessKey, sessionToken: account.sessionToken,
            objectLock: objectLock)
    }
}

/// Credentials, region and endpoint for one AWS service, found the way the AWS CLI finds them.
public struct AWSAccount: Sendable, Equatable {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?
    public var region: String
    /// A custom endpoint (`AWS_ENDPOINT_URL_<SERVICE>`, `AWS_ENDPOINT_URL`, `endpoint_url` in the
    /// profile, or the explicit `endpoint`); nil for AWS itself.
    public var endpoint: String?

    /// Explicit values (`aws_access_key_id`, `aws_secret_access_key`, `aws_session_token`, `region`,
    /// `endpoint`, `profile`) win over the environment, which wins over the profile's files.
    /// `service` names the service-specific endpoint variable: `S3`, `RDS`, `ECS`, `SECRETS_MANAGER`.
    public static func resolve(explicit: [String: String], environment env: [String: String] = ProcessInfo.processInfo.environment,
        service: String, what: String) throws -> AWSAccount
    {
        let home = env["HOME"] ?? NSHomeDirectory()
        let profile = explicit["profile"] ?? env["AWS_PROFILE"] ?? "default"
        let credentialsFile = INIFile(path: env["AWS_SHARED_CREDENTIALS_FILE"] ?? home + "/.aws/credentials")
        let configFile = INIFile(path: env["AWS_CONFIG_FILE"] ?? home + "/.aws/config")
        let fromCredentials = credentialsFile.section(profile)
        let fromConfig = configFile.section(profile == "default" ? "default" : "profile \(profile)")
        func pick(_ key: String, _ envName: String) -> String? {
            explicit[key] ?? env[envName].flatMap { $0.isEmpty ? nil : $0 } ?? fromCredentials[key] ?? fromConfig[key]
        }
        guard let accessKey = pick("aws_access_key_id", "AWS_ACCESS_KEY_ID"),
            let secret = pick("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY")
        else {
            throw LifeboatError(.invalidUsage, "no AWS credentials found for \(what)",
                hint: "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, use a profile in ~/.aws/credentials (AWS_PROFILE), or the configuration file's s3: or aws: section")
        }
        let region = explicit["region"] ?? env["AWS_REGION"] ?? env["AWS_DEFAULT_REGION"] ?? fromConfig["region"] ?? "us-east-1"
        let endpoint = explicit["endpoint"] ?? env["AWS_ENDPOINT_URL_\(service)"].flatMap { $0.isEmpty ? nil : $0 }
            ?? env["AWS_ENDPOINT_URL"].flatMap { $0.isEmpty ? nil : $0 } ?? fromConfig["endpoint_url"]
        return AWSAccount(accessKeyID: accessKey, secretAccessKey: secret, sessionToken: pick("aws_session_token", "AWS_SESSION_TOKEN"),
            region: region, endpoint: endpoint)
    }
}

/// Object Lock for immutable repositories: every object is written locked until write time plus
/// `retention`. Lifeboat never shortens a lock.
public struct ObjectLockSettings: Sendable, Equatable {
    public enum Mode: String, Sendable {
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

/// The AWS CLI's INI files: `[section]` headers and `key = value` lines.
struct INIFile {
    var sections: [String: [String: String]] = [:]

    init(path: String) {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return }
        var current = ""
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("["), line.hasSuffix("]") {
                current = String(line.dropFirst().dropLast()).trimmingCharacters(in: .whitespaces)
                continue
            }
            guard let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            sections[current, default: [:]][key] = value
        }
    }

    func section(_ name: String) -> [String: String] { sections[name] ?? [:] }
}

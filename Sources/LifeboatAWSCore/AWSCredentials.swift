/// LifeboatAWSCore owns what every call to AWS shares: credentials and endpoints found the way the
/// AWS CLI finds them, SigV4 signing, one signed HTTP client on AsyncHTTPClient with retries, typed AWS
/// error codes, and one XML reader. The S3 object store and every control-plane client (RDS, ECS,
/// Route 53, Secrets Manager, ...) are built on it; nothing here knows about repositories.
import Foundation
import LifeboatCore

/// What the configuration says about an AWS account (the `aws:` or `s3:` section, or a runbook
/// step's `region`/`endpoint`/`profile`): each field nil when not given there.
public struct AWSAccountOverrides: Sendable, Equatable {
    public var region: String?
    public var endpoint: String?
    public var profile: String?
    public var accessKeyID: String?
    public var secretAccessKey: String?
    public var sessionToken: String?

    public init(region: String? = nil, endpoint: String? = nil, profile: String? = nil, accessKeyID: String? = nil,
        secretAccessKey: String? = nil, sessionToken: String? = nil)
    {
        self.region = region
        self.endpoint = endpoint
        self.profile = profile
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }

    /// These values with `other`'s non-nil ones over them.
    public func merging(_ other: AWSAccountOverrides) -> AWSAccountOverrides {
        AWSAccountOverrides(region: other.region ?? region, endpoint: other.endpoint ?? endpoint, profile: other.profile ?? profile,
            accessKeyID: other.accessKeyID ?? accessKeyID, secretAccessKey: other.secretAccessKey ?? secretAccessKey,
            sessionToken: other.sessionToken ?? sessionToken)
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

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil, region: String, endpoint: String? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.region = region
        self.endpoint = endpoint
    }

    /// Explicit values win over the environment, which wins over the profile's files.
    /// `service` names the service-specific endpoint variable: `S3`, `RDS`, `ECS`, `SECRETS_MANAGER`.
    public static func resolve(_ explicit: AWSAccountOverrides, environment env: [String: String] = ProcessInfo.processInfo.environment,
        service: String, what: String) throws -> AWSAccount
    {
        let home = env["HOME"] ?? NSHomeDirectory()
        let profile = explicit.profile ?? env["AWS_PROFILE"] ?? "default"
        let credentialsFile = INIFile(path: env["AWS_SHARED_CREDENTIALS_FILE"] ?? home + "/.aws/credentials")
        let configFile = INIFile(path: env["AWS_CONFIG_FILE"] ?? home + "/.aws/config")
        let fromCredentials = credentialsFile.section(profile)
        let fromConfig = configFile.section(profile == "default" ? "default" : "profile \(profile)")
        func pick(_ given: String?, _ key: String, _ envName: String) -> String? {
            given ?? env[envName].flatMap { $0.isEmpty ? nil : $0 } ?? fromCredentials[key] ?? fromConfig[key]
        }
        guard let accessKey = pick(explicit.accessKeyID, "aws_access_key_id", "AWS_ACCESS_KEY_ID"),
            let secret = pick(explicit.secretAccessKey, "aws_secret_access_key", "AWS_SECRET_ACCESS_KEY")
        else {
            throw LifeboatError(.invalidUsage, "no AWS credentials found for \(what)",
                hint: "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, use a profile in ~/.aws/credentials (AWS_PROFILE), or the configuration file's s3: or aws: section")
        }
        let region = explicit.region ?? env["AWS_REGION"] ?? env["AWS_DEFAULT_REGION"] ?? fromConfig["region"] ?? "us-east-1"
        let endpoint = explicit.endpoint ?? env["AWS_ENDPOINT_URL_\(service)"].flatMap { $0.isEmpty ? nil : $0 }
            ?? env["AWS_ENDPOINT_URL"].flatMap { $0.isEmpty ? nil : $0 } ?? fromConfig["endpoint_url"]
        return AWSAccount(accessKeyID: accessKey, secretAccessKey: secret, sessionToken: pick(explicit.sessionToken, "aws_session_token", "AWS_SESSION_TOKEN"),
            region: region, endpoint: endpoint)
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

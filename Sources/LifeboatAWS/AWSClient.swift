/// LifeboatAWS owns Lifeboat's calls to AWS control planes for the seed's deployment: Aurora/RDS
/// clusters and snapshots, ECS services, Secrets Manager. Requests are signed with SigV4 and sent
/// with URLSession; any endpoint speaking the same APIs works (moto in the tests).
import Foundation
import LifeboatCore
import LifeboatRepository

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(FoundationXML)
import FoundationXML
#endif

/// One AWS service endpoint and how to sign for it.
public struct AWSService: Sendable, Equatable {
    /// The signing name and host prefix: `rds`, `ecs`, `secretsmanager`.
    public var name: String
    /// `AWS_ENDPOINT_URL_<this>` overrides the endpoint for this service alone.
    public var endpointVariable: String
    /// A global service's one endpoint (Route 53), instead of a regional one.
    public var globalEndpoint: String?
    /// A global service signs for this region whatever the configured one.
    public var signingRegion: String?

    public init(name: String, endpointVariable: String, globalEndpoint: String? = nil, signingRegion: String? = nil) {
        self.name = name
        self.endpointVariable = endpointVariable
        self.globalEndpoint = globalEndpoint
        self.signingRegion = signingRegion
    }

    public static let route53 = AWSService(name: "route53", endpointVariable: "ROUTE_53",
        globalEndpoint: "https://route53.amazonaws.com", signingRegion: "us-east-1")

    public static let rds = AWSService(name: "rds", endpointVariable: "RDS")
    public static let ecs = AWSService(name: "ecs", endpointVariable: "ECS")
    public static let secretsManager = AWSService(name: "secretsmanager", endpointVariable: "SECRETS_MANAGER")
    public static let ecr = AWSService(name: "ecr", endpointVariable: "ECR")
}

/// A signed client for one service in one region, with retries for throttling and server errors.
public struct AWSClient: Sendable {
    public let service: AWSService
    public let account: AWSAccount
    public let endpoint: URL
    let session: URLSession
    /// Attempts for retryable failures (throttling, 5xx, dropped connections), with backoff.
    public var attempts = 4

    public init(_ service: AWSService, explicit: [String: String] = [:],
        environment: [String: String] = ProcessInfo.processInfo.environment) throws
    {
        try self.init(service, account: try AWSAccount.resolve(explicit: explicit, environment: environment,
            service: service.endpointVariable, what: service.name))
    }

    init(_ service: AWSService, account: AWSAccount) throws {
        let text = account.endpoint ?? service.globalEndpoint ?? "https://\(service.name).\(account.region).amazonaws.com"
        guard let url = URL(string: text), url.host != nil else {
            throw LifeboatError(.invalidUsage, "'\(text)' is not an endpoint URL", hint: "write it as https://host or http://127.0.0.1:5000")
        }
        self.service = service
        self.account = account
        endpoint = url
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = 60
        session = URLSession(configuration: configuration)
    }

    /// The Host header the signature covers: host, and the port when the endpoint names one.
    var hostHeader: String { endpoint.host.map { h in endpoint.port.map { "\(h):\($0)" } ?? h } ?? "" }

    /// The same service and credentials in another region (a custom endpoint stays as it is).
    public func inRegion(_ region: String) throws -> AWSClient {
        var other = account
        other.region = region
        return try AWSClient(service, account: other)
    }

    /// A presigned GET of a Query-protocol action, for APIs that take one (RDS cross-region copies).
    public func presignedQuery(_ action: String, version: String, _ parameters: [(String, String)], expires: Int = 3600) -> String {
        let signer = SigV4Signer(accessKeyID: account.accessKeyID, secretAccessKey: account.secretAccessKey,
            sessionToken: account.sessionToken, region: account.region, service: service.name)
        let query = signer.presign(method: "GET", host: hostHeader, path: "/", query: [("Action", action), ("Version", version)] + parameters,
            date: Date(), expires: expires)
        let base = endpoint.absoluteString.hasSuffix("/") ? String(endpoint.absoluteString.dropLast()) : endpoint.absoluteString
        return base + "/?" + query.map { "\(SigV4Signer.encode($0.0))=\(SigV4Signer.encode($0.1))" }.joined(separator: "&")
    }

    /// The Query protocol (RDS): a form-encoded POST; the answer is XML.
    public func query(_ action: String, version: String, _ parameters: [(String, String)]) async throws -> AWSXML {
        let form = ([("Action", action), ("Version", version)] + parameters)
            .map { "\(SigV4Signer.encode($0.0))=\(SigV4Signer.encode($0.1))" }.joined(separator: "&")
        let data = try await send(action: action, body: Data(form.utf8),
            headers: ["Content-Type": "application/x-www-form-urlencoded; charset=utf-8"]) { status, body in
            let tree = try? AWSXML.parse(body)
            let code = tree?.first("Error")?.text("Code") ?? "HTTP \(status)"
            return (code, tree?.first("Error")?.text("Message") ?? String(decoding: body.prefix(300), as: UTF8.self))
        }
        return try AWSXML.parse(data)
    }

    /// The JSON 1.1 protocol (ECS, Secrets Manager): `X-Amz-Target` names the operation.
    public func json(_ target: String, _ body: [String: Any]) async throws -> [String: Any] {
        let payload = try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
        let data = try await send(action: target.split(separator: ".").last.map(String.init) ?? target, body: payload,
            headers: ["Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target]) { status, body in
            let object = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:]
            let type = (object["__type"] as? String).map { String($0.split(separator: "#").last ?? "") } ?? "HTTP \(status)"
            return (type, (object["message"] ?? object["Message"]).map { "\($0)" } ?? "")
        }
        if data.isEmpty { return [:] }
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw LifeboatError(.externalCommand, "AWS \(service.name) \(target): the answer is not a JSON object")
        }
        return object
    }

    /// The REST-XML protocol (Route 53): a method, a path under the endpoint, a query; XML answers.
    public func rest(_ method: String, _ path: String, query: [(String, String)] = [], body: Data? = nil, action: String) async throws -> AWSXML {
        let data = try await send(method: method, path: path, query: query, action: action, body: body ?? Data(),
            headers: body == nil ? [:] : ["Content-Type": "application/xml"]) { status, body in
            let tree = try? AWSXML.parse(body)
            return (tree?.text("Code") ?? "HTTP \(status)", tree?.text("Message") ?? String(decoding: body.prefix(300), as: UTF8.self))
        }
        return try AWSXML.parse(data)
    }

    func send(method: String = "POST", path: String = "/", query: [(String, String)] = [], action: String, body: Data,
        headers: [String: String], describeError: (Int, Data) -> (code: String, message: String)) async throws -> Data
    {
        var delay = 0.5
        let base = endpoint.path.isEmpty || endpoint.path == "/" ? "" : endpoint.path
        let fullPath = base + path
        var components = URLComponents()
        components.scheme = endpoint.scheme
        components.host = endpoint.host
        components.port = endpoint.port
        components.percentEncodedPath = SigV4Signer.encodePath(fullPath)
        if !query.isEmpty {
            components.percentEncodedQuery = query.map { "\(SigV4Signer.encode($0.0))=\(SigV4Signer.encode($0.1))" }.joined(separator: "&")
        }
        guard let url = components.url else { throw LifeboatError(.internalError, "cannot build a URL for \(fullPath)") }
        for attempt in 1...max(1, attempts) {
            var request = URLRequest(url: url)
            request.httpMethod = method
            let signer = SigV4Signer(accessKeyID: account.accessKeyID, secretAccessKey: account.secretAccessKey,
                sessionToken: account.sessionToken, region: service.signingRegion ?? account.region, service: service.name)
            let signed = signer.sign(method: method, host: hostHeader, path: fullPath, query: query, headers: headers,
                payloadHash: SigV4Signer.payloadHash(body), date: Date())
            for (k, v) in headers.merging(signed, uniquingKeysWith: { $1 }) { request.setValue(v, forHTTPHeaderField: k) }
            let retryable: LifeboatError
            do {
                let (data, response) = method == "GET"
                    ? try await session.data(for: request) : try await session.upload(for: request, from: body)
                let status = (response as? HTTPURLResponse)?.statusCode ?? 0
                if (200..<300).contains(status) { return data }
                let (code, message) = describeError(status, data)
                let text = "AWS \(service.name) \(action) failed: \(code)\(message.isEmpty ? "" : ": \(message)")"
                let throttled = code.contains("Throttl") || code == "RequestLimitExceeded" || code == "TooManyRequestsException"
                guard status >= 500 || status == 429 || throttled else {
                    throw LifeboatError(.externalCommand, text, hint: Self.hint(code: code, status: status, account: account))
                }
                retryable = LifeboatError(.externalCommand, text, retryable: true)
            } catch let e as LifeboatError {
                throw e
            } catch {
                retryable = LifeboatError(.externalCommand, "AWS \(service.name) \(action): \(error.localizedDescription)",
                    hint: "check that \(endpoint.absoluteString) is reachable", retryable: true)
            }
            if attempt == attempts { throw retryable }
            try await Task.sleep(for: .seconds(delay * Double.random(in: 0.8...1.2)))
            delay *= 2
        }
        throw LifeboatError(.internalError, "unreachable")
    }

    static func hint(code: String, status: Int, account: AWSAccount) -> String? {
        switch code {
        case "SignatureDoesNotMatch", "InvalidSignatureException":
            return "the secret key does not match the access key, or this machine's clock is off"
        case "UnrecognizedClientException", "InvalidClientTokenId", "AccessDenied", "AccessDeniedException":
            return "check the credentials and their permissions (region \(account.region))"
        default:
            return status == 404 ? "check the region (\(account.region)) and the resource's name" : nil
        }
    }
}

/// Waiting on AWS operations that finish later (clusters, snapshots, deployments, DNS changes).
public enum AWSWait {
    /// Calls `check` until it returns a value, every `every` seconds, for at most `timeout`.
    public static func until<T: Sendable>(what: String, timeout: TimeInterval, every: TimeInterval,
        _ check: () async throws -> T?) async throws -> T
    {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let done = try await check() { return done }
            guard Date() < deadline else {
                throw LifeboatError(.timeout, "gave up waiting for \(what) after \(HumanDuration.format(timeout))",
                    hint: "it may still finish: check it in the console or with a status step before running the step again")
            }
            try await Task.sleep(for: .seconds(every))
        }
    }
}

/// A small XML tree, enough for the Query protocol's answers.
public final class AWSXML: @unchecked Sendable {
    public let name: String
    public fileprivate(set) var children: [AWSXML] = []
    public fileprivate(set) var value = ""

    init(name: String) { self.name = name }

    /// The first descendant with this name (depth first).
    public func first(_ name: String) -> AWSXML? {
        for c in children {
            if c.name == name { return c }
            if let found = c.first(name) { return found }
        }
        return nil
    }

    /// Every descendant with this name.
    public func all(_ name: String) -> [AWSXML] {
        children.flatMap { ($0.name == name ? [$0] : []) + $0.all(name) }
    }

    /// The text of the first descendant with this name, if not empty.
    public func text(_ name: String) -> String? {
        first(name).map { $0.value.trimmingCharacters(in: .whitespacesAndNewlines) }.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The text of a direct child (not a deeper one with the same name).
    public func child(_ name: String) -> String? {
        children.first { $0.name == name }.map { $0.value.trimmingCharacters(in: .whitespacesAndNewlines) }.flatMap { $0.isEmpty ? nil : $0 }
    }

    public static func parse(_ data: Data) throws -> AWSXML {
        let builder = XMLTreeBuilder()
        let parser = XMLParser(data: data)
        parser.delegate = builder
        guard parser.parse(), let root = builder.root else {
            throw LifeboatError(.externalCommand, "an AWS answer is not valid XML: \(String(decoding: data.prefix(200), as: UTF8.self))")
        }
        return root
    }
}

final class XMLTreeBuilder: NSObject, XMLParserDelegate {
    var root: AWSXML?
    var stack: [AWSXML] = []

    func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName: String?,
        attributes: [String: String] = [:])
    {
        let element = AWSXML(name: elementName)
        if let parent = stack.last { parent.children.append(element) } else { root = element }
        stack.append(element)
    }

    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName: String?) {
        stack.removeLast()
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        stack.last?.value += string
    }
}

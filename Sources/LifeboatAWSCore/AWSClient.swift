import AsyncHTTPClient
import Foundation
import LifeboatCore
import NIOCore
import NIOHTTP1

/// One AWS service endpoint and how to sign for it.
public struct AWSService: Sendable, Equatable {
    /// The signing name and host prefix: `rds`, `ecs`, `secretsmanager`, `s3`.
    public var name: String
    /// `AWS_ENDPOINT_URL_<this>` overrides the endpoint for this service alone.
    public var endpointVariable: String
    /// A global service's one endpoint (Route 53), instead of a regional one.
    public var globalEndpoint: String?
    /// A global service signs for this region whatever the configured one.
    public var signingRegion: String?
    /// The code of a failure that is not the service's answer (no connection, a timeout): object
    /// storage reports `.io`, control planes `.externalCommand`.
    public var transportFailure: LifeboatError.Code

    public init(name: String, endpointVariable: String, globalEndpoint: String? = nil, signingRegion: String? = nil,
        transportFailure: LifeboatError.Code = .externalCommand)
    {
        self.name = name
        self.endpointVariable = endpointVariable
        self.globalEndpoint = globalEndpoint
        self.signingRegion = signingRegion
        self.transportFailure = transportFailure
    }

    public static let s3 = AWSService(name: "s3", endpointVariable: "S3", transportFailure: .io)
    public static let rds = AWSService(name: "rds", endpointVariable: "RDS")
    public static let ecs = AWSService(name: "ecs", endpointVariable: "ECS")
    public static let ecr = AWSService(name: "ecr", endpointVariable: "ECR")
    public static let secretsManager = AWSService(name: "secretsmanager", endpointVariable: "SECRETS_MANAGER")
    public static let logs = AWSService(name: "logs", endpointVariable: "CLOUDWATCH_LOGS")
    public static let config = AWSService(name: "config", endpointVariable: "CONFIG_SERVICE")
    public static let kms = AWSService(name: "kms", endpointVariable: "KMS")
    public static let ec2 = AWSService(name: "ec2", endpointVariable: "EC2")
    public static let elasticLoadBalancing = AWSService(name: "elasticloadbalancing", endpointVariable: "ELASTIC_LOAD_BALANCING_V2")
    public static let route53 = AWSService(name: "route53", endpointVariable: "ROUTE_53",
        globalEndpoint: "https://route53.amazonaws.com", signingRegion: "us-east-1")
}

/// An AWS error code as the service names it (`DBClusterNotFoundFault`, `ThrottlingException`,
/// `NoSuchBucket`, ...): compared as a value, never searched for in message text.
public struct AWSErrorCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    // Throttling, as the services spell it.
    public static let throttling = AWSErrorCode(rawValue: "Throttling")
    public static let throttlingException = AWSErrorCode(rawValue: "ThrottlingException")
    public static let requestLimitExceeded = AWSErrorCode(rawValue: "RequestLimitExceeded")
    public static let tooManyRequests = AWSErrorCode(rawValue: "TooManyRequestsException")
    public static let slowDown = AWSErrorCode(rawValue: "SlowDown")
    public static let priorRequestNotComplete = AWSErrorCode(rawValue: "PriorRequestNotComplete")
    // Credentials and permissions.
    public static let signatureDoesNotMatch = AWSErrorCode(rawValue: "SignatureDoesNotMatch")
    public static let invalidSignature = AWSErrorCode(rawValue: "InvalidSignatureException")
    public static let unrecognizedClient = AWSErrorCode(rawValue: "UnrecognizedClientException")
    public static let invalidClientTokenID = AWSErrorCode(rawValue: "InvalidClientTokenId")
    public static let accessDenied = AWSErrorCode(rawValue: "AccessDenied")
    public static let accessDeniedException = AWSErrorCode(rawValue: "AccessDeniedException")
    public static let expiredToken = AWSErrorCode(rawValue: "ExpiredToken")
    // S3.
    public static let noSuchBucket = AWSErrorCode(rawValue: "NoSuchBucket")
    public static let noSuchKey = AWSErrorCode(rawValue: "NoSuchKey")
    public static let bucketAlreadyOwnedByYou = AWSErrorCode(rawValue: "BucketAlreadyOwnedByYou")
    public static let invalidRequest = AWSErrorCode(rawValue: "InvalidRequest")
    public static let conditionalRequestConflict = AWSErrorCode(rawValue: "ConditionalRequestConflict")
    public static let operationAborted = AWSErrorCode(rawValue: "OperationAborted")
    public static let preconditionFailed = AWSErrorCode(rawValue: "PreconditionFailed")
    // RDS.
    public static let dbClusterNotFound = AWSErrorCode(rawValue: "DBClusterNotFoundFault")
    public static let dbClusterSnapshotNotFound = AWSErrorCode(rawValue: "DBClusterSnapshotNotFoundFault")
    public static let dbInstanceNotFound = AWSErrorCode(rawValue: "DBInstanceNotFound")
    public static let dbSubnetGroupNotFound = AWSErrorCode(rawValue: "DBSubnetGroupNotFoundFault")
    public static let invalidDBClusterState = AWSErrorCode(rawValue: "InvalidDBClusterStateFault")
    public static let invalidDBInstanceState = AWSErrorCode(rawValue: "InvalidDBInstanceState")
    public static let dbClusterAlreadyExists = AWSErrorCode(rawValue: "DBClusterAlreadyExistsFault")
    public static let invalidParameterCombination = AWSErrorCode(rawValue: "InvalidParameterCombination")
    public static let invalidRestore = AWSErrorCode(rawValue: "InvalidRestoreFault")
    public static let invalidVPCNetworkState = AWSErrorCode(rawValue: "InvalidVPCNetworkStateFault")
    public static let kmsKeyNotAccessible = AWSErrorCode(rawValue: "KMSKeyNotAccessibleFault")
    // ECS, ECR, Secrets Manager, Logs.
    public static let serviceNotFound = AWSErrorCode(rawValue: "ServiceNotFoundException")
    public static let clusterNotFound = AWSErrorCode(rawValue: "ClusterNotFoundException")
    public static let imageNotFound = AWSErrorCode(rawValue: "ImageNotFoundException")
    public static let repositoryNotFound = AWSErrorCode(rawValue: "RepositoryNotFoundException")
    public static let lifecyclePolicyNotFound = AWSErrorCode(rawValue: "LifecyclePolicyNotFoundException")
    public static let resourceNotFound = AWSErrorCode(rawValue: "ResourceNotFoundException")
    public static let invalidRequestException = AWSErrorCode(rawValue: "InvalidRequestException")
    public static let limitExceeded = AWSErrorCode(rawValue: "LimitExceededException")
    public static let resourceExists = AWSErrorCode(rawValue: "ResourceExistsException")
    public static let noSuchDeliveryChannel = AWSErrorCode(rawValue: "NoSuchDeliveryChannelException")

    /// Codes that mean "slow down and try again".
    public var isThrottling: Bool {
        [.throttling, .throttlingException, .requestLimitExceeded, .tooManyRequests, .slowDown, .priorRequestNotComplete].contains(self)
    }
}

extension LifeboatError {
    /// The AWS error code behind this error, when AWS refused the call.
    public var awsCode: AWSErrorCode? { remoteCode.map(AWSErrorCode.init(rawValue:)) }
}

/// What came back from AWS for one request, whatever the status.
public struct AWSResponse: Sendable {
    public var status: Int
    /// Header names in lower case.
    public var headers: [String: String]
    public var body: Data
}

/// A signed client for one service in one region: the one HTTP stack under every AWS call
/// (AsyncHTTPClient), with retries (`RetryPolicy.aws`) for throttling, 5xx and dropped connections,
/// and the services' error answers turned into `LifeboatError`s that carry the AWS error code.
public struct AWSClient: Sendable {
    public let service: AWSService
    public let account: AWSAccount
    public let endpoint: URL
    public var retry: RetryPolicy = .aws
    /// Per attempt: connecting, sending and reading the whole answer.
    public var timeout: TimeInterval = 120

    public init(_ service: AWSService, overrides: AWSAccountOverrides = AWSAccountOverrides(),
        environment: [String: String] = ProcessInfo.processInfo.environment) throws
    {
        try self.init(service, account: try AWSAccount.resolve(overrides, environment: environment,
            service: service.endpointVariable, what: service.name))
    }

    public init(_ service: AWSService, account: AWSAccount) throws {
        let text = account.endpoint ?? service.globalEndpoint ?? "https://\(service.name).\(account.region).amazonaws.com"
        guard let url = URL(string: text), url.host != nil, url.scheme == "http" || url.scheme == "https" else {
            throw LifeboatError(.invalidUsage, "'\(text)' is not an endpoint URL", hint: "write it as https://host or http://127.0.0.1:5000")
        }
        self.service = service
        self.account = account
        endpoint = url
    }

    /// The same service and credentials in another region (a custom endpoint stays as it is).
    public func inRegion(_ region: String) throws -> AWSClient {
        var other = account
        other.region = region
        var client = try AWSClient(service, account: other)
        client.retry = retry
        client.timeout = timeout
        return client
    }

    /// The Host header the signature covers: host, and the port when the endpoint names one.
    public var hostHeader: String { endpoint.host.map { h in endpoint.port.map { "\(h):\($0)" } ?? h } ?? "" }

    var signer: SigV4Signer {
        SigV4Signer(accessKeyID: account.accessKeyID, secretAccessKey: account.secretAccessKey, sessionToken: account.sessionToken,
            region: service.signingRegion ?? account.region, service: service.name)
    }

    // MARK: - protocols

    /// A presigned GET of a Query-protocol action, for APIs that take one (RDS cross-region copies).
    public func presignedQuery(_ action: String, version: String, _ parameters: [(String, String)], expires: Int = 3600) -> String {
        let query = signer.presign(method: "GET", host: hostHeader, path: "/", query: [("Action", action), ("Version", version)] + parameters,
            date: Date(), expires: expires)
        let base = endpoint.absoluteString.hasSuffix("/") ? String(endpoint.absoluteString.dropLast()) : endpoint.absoluteString
        return base + "/?" + query.map { "\(SigV4Signer.encode($0.0))=\(SigV4Signer.encode($0.1))" }.joined(separator: "&")
    }

    /// The Query protocol (RDS, EC2, ELB): a form-encoded POST; the answer is XML.
    public func query(_ action: String, version: String, _ parameters: [(String, String)]) async throws -> AWSXML {
        let form = ([("Action", action), ("Version", version)] + parameters)
            .map { "\(SigV4Signer.encode($0.0))=\(SigV4Signer.encode($0.1))" }.joined(separator: "&")
        let response = try await send("POST", action: action, body: Data(form.utf8),
            headers: ["Content-Type": "application/x-www-form-urlencoded; charset=utf-8"])
        return try AWSXML.parse(response.body)
    }

    /// The JSON 1.1 protocol (ECS, ECR, Secrets Manager, CloudWatch Logs, Config): `X-Amz-Target`
    /// names the operation.
    public func json(_ target: String, _ body: [String: Any]) async throws -> [String: Any] {
        let payload = try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
        let action = target.split(separator: ".").last.map(String.init) ?? target
        let response = try await send("POST", action: action, body: payload,
            headers: ["Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target])
        if response.body.isEmpty { return [:] }
        guard let object = try? JSONSerialization.jsonObject(with: response.body) as? [String: Any] else {
            throw LifeboatError(service.transportFailure, "AWS \(service.name) \(action): the answer is not a JSON object")
        }
        return object
    }

    /// The REST-XML protocol (Route 53): a method, a path under the endpoint, a query; XML answers.
    public func rest(_ method: String, _ path: String, query: [(String, String)] = [], body: Data? = nil, action: String) async throws
        -> AWSXML
    {
        let response = try await send(method, path: path, query: query, action: action, body: body ?? Data(),
            headers: body == nil ? [:] : ["Content-Type": "application/xml"])
        return try AWSXML.parse(response.body)
    }

    /// Sends a signed request and returns a 2xx answer; any other answer becomes an error carrying
    /// AWS's code, retried first when it is throttling or a server error.
    public func send(_ method: String, path: String = "/", query: [(String, String)] = [], action: String, body: Data = Data(),
        headers: [String: String] = [:]) async throws -> AWSResponse
    {
        try await exchange(method, path: path, query: query, action: action, body: body, headers: headers) { response, _ in
            guard (200..<300).contains(response.status) else { throw self.failure(response, action: action) }
            return response
        }
    }

    /// The one request loop: signs and sends (signing again on every attempt, the date moves on),
    /// hands each answer to `interpret`, and retries what `interpret` or the transport calls
    /// retryable. `interpret` also gets the attempt number (an S3 conditional create that finds its
    /// own earlier attempt's object needs it).
    public func exchange<T>(_ method: String, host: String? = nil, path: String = "/", query: [(String, String)] = [],
        action: String, body: Data = Data(), headers: [String: String] = [:],
        _ interpret: @Sendable (AWSResponse, Int) throws -> T) async throws -> T
    {
        let base = endpoint.path.isEmpty || endpoint.path == "/" ? "" : endpoint.path
        let fullPath = base + path
        let hostValue = host ?? hostHeader
        var url = "\(endpoint.scheme ?? "https")://\(hostValue)\(SigV4Signer.encodePath(fullPath))"
        if !query.isEmpty {
            url += "?" + query.map { pair in
                // `?uploads` and friends: S3 sub-resources without a value.
                pair.1.isEmpty && Self.bareSubresources.contains(pair.0) ? pair.0 : "\(SigV4Signer.encode(pair.0))=\(SigV4Signer.encode(pair.1))"
            }.joined(separator: "&")
        }
        let payloadHash = SigV4Signer.payloadHash(body)
        return try await retry.run { attempt in
            let signed = signer.sign(method: method, host: hostValue, path: fullPath, query: query, headers: headers,
                payloadHash: payloadHash, date: Date())
            var request = HTTPClientRequest(url: url)
            request.method = HTTPMethod(rawValue: method)
            request.headers.add(name: "Host", value: hostValue)
            request.headers.add(name: "User-Agent", value: "lifeboat/\(LifeboatVersion.current)")
            for (k, v) in headers.merging(signed, uniquingKeysWith: { $1 }) { request.headers.add(name: k, value: v) }
            if !body.isEmpty || ["PUT", "POST"].contains(method) { request.body = .bytes(ByteBuffer(bytes: body)) }
            let response: AWSResponse
            do {
                let answer = try await AWSHTTP.client.execute(request, timeout: .milliseconds(Int64(timeout * 1000)))
                var headers: [String: String] = [:]
                for (name, value) in answer.headers { headers[name.lowercased()] = value }
                let expected = headers["content-length"].flatMap(Int.init)
                let buffer = method == "HEAD" ? ByteBuffer() : try await answer.body.collect(upTo: AWSHTTP.maximumBody)
                let data = Data(buffer.readableBytesView)
                if method != "HEAD", let expected, expected != data.count {
                    throw LifeboatError(service.transportFailure,
                        "AWS \(service.name) \(action): the answer arrived truncated (\(data.count) of \(expected) bytes)", retryable: true)
                }
                response = AWSResponse(status: Int(answer.status.code), headers: headers, body: data)
            } catch let error as LifeboatError {
                throw error
            } catch {
                if Task.isCancelled { throw CancellationError() }
                throw LifeboatError(service.transportFailure, "AWS \(service.name) \(action) to \(endpoint.absoluteString) failed: \(error)",
                    hint: "check that \(endpoint.absoluteString) is reachable", retryable: true)
            }
            return try interpret(response, attempt)
        }
    }

    static let bareSubresources: Set<String> = ["uploads", "retention", "versions", "versioning", "lifecycle", "encryption", "delete"]

    /// The error an answer that is not a success stands for: its code and message read from the XML
    /// or JSON body, retryable for throttling and server errors, with a hint for the usual causes.
    public func failure(_ response: AWSResponse, action: String) -> LifeboatError {
        let (code, message) = Self.errorDetail(response)
        let text = "AWS \(service.name) \(action) failed: \(code?.rawValue ?? "HTTP \(response.status)")\(message.isEmpty ? "" : ": \(message)")"
        let retryable = response.status >= 500 || response.status == 429 || (code?.isThrottling ?? false)
        var error = LifeboatError(service.transportFailure, text, hint: retryable ? nil : hint(code: code, status: response.status),
            retryable: retryable)
        error.remoteCode = code?.rawValue
        return error
    }

    /// The code and message of an error answer, from XML (`<Error><Code>` or `<Code>`) or JSON (`__type`).
    public static func errorDetail(_ response: AWSResponse) -> (AWSErrorCode?, String) {
        let body = response.body
        if let first = body.first(where: { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }), first == UInt8(ascii: "{") {
            let object = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:]
            let type = (object["__type"] as? String).map { String($0.split(separator: "#").last ?? "") }
                ?? response.headers["x-amzn-errortype"].map { String($0.split(separator: ":").first ?? "") }
            return (type.map(AWSErrorCode.init(rawValue:)), (object["message"] ?? object["Message"]).map { "\($0)" } ?? "")
        }
        if let tree = try? AWSXML.parse(body) {
            let error = tree.first("Error") ?? tree
            return (error.text("Code").map(AWSErrorCode.init(rawValue:)), error.text("Message") ?? "")
        }
        return (nil, String(decoding: body.prefix(300), as: UTF8.self))
    }

    func hint(code: AWSErrorCode?, status: Int) -> String? {
        switch code {
        case .signatureDoesNotMatch?, .invalidSignature?:
            return "the secret key does not match the access key, or this machine's clock is off"
        case .unrecognizedClient?, .invalidClientTokenID?, .accessDenied?, .accessDeniedException?:
            return "check the credentials and their permissions (region \(account.region))"
        case .expiredToken?:
            return "the session token has expired: renew the credentials"
        default:
            return status == 404 ? "check the region (\(account.region)) and the resource's name" : nil
        }
    }
}

/// The process's one HTTP client for AWS: no redirects followed (a signed request must not go
/// elsewhere), no transparent decompression, up to 16 connections per host (S3 uploads run in
/// parallel). Never shut down: it lives as long as the process.
enum AWSHTTP {
    static let maximumBody = 1 << 31
    static let client: HTTPClient = {
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow, timeout: .init(connect: .seconds(20)),
            decompression: .disabled)
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 16
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }()
}

/// Waiting on AWS operations that finish later (clusters, snapshots, deployments, DNS changes).
public enum AWSWait {
    /// Calls `check` until it returns a value, for at most `timeout`: soon at first (one second,
    /// doubling), then every `every` seconds, so a quick change is seen quickly and a slow one does
    /// not cost a call a second.
    public static func until<T: Sendable>(what: String, timeout: TimeInterval, every: TimeInterval,
        _ check: () async throws -> T?) async throws -> T
    {
        let deadline = Date().addingTimeInterval(timeout)
        var delay = min(1, every)
        while true {
            if let done = try await check() { return done }
            guard Date() < deadline else {
                throw LifeboatError(.timeout, "gave up waiting for \(what) after \(HumanDuration.format(timeout))",
                    hint: "it may still finish: check it in the console or with a status step before running the step again")
            }
            try await Task.sleep(for: .seconds(min(delay, max(0.01, deadline.timeIntervalSinceNow))))
            delay = min(every, delay * 2)
        }
    }
}

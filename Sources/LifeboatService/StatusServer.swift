import Foundation
import LifeboatCore
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// One HTTP answer.
public struct HTTPAnswer: Sendable {
    public var status: Int
    public var contentType: String
    public var body: String

    public init(status: Int, contentType: String = "text/plain; charset=utf-8", body: String) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }
}

/// A small read-only HTTP/1.1 server (SwiftNIO) for the dashboard, /metrics, /healthz and /status: GET and HEAD
/// only, one task per connection, keep-alive honoured. It binds loopback by default: the status
/// names the repository and the cluster, so exposing it further is the operator's choice.
public struct StatusServer: Sendable {
    public typealias Handler = @Sendable (_ method: String, _ path: String) async -> HTTPAnswer

    public var host: String
    public var port: Int
    let handler: Handler
    let logger: Logger

    public init(host: String, port: Int, logger: Logger, handler: @escaping Handler) {
        self.host = host
        self.port = port
        self.logger = logger
        self.handler = handler
    }

    /// Binds, calls `ready` with the bound port, then serves until the task is cancelled.
    public func run(ready: @Sendable (Int) -> Void = { _ in }) async throws {
        let server: NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>
        do {
            server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .bind(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                        return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw LifeboatError(.io, "cannot listen on \(host):\(port): \(error)",
                hint: "choose another address with --listen HOST:PORT (serve.listen)")
        }
        ready(server.channel.localAddress?.port ?? port)
        logger.info("serving /metrics, /healthz and /status", metadata: ["lifeboat.listen": .string("\(host):\(server.channel.localAddress?.port ?? port)")])
        try await withThrowingDiscardingTaskGroup { group in
            try await withTaskCancellationHandler {
                try await server.executeThenClose { connections in
                    for try await connection in connections {
                        group.addTask { await serve(connection) }
                    }
                }
            } onCancel: {
                server.channel.close(promise: nil)
            }
            group.cancelAll()
        }
    }

    func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>) async {
        do {
            try await connection.executeThenClose { inbound, outbound in
                var head: HTTPRequestHead?
                for try await part in inbound {
                    switch part {
                    case .head(let h): head = h
                    case .body: continue
                    case .end:
                        guard let request = head else { continue }
                        let path = String(request.uri.split(separator: "?", maxSplits: 1).first ?? "/")
                        let answer: HTTPAnswer
                        if request.method == .GET || request.method == .HEAD {
                            answer = await handler(request.method.rawValue, path)
                        } else {
                            answer = HTTPAnswer(status: 405, body: "only GET and HEAD\n")
                        }
                        var headers = HTTPHeaders()
                        headers.add(name: "Content-Type", value: answer.contentType)
                        headers.add(name: "Content-Length", value: String(answer.body.utf8.count))
                        headers.add(name: "Cache-Control", value: "no-store")
                        if request.method == .GET || request.method == .HEAD, answer.status == 405 { headers.add(name: "Allow", value: "GET, HEAD") }
                        let keepAlive = request.isKeepAlive
                        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
                        try await outbound.write(.head(HTTPResponseHead(version: request.version,
                            status: HTTPResponseStatus(statusCode: answer.status), headers: headers)))
                        if request.method != .HEAD {
                            try await outbound.write(.body(.byteBuffer(ByteBuffer(string: answer.body))))
                        }
                        try await outbound.write(.end(nil))
                        head = nil
                        if !keepAlive { return }
                    }
                }
            }
        } catch {
            logger.debug("status connection ended", metadata: ["lifeboat.error": .string("\(error)")])
        }
    }
}

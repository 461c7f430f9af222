/// LifeboatPostgres owns everything that talks to PostgreSQL: connections (postgres-nio), running
/// server binaries (initdb, pg_ctl, pgbench) as the right OS user, base backups, the WAL archive
/// commands, restore with recovery targets, and post-restore verification.
import Foundation
import LifeboatCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import PostgresNIO

/// Where and as whom to connect; filled from options, config and libpq's environment variables.
public struct PostgresEndpoint: Sendable, Equatable {
    /// A host name or address, or an absolute directory holding the Unix socket.
    public var host: String
    public var port: Int
    public var user: String
    public var database: String
    public var password: String?

    public init(host: String = "/var/run/postgresql", port: Int = 5432, user: String = "postgres", database: String = "postgres",
        password: String? = nil)
    {
        self.host = host
        self.port = port
        self.user = user
        self.database = database
        self.password = password
    }

    /// `host:port` or `socket dir:port`, with no password, for messages.
    public var display: String { "\(user)@\(host):\(port)/\(database)" }

    var configuration: PostgresConnection.Configuration {
        if host.hasPrefix("/") {
            return .init(unixSocketPath: "\(host)/.s.PGSQL.\(port)", username: user, password: password, database: database)
        }
        return .init(host: host, port: port, username: user, password: password, database: database, tls: Self.preferTLS)
    }

    /// Over TCP, TLS when the server offers it and plain otherwise, certificates not verified: what
    /// libpq's default `sslmode=prefer` does (managed servers such as Aurora PostgreSQL 15+ refuse
    /// plain connections).
    static let preferTLS: PostgresConnection.Configuration.TLS = {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .none
        guard let context = try? NIOSSLContext(configuration: tls) else { return .disable }
        return .prefer(context)
    }()
}

/// One open connection. Queries use the simple protocol and return every value as text, which is
/// what the engine needs (LSNs, labels, timestamps) and avoids binary-format surprises.
public final class PostgresSession: Sendable {
    let connection: PostgresConnection
    let logger: Logger
    public let endpoint: PostgresEndpoint

    /// Queries still waiting for an answer, failed all at once when the connection closes.
    private struct Pending {
        var next = 0
        var closed = false
        var waiting: [Int: @Sendable () -> Void] = [:]
    }
    private let pending = NIOLockedValueBox(Pending())

    private init(connection: PostgresConnection, endpoint: PostgresEndpoint, logger: Logger) {
        self.connection = connection
        self.endpoint = endpoint
        self.logger = logger
        connection.closeFuture.whenComplete { [pending] _ in
            let waiting = pending.withLockedValue { state in
                state.closed = true
                defer { state.waiting = [:] }
                return Array(state.waiting.values)
            }
            for fail in waiting { fail() }
        }
    }

    public static func connect(_ endpoint: PostgresEndpoint, logger: Logger) async throws -> PostgresSession {
        do {
            let connection = try await PostgresConnection.connect(configuration: endpoint.configuration, id: 1, logger: logger)
            return PostgresSession(connection: connection, endpoint: endpoint, logger: logger)
        } catch {
            throw LifeboatError(.postgres, "cannot connect to PostgreSQL at \(endpoint.display): \(Self.describe(error))",
                hint: "check that the server runs and PGHOST/PGPORT/PGUSER (or --pghost/--pgport/--pguser) point at it")
        }
    }

    /// Rows of one statement, every value as text (nil for SQL NULL). One statement per call;
    /// run transactions as separate calls on the same session.
    public func query(_ sql: String) async throws -> [[String?]] {
        do {
            let rows = try await answerOrClosed(connection.simpleQuery(sql)).get()
            return rows.map { row in row.map(Self.text) }
        } catch {
            throw LifeboatError(.postgres, "query failed on \(endpoint.display): \(Self.describe(error))", hint: nil)
        }
    }

    /// The query's answer, or a failure as soon as the connection closes: postgres-nio can leave a
    /// query pending forever when the server dies under it (a commit waiting for a synchronous
    /// standby when the postmaster is killed), and a tool that hangs on the bad day is worse than
    /// one that fails. A second completion of a promise is ignored, so whichever comes first wins;
    /// pending queries are kept only while they run.
    private func answerOrClosed<Value: Sendable>(_ answer: EventLoopFuture<Value>) -> EventLoopFuture<Value> {
        let promise = connection.eventLoop.makePromise(of: Value.self)
        let failure = LifeboatError(.postgres, "the connection to \(endpoint.display) closed before the server answered", hint: nil)
        let id = pending.withLockedValue { state -> Int? in
            guard !state.closed else { return nil }
            state.next += 1
            state.waiting[state.next] = { promise.fail(failure) }
            return state.next
        }
        guard let id else {
            promise.fail(failure)
            return promise.futureResult
        }
        answer.whenComplete { [pending] result in
            _ = pending.withLockedValue { $0.waiting.removeValue(forKey: id) }
            switch result {
            case .success(let value): promise.succeed(value)
            case .failure(let error): promise.fail(error)
            }
        }
        return promise.futureResult
    }

    /// A value as PostgreSQL would print it, for the types checks use; others as `\x` hex.
    static func text(_ cell: PostgresCell) -> String? {
        guard var bytes = cell.bytes else { return nil }
        if cell.format == .text { return String(buffer: bytes) }
        switch cell.dataType {
        case .int2: return (try? cell.decode(Int16.self)).map { String($0) }
        case .int4: return (try? cell.decode(Int32.self)).map { String($0) }
        case .int8: return (try? cell.decode(Int64.self)).map { String($0) }
        case .oid: return bytes.readInteger(as: UInt32.self).map { String($0) }
        case .bool: return (try? cell.decode(Bool.self)).map { $0 ? "true" : "false" }
        case .float4: return (try? cell.decode(Float.self)).map { String($0) }
        case .float8: return (try? cell.decode(Double.self)).map { String($0) }
        case .numeric: return (try? cell.decode(Decimal.self)).map { "\($0)" }
        case .uuid: return (try? cell.decode(UUID.self)).map { $0.uuidString.lowercased() }
        case .timestamptz, .timestamp, .date:
            return (try? cell.decode(Date.self)).map { Timestamp.format($0) }
        case .text, .varchar, .name, .bpchar, .json:
            return String(buffer: bytes)
        default:
            if let s = try? cell.decode(String.self) { return s }
            return "\\x" + Hex.encode(bytes.readBytes(length: bytes.readableBytes) ?? [])
        }
    }

    /// The first column of the first row, or nil.
    public func value(_ sql: String) async throws -> String? {
        try await query(sql).first?.first ?? nil
    }

    public func close() async {
        try? await connection.close()
    }

    /// The server's own message for an error; postgres-nio hides it from `description` on purpose.
    static func describe(_ error: any Error) -> String {
        if let psql = error as? PSQLError {
            if let message = psql.serverInfo?[.message] {
                let detail = psql.serverInfo?[.detail].map { " (\($0))" } ?? ""
                return message + detail
            }
            if let underlying = psql.underlying { return String(describing: underlying) }
            return "\(psql.code)"
        }
        return String(describing: error)
    }

    /// Quotes a string as an SQL literal.
    public static func literal(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "'", with: "''") + "'"
    }
}

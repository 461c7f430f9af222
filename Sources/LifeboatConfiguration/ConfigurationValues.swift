import Foundation
import LifeboatCore

/// A duration as written in the configuration and options: `90s`, `15m`, `12h`, `7d`, `4w`.
public struct ConfigDuration: Decodable, Sendable, Equatable, CustomStringConvertible {
    public var seconds: TimeInterval

    public init(seconds: TimeInterval) { self.seconds = seconds }

    public init(_ text: String) throws { seconds = try HumanDuration.parse(text) }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do {
            seconds = try HumanDuration.parse(text)
        } catch let e as LifeboatError {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: e.message + (e.hint.map { "; \($0)" } ?? "")))
        }
    }

    public var description: String { HumanDuration.format(seconds) }
}

/// How often something scheduled runs: a duration, or `off` (also `never`, `false`, `no`).
public enum Schedule: Decodable, Sendable, Equatable {
    case off
    case every(TimeInterval)

    public init(_ text: String) throws {
        if ["off", "never", "false", "no"].contains(text.lowercased()) {
            self = .off
        } else {
            self = .every(try HumanDuration.parse(text))
        }
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let flag = try? container.decode(Bool.self), !flag {
            self = .off
            return
        }
        let text = try container.decode(String.self)
        do {
            try self.init(text)
        } catch let e as LifeboatError {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: e.message + "; or off"))
        }
    }

    /// The interval, nil when off.
    public var interval: TimeInterval? {
        if case .every(let t) = self { return t }
        return nil
    }
}

/// The backup window as written (`03:00-04:00`, UTC).
public struct WindowSetting: Decodable, Sendable, Equatable {
    public var window: BackupWindow

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do {
            window = try BackupWindow.parse(text)
        } catch let e as LifeboatError {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: e.message))
        }
    }
}

/// Where the daemon listens: `HOST:PORT`, `:PORT` (loopback) or `off`.
public enum ListenAddress: Decodable, Sendable, Equatable, CustomStringConvertible {
    case off
    case address(host: String, port: Int)

    public init(_ text: String) throws {
        if text.lowercased() == "off" {
            self = .off
            return
        }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw LifeboatError(.invalidUsage, "listen address '\(text)' is not HOST:PORT", hint: "e.g. 127.0.0.1:9187, or off")
        }
        let host = String(text[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        self = .address(host: host.isEmpty ? "127.0.0.1" : host, port: port)
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do {
            try self.init(text)
        } catch let e as LifeboatError {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: e.message))
        }
    }

    public var description: String {
        switch self {
        case .off: return "off"
        case .address(let h, let p): return "\(h):\(p)"
        }
    }
}

/// Log levels, as swift-log names them.
public enum LogLevelName: String, Decodable, Sendable, CaseIterable {
    case trace, debug, info, notice, warning, error, critical
}

/// S3 Object Lock modes for immutable repositories.
public enum ObjectLockModeName: String, Decodable, Sendable, CaseIterable {
    case compliance = "COMPLIANCE"
    case governance = "GOVERNANCE"

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let mode = ObjectLockModeName(rawValue: text.uppercased()) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                debugDescription: "'\(text)' is not an Object Lock mode: use COMPLIANCE or GOVERNANCE"))
        }
        self = mode
    }
}

/// A value that must lie in a range, with its default: one row of the defaults table.
public struct Bounded<Value: Comparable & Sendable>: Sendable {
    public var key: String
    public var defaultValue: Value
    public var range: ClosedRange<Value>

    /// `given` if in range, else an error naming the key and the range; the default when nil.
    public func resolve(_ given: Value?, from source: String? = nil) throws -> Value {
        guard let value = given else { return defaultValue }
        guard range.contains(value) else {
            throw LifeboatError(.invalidUsage, "\(key) must be between \(range.lowerBound) and \(range.upperBound), not \(value)"
                + (source.map { " (from \($0))" } ?? ""))
        }
        return value
    }
}

/// A size: a number of bytes, or a number with a unit (`kB`, `MB`, `GB`, `TB`, or `KiB` ... `TiB`;
/// both 1024-based, as PostgreSQL reads them).
public struct ConfigSize: Decodable, Sendable, Equatable, CustomStringConvertible {
    public var bytes: UInt64

    public init(bytes: UInt64) { self.bytes = bytes }

    public init(_ text: String) throws {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let digits = trimmed.prefix { $0.isNumber }
        let unit = trimmed.dropFirst(digits.count).trimmingCharacters(in: .whitespaces).lowercased()
        let factors: [String: UInt64] = ["": 1, "b": 1, "kb": 1 << 10, "kib": 1 << 10, "mb": 1 << 20, "mib": 1 << 20,
            "gb": 1 << 30, "gib": 1 << 30, "tb": 1 << 40, "tib": 1 << 40]
        guard let n = UInt64(digits), let factor = factors[unit] else {
            throw LifeboatError(.invalidUsage, "'\(text)' is not a size", hint: "write it as bytes or with a unit: 64MB, 1GB, 512kB")
        }
        let (value, overflow) = n.multipliedReportingOverflow(by: factor)
        guard !overflow else { throw LifeboatError(.invalidUsage, "'\(text)' is too large a size") }
        bytes = value
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let n = try? c.decode(UInt64.self) {
            self.init(bytes: n)
            return
        }
        let text = try c.decode(String.self)
        do {
            try self.init(text)
        } catch let e as LifeboatError {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: e.message + (e.hint.map { "; \($0)" } ?? "")))
        }
    }

    public var description: String { ByteCount.format(bytes) }
}

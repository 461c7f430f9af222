import Foundation
import LifeboatCore

/// A small XML tree: what AWS answers in (S3 listings, the Query protocol, Route 53, errors).
///
/// Our own reader rather than Foundation's `XMLParser`, which on Linux lives in FoundationXML and
/// links libxml2 (the reason a static `lifeboat` could not be built). It reads elements, attributes,
/// text, the five predefined entities, numeric character references, CDATA, comments, processing
/// instructions and a DOCTYPE without internal subset; namespace prefixes are dropped from names
/// (`<s3:Key>` is `Key`). That is the whole of what AWS sends.
public final class AWSXML: Sendable {
    public let name: String
    public let attributes: [String: String]
    public let children: [AWSXML]
    /// The text directly inside this element (not its children's), entities decoded.
    public let value: String

    init(name: String, attributes: [String: String], children: [AWSXML], value: String) {
        self.name = name
        self.attributes = attributes
        self.children = children
        self.value = value
    }

    /// The first descendant with this name (depth first), or nil.
    public func first(_ name: String) -> AWSXML? {
        for c in children {
            if c.name == name { return c }
            if let found = c.first(name) { return found }
        }
        return nil
    }

    /// Every descendant with this name, in document order.
    public func all(_ name: String) -> [AWSXML] {
        children.flatMap { ($0.name == name ? [$0] : []) + $0.all(name) }
    }

    /// Direct children with this name.
    public func children(named name: String) -> [AWSXML] { children.filter { $0.name == name } }

    /// The trimmed text of the first descendant with this name; nil when absent or empty.
    public func text(_ name: String) -> String? {
        first(name).flatMap { Self.nonEmpty($0.value) }
    }

    /// The trimmed text of a direct child (not a deeper one with the same name); nil when absent or empty.
    public func child(_ name: String) -> String? {
        children.first { $0.name == name }.flatMap { Self.nonEmpty($0.value) }
    }

    static func nonEmpty(_ s: String) -> String? {
        let t = s.trimmingCharacters(in: .whitespacesAndNewlines)
        return t.isEmpty ? nil : t
    }

    /// Parses a document; throws `.externalCommand` naming where it stopped making sense.
    public static func parse(_ data: Data) throws -> AWSXML {
        var reader = XMLReader(bytes: Array(data))
        return try reader.document()
    }

    /// Escapes text for element content or attribute values.
    public static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default: out.append(c)
            }
        }
        return out
    }
}

/// The parser behind `AWSXML.parse`: a recursive descent over UTF-8 bytes.
struct XMLReader {
    let bytes: [UInt8]
    var i = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    func fail(_ what: String) -> LifeboatError {
        let start = max(0, i - 40)
        let context = String(decoding: bytes[start..<min(bytes.count, i + 40)], as: UTF8.self)
        return LifeboatError(.externalCommand, "an AWS answer is not valid XML (\(what) at byte \(i)): …\(context)…")
    }

    mutating func document() throws -> AWSXML {
        // A UTF-8 byte order mark.
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { i = 3 }
        try skipMisc()
        guard peek() == UInt8(ascii: "<") else { throw fail("no root element") }
        let root = try element()
        try skipMisc()
        guard i == bytes.count else { throw fail("content after the root element") }
        return root
    }

    func peek(_ offset: Int = 0) -> UInt8? { i + offset < bytes.count ? bytes[i + offset] : nil }

    func starts(_ text: String) -> Bool {
        let t = Array(text.utf8)
        return i + t.count <= bytes.count && Array(bytes[i..<(i + t.count)]) == t
    }

    mutating func skipSpace() {
        while let b = peek(), b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D { i += 1 }
    }

    /// Skips whitespace, comments, processing instructions (the XML declaration) and a DOCTYPE.
    mutating func skipMisc() throws {
        while true {
            skipSpace()
            if starts("<?") {
                try skip(past: "?>")
            } else if starts("<!--") {
                try skip(past: "-->")
            } else if starts("<!DOCTYPE") {
                try skip(past: ">")
            } else {
                return
            }
        }
    }

    mutating func skip(past end: String) throws {
        let t = Array(end.utf8)
        while i + t.count <= bytes.count {
            if Array(bytes[i..<(i + t.count)]) == t {
                i += t.count
                return
            }
            i += 1
        }
        throw fail("unterminated construct, expected \(end)")
    }

    static func isNameByte(_ b: UInt8) -> Bool {
        (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == 0x5F || b == 0x2D || b == 0x2E
            || b == 0x3A || b >= 0x80
    }

    mutating func name() throws -> String {
        let start = i
        while let b = peek(), Self.isNameByte(b) { i += 1 }
        guard i > start else { throw fail("a name was expected") }
        let full = String(decoding: bytes[start..<i], as: UTF8.self)
        // Namespace prefixes carry nothing AWS answers need.
        if let colon = full.lastIndex(of: ":") { return String(full[full.index(after: colon)...]) }
        return full
    }

    mutating func element() throws -> AWSXML {
        guard peek() == UInt8(ascii: "<") else { throw fail("'<' expected") }
        i += 1
        let tag = try name()
        var attributes: [String: String] = [:]
        while true {
            skipSpace()
            guard let b = peek() else { throw fail("unterminated start tag <\(tag)>") }
            if b == UInt8(ascii: "/") {
                guard peek(1) == UInt8(ascii: ">") else { throw fail("'>' expected after '/'") }
                i += 2
                return AWSXML(name: tag, attributes: attributes, children: [], value: "")
            }
            if b == UInt8(ascii: ">") {
                i += 1
                break
            }
            let attribute = try name()
            skipSpace()
            guard peek() == UInt8(ascii: "=") else { throw fail("'=' expected after attribute \(attribute)") }
            i += 1
            skipSpace()
            guard let quote = peek(), quote == UInt8(ascii: "\"") || quote == UInt8(ascii: "'") else {
                throw fail("a quoted value was expected for attribute \(attribute)")
            }
            i += 1
            let start = i
            while let c = peek(), c != quote { i += 1 }
            guard peek() == quote else { throw fail("unterminated value of attribute \(attribute)") }
            attributes[attribute] = try decodeEntities(Array(bytes[start..<i]))
            i += 1
        }
        var children: [AWSXML] = []
        var text: [UInt8] = []
        while true {
            guard let b = peek() else { throw fail("element <\(tag)> is not closed") }
            if b != UInt8(ascii: "<") {
                text.append(b)
                i += 1
                continue
            }
            if starts("</") {
                i += 2
                let closing = try name()
                guard closing == tag else { throw fail("</\(closing)> closes <\(tag)>") }
                skipSpace()
                guard peek() == UInt8(ascii: ">") else { throw fail("'>' expected in </\(tag)>") }
                i += 1
                return AWSXML(name: tag, attributes: attributes, children: children, value: try decodeEntities(text))
            }
            if starts("<![CDATA[") {
                i += 9
                let start = i
                try skip(past: "]]>")
                // CDATA content is literal: keep its raw bytes, marked so decoding leaves them alone.
                text += Array("\u{0}".utf8) + Array(bytes[start..<(i - 3)]) + Array("\u{0}".utf8)
                continue
            }
            if starts("<!--") {
                try skip(past: "-->")
                continue
            }
            if starts("<?") {
                try skip(past: "?>")
                continue
            }
            children.append(try element())
        }
    }

    /// Decodes `&amp;`-style entities and character references; spans between NUL markers are CDATA.
    func decodeEntities(_ raw: [UInt8]) throws -> String {
        var out: [UInt8] = []
        out.reserveCapacity(raw.count)
        var k = 0
        var inCDATA = false
        while k < raw.count {
            let b = raw[k]
            if b == 0 {
                inCDATA.toggle()
                k += 1
                continue
            }
            if inCDATA || b != UInt8(ascii: "&") {
                out.append(b)
                k += 1
                continue
            }
            guard let semicolon = raw[k...].firstIndex(of: UInt8(ascii: ";")), semicolon - k <= 12 else {
                throw fail("an unterminated entity")
            }
            let entity = String(decoding: raw[(k + 1)..<semicolon], as: UTF8.self)
            switch entity {
            case "amp": out.append(UInt8(ascii: "&"))
            case "lt": out.append(UInt8(ascii: "<"))
            case "gt": out.append(UInt8(ascii: ">"))
            case "quot": out.append(UInt8(ascii: "\""))
            case "apos": out.append(UInt8(ascii: "'"))
            default:
                var scalar: UInt32?
                if entity.hasPrefix("#x") || entity.hasPrefix("#X") {
                    scalar = UInt32(entity.dropFirst(2), radix: 16)
                } else if entity.hasPrefix("#") {
                    scalar = UInt32(entity.dropFirst(1))
                }
                guard let value = scalar, let unicode = Unicode.Scalar(value) else { throw fail("unknown entity &\(entity);") }
                out += Array(String(Character(unicode)).utf8)
            }
            k = semicolon + 1
        }
        return String(decoding: out, as: UTF8.self)
    }
}

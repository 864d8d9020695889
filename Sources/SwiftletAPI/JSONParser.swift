/// Why a text is not the JSON the parser accepts; `offset` is the byte
/// where it went wrong.
public struct JSONError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public var offset: Int

    public init(_ message: String, at offset: Int) {
        self.message = message
        self.offset = offset
    }

    public var description: String { "invalid JSON at byte \(offset): \(message)" }
}

extension JSONValue {
    /// The default nesting limit: far beyond any API body, far below what
    /// would endanger the server thread's stack (the parser recurses).
    public static let defaultMaximumDepth = 64

    /// Parses one JSON text, strictly (RFC 8259): no comments, no trailing
    /// commas, no leading zeros, no control characters or invalid UTF-8 in
    /// strings, no lone surrogates, no duplicate keys in an object, nothing
    /// but whitespace after the value, numbers that fit a Double, and
    /// arrays and objects nested at most `maximumDepth` deep.
    public init(parsing bytes: some Collection<UInt8>, maximumDepth: Int = JSONValue.defaultMaximumDepth) throws(JSONError) {
        var parser = JSONParser(bytes: Array(bytes), maximumDepth: maximumDepth)
        self = try parser.parseDocument()
    }

    public init(parsing text: String, maximumDepth: Int = JSONValue.defaultMaximumDepth) throws(JSONError) {
        try self.init(parsing: Array(text.utf8), maximumDepth: maximumDepth)
    }
}

/// A recursive-descent parser over the bytes of one document.
struct JSONParser {
    let bytes: [UInt8]
    let maximumDepth: Int
    var position = 0

    init(bytes: [UInt8], maximumDepth: Int) {
        self.bytes = bytes
        self.maximumDepth = maximumDepth
    }

    mutating func parseDocument() throws(JSONError) -> JSONValue {
        skipWhitespace()
        let value = try parseValue(depth: 0)
        skipWhitespace()
        guard position == bytes.count else { throw error("unexpected \(describe(position)) after the value") }
        return value
    }

    private func error(_ message: String, at offset: Int? = nil) -> JSONError {
        JSONError(message, at: offset ?? position)
    }

    /// The byte at `offset` for an error message.
    private func describe(_ offset: Int) -> String {
        guard offset < bytes.count else { return "end of input" }
        let b = bytes[offset]
        if b >= 0x21 && b < 0x7F { return "'\(Character(Unicode.Scalar(b)))'" }
        let hex = String(b, radix: 16)
        return "byte 0x" + (hex.count < 2 ? "0" + hex : hex)
    }

    private var current: UInt8? { position < bytes.count ? bytes[position] : nil }

    private mutating func skipWhitespace() {
        while let b = current, b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D { position += 1 }
    }

    private mutating func expect(_ literal: String, _ value: JSONValue) throws(JSONError) -> JSONValue {
        let start = position
        for expected in literal.utf8 {
            guard current == expected else { throw error("invalid literal (expected '\(literal)')", at: start) }
            position += 1
        }
        return value
    }

    private mutating func parseValue(depth: Int) throws(JSONError) -> JSONValue {
        switch current {
        case nil: throw error("unexpected end of input, expected a value")
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): return try expect("true", .bool(true))
        case UInt8(ascii: "f"): return try expect("false", .bool(false))
        case UInt8(ascii: "n"): return try expect("null", .null)
        case UInt8(ascii: "-"), .some(UInt8(ascii: "0")...UInt8(ascii: "9")): return try parseNumber()
        default: throw error("unexpected \(describe(position)), expected a value")
        }
    }

    private mutating func parseObject(depth: Int) throws(JSONError) -> JSONValue {
        guard depth <= maximumDepth else { throw error("nested deeper than \(maximumDepth) levels") }
        position += 1  // {
        var object = JSONObject()
        skipWhitespace()
        if current == UInt8(ascii: "}") {
            position += 1
            return .object(object)
        }
        while true {
            skipWhitespace()
            guard current == UInt8(ascii: "\"") else { throw error("unexpected \(describe(position)), expected a member name") }
            let keyOffset = position
            let key = try parseString()
            guard object[key] == nil else { throw error("duplicate member name \(JSONValue.string(key).serialized)", at: keyOffset) }
            skipWhitespace()
            guard current == UInt8(ascii: ":") else { throw error("unexpected \(describe(position)), expected ':'") }
            position += 1
            skipWhitespace()
            object[key] = try parseValue(depth: depth)
            skipWhitespace()
            switch current {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "}"): position += 1; return .object(object)
            default: throw error("unexpected \(describe(position)), expected ',' or '}'")
            }
        }
    }

    private mutating func parseArray(depth: Int) throws(JSONError) -> JSONValue {
        guard depth <= maximumDepth else { throw error("nested deeper than \(maximumDepth) levels") }
        position += 1  // [
        var elements: [JSONValue] = []
        skipWhitespace()
        if current == UInt8(ascii: "]") {
            position += 1
            return .array(elements)
        }
        while true {
            skipWhitespace()
            elements.append(try parseValue(depth: depth))
            skipWhitespace()
            switch current {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "]"): position += 1; return .array(elements)
            default: throw error("unexpected \(describe(position)), expected ',' or ']'")
            }
        }
    }

    private mutating func parseString() throws(JSONError) -> String {
        let start = position
        position += 1  // opening quote
        var utf8: [UInt8] = []
        while true {
            guard let b = current else { throw error("unterminated string", at: start) }
            switch b {
            case UInt8(ascii: "\""):
                position += 1
                // The raw bytes were copied unchecked; validate them as a whole
                // (overlong forms, encoded surrogates, truncated sequences).
                guard let string = String(validating: utf8, as: UTF8.self) else {
                    throw error("string is not valid UTF-8", at: start)
                }
                return string
            case UInt8(ascii: "\\"):
                position += 1
                try parseEscape(into: &utf8)
            case 0..<0x20:
                throw error("control character \(describe(position)) in a string (escape it)")
            default:
                utf8.append(b)
                position += 1
            }
        }
    }

    private mutating func parseEscape(into utf8: inout [UInt8]) throws(JSONError) {
        guard let b = current else { throw error("unterminated escape") }
        position += 1
        switch b {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(b)
        case UInt8(ascii: "b"): utf8.append(0x08)
        case UInt8(ascii: "f"): utf8.append(0x0C)
        case UInt8(ascii: "n"): utf8.append(0x0A)
        case UInt8(ascii: "r"): utf8.append(0x0D)
        case UInt8(ascii: "t"): utf8.append(0x09)
        case UInt8(ascii: "u"):
            let escapeStart = position - 2
            let unit = try parseHex4()
            var scalarValue = UInt32(unit)
            if (0xD800..<0xDC00).contains(unit) {
                // A high surrogate must be followed by an escaped low one.
                guard position + 1 < bytes.count, bytes[position] == UInt8(ascii: "\\"), bytes[position + 1] == UInt8(ascii: "u") else {
                    throw error("unpaired surrogate \\u\(String(unit, radix: 16))", at: escapeStart)
                }
                position += 2
                let low = try parseHex4()
                guard (0xDC00..<0xE000).contains(low) else {
                    throw error("unpaired surrogate \\u\(String(unit, radix: 16))", at: escapeStart)
                }
                scalarValue = 0x10000 + ((UInt32(unit) - 0xD800) << 10) + (UInt32(low) - 0xDC00)
            } else if (0xDC00..<0xE000).contains(unit) {
                throw error("unpaired surrogate \\u\(String(unit, radix: 16))", at: escapeStart)
            }
            // Not a surrogate, or a valid pair: always a scalar.
            utf8 += String(Character(Unicode.Scalar(scalarValue)!)).utf8
        default:
            throw error("invalid escape '\\\(describe(position - 1))'", at: position - 2)
        }
    }

    private mutating func parseHex4() throws(JSONError) -> UInt16 {
        var value: UInt16 = 0
        for _ in 0..<4 {
            guard let b = current else { throw error("unterminated \\u escape") }
            let digit: UInt8
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = b - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = b - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = b - UInt8(ascii: "A") + 10
            default: throw error("\(describe(position)) is not a hex digit in a \\u escape")
            }
            value = value << 4 | UInt16(digit)
            position += 1
        }
        return value
    }

    private mutating func parseNumber() throws(JSONError) -> JSONValue {
        let start = position
        var integral = true
        if current == UInt8(ascii: "-") { position += 1 }
        // int = zero / ( digit1-9 *DIGIT )
        switch current {
        case UInt8(ascii: "0"):
            position += 1
            if let b = current, isDigit(b) { throw error("leading zero in a number", at: start) }
        case let b? where isDigit(b):
            skipDigits()
        default:
            throw error("expected a digit in a number")
        }
        if current == UInt8(ascii: ".") {
            integral = false
            position += 1
            guard let b = current, isDigit(b) else { throw error("expected a digit after '.'") }
            skipDigits()
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            integral = false
            position += 1
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { position += 1 }
            guard let b = current, isDigit(b) else { throw error("expected a digit in an exponent") }
            skipDigits()
        }
        let text = String(decoding: bytes[start..<position], as: UTF8.self)
        if integral, let value = Int(text) { return .integer(value) }
        guard let value = Double(text), value.isFinite else {
            throw error("number \(text.count > 40 ? String(text.prefix(40)) + "…" : text) is out of range", at: start)
        }
        return .double(value)
    }

    private func isDigit(_ b: UInt8) -> Bool { b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") }

    private mutating func skipDigits() {
        while let b = current, isDigit(b) { position += 1 }
    }
}

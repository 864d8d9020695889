/// An HTTP status code with its reason phrase (RFC 9110 §15).
public struct HTTPStatus: Sendable, Hashable, CustomStringConvertible {
    public var code: Int
    public var reason: String

    public init(_ code: Int, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    public static let `continue` = HTTPStatus(100, "Continue")
    public static let ok = HTTPStatus(200, "OK")
    public static let noContent = HTTPStatus(204, "No Content")
    public static let badRequest = HTTPStatus(400, "Bad Request")
    public static let notFound = HTTPStatus(404, "Not Found")
    public static let methodNotAllowed = HTTPStatus(405, "Method Not Allowed")
    public static let conflict = HTTPStatus(409, "Conflict")
    public static let lengthRequired = HTTPStatus(411, "Length Required")
    public static let contentTooLarge = HTTPStatus(413, "Content Too Large")
    public static let expectationFailed = HTTPStatus(417, "Expectation Failed")
    public static let headerFieldsTooLarge = HTTPStatus(431, "Request Header Fields Too Large")
    public static let internalServerError = HTTPStatus(500, "Internal Server Error")
    public static let notImplemented = HTTPStatus(501, "Not Implemented")
    public static let serviceUnavailable = HTTPStatus(503, "Service Unavailable")
    public static let versionNotSupported = HTTPStatus(505, "HTTP Version Not Supported")

    public var description: String { "\(code) \(reason)" }

    /// Whether a response with this status carries no body and no
    /// Content-Length (1xx, 204 and 304; RFC 9110 §8.6).
    public var forbidsBody: Bool { code < 200 || code == 204 || code == 304 }

    public var isSuccess: Bool { (200..<300).contains(code) }
}

/// Header fields in the order received. Names compare case-insensitively;
/// values are kept as sent, without surrounding whitespace.
public struct HTTPHeaders: Sendable, Equatable, Sequence, ExpressibleByDictionaryLiteral {
    public struct Field: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(name: String, value: String) { self.name = name; self.value = value }
    }

    public private(set) var fields: [Field] = []

    public init() {}
    public init(dictionaryLiteral elements: (String, String)...) {
        fields = elements.map { Field(name: $0.0, value: $0.1) }
    }

    public mutating func add(_ name: String, _ value: String) { fields.append(Field(name: name, value: value)) }

    /// Every value of the fields called `name`.
    public func values(for name: String) -> [String] {
        fields.filter { Self.sameName($0.name, name) }.map(\.value)
    }

    /// The first value of `name`.
    public subscript(name: String) -> String? {
        fields.first { Self.sameName($0.name, name) }?.value
    }

    public func contains(_ name: String) -> Bool { fields.contains { Self.sameName($0.name, name) } }

    /// The comma-separated elements of every `name` field, lowercased
    /// (for token lists such as Connection).
    public func tokens(for name: String) -> [String] {
        values(for: name).flatMap { $0.split(separator: ",") }
            .map { asciiLowercased(trimmingWhitespace($0)) }.filter { !$0.isEmpty }
    }

    public func makeIterator() -> IndexingIterator<[Field]> { fields.makeIterator() }

    static func sameName(_ a: String, _ b: String) -> Bool {
        a.utf8.count == b.utf8.count && zip(a.utf8, b.utf8).allSatisfy { asciiLower($0) == asciiLower($1) }
    }
}

/// A request as the parser hands it to the server.
public struct HTTPRequest: Sendable, Equatable {
    public var method: String
    /// The request target as sent (origin form: a path and maybe a query).
    public var target: String
    /// HTTP minor version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    public var minorVersion: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(method: String, target: String, minorVersion: Int = 1, headers: HTTPHeaders = [:], body: [UInt8] = []) {
        self.method = method
        self.target = target
        self.minorVersion = minorVersion
        self.headers = headers
        self.body = body
    }

    /// The target without its query.
    public var path: String {
        if let q = target.utf8.firstIndex(of: UInt8(ascii: "?")) { return String(target[..<q]) }
        return target
    }

    /// Whether the connection stays open after the response (RFC 9112 §9.3):
    /// HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with `keep-alive`.
    public var keepAlive: Bool {
        let tokens = headers.tokens(for: "Connection")
        if tokens.contains("close") { return false }
        return minorVersion >= 1 || tokens.contains("keep-alive")
    }

    /// The request in wire form, for the client (adds Content-Length when
    /// there is a body or the method usually has one).
    public var serialized: [UInt8] {
        var head = "\(method) \(target) HTTP/1.\(minorVersion)\r\n"
        for field in headers { head += "\(field.name): \(field.value)\r\n" }
        if !headers.contains("Content-Length") && (!body.isEmpty || method == "PUT" || method == "POST" || method == "PATCH") {
            head += "Content-Length: \(body.count)\r\n"
        }
        head += "\r\n"
        return Array(head.utf8) + body
    }
}

/// A response: what handlers produce and what the client reads back.
public struct HTTPResponse: Sendable, Equatable {
    public var status: HTTPStatus
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(status: HTTPStatus, headers: HTTPHeaders = [:], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A response whose body is `json`.
    public init(status: HTTPStatus, json: JSONValue) {
        self.init(status: status, headers: ["Content-Type": "application/json"], body: json.serializedBytes)
    }

    /// Wire form. Content-Length is always computed here (never taken from
    /// `headers`), and left out with the body for 1xx, 204 and 304;
    /// `closing` adds `Connection: close`.
    public func serialized(closing: Bool = false) -> [UInt8] {
        var head = "HTTP/1.1 \(status.code) \(status.reason)\r\n"
        for field in headers where !HTTPHeaders.sameName(field.name, "Content-Length") && !HTTPHeaders.sameName(field.name, "Connection") {
            head += "\(field.name): \(field.value)\r\n"
        }
        if closing { head += "Connection: close\r\n" }
        if status.forbidsBody {
            head += "\r\n"
            return Array(head.utf8)
        }
        head += "Content-Length: \(body.count)\r\n\r\n"
        return Array(head.utf8) + body
    }

    /// The body parsed as JSON; nil when there is none.
    public func json() throws(JSONError) -> JSONValue? {
        body.isEmpty ? nil : try JSONValue(parsing: body)
    }

    /// The `fault_message` of an error body (Firecracker's error shape),
    /// or nil when the body is not one.
    public var faultMessage: String? {
        (try? json())??["fault_message"]?.stringValue
    }
}

// MARK: - ASCII helpers

@inline(__always) func asciiLower(_ b: UInt8) -> UInt8 {
    b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z") ? b | 0x20 : b
}

func asciiLowercased(_ s: some StringProtocol) -> String {
    String(decoding: s.utf8.map(asciiLower), as: UTF8.self)
}

func trimmingWhitespace(_ s: some StringProtocol) -> String {
    let bytes = Array(s.utf8)
    var start = 0, end = bytes.count
    while start < end, bytes[start] == 0x20 || bytes[start] == 0x09 { start += 1 }
    while end > start, bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09 { end -= 1 }
    return String(decoding: bytes[start..<end], as: UTF8.self)
}

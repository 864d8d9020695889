/// Size bounds for what a peer may send; the API's peers are untrusted.
public struct HTTPLimits: Sendable, Equatable {
    /// Request line (or status line) plus header fields, with the blank line.
    public var maximumHeadBytes: Int
    public var maximumBodyBytes: Int
    public var maximumHeaderFields: Int

    public init(maximumHeadBytes: Int = 8 * 1024, maximumBodyBytes: Int = 64 * 1024, maximumHeaderFields: Int = 64) {
        self.maximumHeadBytes = maximumHeadBytes
        self.maximumBodyBytes = maximumBodyBytes
        self.maximumHeaderFields = maximumHeaderFields
    }
}

/// Why the bytes on a connection are not an acceptable request: the status
/// to answer with and a one-line reason. The connection is closed after it.
public struct HTTPParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public var status: HTTPStatus
    public var message: String

    public init(_ status: HTTPStatus, _ message: String) {
        self.status = status
        self.message = message
    }

    public var description: String { "\(status.code): \(message)" }

    static func malformed(_ message: String) -> HTTPParseError { HTTPParseError(.badRequest, message) }
}

/// An incremental HTTP/1.1 request parser (RFC 9112) for one connection.
///
/// Feed it bytes as they arrive with `append`; `nextRequest()` returns each
/// complete request in order (so pipelined requests come out one by one) or
/// nil while one is still incomplete. Bodies are framed by Content-Length
/// only: any Transfer-Encoding is refused with 501, so there is exactly one
/// way to find where a request ends (no request smuggling through
/// disagreeing framings). Lines must end in CRLF; obsolete line folding,
/// control characters, whitespace before a header's colon and conflicting
/// Content-Lengths are refused with 400. After an error the parser keeps
/// throwing it: the connection must be closed.
public struct HTTPRequestParser: Sendable {
    public let limits: HTTPLimits

    /// Bytes of requests not yet returned: a returned request's bytes are
    /// dropped at once, so the current one always starts at index 0.
    private var buffer: [UInt8] = []
    /// How far the search for the blank line has looked.
    private var scanned = 0
    /// The current request's head, once complete, and where its body starts.
    private var head: (request: HTTPRequest, bodyStart: Int, bodyLength: Int, expectsContinue: Bool)?
    private var continueAcknowledged = false
    private var failure: HTTPParseError?

    public init(limits: HTTPLimits = HTTPLimits()) {
        self.limits = limits
    }

    public mutating func append(_ bytes: some Sequence<UInt8>) {
        buffer.append(contentsOf: bytes)
    }

    /// Bytes received and not yet returned as part of a request.
    public var bufferedByteCount: Int { buffer.count }

    /// Whether part of a request has arrived (a peer that disconnects now
    /// disconnected mid-request).
    public var hasPartialRequest: Bool { bufferedByteCount > 0 }

    /// Whether the current request's head asked for `100 Continue` before
    /// sending its body and the server has not answered that yet.
    public var expectsContinue: Bool {
        guard let head, !continueAcknowledged else { return false }
        return head.expectsContinue && buffer.count - head.bodyStart < head.bodyLength
    }

    /// Records that `100 Continue` was sent for the current request.
    public mutating func acknowledgeContinue() { continueAcknowledged = true }

    /// The next complete request, or nil if more bytes are needed.
    public mutating func nextRequest() throws(HTTPParseError) -> HTTPRequest? {
        if let failure { throw failure }
        do {
            return try parseNext()
        } catch {
            failure = error
            throw error
        }
    }

    private mutating func parseNext() throws(HTTPParseError) -> HTTPRequest? {
        if head == nil {
            // RFC 9112 §2.2: ignore empty lines before a request line.
            // Dropped at once, so a peer sending nothing but blank lines
            // holds no memory.
            var blank = 0
            while buffer.count - blank >= 2, buffer[blank] == 0x0D, buffer[blank + 1] == 0x0A { blank += 2 }
            if blank > 0 {
                buffer.removeSubrange(0..<blank)
                scanned = 0
            }
            guard let end = try findBlankLine() else {
                if buffer.count >= limits.maximumHeadBytes {
                    throw HTTPParseError(.headerFieldsTooLarge, "request head exceeds \(limits.maximumHeadBytes) bytes")
                }
                return nil
            }
            let headBytes = buffer[0..<end]   // without the final CRLFCRLF
            guard end + 4 <= limits.maximumHeadBytes else {
                throw HTTPParseError(.headerFieldsTooLarge, "request head exceeds \(limits.maximumHeadBytes) bytes")
            }
            let (request, bodyLength, expectsContinue) = try parseHead(headBytes)
            head = (request, end + 4, bodyLength, expectsContinue)
            continueAcknowledged = false
        }
        guard let current = head, buffer.count - current.bodyStart >= current.bodyLength else { return nil }
        var request = current.request
        let bodyEnd = current.bodyStart + current.bodyLength
        request.body = Array(buffer[current.bodyStart..<bodyEnd])
        head = nil
        scanned = 0
        // Drop what has been returned; what stays is at most one read's worth
        // of pipelined bytes, so the copy is small.
        buffer.removeSubrange(0..<bodyEnd)
        return request
    }

    /// The index of the CRLFCRLF that ends the head, searching only bytes
    /// not searched before (a slow sender must not make parsing quadratic).
    /// Control characters other than CR, LF and HT are refused as soon as
    /// they arrive, rather than after 8 KiB of garbage. Only the first
    /// `maximumHeadBytes` are looked at, so the outcome does not depend on
    /// how much arrived at once.
    private mutating func findBlankLine() throws(HTTPParseError) -> Int? {
        var i = max(0, scanned - 3)
        let limit = min(buffer.count, limits.maximumHeadBytes)
        while i < limit {
            let b = buffer[i]
            if b < 0x20 && b != 0x0D && b != 0x0A && b != 0x09 || b == 0x7F {
                throw .malformed("control character 0x\(String(b, radix: 16)) in the request head")
            }
            if b == 0x0D, i + 3 < limit, buffer[i + 1] == 0x0A, buffer[i + 2] == 0x0D, buffer[i + 3] == 0x0A {
                return i
            }
            i += 1
        }
        scanned = limit
        return nil
    }

    private func parseHead(_ bytes: ArraySlice<UInt8>) throws(HTTPParseError) -> (HTTPRequest, Int, Bool) {
        let lines = try HTTPHead.splitLines(bytes)
        let requestLine = lines[0]
        // request-line = method SP request-target SP HTTP-version
        let parts = requestLine.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard parts.count == 3 else { throw .malformed("malformed request line") }
        guard !parts[0].isEmpty, parts[0].allSatisfy(HTTPHead.isTokenByte) else { throw .malformed("malformed method") }
        guard !parts[1].isEmpty, parts[1].allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw .malformed("malformed request target")
        }
        guard parts[1].first == UInt8(ascii: "/") else { throw .malformed("the request target must be a path starting with '/'") }
        let minor = try HTTPHead.parseVersion(parts[2])
        let headers = try HTTPHead.parseFields(lines.dropFirst(), limits: limits)

        if headers.contains("Transfer-Encoding") {
            throw HTTPParseError(.notImplemented, "Transfer-Encoding is not supported; send the body with a Content-Length")
        }
        let bodyLength = try HTTPHead.contentLength(headers, limit: limits.maximumBodyBytes) ?? 0
        var expectsContinue = false
        if let expect = headers["Expect"] {
            guard minor >= 1, asciiLowercased(expect) == "100-continue", headers.values(for: "Expect").count == 1 else {
                throw HTTPParseError(.expectationFailed, "only 'Expect: 100-continue' is supported")
            }
            expectsContinue = true
        }
        let request = HTTPRequest(method: String(decoding: parts[0], as: UTF8.self),
                                  target: String(decoding: parts[1], as: UTF8.self),
                                  minorVersion: minor, headers: headers)
        return (request, bodyLength, expectsContinue)
    }
}

/// What requests and responses share: lines, header fields, framing.
enum HTTPHead {
    /// tchar (RFC 9110 §5.6.2).
    static func isTokenByte(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(b)
        }
    }

    /// Splits a head (without its final CRLFCRLF) at CRLF; a lone CR or LF
    /// is an error.
    static func splitLines(_ bytes: ArraySlice<UInt8>) throws(HTTPParseError) -> [ArraySlice<UInt8>] {
        var lines: [ArraySlice<UInt8>] = []
        var lineStart = bytes.startIndex
        var i = bytes.startIndex
        while i < bytes.endIndex {
            let b = bytes[i]
            if b == 0x0D {
                guard i + 1 < bytes.endIndex, bytes[i + 1] == 0x0A else { throw .malformed("bare CR in the head") }
                lines.append(bytes[lineStart..<i])
                i += 2
                lineStart = i
            } else if b == 0x0A {
                throw .malformed("line ends in LF without CR")
            } else {
                i += 1
            }
        }
        lines.append(bytes[lineStart..<bytes.endIndex])
        return lines
    }

    /// "HTTP/1.1" → 1, "HTTP/1.0" → 0; other well-formed versions are 505.
    static func parseVersion(_ bytes: ArraySlice<UInt8>) throws(HTTPParseError) -> Int {
        let v = Array(bytes)
        guard v.count == 8, v[0..<5].elementsEqual("HTTP/".utf8), v[6] == UInt8(ascii: "."),
              (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(v[5]), (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(v[7])
        else { throw .malformed("malformed HTTP version") }
        guard v[5] == UInt8(ascii: "1") else {
            throw HTTPParseError(.versionNotSupported, "only HTTP/1.0 and HTTP/1.1 are supported")
        }
        return Int(v[7] - UInt8(ascii: "0"))
    }

    /// field-line = field-name ":" OWS field-value OWS
    static func parseFields(_ lines: ArraySlice<ArraySlice<UInt8>>, limits: HTTPLimits) throws(HTTPParseError) -> HTTPHeaders {
        guard lines.count <= limits.maximumHeaderFields else {
            throw HTTPParseError(.headerFieldsTooLarge, "more than \(limits.maximumHeaderFields) header fields")
        }
        var headers = HTTPHeaders()
        for line in lines {
            guard let first = line.first else { throw .malformed("empty header line") }
            if first == 0x20 || first == 0x09 { throw .malformed("obsolete line folding in a header") }
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { throw .malformed("header line without ':'") }
            let name = line[line.startIndex..<colon]
            guard !name.isEmpty, name.allSatisfy(isTokenByte) else { throw .malformed("malformed header name") }
            let rawValue = line[(colon + 1)...]
            guard rawValue.allSatisfy({ $0 == 0x09 || ($0 >= 0x20 && $0 != 0x7F) }) else {
                throw .malformed("control character in header '\(String(decoding: name, as: UTF8.self))'")
            }
            headers.add(String(decoding: name, as: UTF8.self), trimmingWhitespace(String(decoding: rawValue, as: UTF8.self)))
        }
        return headers
    }

    /// The body length the Content-Length fields give, nil without one.
    /// Several fields (or a list) must all agree; RFC 9112 §6.3.
    static func contentLength(_ headers: HTTPHeaders, limit: Int) throws(HTTPParseError) -> Int? {
        let values = headers.values(for: "Content-Length").flatMap { $0.split(separator: ",", omittingEmptySubsequences: false) }
        guard !values.isEmpty else { return nil }
        var length: Int?
        for raw in values {
            let text = trimmingWhitespace(raw)
            guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
                throw .malformed("invalid Content-Length")
            }
            // Leading zeros are digits too; anything longer than the limit's
            // digits plus those is too large without converting it.
            let digits = text.drop { $0 == "0" }
            guard digits.count <= 18, let value = Int(digits.isEmpty ? "0" : String(digits)), value <= limit else {
                throw HTTPParseError(.contentTooLarge, "body exceeds \(limit) bytes")
            }
            if let length, length != value { throw .malformed("conflicting Content-Length values") }
            length = value
        }
        return length
    }
}

/// Parses one response, for the client: status line, header fields, and a
/// body framed by Content-Length or, without one, by the end of the stream.
public struct HTTPResponseParser: Sendable {
    public let limits: HTTPLimits
    private var buffer: [UInt8] = []

    public init(limits: HTTPLimits = HTTPLimits(maximumHeadBytes: 8 * 1024, maximumBodyBytes: 1024 * 1024)) {
        self.limits = limits
    }

    public mutating func append(_ bytes: some Sequence<UInt8>) { buffer.append(contentsOf: bytes) }

    /// Bytes received and not yet returned as part of a response.
    public var bufferedByteCount: Int { buffer.count }

    /// The next response, once complete (its bytes are consumed, so
    /// pipelined responses come out in turn); nil if more bytes are needed.
    /// `atEnd` says the peer has closed the stream. Interim 1xx responses
    /// are skipped unless `interim` is set.
    public mutating func response(atEnd: Bool, interim: Bool = false) throws(HTTPParseError) -> HTTPResponse? {
        while true {
            var end: Int?
            var i = 0
            while i + 3 < buffer.count {
                if buffer[i] == 0x0D && buffer[i + 1] == 0x0A && buffer[i + 2] == 0x0D && buffer[i + 3] == 0x0A { end = i; break }
                i += 1
            }
            guard let end else {
                if buffer.count > limits.maximumHeadBytes { throw .malformed("response head too large") }
                if atEnd { throw .malformed(buffer.isEmpty ? "the connection closed without a response" : "truncated response head") }
                return nil
            }
            guard end + 4 <= limits.maximumHeadBytes else { throw .malformed("response head too large") }
            let lines = try HTTPHead.splitLines(buffer[0..<end])
            // status-line = HTTP-version SP status-code SP [ reason-phrase ]
            let line = Array(lines[0])
            guard line.count >= 12, line[8] == UInt8(ascii: " "), line.count == 12 || line[12] == UInt8(ascii: " ") else {
                throw .malformed("malformed status line")
            }
            _ = try HTTPHead.parseVersion(line[0..<8])
            let codeBytes = line[9..<12]
            guard codeBytes.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                  let code = Int(String(decoding: codeBytes, as: UTF8.self)), code >= 100
            else { throw .malformed("malformed status code") }
            let reason = line.count > 13 ? String(decoding: line[13...], as: UTF8.self) : ""
            let headers = try HTTPHead.parseFields(lines.dropFirst(), limits: limits)
            let status = HTTPStatus(code, reason)
            let bodyStart = end + 4
            if code < 200 {
                buffer.removeSubrange(0..<bodyStart)
                if interim { return HTTPResponse(status: status, headers: headers) }
                continue
            }
            if status.forbidsBody {
                buffer.removeSubrange(0..<bodyStart)
                return HTTPResponse(status: status, headers: headers)
            }
            if headers.contains("Transfer-Encoding") { throw .malformed("chunked responses are not supported") }
            if let length = try HTTPHead.contentLength(headers, limit: limits.maximumBodyBytes) {
                guard buffer.count - bodyStart >= length else {
                    if atEnd { throw .malformed("truncated response body") }
                    return nil
                }
                let body = Array(buffer[bodyStart..<(bodyStart + length)])
                buffer.removeSubrange(0..<(bodyStart + length))
                return HTTPResponse(status: status, headers: headers, body: body)
            }
            guard buffer.count - bodyStart <= limits.maximumBodyBytes else { throw .malformed("response body too large") }
            guard atEnd else { return nil }
            let body = Array(buffer[bodyStart...])
            buffer.removeAll()
            return HTTPResponse(status: status, headers: headers, body: body)
        }
    }
}

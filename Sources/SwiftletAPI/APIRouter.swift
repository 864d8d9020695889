/// An error a handler answers with, in Firecracker's shape: the status and a
/// JSON body `{"fault_message": "..."}`.
public struct APIError: Error, Sendable, Equatable, CustomStringConvertible {
    public var status: HTTPStatus
    public var faultMessage: String
    /// Extra header fields (`Allow` on a 405).
    public var headers: HTTPHeaders

    public init(_ status: HTTPStatus, _ faultMessage: String, headers: HTTPHeaders = [:]) {
        self.status = status
        self.faultMessage = faultMessage
        self.headers = headers
    }

    /// 400: the request is malformed or asks for something invalid.
    public static func badRequest(_ message: String) -> APIError { APIError(.badRequest, message) }
    /// 404: no such resource.
    public static func notFound(_ message: String) -> APIError { APIError(.notFound, message) }
    /// 409: the request races another, or conflicts with the current state.
    public static func conflict(_ message: String) -> APIError { APIError(.conflict, message) }
    /// 500: the VMM failed to do something it should have been able to do.
    public static func internalError(_ message: String) -> APIError { APIError(.internalServerError, message) }

    public var description: String { "\(status.code) \(faultMessage)" }

    public var response: HTTPResponse {
        var response = HTTPResponse(status: status, json: ["fault_message": .string(faultMessage)])
        for field in headers { response.headers.add(field.name, field.value) }
        return response
    }
}

/// What a handler sees of a request: method, path, the values of the
/// path's `{parameters}`, and the body.
public struct APIRequest: Sendable {
    public var method: String
    public var path: String
    public var parameters: [String: String]
    public var body: [UInt8]

    public init(method: String, path: String, parameters: [String: String] = [:], body: [UInt8] = []) {
        self.method = method
        self.path = path
        self.parameters = parameters
        self.body = body
    }

    /// The body as JSON: 400 when it is missing or not valid JSON.
    public func json() throws(APIError) -> JSONValue {
        guard !body.isEmpty else { throw .badRequest("the request needs a JSON body") }
        do {
            return try JSONValue(parsing: body)
        } catch {
            throw .badRequest("the body is not valid JSON: \(error)")
        }
    }

    /// Refuses a body other than nothing or `{}`, for requests whose
    /// meaning is all in the path.
    public func requireEmptyBody() throws(APIError) {
        guard !body.isEmpty else { return }
        let value = try json()
        guard value == .object([:]) else { throw .badRequest("this request takes no body (or {})") }
    }
}

/// How the server runs a route's handler.
public enum APIRouteKind: Sendable {
    /// Reads state: runs on the server thread and must not block.
    case read
    /// Changes state: runs on the server's worker thread, one at a time
    /// (it may block, e.g. joining a vCPU thread). A mutating request that
    /// arrives while another runs is answered 409 at once.
    case mutate
}

public typealias APIHandler = @Sendable (APIRequest) throws(APIError) -> HTTPResponse

/// Maps a method and a path to a handler. Patterns are paths whose
/// segments are literals or `{name}` parameters: `/vcpus/{index}`.
/// No match for the path is 404; a path match without the method is 405
/// with an `Allow` header.
public struct APIRouter: Sendable {
    public struct Route: Sendable {
        public let method: String
        public let pattern: String
        public let kind: APIRouteKind
        public let handler: APIHandler
        let segments: [Segment]
    }

    enum Segment: Sendable, Equatable {
        case literal(String)
        case parameter(String)
    }

    public private(set) var routes: [Route] = []

    public init() {}

    public mutating func add(_ method: String, _ pattern: String, kind: APIRouteKind, handler: @escaping APIHandler) {
        let segments = Self.split(pattern).map { segment -> Segment in
            if segment.hasPrefix("{") && segment.hasSuffix("}") && segment.count > 2 {
                return .parameter(String(segment.dropFirst().dropLast()))
            }
            return .literal(String(segment))
        }
        precondition(pattern.hasPrefix("/"), "route patterns start with '/'")
        routes.append(Route(method: method, pattern: pattern, kind: kind, handler: handler, segments: segments))
    }

    public enum Match: Sendable {
        case found(Route, parameters: [String: String])
        case notFound
        case methodNotAllowed(allowed: [String])
    }

    public func match(method: String, path: String) -> Match {
        let parts = Self.split(path)
        var allowed: [String] = []
        for route in routes {
            guard let parameters = Self.bind(route.segments, to: parts) else { continue }
            if route.method == method { return .found(route, parameters: parameters) }
            if !allowed.contains(route.method) { allowed.append(route.method) }
        }
        return allowed.isEmpty ? .notFound : .methodNotAllowed(allowed: allowed)
    }

    /// "/a/b" → ["a", "b"]; "/" → []; an empty segment ("/a//b", "/a/")
    /// is kept, so it matches nothing.
    static func split(_ path: some StringProtocol) -> [Substring] {
        guard path != "/" else { return [] }
        return Substring(path).dropFirst().split(separator: "/", omittingEmptySubsequences: false)
    }

    static func bind(_ segments: [Segment], to parts: [Substring]) -> [String: String]? {
        guard segments.count == parts.count else { return nil }
        var parameters: [String: String] = [:]
        for (segment, part) in zip(segments, parts) {
            switch segment {
            case .literal(let text): guard part == text else { return nil }
            case .parameter(let name):
                guard !part.isEmpty else { return nil }
                parameters[name] = String(part)
            }
        }
        return parameters
    }
}

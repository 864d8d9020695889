import Testing
@testable import SwiftletAPI

@Suite struct HTTPParserTests {
    /// Parses `text` fed in one piece; the requests and the error, if any.
    static func parse(_ text: String, limits: HTTPLimits = HTTPLimits()) -> ([HTTPRequest], HTTPParseError?) {
        var parser = HTTPRequestParser(limits: limits)
        parser.append(Array(text.utf8))
        var requests: [HTTPRequest] = []
        do {
            while let request = try parser.nextRequest() { requests.append(request) }
        } catch {
            return (requests, error)
        }
        return (requests, nil)
    }

    @Test func simpleGet() throws {
        let (requests, error) = Self.parse("GET /vcpus HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n")
        #expect(error == nil)
        let request = try #require(requests.first)
        #expect(request.method == "GET" && request.target == "/vcpus" && request.path == "/vcpus")
        #expect(request.minorVersion == 1 && request.keepAlive && request.body.isEmpty)
        #expect(request.headers["host"] == "localhost" && request.headers["ACCEPT"] == "*/*")
    }

    @Test func bodyByContentLength() throws {
        let (requests, error) = Self.parse("PUT /vcpus HTTP/1.1\r\nContent-Length: 11\r\nContent-Type: application/json\r\n\r\n{\"count\":2}")
        #expect(error == nil)
        #expect(requests.first?.body == Array("{\"count\":2}".utf8))
    }

    @Test func byteByByte() throws {
        let text = "PUT /vcpus/2?x=1 HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}GET / HTTP/1.0\r\n\r\n"
        var parser = HTTPRequestParser()
        var requests: [HTTPRequest] = []
        for byte in text.utf8 {
            parser.append([byte])
            while let request = try parser.nextRequest() { requests.append(request) }
        }
        #expect(requests.count == 2)
        #expect(requests[0].path == "/vcpus/2" && requests[0].target == "/vcpus/2?x=1" && requests[0].body == [0x7B, 0x7D])
        #expect(requests[1].minorVersion == 0 && !requests[1].keepAlive)
        #expect(parser.bufferedByteCount == 0 && !parser.hasPartialRequest)
    }

    @Test func pipelinedAndKeepAlive() {
        let (requests, error) = Self.parse(
            "\r\nGET /a HTTP/1.1\r\n\r\nDELETE /b HTTP/1.1\r\nConnection: keep-alive\r\n\r\n"
            + "GET /c HTTP/1.1\r\nConnection: Keep-Alive, Close\r\n\r\nGET /d HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /e HTTP/1.1\r\n")
        #expect(error == nil)
        #expect(requests.map(\.path) == ["/a", "/b", "/c", "/d"])
        #expect(requests.map(\.keepAlive) == [true, true, false, true])
    }

    @Test func headerValuesAreTrimmedAndListsAreTokens() throws {
        let (requests, _) = Self.parse("GET / HTTP/1.1\r\nX-A:   spaced value \t\r\nX-B:\r\nX-A: second\r\n\r\n")
        let headers = try #require(requests.first).headers
        #expect(headers["x-a"] == "spaced value" && headers["x-b"] == "")
        #expect(headers.values(for: "X-A") == ["spaced value", "second"])
    }

    @Test(arguments: [
        // Request line.
        ("GET /\r\n\r\n", 400),
        ("GET  / HTTP/1.1\r\n\r\n", 400),
        ("GET / HTTP/1.1 \r\n\r\n", 400),
        ("G(T / HTTP/1.1\r\n\r\n", 400),
        ("GET vcpus HTTP/1.1\r\n\r\n", 400),
        ("GET http://localhost/vcpus HTTP/1.1\r\n\r\n", 400),
        ("GET / HTTP/1.1x\r\n\r\n", 400),
        ("GET / http/1.1\r\n\r\n", 400),
        ("GET / HTTP/2.0\r\n\r\n", 505),
        ("GET / HTTP/0.9\r\n\r\n", 505),
        ("GET /caf\u{e9} HTTP/1.1\r\n\r\n", 400),
        // Line endings and control characters.
        ("GET / HTTP/1.1\nHost: x\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: x\rY\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\u{0}b\r\n\r\n", 400),
        ("\u{1}GET / HTTP/1.1\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nX: a\u{7f}\r\n\r\n", 400),
        // Header fields.
        ("GET / HTTP/1.1\r\nHost x\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\n: x\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nX(A): 1\r\n\r\n", 400),
        // Framing.
        ("PUT / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        ("PUT / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400),
        ("PUT / HTTP/1.1\r\nContent-Length: \r\n\r\n", 400),
        ("PUT / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n", 400),
        ("PUT / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n", 400),
        ("PUT / HTTP/1.1\r\nContent-Length: 2, 3\r\n\r\n", 400),
        ("PUT / HTTP/1.1\r\nContent-Length: 65537\r\n\r\n", 413),
        ("PUT / HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n\r\n", 413),
        ("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
        ("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 501),
        ("PUT / HTTP/1.1\r\nExpect: something\r\n\r\n", 417),
    ])
    func rejects(_ text: String, _ status: Int) {
        let (requests, error) = Self.parse(text)
        #expect(requests.isEmpty)
        #expect(error?.status.code == status, "\(text.debugDescription): \(String(describing: error))")
    }

    @Test func agreeingContentLengthsAreOne() {
        let (requests, error) = Self.parse("PUT / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 002\r\n\r\n{}")
        #expect(error == nil && requests.first?.body.count == 2)
    }

    @Test func oversizedHead() {
        // Without an end in sight: refused once more than the limit arrived.
        var parser = HTTPRequestParser()
        parser.append(Array("GET / HTTP/1.1\r\nX: ".utf8) + [UInt8](repeating: UInt8(ascii: "a"), count: 8 * 1024))
        #expect(throws: HTTPParseError(.headerFieldsTooLarge, "request head exceeds 8192 bytes")) { try parser.nextRequest() }
        // Complete but too long.
        let long = "GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 8200) + "\r\n\r\n"
        #expect(Self.parse(long).1?.status == .headerFieldsTooLarge)
        // Just under the limit is fine.
        let filler = 8192 - "GET / HTTP/1.1\r\nX: \r\n\r\n".utf8.count
        #expect(Self.parse("GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: filler) + "\r\n\r\n").1 == nil)
        // Too many fields.
        let many = "GET / HTTP/1.1\r\n" + String(repeating: "X: 1\r\n", count: 65) + "\r\n"
        #expect(Self.parse(many).1?.status == .headerFieldsTooLarge)
    }

    @Test func bodyAtTheLimit() {
        let body = String(repeating: "x", count: 64 * 1024)
        let (requests, error) = Self.parse("PUT / HTTP/1.1\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body)
        #expect(error == nil && requests.first?.body.count == 64 * 1024)
        let small = HTTPLimits(maximumHeadBytes: 64, maximumBodyBytes: 4)
        #expect(Self.parse("PUT / HTTP/1.1\r\nContent-Length: 5\r\n\r\n12345", limits: small).1?.status == .contentTooLarge)
    }

    @Test func blankLinesHoldNoMemory() throws {
        var parser = HTTPRequestParser()
        for _ in 0..<10_000 {
            parser.append(Array("\r\n\r\n".utf8))
            #expect(try parser.nextRequest() == nil)
        }
        #expect(parser.bufferedByteCount == 0)
        parser.append(Array("GET / HTTP/1.1\r\n\r\n".utf8))
        #expect(try parser.nextRequest()?.path == "/")
    }

    @Test func errorsStick() {
        var parser = HTTPRequestParser()
        parser.append(Array("BAD\r\n\r\nGET / HTTP/1.1\r\n\r\n".utf8))
        #expect(throws: HTTPParseError.self) { try parser.nextRequest() }
        #expect(throws: HTTPParseError.self) { try parser.nextRequest() }
    }

    @Test func expectContinue() throws {
        var parser = HTTPRequestParser()
        parser.append(Array("PUT /vcpus HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n".utf8))
        #expect(try parser.nextRequest() == nil)
        #expect(parser.expectsContinue)
        parser.acknowledgeContinue()
        #expect(!parser.expectsContinue)
        parser.append([0x7B, 0x7D])
        #expect(try parser.nextRequest()?.body == [0x7B, 0x7D])
        #expect(!parser.expectsContinue)
    }

    @Test func responsesRoundTrip() throws {
        let ok = HTTPResponse(status: .ok, json: ["a": 1])
        let wire = String(decoding: ok.serialized(), as: UTF8.self)
        #expect(wire == "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}")
        let noContent = String(decoding: HTTPResponse(status: .noContent, body: [1]).serialized(closing: true), as: UTF8.self)
        #expect(noContent == "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")

        var parser = HTTPResponseParser()
        parser.append(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8) + ok.serialized() + HTTPResponse(status: .noContent).serialized()
                      + Array("HTTP/1.0 404 \r\nX: y\r\n\r\nbody to the end".utf8))
        let first = try #require(try parser.response(atEnd: false))
        #expect(first.status == .ok && first.body == ok.body && first.headers["content-type"] == "application/json")
        #expect(first.headers["Content-Length"] == "7")
        #expect(try parser.response(atEnd: false)?.status.code == 204)
        #expect(try parser.response(atEnd: false) == nil)
        let last = try #require(try parser.response(atEnd: true))
        #expect(last.status.code == 404 && last.headers["x"] == "y" && last.body == Array("body to the end".utf8))
    }

    @Test func malformedResponses() {
        for text in ["HTTP/1.1 20 OK\r\n\r\n", "HTTP/1.1 2000 OK\r\n\r\n", "HTTP/1.1 abc OK\r\n\r\n", "FTP/1.1 200 OK\r\n\r\n",
                     "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", ""] {
            var parser = HTTPResponseParser()
            parser.append(Array(text.utf8))
            #expect(throws: HTTPParseError.self, "\(text.debugDescription)") { try parser.response(atEnd: true) }
        }
    }

    @Test func requestSerialization() {
        let request = HTTPRequest(method: "PUT", target: "/vcpus", headers: ["Host": "localhost"], body: Array("{}".utf8))
        #expect(String(decoding: request.serialized, as: UTF8.self) == "PUT /vcpus HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}")
        #expect(String(decoding: HTTPRequest(method: "DELETE", target: "/vcpus/1").serialized, as: UTF8.self) == "DELETE /vcpus/1 HTTP/1.1\r\n\r\n")
    }
}

@Suite struct RouterTests {
    static func router() -> APIRouter {
        var router = APIRouter()
        router.add("GET", "/", kind: .read) { _ throws(APIError) in HTTPResponse(status: .ok, json: "root") }
        router.add("GET", "/vcpus", kind: .read) { _ throws(APIError) in HTTPResponse(status: .ok) }
        router.add("PUT", "/vcpus/{index}", kind: .mutate) { _ throws(APIError) in HTTPResponse(status: .noContent) }
        router.add("DELETE", "/vcpus/{index}", kind: .mutate) { _ throws(APIError) in HTTPResponse(status: .noContent) }
        return router
    }

    @Test func matches() {
        let router = Self.router()
        guard case .found(let route, let parameters) = router.match(method: "PUT", path: "/vcpus/3") else {
            Issue.record("no match")
            return
        }
        #expect(route.pattern == "/vcpus/{index}" && route.kind == .mutate && parameters == ["index": "3"])
        guard case .found(let root, _) = router.match(method: "GET", path: "/") else {
            Issue.record("no match for /")
            return
        }
        #expect(root.pattern == "/")
    }

    @Test func notFoundAndMethodNotAllowed() {
        let router = Self.router()
        for path in ["/vcpu", "/vcpus/", "/vcpus//", "/vcpus/1/2", "//vcpus", "/VCPUS"] {
            guard case .notFound = router.match(method: "GET", path: path) else {
                Issue.record("\(path) should not match")
                continue
            }
        }
        guard case .methodNotAllowed(let allowed) = router.match(method: "GET", path: "/vcpus/1") else {
            Issue.record("expected 405")
            return
        }
        #expect(allowed == ["PUT", "DELETE"])
    }

    @Test func errorBodies() throws {
        let response = APIError.conflict("busy \"now\"").response
        #expect(response.status.code == 409)
        #expect(response.body == Array(#"{"fault_message":"busy \"now\""}"#.utf8))
        #expect(response.faultMessage == "busy \"now\"")
    }

    @Test func requestBodies() throws {
        #expect(throws: APIError.badRequest("the request needs a JSON body")) { try APIRequest(method: "PUT", path: "/").json() }
        #expect(throws: APIError.self) { try APIRequest(method: "PUT", path: "/", body: Array("{".utf8)).json() }
        try APIRequest(method: "PUT", path: "/", body: Array(" {} ".utf8)).requireEmptyBody()
        try APIRequest(method: "PUT", path: "/").requireEmptyBody()
        #expect(throws: APIError.self) { try APIRequest(method: "PUT", path: "/", body: Array("[]".utf8)).requireEmptyBody() }
    }
}

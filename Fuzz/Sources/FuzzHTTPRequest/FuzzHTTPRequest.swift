import SwiftletAPI

/// The control API's request parser on arbitrary bytes, as a hostile client
/// would send them: never a trap, bodies and heads within the limits, every
/// error a one-line reason with a 4xx/5xx status, and the same requests (and
/// the same error) however the bytes are split into reads — the first byte
/// chooses the split. Each request then goes through the router and the
/// vCPU handlers, as the server would send it, and the response must
/// serialize and parse back. The response parser (the client's) gets the
/// same bytes.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTPRequest(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    let limits = HTTPLimits(maximumHeadBytes: 1024, maximumBodyBytes: 512, maximumHeaderFields: 16)

    let whole = parseAll(bytes, chunk: max(1, bytes.count), limits: limits)
    let chunk = Int(bytes.first ?? 1) % 17 + 1
    let split = parseAll(bytes, chunk: chunk, limits: limits)
    precondition(whole.requests == split.requests, "requests depend on how the bytes arrive")
    precondition(whole.error == split.error, "the error depends on how the bytes arrive")

    for request in whole.requests {
        precondition(request.body.count <= limits.maximumBodyBytes)
        precondition(!request.method.isEmpty && request.target.hasPrefix("/"))
        let response = serve(request)
        var parser = HTTPResponseParser()
        parser.append(response.serialized(closing: !request.keepAlive))
        let back = try! parser.response(atEnd: true)!
        precondition(back.status.code == response.status.code && back.body == response.body)
        if !response.status.isSuccess { checkOneLine(response.faultMessage!) }
    }
    if let error = whole.error {
        precondition(error.status.code >= 400 && error.status.code < 600)
        checkOneLine(error.message)
    }

    var responses = HTTPResponseParser(limits: limits)
    responses.append(bytes)
    while let response = try? responses.response(atEnd: true) {
        precondition(response.body.count <= limits.maximumBodyBytes)
        if responses.bufferedByteCount == 0 { break }
    }
    return 0
}

func parseAll(_ bytes: [UInt8], chunk: Int, limits: HTTPLimits) -> (requests: [HTTPRequest], error: HTTPParseError?) {
    var parser = HTTPRequestParser(limits: limits)
    var requests: [HTTPRequest] = []
    var offset = 0
    repeat {
        parser.append(bytes[offset..<min(bytes.count, offset + chunk)])
        offset += chunk
        do {
            while let request = try parser.nextRequest() { requests.append(request) }
        } catch {
            return (requests, error)
        }
        precondition(parser.bufferedByteCount <= limits.maximumHeadBytes + limits.maximumBodyBytes + chunk)
    } while offset < bytes.count
    return (requests, nil)
}

/// A vCPU set that accepts every change within 0..<8, as a machine would.
final class FuzzVCPUs: VCPUSetControl, @unchecked Sendable {
    // Only touched by the fuzzing thread.
    var present: Set<Int> = [0]
    func vcpuSet() -> VCPUSetDescription {
        VCPUSetDescription(bootCPUs: 1, maxCPUs: 8, vcpus: present.sorted().map { VCPUDescription(index: $0, apicID: $0, state: "running") })
    }
    func setVCPUCount(_ count: Int) throws(VCPUControlError) {
        guard (1...8).contains(count) else { throw .invalidCount(count: count, min: 1, max: 8) }
        present = Set(0..<count)
    }
    func addVCPU(_ index: Int) throws(VCPUControlError) {
        guard index < 8 else { throw .outOfRange(index: index, max: 8) }
        guard present.insert(index).inserted else { throw .alreadyPresent(index: index) }
    }
    func removeVCPU(_ index: Int) throws(VCPUControlError) {
        guard index > 0 else { throw .bootCPU(index: index) }
        guard present.remove(index) != nil else { throw .notPresent(index: index) }
    }
}

let router: APIRouter = {
    var router = APIRouter()
    router.addVCPUResource(FuzzVCPUs())
    return router
}()

/// What the server does with a request, minus the socket.
func serve(_ request: HTTPRequest) -> HTTPResponse {
    switch router.match(method: request.method, path: request.path) {
    case .notFound: return APIError.notFound("no resource at \(request.path)").response
    case .methodNotAllowed: return APIError(.methodNotAllowed, "\(request.method) is not allowed on \(request.path)").response
    case .found(let route, let parameters):
        do {
            return try route.handler(APIRequest(method: request.method, path: request.path, parameters: parameters, body: request.body))
        } catch {
            return error.response
        }
    }
}

func checkOneLine(_ text: String) {
    precondition(!text.isEmpty && !text.contains("\n") && !text.contains("\r"), "message is not one line: \(text)")
}

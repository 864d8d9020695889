import Glibc
import SwiftletSystem

/// Why a request did not get an answer.
public enum APIClientError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Nothing accepts connections at the path (no such file, a stale
    /// socket, no permission).
    case cannotConnect(path: String, SystemError)
    /// Sending or receiving failed, or timed out.
    case transfer(SystemError)
    /// The peer's answer is not an HTTP response this client understands.
    case invalidResponse(String)

    public var description: String {
        switch self {
        case .cannotConnect(let path, let error): "cannot connect to the API socket \(path): \(error.errno)"
        case .transfer(let error): "API connection failed: \(error)"
        case .invalidResponse(let message): "invalid response from the API: \(message)"
        }
    }
}

/// A minimal client for the control API: one connection per request,
/// `Connection: close`, blocking with a timeout. What `swiftlet vcpus` uses.
public struct APIClient: Sendable {
    public var socketPath: String
    /// How long a send or a receive may wait (a vCPU removal can take a while).
    public var timeoutSeconds: Int

    public init(socketPath: String, timeoutSeconds: Int = 60) {
        self.socketPath = socketPath
        self.timeoutSeconds = timeoutSeconds
    }

    /// Sends `method path` with `json` as the body and returns the response,
    /// whatever its status.
    public func send(_ method: String, _ path: String, json: JSONValue? = nil) throws(APIClientError) -> HTTPResponse {
        var request = HTTPRequest(method: method, target: path, headers: ["Host": "localhost", "Connection": "close"])
        if let json {
            request.headers.add("Content-Type", "application/json")
            request.body = json.serializedBytes
        }
        return try send(request)
    }

    public func send(_ request: HTTPRequest) throws(APIClientError) -> HTTPResponse {
        guard socketPath.utf8.count <= UnixSocket.maximumPathBytes else {
            throw .cannotConnect(path: socketPath, SystemError("connect(\(socketPath))", Errno(rawValue: ENAMETOOLONG)))
        }
        let socket: FileDescriptor
        do {
            socket = try UnixSocket.make(nonBlocking: false)
            try UnixSocket.setTimeouts(socket, seconds: timeoutSeconds)
        } catch {
            throw .transfer(error)
        }
        do {
            try UnixSocket.connect(socket, to: socketPath)
        } catch {
            throw .cannotConnect(path: socketPath, error)
        }
        var parser = HTTPResponseParser()
        var chunk = [UInt8](repeating: 0, count: 4096)
        do {
            try UnixSocket.sendAll(socket.rawValue, request.serialized)
        } catch where error.errno.rawValue == EPIPE || error.errno.rawValue == ECONNRESET {
            // The server may have answered and closed before reading all of
            // the request (an error it found in the head); read that answer.
        } catch {
            throw .transfer(error)
        }
        while true {
            let n: Int
            do {
                n = try chunk.withUnsafeMutableBytes { raw in
                    // Unsafe: recv fills at most the chunk's bytes.
                    Result { () throws(SystemError) in try UnixSocket.receive(socket.rawValue, into: raw) }
                }.get()
            } catch where error.errno.rawValue == ECONNRESET {
                n = 0
            } catch where error.errno == .tryAgain {
                throw .transfer(SystemError("recv (no answer within \(timeoutSeconds) s)", .timedOut))
            } catch {
                throw .transfer(error)
            }
            parser.append(chunk[0..<n])
            do {
                if let response = try parser.response(atEnd: n == 0) { return response }
            } catch {
                throw .invalidResponse(error.message)
            }
        }
    }
}

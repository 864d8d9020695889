import Glibc
import SwiftletSystem

/// One client connection; touched only on the server thread.
final class Connection {
    let id: UInt64
    let descriptor: FileDescriptor
    var parser: HTTPRequestParser
    /// Response bytes not yet sent, from `written` on.
    var output: [UInt8] = []
    var written = 0
    /// A mutating request of this connection is on the worker.
    var awaitingWorker = false
    /// Close once `output` is sent (Connection: close, or an error).
    var closeWhenFlushed = false
    /// Whether the awaited worker response ends the connection.
    var closeAfterWorkerResponse = false
    /// The peer shut down its sending side: answer what is buffered, then close.
    var peerClosed = false
    /// The events the descriptor is registered for in the loop, if any.
    var interest: UInt32?
    /// For choosing which idle connection to drop at the limit.
    var lastActive: UInt64

    var fd: Int32 { descriptor.rawValue }
    var hasPendingOutput: Bool { written < output.count }

    init(id: UInt64, descriptor: FileDescriptor, limits: HTTPLimits, now: UInt64) {
        self.id = id
        self.descriptor = descriptor
        self.parser = HTTPRequestParser(limits: limits)
        self.lastActive = now
    }
}

/// The server thread's state and event handlers.
///
/// `@unchecked Sendable`: everything mutable here (`connections`, the
/// counters, `mutationRunning`, `listener`) is touched only on the server
/// thread — in `serve()` and in the loop's handlers, which run on it. Other
/// threads only call `stop()`, which goes through the loop's own lock.
final class ServerCore: @unchecked Sendable {
    let router: APIRouter
    let limits: APIServerLimits
    let worker: MutationWorker
    private let loop: EventLoop
    private var listener: FileDescriptor?
    private var connections: [Int32: Connection] = [:]
    private var nextID: UInt64 = 1
    private var clock: UInt64 = 0
    private var mutationRunning = false
    private var acceptPaused = false
    private var scratch = [UInt8](repeating: 0, count: 4096)

    // <sys/epoll.h>; the shim exports only EPOLLIN, EPOLLERR and EPOLLHUP.
    private static let writable: UInt32 = 0x004

    init(listener: FileDescriptor, router: APIRouter, limits: APIServerLimits, worker: MutationWorker) throws(SystemError) {
        self.listener = listener
        self.router = router
        self.limits = limits
        self.worker = worker
        loop = try EventLoop()
        try loop.add(listener.rawValue) { [unowned self] _ in acceptConnections() }
        try loop.add(worker.done.descriptor.rawValue) { [unowned self] _ in finishMutations() }
    }

    /// The server thread's body: serves until `stop()`, then closes every
    /// connection and the listener.
    func serve() {
        loop.run()
        for connection in connections.values where connection.interest != nil { loop.remove(connection.fd) }
        connections.removeAll()
        if let listener { loop.remove(listener.rawValue) }
        loop.remove(worker.done.descriptor.rawValue)
        listener = nil
    }

    func stop() { loop.stop() }

    // MARK: Accepting

    private func acceptConnections() {
        guard let listener else { return }
        while true {
            // accept4 is not visible through Glibc's module; the VMM does not
            // fork, so setting the flags right after is as good.
            let fd = accept(listener.rawValue, nil, nil)
            if fd < 0 {
                switch errno {
                case EINTR, ECONNABORTED: continue
                case EAGAIN: return
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    // Out of descriptors or memory: the listener would stay
                    // readable and spin the thread, so stop accepting until a
                    // connection closes (with none open, keep trying).
                    Log.warning("API: accept on \(listener): \(Errno.current)")
                    if !connections.isEmpty {
                        loop.remove(listener.rawValue)
                        acceptPaused = true
                    }
                    return
                default:
                    Log.warning("API: accept on \(listener): \(Errno.current)")
                    return
                }
            }
            let descriptor = FileDescriptor(owning: fd)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            do {
                try descriptor.setNonBlocking()
            } catch {
                Log.warning("API: \(error)")
                continue
            }
            if connections.count >= limits.maximumConnections && !makeRoom() {
                // Every connection has a request on the worker: refuse this one.
                let refusal = APIError(.serviceUnavailable, "too many API connections").response.serialized(closing: true)
                // Unsafe: a view of the refusal's bytes for this one send;
                // best effort, the descriptor closes right after.
                refusal.withUnsafeBytes { _ = try? UnixSocket.send(fd, $0) }
                continue
            }
            clock += 1
            let connection = Connection(id: nextID, descriptor: descriptor, limits: limits.http, now: clock)
            nextID += 1
            connections[fd] = connection
            updateInterest(connection)
        }
    }

    /// Closes the least recently active connection that is not waiting for
    /// the worker; false if there is none.
    private func makeRoom() -> Bool {
        guard let victim = connections.values.filter({ !$0.awaitingWorker }).min(by: { $0.lastActive < $1.lastActive }) else {
            return false
        }
        Log.debug("API: closing idle connection \(victim.id) to admit a new one")
        close(victim)
        return true
    }

    private func close(_ connection: Connection) {
        if connection.interest != nil { loop.remove(connection.fd) }
        connection.interest = nil
        connections[connection.fd] = nil
        if acceptPaused, let listener {
            acceptPaused = false
            try? loop.add(listener.rawValue) { [unowned self] _ in acceptConnections() }
        }
    }

    // MARK: Events

    private func handleEvent(fd: Int32, id: UInt64, events: UInt32) {
        // The loop may deliver an event for a descriptor closed (and its
        // number reused) earlier in the same batch.
        guard let connection = connections[fd], connection.id == id else { return }
        // Read only when registered for input; a hang-up while output is
        // pending shows up as EPIPE when sending.
        if connection.interest == EventLoop.readable {
            let n = scratch.withUnsafeMutableBytes { raw in
                // Unsafe: recv fills at most the scratch buffer's 4 KiB.
                Glibc.recv(fd, raw.baseAddress, raw.count, 0)
            }
            if n > 0 {
                connection.parser.append(scratch[0..<n])
                clock += 1
                connection.lastActive = clock
            } else if n == 0 {
                connection.peerClosed = true
            } else if errno != EAGAIN && errno != EINTR {
                close(connection)
                return
            }
        }
        service(connection)
    }

    /// Advances a connection as far as it can go without blocking: sends
    /// pending output, answers complete requests in order, and registers
    /// for whatever it waits for next.
    private func service(_ connection: Connection) {
        while true {
            if connection.hasPendingOutput {
                guard flush(connection) else { close(connection); return }
                if connection.hasPendingOutput { break }
            }
            if connection.closeWhenFlushed { close(connection); return }
            if connection.awaitingWorker { break }
            let request: HTTPRequest?
            do {
                request = try connection.parser.nextRequest()
            } catch {
                queue(APIError(error.status, error.message).response, on: connection, closing: true)
                continue
            }
            guard let request else {
                if connection.parser.expectsContinue {
                    connection.parser.acknowledgeContinue()
                    queue(HTTPResponse(status: .continue), on: connection, closing: false)
                    continue
                }
                // At the end of the stream, possibly mid-request: nothing
                // more can complete.
                if connection.peerClosed { close(connection); return }
                break
            }
            dispatch(request, on: connection)
        }
        updateInterest(connection)
    }

    private func dispatch(_ request: HTTPRequest, on connection: Connection) {
        let closing = !request.keepAlive
        let path = request.path
        switch router.match(method: request.method, path: path) {
        case .notFound:
            queue(APIError.notFound("no resource at \(path)").response, on: connection, closing: closing)
        case .methodNotAllowed(let allowed):
            let error = APIError(.methodNotAllowed, "\(request.method) is not allowed on \(path) (allowed: \(allowed.joined(separator: ", ")))",
                                 headers: ["Allow": allowed.joined(separator: ", ")])
            queue(error.response, on: connection, closing: closing)
        case .found(let route, let parameters):
            let apiRequest = APIRequest(method: request.method, path: path, parameters: parameters, body: request.body)
            let handler = route.handler
            switch route.kind {
            case .read:
                queue(Self.respond(handler, apiRequest), on: connection, closing: closing)
            case .mutate:
                guard !mutationRunning else {
                    let error = APIError.conflict("another request that changes the VM is in progress; retry when it completes")
                    queue(error.response, on: connection, closing: closing)
                    return
                }
                mutationRunning = true
                connection.awaitingWorker = true
                connection.closeAfterWorkerResponse = closing
                worker.submit(MutationWorker.Job(connection: connection.id) { Self.respond(handler, apiRequest) })
            }
        }
    }

    private static func respond(_ handler: APIHandler, _ request: APIRequest) -> HTTPResponse {
        do {
            return try handler(request)
        } catch {
            return error.response
        }
    }

    /// The worker finished: send each result to its connection, if that is
    /// still open.
    private func finishMutations() {
        worker.done.drain()
        for (id, response) in worker.takeFinished() {
            mutationRunning = false
            guard let connection = connections.values.first(where: { $0.id == id }) else { continue }
            connection.awaitingWorker = false
            queue(response, on: connection, closing: connection.closeAfterWorkerResponse)
            service(connection)
        }
    }

    private func queue(_ response: HTTPResponse, on connection: Connection, closing: Bool) {
        if !connection.hasPendingOutput {
            connection.output.removeAll(keepingCapacity: true)
            connection.written = 0
        }
        connection.output += response.serialized(closing: closing)
        if closing { connection.closeWhenFlushed = true }
    }

    /// Sends what it can without blocking; false if the peer is gone.
    private func flush(_ connection: Connection) -> Bool {
        while connection.hasPendingOutput {
            let result = connection.output.withUnsafeBytes { raw in
                // Unsafe: a view of the unsent tail for this one call.
                Result { () throws(SystemError) in
                    try UnixSocket.send(connection.fd, UnsafeRawBufferPointer(rebasing: raw[connection.written...]))
                }
            }
            switch result {
            case .success(let n): connection.written += n
            case .failure(let error) where error.errno == .tryAgain: return true
            case .failure: return false
            }
        }
        return true
    }

    /// Registers the descriptor for what the connection waits for: output
    /// space while a response is unsent, nothing while the worker has its
    /// request (level-triggered epoll would report buffered input again and
    /// again), input otherwise.
    private func updateInterest(_ connection: Connection) {
        let wanted: UInt32? =
            connection.awaitingWorker ? nil
            : connection.hasPendingOutput ? Self.writable
            : connection.peerClosed ? nil
            : EventLoop.readable
        guard wanted != connection.interest else { return }
        if connection.interest != nil { loop.remove(connection.fd) }
        connection.interest = nil
        guard let wanted else { return }
        let (fd, id) = (connection.fd, connection.id)
        do {
            try loop.add(fd, events: wanted) { [unowned self] events in handleEvent(fd: fd, id: id, events: events) }
            connection.interest = wanted
        } catch {
            Log.warning("API: \(error)")
            close(connection)
        }
    }
}

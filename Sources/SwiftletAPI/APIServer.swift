import Glibc
import SwiftletSystem

/// Why the API server could not start.
public enum APIServerError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Another process serves on the socket at this path.
    case socketInUse(path: String)
    /// Something other than a socket exists at the path; it is left alone.
    case notASocket(path: String)
    case pathTooLong(path: String, limit: Int)
    case system(SystemError)

    public var description: String {
        switch self {
        case .socketInUse(let path): "API socket \(path) is in use by a running process"
        case .notASocket(let path): "API socket path \(path) exists and is not a socket"
        case .pathTooLong(let path, let limit): "API socket path \(path) is longer than \(limit) bytes"
        case .system(let error): "API socket: \(error)"
        }
    }
}

/// Bounds on what clients may make the server hold.
public struct APIServerLimits: Sendable, Equatable {
    public var http: HTTPLimits
    /// Open connections at once. Beyond this the least recently active
    /// idle connection is closed to make room for the new one.
    public var maximumConnections: Int

    public init(http: HTTPLimits = HTTPLimits(), maximumConnections: Int = 16) {
        self.http = http
        self.maximumConnections = maximumConnections
    }
}

/// The control API's server: HTTP/1.1 on a Unix stream socket, served by one
/// dedicated OS thread running an epoll loop, plus one worker thread for
/// requests that change the VM.
///
/// Reading requests (`APIRouteKind.read`) are answered on the server thread.
/// Mutating ones (`.mutate`) run on the worker, which may block (removing a
/// vCPU joins its thread) while the server thread keeps answering; a
/// mutating request that arrives while one is running gets 409 at once,
/// which is how a client learns it raced another. Requests pipelined on one
/// connection are answered in order, so they never race each other.
///
/// Starting refuses a path where a live server listens or where a
/// non-socket exists, and removes a stale socket file. `shutdown()` stops
/// the threads, closes every descriptor and removes the socket file.
public final class APIServer: Sendable {
    public let socketPath: String

    private struct Running: Sendable {
        let core: ServerCore
        let serverThread: OSThread
        let workerThread: OSThread
        let socketIdentity: (device: UInt64, inode: UInt64)
    }
    private let running: Locked<Running?>

    /// Listens at `socketPath` and starts serving `router`.
    public init(socketPath: String, router: APIRouter, limits: APIServerLimits = APIServerLimits()) throws(APIServerError) {
        self.socketPath = socketPath
        guard socketPath.utf8.count <= UnixSocket.maximumPathBytes, !socketPath.isEmpty else {
            throw .pathTooLong(path: socketPath, limit: UnixSocket.maximumPathBytes)
        }
        if let existing = UnixSocket.identity(of: socketPath) {
            guard existing.isSocket else { throw .notASocket(path: socketPath) }
            guard !UnixSocket.isLive(socketPath) else { throw .socketInUse(path: socketPath) }
            // A socket nobody accepts on: left by a VMM that did not shut down.
            _ = unlink(socketPath)
        }
        let listener: FileDescriptor
        let identity: (device: UInt64, inode: UInt64)
        do throws(SystemError) {
            listener = try UnixSocket.make(nonBlocking: true)
            _ = try systemCall("bind(\(socketPath))") {
                UnixSocket.withAddress(socketPath) { bind(listener.rawValue, $0, $1) }
            }
            // Owner only, before listen(): connecting needs write permission
            // on the socket file, so no one else can get in between.
            _ = try systemCall("chmod(\(socketPath))") { chmod(socketPath, 0o600) }
            guard let bound = UnixSocket.identity(of: socketPath) else { throw SystemError("lstat(\(socketPath))", .noEntry) }
            identity = (bound.device, bound.inode)
        } catch {
            throw .system(error)
        }
        let core: ServerCore
        let serverThread: OSThread
        let workerThread: OSThread
        do throws(SystemError) {
            _ = try systemCall("listen(\(socketPath))") { listen(listener.rawValue, 16) }
            let worker = try MutationWorker()
            core = try ServerCore(listener: listener, router: router, limits: limits, worker: worker)
            workerThread = try OSThread(name: "swiftlet-api-w", stackSize: 256 * 1024) { worker.run() }
            do throws(SystemError) {
                serverThread = try OSThread(name: "swiftlet-api", stackSize: 512 * 1024) { core.serve() }
            } catch {
                worker.stop()
                workerThread.join()
                throw error
            }
        } catch {
            _ = unlink(socketPath)
            throw .system(error)
        }
        running = Locked(Running(core: core, serverThread: serverThread, workerThread: workerThread, socketIdentity: identity))
    }

    deinit { shutdown() }

    /// Stops serving: closes every connection (a client mid-request sees the
    /// stream end), waits for a running mutating request to finish, joins
    /// both threads, closes the listening socket and removes its file.
    /// Safe to call more than once and from any thread but the server's and
    /// the worker's own (so not from a handler), which it joins.
    public func shutdown() {
        guard let run = running.withLock({ state -> Running? in
            defer { state = nil }
            return state
        }) else { return }
        run.core.stop()
        run.serverThread.join()
        run.core.worker.stop()
        run.workerThread.join()
        // Only our own socket: another server may have replaced the file.
        if let now = UnixSocket.identity(of: socketPath), now.device == run.socketIdentity.device, now.inode == run.socketIdentity.inode {
            _ = unlink(socketPath)
        }
    }

    /// Whether `shutdown()` has not been called yet.
    public var isRunning: Bool { running.withLock { $0 != nil } }
}

/// The worker thread that runs mutating handlers one at a time and tells
/// the server thread through an eventfd when one is done.
final class MutationWorker: Sendable {
    struct Job: Sendable {
        let connection: UInt64
        let run: @Sendable () -> HTTPResponse
    }

    private struct State {
        var job: Job?
        var finished: [(connection: UInt64, response: HTTPResponse)] = []
        var stopping = false
    }

    private let state = Locked(State())
    /// Bumped on every submit and stop, so the worker's futex wait cannot
    /// miss one that lands between its check and its sleep.
    private let wakeups = FutexWord(0)
    let done: EventNotifier

    init() throws(SystemError) {
        done = try EventNotifier()
    }

    /// Hands a job to the worker; the server thread calls this only when the
    /// previous job's result has been taken.
    func submit(_ job: Job) {
        state.withLock { $0.job = job }
        wakeups.add(1)
        wakeups.wake()
    }

    func stop() {
        state.withLock { $0.stopping = true }
        wakeups.add(1)
        wakeups.wake()
    }

    /// Results ready for the server thread.
    func takeFinished() -> [(connection: UInt64, response: HTTPResponse)] {
        state.withLock { state in
            defer { state.finished = [] }
            return state.finished
        }
    }

    /// The worker thread's body.
    func run() {
        while true {
            let seen = wakeups.load()
            let next: (job: Job?, stop: Bool) = state.withLock { state in
                defer { state.job = nil }
                return (state.job, state.stopping)
            }
            if let job = next.job {
                let response = job.run()
                state.withLock { $0.finished.append((job.connection, response)) }
                done.notify()
            } else if next.stop {
                return
            } else {
                wakeups.wait(whileEquals: seen)
            }
        }
    }
}

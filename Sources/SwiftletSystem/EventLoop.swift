import CSwiftlet
import Glibc
import Synchronization

/// An eventfd(2): a counter one thread bumps to wake another that polls it.
public final class EventNotifier: Sendable {
    public let descriptor: FileDescriptor

    public init() throws(SystemError) {
        let fd = try systemCall("eventfd") { swl_eventfd(0, SWL_EFD_CLOEXEC | SWL_EFD_NONBLOCK) }
        descriptor = FileDescriptor(owning: fd)
    }

    /// Adds one to the counter, making the descriptor readable.
    public func notify() {
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { Glibc.write(descriptor.rawValue, $0.baseAddress, 8) }
    }

    /// Reads and resets the counter; returns 0 if nothing was pending.
    @discardableResult
    public func drain() -> UInt64 {
        var value: UInt64 = 0
        let n = withUnsafeMutableBytes(of: &value) { Glibc.read(descriptor.rawValue, $0.baseAddress, 8) }
        return n == 8 ? value : 0
    }
}

/// A single-threaded epoll loop: the machine's control thread uses it for the
/// serial console's input, the stop notification and (later) the API socket.
/// Handlers run on the thread that calls `run()`; registration is allowed
/// from any thread.
public final class EventLoop: Sendable {
    public typealias Handler = @Sendable (_ events: UInt32) -> Void

    private let epoll: FileDescriptor
    private let wakeup: EventNotifier
    private let state = Locked<State>(State())

    private struct State {
        var handlers: [Int32: Handler] = [:]
        var stopping = false
    }

    public static let readable = SWL_EPOLLIN
    public static let hangup = SWL_EPOLLHUP | SWL_EPOLLERR

    public init() throws(SystemError) {
        epoll = FileDescriptor(owning: try systemCall("epoll_create1") { swl_epoll_create() })
        wakeup = try EventNotifier()
        _ = try systemCall("epoll_ctl(ADD eventfd)") {
            swl_epoll_ctl(epoll.rawValue, SWL_EPOLL_CTL_ADD, wakeup.descriptor.rawValue, EventLoop.readable, UInt64(UInt32(bitPattern: wakeup.descriptor.rawValue)))
        }
    }

    /// Calls `handler` whenever `fd` has any of `events`. The caller keeps
    /// `fd` open until it calls `remove`.
    public func add(_ fd: Int32, events: UInt32 = EventLoop.readable, handler: @escaping Handler) throws(SystemError) {
        state.withLock { $0.handlers[fd] = handler }
        _ = try systemCall("epoll_ctl(ADD \(fd))") {
            swl_epoll_ctl(epoll.rawValue, SWL_EPOLL_CTL_ADD, fd, events, UInt64(UInt32(bitPattern: fd)))
        }
    }

    public func remove(_ fd: Int32) {
        _ = swl_epoll_ctl(epoll.rawValue, SWL_EPOLL_CTL_DEL, fd, 0, 0)
        _ = state.withLock { $0.handlers.removeValue(forKey: fd) }
    }

    /// Makes `run()` return after the handlers now running finish.
    public func stop() {
        state.withLock { $0.stopping = true }
        wakeup.notify()
    }

    /// Dispatches events until `stop()` is called.
    public func run() {
        var data = [UInt64](repeating: 0, count: 16)
        var events = [UInt32](repeating: 0, count: 16)
        while !state.withLock({ $0.stopping }) {
            let n = data.withUnsafeMutableBufferPointer { d in
                events.withUnsafeMutableBufferPointer { e in
                    swl_epoll_wait(epoll.rawValue, d.baseAddress, e.baseAddress, 16, -1)
                }
            }
            if n < 0 { continue }  // EINTR
            for i in 0..<Int(n) {
                let fd = Int32(bitPattern: UInt32(truncatingIfNeeded: data[i]))
                if fd == wakeup.descriptor.rawValue {
                    wakeup.drain()
                    continue
                }
                if let handler = state.withLock({ $0.handlers[fd] }) {
                    handler(events[i])
                }
            }
        }
    }
}

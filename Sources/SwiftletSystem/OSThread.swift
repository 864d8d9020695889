import CSwiftlet
import Glibc

/// A dedicated operating-system thread, separate from Swift's concurrency
/// pool. vCPUs run KVM_RUN on these: a vCPU blocks in the kernel for as long
/// as its guest runs, which must never starve the cooperative pool.
public final class OSThread: Sendable {
    private let handle: pthread_t
    public let name: String

    private final class Start: @unchecked Sendable {
        // Handed from the creating thread to the new one exactly once,
        // through pthread_create's argument; never shared afterwards.
        let name: String
        let body: @Sendable () -> Void
        init(name: String, body: @escaping @Sendable () -> Void) { self.name = name; self.body = body }
    }

    /// Starts `body` on a new thread named `name` (truncated to the kernel's
    /// 15 characters). The thread starts with the vCPU kick signal blocked;
    /// vCPU threads unblock it themselves once they can handle it.
    public init(name: String, stackSize: Int = 256 * 1024, _ body: @escaping @Sendable () -> Void) throws(SystemError) {
        self.name = name
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        defer { pthread_attr_destroy(&attr) }
        pthread_attr_setstacksize(&attr, stackSize)

        let start = Unmanaged.passRetained(Start(name: name, body: body))
        var thread = pthread_t()
        let rc = pthread_create(&thread, &attr, { raw in
            let start = Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue()
            _ = swl_kick_block_on_this_thread()
            _ = String(start.name.prefix(15)).withCString { swl_thread_set_name($0) }
            start.body()
            return nil
        }, start.toOpaque())
        if rc != 0 {
            start.release()
            throw SystemError("pthread_create(\(name))", Errno(rawValue: rc))
        }
        self.handle = thread
    }

    /// Waits for the thread to finish. Call exactly once.
    public func join() {
        pthread_join(handle, nil)
    }

    /// Whether the calling thread is this one (`pthread_equal`).
    public var isCurrent: Bool { pthread_equal(handle, pthread_self()) != 0 }

    /// Sends `signal` to this thread (`pthread_kill`).
    public func send(signal: Int32) {
        pthread_kill(handle, signal)
    }
}

/// A one-shot CLOCK_MONOTONIC timer that kicks one thread (the vCPU kick
/// signal) when it expires. Create it on the thread it is to kick.
public final class ThreadTimer: @unchecked Sendable {
    // The timer_t (as an integer); this object owns it and only the
    // creating thread arms it.
    private let timer: Int
    private var armedDeadline: Int64 = 0

    /// A timer that kicks the calling thread.
    public init() throws(SystemError) {
        var handle = 0
        _ = try systemCall("timer_create") { swl_thread_timer_create(swl_gettid(), &handle) }
        timer = handle
    }

    deinit { _ = swl_thread_timer_delete(timer) }

    /// Fires at `deadline` (CLOCK_MONOTONIC nanoseconds); nil disarms.
    /// Re-arming for the same deadline is free.
    public func arm(at deadline: Int64?) {
        let wanted = deadline.map { max($0, 1) } ?? 0
        guard wanted != armedDeadline else { return }
        armedDeadline = wanted
        _ = swl_thread_timer_arm(timer, wanted)
    }
}

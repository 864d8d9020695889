import Glibc
import Synchronization
import SwiftletSystem

/// Where a serial port's transmitted bytes go.
///
/// `write` is called on the vCPU thread that wrote the transmitter holding
/// register, outside the port's lock, once per byte in transmission order.
/// A slow sink slows that vCPU down (like a UART waiting for its line), so
/// implementations should not block for long; none may call back into the
/// port.
public protocol SerialOutput: Sendable {
    func write(_ byte: UInt8)
}

/// Throws transmitted bytes away: a machine without a console.
public struct DiscardingOutput: SerialOutput {
    public init() {}
    public func write(_ byte: UInt8) {}
}

/// Writes transmitted bytes to a file descriptor (the host's stdout, a log
/// file, a pty).
///
/// A console that cannot be written must never take the VM down, so failed
/// writes are counted, logged at a limited rate, and the byte is dropped.
/// A descriptor in non-blocking mode (stdin and stdout often share one open
/// file description, and the VMM makes stdin non-blocking) can answer
/// EAGAIN: the first byte that meets a full descriptor waits up to
/// `congestionWait` for room, then the sink counts itself congested and drops
/// bytes without waiting until a write succeeds again. A stalled reader (a
/// paused pager) therefore costs the guest one wait, not one per byte.
///
/// SIGPIPE must be ignored by the process for a closed pipe to show up here
/// as EPIPE rather than kill the VMM.
public final class FileDescriptorOutput: SerialOutput {
    private let rawDescriptor: Int32
    /// Keeps an owned descriptor open as long as this sink lives.
    private let owner: FileDescriptor?
    private let congestionWaitMilliseconds: Int32
    private let congested = Atomic<Bool>(false)
    private let written = Atomic<UInt64>(0)
    private let dropped = Atomic<UInt64>(0)
    private let logLimiter = RateLimiter(burst: 1, intervalNanoseconds: 10_000_000_000)

    /// Writes to `descriptor`, keeping it open while the sink exists.
    public init(_ descriptor: FileDescriptor, congestionWait milliseconds: Int32 = 1000) {
        rawDescriptor = descriptor.rawValue
        owner = descriptor
        congestionWaitMilliseconds = max(0, milliseconds)
    }

    /// Writes to a descriptor the sink does not own (such as 1, stdout);
    /// the caller keeps it open.
    public init(borrowing rawDescriptor: Int32, congestionWait milliseconds: Int32 = 1000) {
        self.rawDescriptor = rawDescriptor
        owner = nil
        congestionWaitMilliseconds = max(0, milliseconds)
    }

    /// The process's standard output.
    public static func standardOutput() -> FileDescriptorOutput {
        FileDescriptorOutput(borrowing: 1)
    }

    /// Bytes written to the descriptor so far.
    public var bytesWritten: UInt64 { written.load(ordering: .relaxed) }
    /// Bytes lost to write errors or congestion so far.
    public var bytesDropped: UInt64 { dropped.load(ordering: .relaxed) }

    public func write(_ byte: UInt8) {
        var byte = byte
        var interruptions = 0
        var waited = congested.load(ordering: .relaxed)
        while true {
            let n = Glibc.write(rawDescriptor, &byte, 1)
            if n == 1 {
                written.add(1, ordering: .relaxed)
                congested.store(false, ordering: .relaxed)
                return
            }
            let error = n < 0 ? Errno.current : Errno.ioError
            if error == .interrupted && interruptions < 8 {
                // A signal other than the vCPU kick (which does not
                // interrupt a write the kernel can finish) is worth a retry;
                // a storm of them is not worth spinning on.
                interruptions += 1
                continue
            }
            if error == .tryAgain && !waited {
                waited = true
                var descriptor = pollfd(fd: rawDescriptor, events: Int16(POLLOUT), revents: 0)
                if poll(&descriptor, 1, congestionWaitMilliseconds) > 0 { continue }
                congested.store(true, ordering: .relaxed)
            }
            drop(error)
            return
        }
    }

    private func drop(_ error: Errno) {
        let total = dropped.add(1, ordering: .relaxed).newValue
        if error == .tryAgain { return }  // congestion is expected; not worth a log line per stall
        guard let suppressed = logLimiter.admit() else { return }
        var message = "serial console: write to fd \(rawDescriptor) failed: \(error); \(total) byte(s) dropped so far"
        if suppressed > 0 { message += " (\(suppressed) similar messages suppressed)" }
        Log.warning(message)
    }
}

/// Keeps the most recent `limit` bytes a guest wrote, for programs that
/// embed a VM and want to look at its console (tests, health checks).
///
/// Memory stays bounded however much the guest writes: once `limit` bytes
/// are held, each new byte pushes out the oldest, and `discardedCount` says
/// how many were pushed out.
public final class ConsoleCapture: SerialOutput {
    private struct Ring {
        var storage: [UInt8] = []
        var start = 0  // index of the oldest byte once the ring is full
        var total = 0
    }

    public let limit: Int
    private let ring = Locked(Ring())

    /// Retains at most `limit` bytes (1 MiB unless told otherwise).
    public init(limit: Int = 1 << 20) {
        self.limit = max(0, limit)
    }

    public func write(_ byte: UInt8) {
        ring.withLock { r in
            r.total += 1
            guard limit > 0 else { return }
            if r.storage.count < limit {
                r.storage.append(byte)
            } else {
                r.storage[r.start] = byte
                r.start = r.start + 1 == limit ? 0 : r.start + 1
            }
        }
    }

    /// The retained bytes, oldest first.
    public var bytes: [UInt8] {
        ring.withLock { r in
            r.start == 0 ? r.storage : Array(r.storage[r.start...] + r.storage[..<r.start])
        }
    }

    /// The retained bytes decoded as UTF-8 (invalid sequences become U+FFFD).
    public var text: String { String(decoding: bytes, as: UTF8.self) }

    /// Every byte ever written, retained or not.
    public var totalCount: Int { ring.withLock { $0.total } }

    /// Bytes pushed out because the capture was full.
    public var discardedCount: Int { ring.withLock { $0.total - $0.storage.count } }

    /// Forgets everything captured so far (the counters restart too).
    public func clear() {
        ring.withLock { $0 = Ring() }
    }
}

import CSwiftlet

/// A 32-bit word that threads sleep on and wake each other through, with the
/// futex(2) protocol: a waiter sleeps only while the word still holds the
/// value it last saw, so a wake that changes the word between the waiter's
/// check and its sleep cannot be lost — the kernel re-checks atomically.
///
/// The word lives in its own allocation so its address is stable for the
/// kernel; all access goes through sequentially consistent atomics.
public final class FutexWord: @unchecked Sendable {
    // The allocation is owned by this object and only ever touched through
    // the atomic helpers and futex(2), never through plain loads or stores.
    @usableFromInline let word: UnsafeMutablePointer<UInt32>

    public init(_ initial: UInt32 = 0) {
        word = .allocate(capacity: 1)
        word.initialize(to: initial)
    }

    deinit { word.deallocate() }

    /// Inlinable: a vCPU loads its request word on every exit.
    @inlinable public func load() -> UInt32 { swl_atomic_load_u32(word) }
    public func store(_ value: UInt32) { swl_atomic_store_u32(word, value) }
    public func exchange(_ value: UInt32) -> UInt32 { swl_atomic_exchange_u32(word, value) }
    @discardableResult
    public func add(_ value: UInt32) -> UInt32 { swl_atomic_fetch_add_u32(word, value) }
    /// Sets `bits`; returns the previous value.
    @discardableResult
    public func setBits(_ bits: UInt32) -> UInt32 { swl_atomic_fetch_or_u32(word, bits) }
    /// Clears `bits`; returns the previous value.
    @discardableResult
    public func clearBits(_ bits: UInt32) -> UInt32 { swl_atomic_fetch_and_u32(word, ~bits) }
    /// Replaces `expected` with `desired` if the word holds `expected`;
    /// returns the value it held.
    public func compareExchange(expected: UInt32, desired: UInt32) -> UInt32 {
        var seen = expected
        _ = swl_atomic_cas_u32(word, &seen, desired)
        return seen
    }

    /// Sleeps while the word equals `expected`, at most `timeoutNanoseconds`
    /// (nil: no limit). Returns on a wake, a change, a signal or the timeout;
    /// callers re-check their condition in a loop.
    public func wait(whileEquals expected: UInt32, timeoutNanoseconds: Int64? = nil) {
        _ = swl_futex_wait(word, expected, timeoutNanoseconds ?? -1)
    }

    /// Wakes up to `count` sleepers.
    public func wake(_ count: Int32 = Int32.max) {
        _ = swl_futex_wake(word, count)
    }
}

/// A one-shot latch: `wait()` returns once `signal()` has been called.
public final class Latch: Sendable {
    private let word = FutexWord(0)
    public init() {}

    public var isSignalled: Bool { word.load() != 0 }

    public func signal() {
        word.store(1)
        word.wake()
    }

    public func wait() {
        while word.load() == 0 { word.wait(whileEquals: 0) }
    }

    /// Waits at most `nanoseconds`; returns whether the latch was signalled.
    public func wait(timeoutNanoseconds nanoseconds: Int64) -> Bool {
        let deadline = MonotonicClock.nanoseconds() + nanoseconds
        while word.load() == 0 {
            let left = deadline - MonotonicClock.nanoseconds()
            if left <= 0 { return false }
            word.wait(whileEquals: 0, timeoutNanoseconds: left)
        }
        return true
    }
}

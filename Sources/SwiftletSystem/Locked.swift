import Glibc

/// A value guarded by a lock: `withLock` gives exclusive access.
///
/// Swiftlet uses this rather than the standard library's
/// `Synchronization.Mutex`: on Linux that mutex locks inside the
/// Synchronization module, which is not built with the thread sanitizer,
/// so TSan cannot see its happens-before edges and reports every protected
/// access as a race (checked with a two-thread counter). A pthread mutex is
/// intercepted by TSan, so our concurrency tests can run under it and mean
/// something. Uncontended, both cost an atomic exchange.
public final class Locked<Value>: @unchecked Sendable {
    // Heap-allocated: a pthread mutex must not move once initialized.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    // Only touched between lock and unlock.
    private var value: Value

    public init(_ value: Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` with the lock held. `body` must not call back into a
    /// path that takes the same lock.
    public func withLock<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}

/// Mutual exclusion without a protected value (a pthread mutex, for the
/// reasons `Locked` gives). Use this rather than `Locked<Void>`: TSan's
/// exclusivity checks misattribute accesses to a zero-sized stored value.
public final class Lock: @unchecked Sendable {
    // Heap-allocated: a pthread mutex must not move once initialized.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    public init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    public func withLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Runs `body` under the lock if it is free now (`pthread_mutex_trylock`);
    /// nil, without running it, if another thread holds it.
    public func withLockIfAvailable<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R? {
        guard pthread_mutex_trylock(mutex) == 0 else { return nil }
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}

import Glibc
import Synchronization

/// A reference that many threads read without locks while a few replace it:
/// read-copy-update, after the vCPU-list discussion in MISSION.md §3, where
/// KVM walks its vCPUs under RCU so one can be torn down while others
/// iterate.
///
/// Readers see an immutable snapshot for the duration of `read`. A writer
/// builds a new snapshot, publishes it with `replace`, which returns only
/// after every reader that might still hold the old snapshot has finished —
/// so the caller can then reclaim what only the old snapshot referenced
/// (a removed vCPU's thread, descriptors and memory).
///
/// ## How readers are counted (sleepable RCU with two counters)
/// Readers increment `active[epoch]`, load the snapshot, use it, decrement
/// the same counter. A writer (writers are serialized) swaps in the new
/// snapshot, then waits until it has seen *each* counter at zero at some
/// moment after the swap. All operations are sequentially consistent, so
/// there is one total order, and a reader that loaded the old snapshot
/// incremented its counter before the swap: that counter cannot read zero
/// until the reader's decrement. Before waiting on a counter the writer
/// flips `epoch` away from it, so new readers count on the other one and
/// cannot keep the writer waiting forever.
///
/// Reading costs two atomic read-modify-writes and no lock; `replace` waits
/// (yielding) for the old readers, which hold no locks while reading.
public final class ReadCopyUpdate<Value: AnyObject & Sendable>: Sendable {
    // Inlinable reads (below) need these visible to client modules: a
    // non-specialized cross-module call costs more than the read itself.
    @usableFromInline let current: Atomic<UInt>  // Unmanaged<Value>, retained once by this cell
    @usableFromInline let epoch = Atomic<Int>(0)
    @usableFromInline let active0 = Atomic<Int>(0)
    @usableFromInline let active1 = Atomic<Int>(0)
    private let writers = Lock()

    public init(_ initial: Value) {
        current = Atomic(UInt(bitPattern: Unmanaged.passRetained(initial).toOpaque()))
    }

    deinit {
        Unmanaged<Value>.fromOpaque(UnsafeRawPointer(bitPattern: current.load(ordering: .sequentiallyConsistent))!).release()
    }

    @inlinable
    func counter<R>(_ index: Int, _ body: (borrowing Atomic<Int>) -> R) -> R {
        index == 0 ? body(active0) : body(active1)
    }

    /// Calls `body` with the current snapshot. The snapshot stays valid
    /// until `body` returns; do not let it escape (copy what you need).
    @inlinable
    public func read<R>(_ body: (Value) throws -> R) rethrows -> R {
        let index = epoch.load(ordering: .sequentiallyConsistent) & 1
        counter(index) { _ = $0.add(1, ordering: .sequentiallyConsistent) }
        defer { counter(index) { _ = $0.subtract(1, ordering: .sequentiallyConsistent) } }
        let raw = current.load(ordering: .sequentiallyConsistent)
        // +0: the writer keeps the snapshot alive until this reader's
        // counter drains, so no retain/release is needed (or wanted: a
        // release after the counter drained could free it here).
        return try Unmanaged<Value>.fromOpaque(UnsafeRawPointer(bitPattern: raw)!)._withUnsafeGuaranteedRef { try body($0) }
    }

    /// Publishes `newValue`; returns the previous snapshot once no reader
    /// can still be using it. Writers are serialized.
    @discardableResult
    public func replace(with newValue: Value) -> Value {
        writers.withLock {
            let newRaw = UInt(bitPattern: Unmanaged.passRetained(newValue).toOpaque())
            let oldRaw = current.exchange(newRaw, ordering: .sequentiallyConsistent)
            synchronize()
            return Unmanaged<Value>.fromOpaque(UnsafeRawPointer(bitPattern: oldRaw)!).takeRetainedValue()
        }
    }

    /// Builds the next snapshot from the current one and publishes it,
    /// atomically with respect to other writers; returns (old, new).
    @discardableResult
    public func update(_ transform: (Value) throws -> Value) rethrows -> (old: Value, new: Value) {
        try writers.withLock {
            let oldRaw = current.load(ordering: .sequentiallyConsistent)
            let old = Unmanaged<Value>.fromOpaque(UnsafeRawPointer(bitPattern: oldRaw)!).takeUnretainedValue()
            let new = try transform(old)
            current.store(UInt(bitPattern: Unmanaged.passRetained(new).toOpaque()), ordering: .sequentiallyConsistent)
            synchronize()
            let released = Unmanaged<Value>.fromOpaque(UnsafeRawPointer(bitPattern: oldRaw)!).takeRetainedValue()
            return (released, new)
        }
    }

    /// Waits until every reader that began before this call has finished:
    /// each counter is drained once, the epoch flipped away from it first.
    private func synchronize() {
        for _ in 0..<2 {
            let draining = epoch.load(ordering: .sequentiallyConsistent) & 1
            epoch.store(draining ^ 1, ordering: .sequentiallyConsistent)
            var spins = 0
            while counter(draining, { $0.load(ordering: .sequentiallyConsistent) }) != 0 {
                spins += 1
                if spins > 64 { sched_yield() }
            }
        }
    }
}


import SwiftletSystem

/// The set of vCPUs present in a VM, as an immutable snapshot that readers
/// use without taking a lock (MISSION.md §3: KVM walks its vCPU list under
/// RCU so one can be torn down while others iterate).
///
/// Readers — broadcast and pause/resume loops, statistics, the control API
/// — call `read` or `forEach`; writers (hot-add, hot-remove) publish a new
/// snapshot with `insert`/`remove`, which are serialized. `remove` returns
/// the element only after every reader that could have seen it has left
/// its read section: from then on the caller is the only one that can
/// reach it through the registry and may reclaim what it owns (join its
/// thread, park its KVM descriptor, unmap its kvm_run area).
///
/// Generic over the element so that the publication and reclamation rules
/// are tested without KVM; the machine uses `VCPURegistry<VCPU>`.
public final class VCPURegistry<Element: AnyObject & Sendable>: Sendable {
    /// One published state of the set.
    public final class Snapshot: Sendable {
        /// Present elements in ascending index order.
        public let present: [Element]
        /// Their indices, parallel to `present`.
        public let indices: [Int]
        /// Element per index, `capacity` entries.
        @usableFromInline let slots: [Element?]

        init(slots: [Element?]) {
            self.slots = slots
            var present: [Element] = []
            var indices: [Int] = []
            for (index, element) in slots.enumerated() {
                if let element {
                    present.append(element)
                    indices.append(index)
                }
            }
            self.present = present
            self.indices = indices
        }

        /// The element at `index`, or nil when absent or out of range.
        @inlinable
        public subscript(index: Int) -> Element? {
            slots.indices.contains(index) ? slots[index] : nil
        }

        public var count: Int { present.count }

        func replacing(_ index: Int, with element: Element?) -> Snapshot {
            var copy = slots
            copy[index] = element
            return Snapshot(slots: copy)
        }
    }

    public enum Error: Swift.Error, Equatable, CustomStringConvertible {
        case outOfRange(index: Int, capacity: Int)
        case occupied(index: Int)

        public var description: String {
            switch self {
            case .outOfRange(let index, let capacity): "vCPU \(index) is outside 0..<\(capacity)"
            case .occupied(let index): "vCPU \(index) is already present"
            }
        }
    }

    /// Number of index slots (the VM's maximum vCPU count).
    public let capacity: Int
    @usableFromInline let published: ReadCopyUpdate<Snapshot>

    public init(capacity: Int) {
        precondition(capacity > 0, "a VM has at least one vCPU slot")
        self.capacity = capacity
        published = ReadCopyUpdate(Snapshot(slots: Array(repeating: nil, count: capacity)))
    }

    /// Calls `body` with the current snapshot, without locks. Do not keep
    /// elements beyond `body`: after it returns, a concurrent `remove` may
    /// hand them to reclamation.
    @inlinable
    public func read<R>(_ body: (Snapshot) throws -> R) rethrows -> R {
        try published.read(body)
    }

    /// Calls `body` for every present element, in index order.
    @inlinable
    public func forEach(_ body: (Element) throws -> Void) rethrows {
        try published.read { snapshot in
            for element in snapshot.present { try body(element) }
        }
    }

    /// The present elements, copied out (for callers that then block, e.g.
    /// joining threads; holding a read section across that would stall
    /// writers).
    public var present: [Element] { published.read { $0.present } }

    /// Publishes a snapshot with `element` at `index`.
    public func insert(_ element: Element, at index: Int) throws(Error) {
        guard (0..<capacity).contains(index) else { throw .outOfRange(index: index, capacity: capacity) }
        var failure: Error?
        published.update { current in
            guard current[index] == nil else {
                failure = .occupied(index: index)
                return current
            }
            return current.replacing(index, with: element)
        }
        if let failure { throw failure }
    }

    /// Publishes a snapshot without the element at `index` and returns it
    /// once no reader can still be using it; nil when none was there.
    public func remove(at index: Int) -> Element? {
        guard (0..<capacity).contains(index) else { return nil }
        var removed: Element?
        published.update { current in
            removed = current[index]
            return removed == nil ? current : current.replacing(index, with: nil)
        }
        // `update` returned after a grace period: every read section that
        // began before the new snapshot was published has ended.
        return removed
    }
}

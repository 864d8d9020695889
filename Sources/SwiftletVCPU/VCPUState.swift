/// The life of a vCPU slot. A KVM vCPU cannot be destroyed short of
/// destroying its VM, so once created its descriptor stays: a vCPU without a
/// thread is *parked* and can be started again.
///
///     absent ──create──▶ parked ──start──▶ starting ──▶ running ⇄ paused
///                          ▲                                │       │
///                          └────── join ◀── stopping ◀──────┴───────┘
public enum VCPUState: UInt32, Sendable, CustomStringConvertible, CaseIterable {
    /// No KVM vCPU exists for this slot.
    case absent = 0
    /// The KVM vCPU exists; no thread runs it.
    case parked
    /// Its thread was spawned and is setting up.
    case starting
    /// Its thread is in, or around, KVM_RUN.
    case running
    /// Its thread waits for a resume; the vCPU is out of KVM_RUN.
    case paused
    /// Its thread is leaving its run loop; `join()` returns it to parked.
    case stopping

    public var description: String {
        switch self {
        case .absent: "absent"
        case .parked: "parked"
        case .starting: "starting"
        case .running: "running"
        case .paused: "paused"
        case .stopping: "stopping"
        }
    }

    /// Whether the vCPU's thread is out of KVM_RUN for good or for now.
    public var isQuiescent: Bool { self != .starting && self != .running }
}

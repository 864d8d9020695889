/// A device that answers guest accesses on an I/O bus (port I/O or MMIO).
///
/// Offsets are relative to the base the device was registered at; sizes are
/// 1, 2, 4 or 8 bytes and values are little-endian, zero-extended. Accesses
/// arrive on vCPU threads, possibly several at once, so each device guards
/// its own state. Everything a guest passes in is untrusted: a device must
/// accept any offset, size and value without crashing.
public protocol BusDevice: AnyObject, Sendable {
    func read(at offset: UInt64, size: Int) -> UInt64
    func write(at offset: UInt64, size: Int, value: UInt64)
}

/// An interrupt wire from a device to the interrupt controller.
///
/// Devices drive the level as hardware would (asserted while the condition
/// holds); the controller side decides what an edge or level means. The
/// in-kernel irqchip, the userspace interrupt engine and tests each provide
/// an implementation, so devices never depend on KVM.
public protocol InterruptLine: Sendable {
    func setLevel(_ asserted: Bool)
}

/// What a guest can ask of the machine through a device.
public enum GuestRequest: Sendable, Equatable, CustomStringConvertible {
    /// ACPI S5 / power button: the guest is done.
    case powerOff
    /// A reset line (i8042 pulse, ACPI reset register, triple fault).
    case reset
    /// The debug-exit device: QEMU's isa-debug-exit semantics.
    case debugExit(code: UInt32)

    public var description: String {
        switch self {
        case .powerOff: "power off"
        case .reset: "reset"
        case .debugExit(let code): "debug exit (value \(code))"
        }
    }
}

/// Receives guest requests; implemented by the machine.
public protocol GuestRequestSink: Sendable {
    func guestRequested(_ request: GuestRequest)
}

/// Mask for an access of `size` bytes (1...8). Sizes outside that range
/// cannot come from a CPU but must not trap either: 0 or less gives 0, more
/// than 8 gives all ones.
@inlinable @inline(__always)
public func accessMask(size: Int) -> UInt64 {
    size >= 8 ? UInt64.max : size <= 0 ? 0 : (UInt64(1) << (UInt64(size) * 8)) - 1
}

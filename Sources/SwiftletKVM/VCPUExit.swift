import CSwiftlet

/// Why KVM_RUN returned.
///
/// Accesses carry a view of the vCPU's kvm_run area: use them before the
/// next `run()` on the same thread, never store them. Every payload is a few
/// plain words, so an exit is cheap to pass around: the vCPU loop handles
/// one per guest access.
public enum VCPUExit {
    case portIO(PortIOAccess)
    case mmio(MMIOAccess)
    /// HLT with no in-kernel irqchip to handle it.
    case halt
    /// The guest triple-faulted.
    case shutdown
    case failedEntry(hardwareReason: UInt64, cpu: UInt32)
    /// Details: `VCPUDescriptor.internalError()` before the next `run()`.
    case internalError(suberror: UInt32)
    /// KVM_EXIT_SYSTEM_EVENT (`KVM_SYSTEM_EVENT_SHUTDOWN`, `_RESET`, `_CRASH`).
    case systemEvent(type: UInt32)
    case interruptWindowOpen
    /// An MSR access KVM could not complete (KVM_CAP_X86_USER_SPACE_MSR).
    case msr(MSRAccess)
    /// A kick (signal + immediate_exit) got the vCPU out of KVM_RUN.
    case interrupted
    case unknown(reason: UInt32)

    /// A short name for logs and diagnoses.
    public var name: String {
        switch self {
        case .portIO: "KVM_EXIT_IO"
        case .mmio: "KVM_EXIT_MMIO"
        case .halt: "KVM_EXIT_HLT"
        case .shutdown: "KVM_EXIT_SHUTDOWN (triple fault)"
        case .failedEntry: "KVM_EXIT_FAIL_ENTRY"
        case .internalError: "KVM_EXIT_INTERNAL_ERROR"
        case .systemEvent: "KVM_EXIT_SYSTEM_EVENT"
        case .interruptWindowOpen: "KVM_EXIT_IRQ_WINDOW_OPEN"
        case .msr(let access): access.isWrite ? "KVM_EXIT_X86_WRMSR" : "KVM_EXIT_X86_RDMSR"
        case .interrupted: "KVM_EXIT_INTR"
        case .unknown(let reason): "exit reason \(reason)"
        }
    }
}

/// A port I/O exit: `count` transfers (more than one for `rep ins/outs`) of
/// `size` bytes each.
public struct PortIOAccess {
    public let isWrite: Bool
    public let port: UInt16
    public let size: Int
    public let count: Int
    // Inside the vCPU's kvm_run mapping, bounds checked at decode time.
    @usableFromInline let data: UnsafeMutableRawBufferPointer

    init(isWrite: Bool, port: UInt16, size: Int, count: Int, data: UnsafeMutableRawBufferPointer) {
        self.isWrite = isWrite; self.port = port; self.size = size; self.count = count; self.data = data
    }

    /// The value the guest wrote in transfer `index` (for writes).
    @inlinable
    public func value(at index: Int) -> UInt64 {
        precondition(index >= 0 && index < count)
        var v: UInt64 = 0
        for b in 0..<size { v |= UInt64(data[index * size + b]) << (8 * UInt64(b)) }
        return v
    }

    /// Supplies the value the guest reads in transfer `index` (for reads).
    @inlinable
    public func setValue(_ value: UInt64, at index: Int) {
        precondition(index >= 0 && index < count)
        for b in 0..<size { data[index * size + b] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(b))) }
    }
}

/// An MMIO exit of `size` (1...8) bytes at a guest-physical address.
public struct MMIOAccess {
    public let address: UInt64
    public let size: Int
    public let isWrite: Bool
    // The vCPU's kvm_run, valid until its next KVM_RUN.
    private let run: UnsafeMutablePointer<kvm_run>

    init(run: UnsafeMutablePointer<kvm_run>, address: UInt64, size: Int, isWrite: Bool) {
        self.run = run; self.address = address; self.size = size; self.isWrite = isWrite
    }

    /// The value written (little-endian, zero-extended).
    public var value: UInt64 {
        withUnsafeBytes(of: run.pointee.mmio.data) { bytes in
            var v: UInt64 = 0
            for b in 0..<size { v |= UInt64(bytes[b]) << (8 * UInt64(b)) }
            return v
        }
    }

    /// Supplies the value a read returns.
    public func complete(with value: UInt64) {
        withUnsafeMutableBytes(of: &run.pointee.mmio.data) { bytes in
            for b in 0..<size { bytes[b] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(b))) }
        }
    }
}

/// KVM_EXIT_INTERNAL_ERROR details, read with `VCPUDescriptor.internalError()`.
public struct InternalError: Sendable, Equatable, CustomStringConvertible {
    public let suberror: UInt32
    /// The data words KVM reported (`ndata` of them, at most 16).
    public let data: [UInt64]

    public init(suberror: UInt32, data: [UInt64]) {
        self.suberror = suberror
        self.data = Array(data.prefix(16))
    }

    /// For emulation failures, the bytes KVM fetched at RIP, when it says so:
    /// `struct kvm_run.emulation_failure` overlays the data words with flags,
    /// then insn_size and up to 15 instruction bytes.
    public var instructionBytes: [UInt8]? {
        guard suberror == UInt32(KVM_INTERNAL_ERROR_EMULATION), data.count >= 2,
              data[0] & UInt64(KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) != 0 else { return nil }
        var bytes: [UInt8] = []
        for word in data.dropFirst().prefix(2) {
            for b in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: word >> (8 * UInt64(b)))) }
        }
        let size = min(Int(bytes[0]), 15, bytes.count - 1)
        return Array(bytes[1..<(1 + size)])
    }

    public var kind: String {
        switch Int32(suberror) {
        case KVM_INTERNAL_ERROR_EMULATION: "instruction emulation failed"
        case KVM_INTERNAL_ERROR_SIMUL_EX: "exception while delivering an exception"
        case KVM_INTERNAL_ERROR_DELIVERY_EV: "event delivery failed"
        case KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON: "unexpected exit reason"
        default: "suberror \(suberror)"
        }
    }

    public var description: String {
        var s = "\(kind) (suberror \(suberror))"
        if !data.isEmpty { s += ", data " + data.map { "0x" + String($0, radix: 16) }.joined(separator: " ") }
        return s
    }
}

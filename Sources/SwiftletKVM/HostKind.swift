import Glibc

/// What provides /dev/kvm on this host, which decides what a guest's kernel
/// code costs and what can honestly be measured here.
public enum KVMHostKind: Sendable, Equatable, CustomStringConvertible {
    /// Intel VT-x (kvm_intel).
    case intelVTx
    /// AMD-V / SVM (kvm_amd).
    case amdV
    /// PVM, the Pagetable-based Virtual Machine (kvm_pvm): no hardware
    /// virtualization; guest user mode runs natively, guest kernel mode and
    /// 16/32-bit code are instruction-emulated.
    case pvm
    case unknown

    /// Detects the KVM vendor module from /sys/module.
    public static func detect(sysModule: String = "/sys/module") -> KVMHostKind {
        func loaded(_ module: String) -> Bool { access("\(sysModule)/\(module)", F_OK) == 0 }
        if loaded("kvm_pvm") { return .pvm }
        if loaded("kvm_intel") { return .intelVTx }
        if loaded("kvm_amd") { return .amdV }
        return .unknown
    }

    public var isHardwareVirtualization: Bool { self == .intelVTx || self == .amdV }

    public var description: String {
        switch self {
        case .intelVTx: "hardware virtualization (Intel VT-x, kvm_intel)"
        case .amdV: "hardware virtualization (AMD-V, kvm_amd)"
        case .pvm: "PVM (kvm_pvm): no hardware virtualization; guest user mode runs natively, guest kernel mode is instruction-emulated"
        case .unknown: "unknown KVM provider"
        }
    }
}

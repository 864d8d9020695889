import CSwiftlet
import Glibc
import SwiftletSystem

/// Why KVM cannot be used at all (as opposed to one ioctl failing).
public enum KVMUnavailable: Error, Equatable, Sendable, CustomStringConvertible {
    case cannotOpen(path: String, Errno)
    case apiVersion(found: Int32)
    case missingCapability(KVMCapability)

    public var description: String {
        switch self {
        case .cannotOpen(let path, let errno):
            "cannot open \(path): \(errno)" + (errno == .noEntry ? " (is the kvm module loaded?)" : "")
        case .apiVersion(let found):
            "KVM API version \(found) is not supported (Swiftlet needs \(KVM_API_VERSION))"
        case .missingCapability(let cap):
            "this host's KVM lacks \(cap)"
        }
    }
}

/// The KVM subsystem handle, `/dev/kvm` (the system ioctls).
public final class KVMSystem: Sendable {
    public let descriptor: FileDescriptor
    public let path: String

    /// Opens `path` and checks the API version.
    public init(path: String = "/dev/kvm") throws(KVMUnavailable) {
        let fd = Glibc.open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw .cannotOpen(path: path, .current) }
        self.descriptor = FileDescriptor(owning: fd)
        self.path = path
        let version = swl_ioctl_val(fd, SWL_KVM_GET_API_VERSION, 0)
        guard version == KVM_API_VERSION else { throw .apiVersion(found: version) }
    }

    /// KVM_GET_API_VERSION (always 12 on a usable host).
    public var apiVersion: Int32 { swl_ioctl_val(descriptor.rawValue, SWL_KVM_GET_API_VERSION, 0) }

    /// KVM_CHECK_EXTENSION: 0 when absent, otherwise 1 or a capability-specific value.
    public func check(_ capability: KVMCapability) -> Int32 {
        max(0, swl_ioctl_val(descriptor.rawValue, SWL_KVM_CHECK_EXTENSION, UInt(capability.rawValue)))
    }

    /// Throws unless every capability is present.
    public func require(_ capabilities: [KVMCapability]) throws(KVMUnavailable) {
        for cap in capabilities where check(cap) == 0 { throw .missingCapability(cap) }
    }

    /// KVM_GET_VCPU_MMAP_SIZE: the size of each vCPU's shared kvm_run area.
    public func vcpuMmapSize() throws(SystemError) -> Int {
        Int(try systemCall("KVM_GET_VCPU_MMAP_SIZE") { swl_ioctl_val(descriptor.rawValue, SWL_KVM_GET_VCPU_MMAP_SIZE, 0) })
    }

    /// KVM_GET_SUPPORTED_CPUID: the CPUID leaves KVM can present to a guest.
    public func supportedCPUID() throws(SystemError) -> CPUIDTable {
        var capacity: UInt32 = 128
        while true {
            let table = CPUIDBuffer(capacity: capacity)
            let rc = swl_ioctl_ptr(descriptor.rawValue, SWL_KVM_GET_SUPPORTED_CPUID, table.raw)
            if rc == 0 { return table.entries() }
            // E2BIG: the buffer was too small; grow and ask again.
            guard errno == E2BIG, capacity < 4096 else { throw SystemError("KVM_GET_SUPPORTED_CPUID") }
            capacity *= 2
        }
    }

    /// KVM_CREATE_VM for a default (type 0) x86 VM.
    public func createVirtualMachine() throws(SystemError) -> VirtualMachine {
        // EINTR is retried: creating a VM can be interrupted by a signal.
        let fd = try systemCall("KVM_CREATE_VM") { swl_ioctl_val(descriptor.rawValue, SWL_KVM_CREATE_VM, 0) }
        return VirtualMachine(descriptor: FileDescriptor(owning: fd), system: self)
    }
}

/// A KVM capability number with a readable name.
public struct KVMCapability: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public let name: String
    public init(rawValue: Int32) { self.rawValue = rawValue; self.name = "capability \(rawValue)" }
    public init(_ rawValue: Int32, _ name: String) { self.rawValue = rawValue; self.name = name }

    public static let irqchip = KVMCapability(KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP")
    public static let userMemory = KVMCapability(KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY")
    public static let setTSSAddress = KVMCapability(KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR")
    public static let extendedCPUID = KVMCapability(KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID")
    public static let immediateExit = KVMCapability(KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT")
    public static let pit2 = KVMCapability(KVM_CAP_PIT2, "KVM_CAP_PIT2")
    public static let mpState = KVMCapability(KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE")
    public static let irqfd = KVMCapability(KVM_CAP_IRQFD, "KVM_CAP_IRQFD")
    public static let ioeventfd = KVMCapability(KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD")
    public static let signalMSI = KVMCapability(KVM_CAP_SIGNAL_MSI, "KVM_CAP_SIGNAL_MSI")
    public static let splitIRQChip = KVMCapability(KVM_CAP_SPLIT_IRQCHIP, "KVM_CAP_SPLIT_IRQCHIP")
    public static let userSpaceMSR = KVMCapability(KVM_CAP_X86_USER_SPACE_MSR, "KVM_CAP_X86_USER_SPACE_MSR")
    public static let dirtyLogRing = KVMCapability(KVM_CAP_DIRTY_LOG_RING, "KVM_CAP_DIRTY_LOG_RING")
    public static let manualDirtyLogProtect = KVMCapability(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2")
    public static let vcpuEvents = KVMCapability(KVM_CAP_VCPU_EVENTS, "KVM_CAP_VCPU_EVENTS")
    public static let exitOnEmulationFailure = KVMCapability(KVM_CAP_EXIT_ON_EMULATION_FAILURE, "KVM_CAP_EXIT_ON_EMULATION_FAILURE")
    public static let maxVCPUs = KVMCapability(KVM_CAP_MAX_VCPUS, "KVM_CAP_MAX_VCPUS")
    public static let maxVCPUID = KVMCapability(KVM_CAP_MAX_VCPU_ID, "KVM_CAP_MAX_VCPU_ID")
    public static let recommendedVCPUs = KVMCapability(KVM_CAP_NR_VCPUS, "KVM_CAP_NR_VCPUS")
    public static let tscDeadlineTimer = KVMCapability(KVM_CAP_TSC_DEADLINE_TIMER, "KVM_CAP_TSC_DEADLINE_TIMER")
    public static let kvmclockControl = KVMCapability(KVM_CAP_KVMCLOCK_CTRL, "KVM_CAP_KVMCLOCK_CTRL")

    /// 32-bit APIC IDs in the in-kernel LAPICs and MSI routes, for more
    /// than 254 vCPUs with the in-kernel irqchip.
    public static let x2apicAPI = KVMCapability(KVM_CAP_X2APIC_API, "KVM_CAP_X2APIC_API")

    /// What Swiftlet cannot run without.
    public static let required: [KVMCapability] = [.userMemory, .setTSSAddress, .extendedCPUID, .immediateExit, .mpState]

    public var description: String { name }
    public static func == (a: Self, b: Self) -> Bool { a.rawValue == b.rawValue }
    public func hash(into h: inout Hasher) { h.combine(rawValue) }
}

import SwiftletBoot
import SwiftletDevices
import SwiftletVCPU

/// Everything needed to build a VM, in one value. The CLI, a config file and
/// the control API all produce this; `validate()` is the single place where
/// a request is checked before any resource is created.
public struct MachineConfiguration: Sendable {
    /// Where the guest's kernel comes from.
    public enum Kernel: Sendable {
        case file(path: String)
        /// An image held in memory, e.g. the guest built into `swiftlet`.
        case image(name: String, bytes: [UInt8])
    }

    /// Where COM1's output goes and where its input comes from.
    public enum Serial: Sendable {
        /// The host's stdin and stdout (raw mode when stdin is a terminal).
        case stdio
        /// Output appended to a file; no input.
        case file(path: String)
        /// Output kept in memory for the embedding program; no input.
        case capture(ConsoleCapture)
        /// Disconnected: output discarded, no input.
        case none
    }

    public var kernel: Kernel
    public var initrdPath: String?
    public var commandLine: String
    public var cpus: Int
    /// CPUs the machine can ever have (`--max-cpus`): the MADT lists them
    /// all, the ones beyond `cpus` as hot-pluggable. Nil: `cpus`.
    public var maxCPUs: Int?
    public var memoryMiB: Int
    public var serial: Serial
    public var bootProtocol: BootProtocol
    /// CPUID features hidden from the guest (`--cpu-features -cx16,...`).
    public var cpuFeatures: CPUFeatureSelection
    /// Who emulates the PIC, IOAPIC and local APICs (`--irqchip`).
    public var irqchip: InterruptControllerMode = .kernel
    /// Upper bound of adaptive halt polling with the userspace interrupt
    /// controller (`--halt-poll-us`, 0 disables), as KVM's halt_poll_ns.
    public var haltPollMicroseconds: Int = 200
    /// Whether Swiftlet completes instructions a PVM host's emulator cannot
    /// (`--pvm-assist`; see `InstructionAssist`). `automatic`: on when
    /// /dev/kvm is PVM, off on hardware-virtualization hosts.
    public var pvmAssist: InstructionAssist.Mode = .automatic

    public init(kernel: Kernel, initrdPath: String? = nil, commandLine: String = "", cpus: Int = 1,
                memoryMiB: Int = 128, serial: Serial = .stdio, bootProtocol: BootProtocol = .automatic,
                cpuFeatures: CPUFeatureSelection = CPUFeatureSelection()) {
        self.kernel = kernel
        self.initrdPath = initrdPath
        self.commandLine = commandLine
        self.cpus = cpus
        self.memoryMiB = memoryMiB
        self.serial = serial
        self.bootProtocol = bootProtocol
        self.cpuFeatures = cpuFeatures
    }

    /// vCPUs (APIC IDs 0...1023). The userspace interrupt controller gives
    /// every vCPU an x2APIC (through MSR exits) and the MADT lists the IDs
    /// from 255 up as x2APIC entries; 1024 is KVM_CAP_MAX_VCPUS on the hosts
    /// we know.
    public static let cpuRange = 1...1024
    /// vCPUs the in-kernel irqchip takes with 8-bit APIC IDs (0xff is the
    /// broadcast ID). Above it Swiftlet enables KVM_CAP_X2APIC_API (32-bit
    /// IDs in KVM's LAPICs and MSI routes), and the guest must use x2APIC
    /// mode for those CPUs, as the MADT's x2APIC entries tell it.
    public static let kernelIRQChipXAPICLimit = 254
    /// Whether a machine with this configuration needs KVM_CAP_X2APIC_API.
    public var needsX2APICAPI: Bool { irqchip == .kernel && possibleCPUs > Self.kernelIRQChipXAPICLimit }
    /// Guest RAM in MiB: enough for the boot structures and a small kernel,
    /// up to 1 TiB of address space (memory is only used when touched).
    public static let memoryRange = 4...(1 << 20)

    /// Throws the first problem found, as one line a user can act on.
    public func validate() throws(ConfigurationError) {
        guard Self.cpuRange.contains(cpus) else {
            throw .invalid("--cpus must be between \(Self.cpuRange.lowerBound) and \(Self.cpuRange.upperBound), not \(cpus)")
        }
        if let maxCPUs {
            guard maxCPUs >= cpus, Self.cpuRange.contains(maxCPUs) else {
                throw .invalid("--max-cpus must be between --cpus (\(cpus)) and \(Self.cpuRange.upperBound), not \(maxCPUs)")
            }
        }
        guard (0...1_000_000).contains(haltPollMicroseconds) else {
            throw .invalid("--halt-poll-us must be between 0 and 1000000, not \(haltPollMicroseconds)")
        }
        guard Self.memoryRange.contains(memoryMiB) else {
            throw .invalid("--memory must be between \(Self.memoryRange.lowerBound) and \(Self.memoryRange.upperBound) MiB, not \(memoryMiB)")
        }
        guard commandLine.utf8.count < Int(X86Layout.commandLineMaxSize) else {
            throw .invalid("--cmdline is \(commandLine.utf8.count) bytes; at most \(X86Layout.commandLineMaxSize - 1) fit")
        }
        guard !commandLine.utf8.contains(0) else {
            throw .invalid("--cmdline must not contain a NUL byte")
        }
        if case .file(let path) = kernel, path.isEmpty { throw .invalid("--kernel needs a path") }
        if let initrdPath, initrdPath.isEmpty { throw .invalid("--initrd needs a path") }
        if case .file(let path) = serial, path.isEmpty { throw .invalid("--serial file: needs a path") }
    }

    var memoryBytes: UInt64 { UInt64(memoryMiB) << 20 }
    var possibleCPUs: Int { maxCPUs ?? cpus }
}

/// Where the interrupt controllers are emulated.
public enum InterruptControllerMode: String, Sendable, CaseIterable {
    /// KVM's in-kernel PIC, IOAPIC, local APICs and PIT (the default).
    case kernel
    /// Swiftlet's own, with posted-interrupt delivery and HLT handled in
    /// userspace; the i8254 PIT is emulated too.
    case userspace
}

/// A configuration that cannot be run, with a one-line reason.
public enum ConfigurationError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalid(String)

    public var description: String {
        switch self {
        case .invalid(let message): message
        }
    }
}

/// What the ACPI tables describe: the CPUs and the few choices a Swiftlet
/// machine has. The fixed devices (COM1, fw_cfg, debug exit, power control,
/// IOAPIC, LAPIC) are the ones of docs/boot-protocol.md, in `SwiftletMachine`.
public struct ACPIConfiguration: Hashable, Sendable {
    /// CPUs running at boot: APIC IDs and ACPI processor UIDs 0 ..< cpus.
    public var cpus: Int
    /// CPUs that can exist: 0 ..< maxCPUs. Those from `cpus` on are
    /// hot-pluggable (MADT: Online Capable, not Enabled).
    public var maxCPUs: Int
    /// Whether the DSDT carries the CPU hot-plug machinery.
    public var cpuHotplug: CPUHotplugMode
    /// Where the hot-plug register block is (see `CPUHotplugRegisters`).
    public var hotplugRegisterBase: UInt64
    /// The GSI (IOAPIC pin) of the Generic Event Device; edge-triggered,
    /// active-high. Pin 23 stays clear of the ISA IRQs and of devices
    /// numbered up from 5.
    public var hotplugGSI: UInt32
    /// MADT interrupt source overrides. None by default: KVM routes ISA
    /// IRQ n to GSI n, which is what the ACPI specification assumes when
    /// there is no override (5.2.12.5).
    public var interruptSourceOverrides: [InterruptSourceOverride]
    /// Describe the i8042 to the guest (FADT IAPC_BOOT_ARCH bit 1 and a
    /// PNP0303 device). Off by default: the controller has no keyboard and
    /// raises no interrupt, and without the flag Linux skips probing it;
    /// reset through it (command 0xFE on port 0x64) works either way.
    public var i8042: Bool
    public var oem: ACPIOEM
    /// FADT Hypervisor Vendor Identity.
    public var hypervisorVendor: String

    public enum CPUHotplugMode: Hashable, Sendable {
        /// When `maxCPUs > cpus`.
        case automatic
        case enabled
        case disabled
    }

    public struct InterruptSourceOverride: Hashable, Sendable {
        public var isaIRQ: UInt8
        public var gsi: UInt32
        public var flags: MADT.INTIFlags
        public init(isaIRQ: UInt8, gsi: UInt32, flags: MADT.INTIFlags = .conforming) {
            self.isaIRQ = isaIRQ
            self.gsi = gsi
            self.flags = flags
        }
    }

    public init(cpus: Int, maxCPUs: Int? = nil, cpuHotplug: CPUHotplugMode = .automatic,
                hotplugRegisterBase: UInt64 = CPUHotplugRegisters.defaultBase, hotplugGSI: UInt32 = 23,
                interruptSourceOverrides: [InterruptSourceOverride] = [], i8042: Bool = false,
                oem: ACPIOEM = .swiftlet, hypervisorVendor: String = "SWIFTLET") {
        self.cpus = cpus
        self.maxCPUs = maxCPUs ?? cpus
        self.cpuHotplug = cpuHotplug
        self.hotplugRegisterBase = hotplugRegisterBase
        self.hotplugGSI = hotplugGSI
        self.interruptSourceOverrides = interruptSourceOverrides
        self.i8042 = i8042
        self.oem = oem
        self.hypervisorVendor = hypervisorVendor
    }

    /// Whether the DSDT has the hot-plug register block, methods and GED.
    public var hasCPUHotplug: Bool {
        switch cpuHotplug {
        case .automatic: maxCPUs > cpus
        case .enabled: true
        case .disabled: false
        }
    }

    /// The APIC ID of CPU `index` (= its ACPI processor UID and vCPU index).
    public func apicID(ofCPU index: Int) -> UInt32 { UInt32(index) }

    /// Processor device names are `C` and three hex digits.
    public static let cpuLimit = 0x1000

    public func validate() throws(ACPIError) {
        guard cpus >= 1 else { throw .invalidConfiguration("at least one boot CPU is needed, got \(cpus)") }
        guard maxCPUs >= cpus else {
            throw .invalidConfiguration("maxCPUs (\(maxCPUs)) is smaller than cpus (\(cpus))")
        }
        guard maxCPUs <= Self.cpuLimit else {
            throw .invalidConfiguration("at most \(Self.cpuLimit) CPUs can be described, got \(maxCPUs)")
        }
        if cpuHotplug == .disabled && maxCPUs > cpus {
            throw .invalidConfiguration("maxCPUs > cpus needs CPU hot-plug, which is disabled")
        }
        if hasCPUHotplug {
            guard hotplugRegisterBase % 16 == 0,
                  hotplugRegisterBase + CPUHotplugRegisters.reservedLength <= 0x1_0000_0000 else {
                throw .invalidConfiguration("the hot-plug register block must be 16-byte aligned below 4 GiB")
            }
            let block = hotplugRegisterBase..<(hotplugRegisterBase + CPUHotplugRegisters.reservedLength)
            for page in [UInt64(SwiftletMachine.ioapicAddress), UInt64(SwiftletMachine.localAPICAddress)]
            where block.overlaps(page..<(page + 0x1000)) {
                throw .invalidConfiguration("the hot-plug register block overlaps the APIC page at 0x\(String(page, radix: 16))")
            }
        }
        for override in interruptSourceOverrides where override.isaIRQ >= 16 {
            throw .invalidConfiguration("interrupt source overrides are for ISA IRQs 0-15, got \(override.isaIRQ)")
        }
        try oem.validate()
        _ = try ACPIIdentifier.bytes(hypervisorVendor, length: 8, field: "hypervisor vendor identity")
    }
}

/// The fixed parts of a Swiftlet x86 machine that the tables describe
/// (docs/boot-protocol.md).
public enum SwiftletMachine {
    public static let serialPort: UInt16 = 0x3f8
    public static let serialPortLength: UInt8 = 8
    public static let serialIRQ: UInt8 = 4
    public static let i8042DataPort: UInt16 = 0x60
    public static let i8042CommandPort: UInt16 = 0x64
    public static let debugExitPort: UInt16 = 0xf4
    public static let debugExitLength: UInt8 = 4
    public static let firmwareConfigPort: UInt16 = 0x510
    public static let firmwareConfigLength: UInt8 = 2
    public static let powerControlPort: UInt16 = 0x600
    public static let powerControlLength: UInt8 = 3
    public static let sleepControlPort: UInt16 = 0x600
    public static let sleepStatusPort: UInt16 = 0x601
    public static let resetPort: UInt16 = 0x602
    public static let resetValue: UInt8 = 1
    /// \_S5's SLP_TYP: the guest writes `(5 << 2) | (1 << 5)` to the sleep control register.
    public static let softOffSleepType: UInt8 = 5
    public static let ioapicID: UInt8 = 0
    public static let ioapicAddress: UInt32 = 0xfec0_0000
    public static let ioapicGSIBase: UInt32 = 0
    public static let ioapicPins = 24
    public static let localAPICAddress: UInt32 = 0xfee0_0000
}

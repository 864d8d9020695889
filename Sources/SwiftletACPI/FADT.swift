/// Fixed ACPI Description Table (ACPI 6.5, 5.2.9), signature "FACP",
/// revision 6 (minor version 5: ACPI 6.5), 276 bytes.
///
/// Swiftlet describes a hardware-reduced ACPI platform (4.1): no PM1 event
/// and control blocks, no PM timer, no GPE blocks, no SCI, no FACS. Sleep
/// (only S5) goes through SLEEP_CONTROL_REG, reset through RESET_REG, and
/// events through a Generic Event Device in the DSDT. In hardware-reduced
/// mode the fields from SCI_INT to CENTURY and from X_PM1a_EVT_BLK to
/// X_GPE1_BLK are ignored; they are left zero.
///
/// Field offsets used here (table 5.9):
///
/// | offset | size | field |
/// |---|---|---|
/// | 36 | 4 | FIRMWARE_CTRL (0: no FACS) |
/// | 40 | 4 | DSDT (0: X_DSDT is used) |
/// | 45 | 1 | Preferred_PM_Profile |
/// | 46 | 2 | SCI_INT (0) |
/// | 109 | 2 | IAPC_BOOT_ARCH |
/// | 112 | 4 | Flags |
/// | 116 | 12 | RESET_REG |
/// | 128 | 1 | RESET_VALUE |
/// | 129 | 2 | ARM_BOOT_ARCH |
/// | 131 | 1 | FADT Minor Version |
/// | 132 | 8 | X_FIRMWARE_CTRL |
/// | 140 | 8 | X_DSDT |
/// | 244 | 12 | SLEEP_CONTROL_REG |
/// | 256 | 12 | SLEEP_STATUS_REG |
/// | 268 | 8 | Hypervisor Vendor Identity |
public struct FADT: Hashable, Sendable {
    public static let length = 276
    public static let revision: UInt8 = 6
    public static let minorVersion: UInt8 = 5

    /// Fixed feature flags (5.2.9, table 5.10).
    public struct Flags: OptionSet, Hashable, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }

        public static let wbinvd = Flags(rawValue: 1 << 0)
        public static let wbinvdFlush = Flags(rawValue: 1 << 1)
        public static let processorC1 = Flags(rawValue: 1 << 2)
        public static let powerButtonIsControlMethod = Flags(rawValue: 1 << 4)
        public static let sleepButtonIsControlMethod = Flags(rawValue: 1 << 5)
        public static let resetRegisterSupported = Flags(rawValue: 1 << 10)
        public static let sealedCase = Flags(rawValue: 1 << 11)
        public static let headless = Flags(rawValue: 1 << 12)
        public static let hardwareReducedACPI = Flags(rawValue: 1 << 20)
        public static let lowPowerS0IdleCapable = Flags(rawValue: 1 << 21)
    }

    /// IA-PC boot architecture flags (5.2.9.3, table 5.11).
    public struct BootArchitecture: OptionSet, Hashable, Sendable {
        public let rawValue: UInt16
        public init(rawValue: UInt16) { self.rawValue = rawValue }

        /// User-visible devices on an LPC or ISA bus.
        public static let legacyDevices = BootArchitecture(rawValue: 1 << 0)
        /// An 8042 keyboard controller is present (Linux does not probe for
        /// one when this is clear).
        public static let i8042 = BootArchitecture(rawValue: 1 << 1)
        public static let vgaNotPresent = BootArchitecture(rawValue: 1 << 2)
        public static let msiNotSupported = BootArchitecture(rawValue: 1 << 3)
        public static let pcieASPMControls = BootArchitecture(rawValue: 1 << 4)
        public static let cmosRTCNotPresent = BootArchitecture(rawValue: 1 << 5)
    }

    public var flags: Flags
    public var bootArchitecture: BootArchitecture
    /// 0 unspecified, 1 desktop, 4 enterprise server, ... (5.2.9.1).
    public var preferredPMProfile: UInt8
    public var dsdtAddress: UInt64
    public var resetRegister: GenericAddress
    public var resetValue: UInt8
    public var sleepControlRegister: GenericAddress
    public var sleepStatusRegister: GenericAddress
    /// Hypervisor Vendor Identity (ACPI 6.0+), 8 characters.
    public var hypervisorVendor: String

    public init(dsdtAddress: UInt64,
                flags: Flags = [.hardwareReducedACPI, .resetRegisterSupported,
                                .powerButtonIsControlMethod, .sleepButtonIsControlMethod],
                bootArchitecture: BootArchitecture = [.vgaNotPresent, .cmosRTCNotPresent],
                preferredPMProfile: UInt8 = 0,
                resetRegister: GenericAddress, resetValue: UInt8,
                sleepControlRegister: GenericAddress, sleepStatusRegister: GenericAddress,
                hypervisorVendor: String = "SWIFTLET") {
        self.dsdtAddress = dsdtAddress
        self.flags = flags
        self.bootArchitecture = bootArchitecture
        self.preferredPMProfile = preferredPMProfile
        self.resetRegister = resetRegister
        self.resetValue = resetValue
        self.sleepControlRegister = sleepControlRegister
        self.sleepStatusRegister = sleepStatusRegister
        self.hypervisorVendor = hypervisorVendor
    }

    public func table(oem: ACPIOEM = .swiftlet) -> ACPITable {
        var body = [UInt8](repeating: 0, count: Self.length - ACPITable.headerLength)
        func put(_ bytes: [UInt8], at offset: Int) {
            body.replaceSubrange((offset - ACPITable.headerLength)..<(offset - ACPITable.headerLength + bytes.count),
                                 with: bytes)
        }
        put([preferredPMProfile], at: 45)
        put(AMLEncoding.littleEndian(UInt64(bootArchitecture.rawValue), bytes: 2), at: 109)
        put(AMLEncoding.littleEndian(UInt64(flags.rawValue), bytes: 4), at: 112)
        put(resetRegister.bytes, at: 116)
        put([resetValue], at: 128)
        put([Self.minorVersion], at: 131)
        put(AMLEncoding.littleEndian(dsdtAddress, bytes: 8), at: 140)
        put(sleepControlRegister.bytes, at: 244)
        put(sleepStatusRegister.bytes, at: 256)
        put(ACPIIdentifier.checked(hypervisorVendor, length: 8, field: "hypervisor vendor identity"), at: 268)
        return ACPITable(signature: "FACP", revision: Self.revision, oem: oem, body: body)
    }
}

/// Multiple APIC Description Table (ACPI 6.5, 5.2.12), signature "APIC",
/// revision 6: the local APIC address (offset 36), flags (offset 40; bit 0
/// PCAT_COMPAT, a dual 8259 is present) and interrupt controller structures
/// from offset 44.
public struct MADT: Hashable, Sendable {
    public static let revision: UInt8 = 6
    public static let pcatCompatible: UInt32 = 1 << 0

    public var localAPICAddress: UInt32
    public var flags: UInt32
    public var entries: [Entry]

    public init(localAPICAddress: UInt32 = 0xfee0_0000, flags: UInt32 = MADT.pcatCompatible, entries: [Entry]) {
        self.localAPICAddress = localAPICAddress
        self.flags = flags
        self.entries = entries
    }

    /// Local APIC flags (5.2.12.2, table 5.23).
    public struct ProcessorFlags: OptionSet, Hashable, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// The processor is ready for use.
        public static let enabled = ProcessorFlags(rawValue: 1 << 0)
        /// ACPI 6.3+: with Enabled clear, the platform can enable the
        /// processor at run time (hot-plug). Must be zero when Enabled is set.
        public static let onlineCapable = ProcessorFlags(rawValue: 1 << 1)
    }

    /// MPS INTI flags (5.2.12.5, table 5.26): polarity in bits 1–0, trigger
    /// mode in bits 3–2; 0 means "conforms to the bus" (ISA: edge, active high).
    public struct INTIFlags: Hashable, Sendable {
        public enum Polarity: UInt16, Hashable, Sendable { case conforming = 0, activeHigh = 1, activeLow = 3 }
        public enum Trigger: UInt16, Hashable, Sendable { case conforming = 0, edge = 1, level = 3 }
        public var polarity: Polarity
        public var trigger: Trigger
        public init(polarity: Polarity = .conforming, trigger: Trigger = .conforming) {
            self.polarity = polarity
            self.trigger = trigger
        }
        public static let conforming = INTIFlags()
        public var rawValue: UInt16 { polarity.rawValue | trigger.rawValue << 2 }
    }

    /// Interrupt controller structures (5.2.12, table 5.21).
    public enum Entry: Hashable, Sendable {
        /// Type 0, 8 bytes: ACPI processor UID, APIC ID, flags.
        case localAPIC(processorUID: UInt8, apicID: UInt8, flags: ProcessorFlags)
        /// Type 1, 12 bytes: I/O APIC ID, reserved, address, GSI base.
        case ioAPIC(id: UInt8, address: UInt32, gsiBase: UInt32)
        /// Type 2, 10 bytes: bus (0 = ISA), source IRQ, GSI, flags.
        case interruptSourceOverride(source: UInt8, gsi: UInt32, flags: INTIFlags)
        /// Type 4, 6 bytes: ACPI processor UID (0xFF = all), flags, LINT# (0/1).
        case localAPICNMI(processorUID: UInt8, flags: INTIFlags, lint: UInt8)
        /// Type 9, 16 bytes: reserved, x2APIC ID, flags, ACPI processor UID.
        case localX2APIC(x2apicID: UInt32, flags: ProcessorFlags, processorUID: UInt32)
        /// Type 0xA, 12 bytes: flags, ACPI processor UID (0xFFFFFFFF = all),
        /// LINT#, 3 reserved bytes.
        case localX2APICNMI(processorUID: UInt32, flags: INTIFlags, lint: UInt8)

        /// The structure for a processor: Processor Local APIC when both the
        /// APIC ID and the UID fit it (APIC IDs up to 254; 255 is the
        /// broadcast ID), Processor Local x2APIC otherwise (5.2.12.12: APIC
        /// IDs of 255 and above must use the x2APIC structure).
        public static func processor(uid: UInt32, apicID: UInt32, flags: ProcessorFlags) -> Entry {
            if apicID < 0xff && uid <= 0xff {
                .localAPIC(processorUID: UInt8(uid), apicID: UInt8(apicID), flags: flags)
            } else {
                .localX2APIC(x2apicID: apicID, flags: flags, processorUID: uid)
            }
        }

        public var bytes: [UInt8] {
            func le(_ value: some FixedWidthInteger, _ count: Int) -> [UInt8] {
                AMLEncoding.littleEndian(UInt64(value), bytes: count)
            }
            switch self {
            case .localAPIC(let uid, let apicID, let flags):
                return [0, 8, uid, apicID] + le(flags.rawValue, 4)
            case .ioAPIC(let id, let address, let gsiBase):
                return [1, 12, id, 0] + le(address, 4) + le(gsiBase, 4)
            case .interruptSourceOverride(let source, let gsi, let flags):
                return [2, 10, 0, source] + le(gsi, 4) + le(flags.rawValue, 2)
            case .localAPICNMI(let uid, let flags, let lint):
                return [4, 6, uid] + le(flags.rawValue, 2) + [lint]
            case .localX2APIC(let id, let flags, let uid):
                return [9, 16, 0, 0] + le(id, 4) + le(flags.rawValue, 4) + le(uid, 4)
            case .localX2APICNMI(let uid, let flags, let lint):
                return [0x0a, 12] + le(flags.rawValue, 2) + le(uid, 4) + [lint, 0, 0, 0]
            }
        }
    }

    public func table(oem: ACPIOEM = .swiftlet) -> ACPITable {
        ACPITable(signature: "APIC", revision: Self.revision, oem: oem,
                  body: AMLEncoding.littleEndian(UInt64(localAPICAddress), bytes: 4)
                      + AMLEncoding.littleEndian(UInt64(flags), bytes: 4)
                      + entries.flatMap(\.bytes))
    }
}

/// The complete ACPI table set of a Swiftlet machine, laid out as one
/// contiguous block for a given guest-physical address.
///
///     let acpi = try ACPITables.build(ACPIConfiguration(cpus: 2, maxCPUs: 8))
///     try memory.write(acpi.bytes, to: GuestAddress(acpi.address))
///     memoryMap.mark(GuestRange(start: GuestAddress(acpi.range.start), length: acpi.range.length),
///                    as: .acpiReclaimable)
///     // Linux: boot_params.acpi_rsdp_addr = acpi.rsdpAddress (the BootLoader's
///     // `acpiRSDP`); it also finds the RSDP by scanning 0xE0000-0xFFFFF.
public enum ACPITables {
    /// Where the tables go by default: the start of the BIOS area, where
    /// OSes scan for the RSDP on 16-byte boundaries (ACPI 6.5, 5.2.5.1).
    public static let defaultAddress: UInt64 = 0xe_0000
    /// The room from `defaultAddress` to 1 MiB.
    public static let defaultCapacity: UInt64 = 0x2_0000
    /// Each table starts on this boundary.
    public static let alignment = 16

    /// Lays out the RSDP, XSDT, FADT, MADT and DSDT from `address`, in that
    /// order, and fails if they need more than `capacity` bytes.
    public static func build(_ configuration: ACPIConfiguration, at address: UInt64 = defaultAddress,
                             capacity: UInt64 = defaultCapacity) throws(ACPIError) -> ACPIBlob {
        try configuration.validate()
        guard address % UInt64(alignment) == 0 else {
            throw .invalidConfiguration("the tables' address must be \(alignment)-byte aligned (the RSDP is)")
        }
        let oem = configuration.oem
        let dsdt = SwiftletTables.dsdt(configuration).table(oem: oem).bytes
        let madt = SwiftletTables.madt(configuration).table(oem: oem).bytes
        let xsdtLength = ACPITable.headerLength + 8 * 2

        // Offsets from `address`.
        func aligned(_ offset: Int) -> Int { (offset + alignment - 1) / alignment * alignment }
        let xsdtOffset = aligned(RSDP.length)
        let fadtOffset = aligned(xsdtOffset + xsdtLength)
        let madtOffset = aligned(fadtOffset + FADT.length)
        let dsdtOffset = aligned(madtOffset + madt.count)
        let end = dsdtOffset + dsdt.count
        guard UInt64(end) <= capacity else { throw .doesNotFit(needed: UInt64(end), available: capacity) }
        guard address <= UInt64.max - UInt64(end) else {
            throw .invalidConfiguration("the tables would run past the end of the address space")
        }

        let fadt = SwiftletTables.fadt(configuration, dsdtAddress: address + UInt64(dsdtOffset)).table(oem: oem).bytes
        let xsdt = XSDT(entries: [address + UInt64(fadtOffset), address + UInt64(madtOffset)]).table(oem: oem).bytes
        let rsdp = RSDP(xsdtAddress: address + UInt64(xsdtOffset), oemID: oem.oemID).bytes
        assert(xsdt.count == xsdtLength && fadt.count == FADT.length)

        var bytes = [UInt8](repeating: 0, count: end)
        var tables: [ACPIBlob.Table] = []
        for (signature, offset, table) in [("RSD PTR ", 0, rsdp), ("XSDT", xsdtOffset, xsdt), ("FACP", fadtOffset, fadt),
                                           ("APIC", madtOffset, madt), ("DSDT", dsdtOffset, dsdt)] {
            bytes.replaceSubrange(offset..<(offset + table.count), with: table)
            tables.append(ACPIBlob.Table(signature: signature, address: address + UInt64(offset), length: table.count))
        }
        return ACPIBlob(address: address, bytes: bytes, tables: tables)
    }
}

/// Laid-out ACPI tables, ready to be copied into guest memory at `address`.
public struct ACPIBlob: Hashable, Sendable {
    /// The guest-physical address of `bytes[0]`.
    public let address: UInt64
    public let bytes: [UInt8]
    /// Where each table landed (the RSDP first, with signature "RSD PTR ").
    public let tables: [Table]

    public struct Table: Hashable, Sendable {
        public let signature: String
        public let address: UInt64
        public let length: Int
    }

    /// The RSDP's address: for Linux's `boot_params.acpi_rsdp_addr` (boot
    /// protocol 2.14+) or the EFI configuration table.
    public var rsdpAddress: UInt64 { address }

    /// The bytes to describe in the e820 / Multiboot memory map as ACPI
    /// tables (type 3, "ACPI reclaimable").
    public var range: (start: UInt64, length: UInt64) { (address, UInt64(bytes.count)) }

    public func table(_ signature: String) -> Table? { tables.first { $0.signature == signature } }
}

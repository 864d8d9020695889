/// The register block behind the DSDT's CPU hot-plug methods and its
/// Generic Event Device: 16 bytes of MMIO, little-endian, at
/// `defaultBase` unless the machine chooses another base (the DSDT reserves
/// a whole page there). docs/acpi-cpu-hotplug.md describes the protocol.
///
/// | offset | size | read | write |
/// |---|---|---|---|
/// | 0x00 | 4 | selected CPU index | select a CPU (0 ..< maxCPUs) |
/// | 0x04 | 1 | status of the selected CPU | command for the selected CPU |
/// | 0x05 | 3 | 0 | ignored |
/// | 0x08 | 4 | pending events | write 1 to clear |
/// | 0x0C | 4 | 0 | ignored |
///
/// With a selector of `maxCPUs` or more, the status reads 0 and commands
/// are ignored.
public enum CPUHotplugRegisters {
    /// In the 32-bit MMIO hole, below the IOAPIC (0xFEC00000) and the LAPIC
    /// (0xFEE00000) pages, outside RAM.
    public static let defaultBase: UInt64 = 0xfeb0_0000
    /// Bytes of registers.
    public static let length: UInt64 = 0x10
    /// Bytes the DSDT reserves for the block (PNP0C02 Memory32Fixed).
    public static let reservedLength: UInt64 = 0x1000

    /// u32, read/write: the CPU (ACPI processor UID, = APIC ID = vCPU index)
    /// the status/command register refers to.
    public static let selectorOffset: UInt64 = 0x0
    /// u8: status on read, command on write.
    public static let statusOffset: UInt64 = 0x4
    /// u32: pending Generic Event Device events; a write clears the bits set in it.
    public static let eventOffset: UInt64 = 0x8

    // Status bits (read).

    /// The CPU is present and enabled: its `_STA` is 0xF (else 0).
    public static let statusEnabled: UInt8 = 1 << 0
    /// The CPU was plugged in and the guest has not yet acknowledged it.
    public static let statusInserting: UInt8 = 1 << 1
    /// The VMM asks the guest to remove the CPU; not yet acknowledged.
    public static let statusRemoving: UInt8 = 1 << 2

    // Command bits (write). Bits written as 0 do nothing; a write may carry several.

    /// Clears the inserting bit (the guest has sent Device Check).
    public static let commandAcknowledgeInsert: UInt8 = 1 << 1
    /// Clears the removing bit (the guest has sent Eject Request).
    public static let commandAcknowledgeRemove: UInt8 = 1 << 2
    /// The guest has offlined the CPU and ejects it (`_EJ0`): the VMM
    /// removes it, and the enabled bit reads 0 from the next read on.
    public static let commandEject: UInt8 = 1 << 3

    // Event bits (offset 0x08).

    /// Some CPU has its inserting or removing bit set: the guest's GED
    /// handler runs the CPU scan (`\_SB.CPUS.CSCN`).
    public static let eventCPUHotplug: UInt32 = 1 << 0
}

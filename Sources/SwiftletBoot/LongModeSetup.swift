import SwiftletMemory

/// The identity page tables of the direct 64-bit entry (boot-protocol.md):
/// at 0x9000 a PML4, then a PDPT, then four page directories, mapping the
/// first 4 GiB — RAM and the MMIO hole alike — with 2 MiB pages.
public enum LongModeSetup {
    /// Page table entry bits (SDM vol. 3A, 4.5).
    public static let present: UInt64 = 1 << 0
    public static let writable: UInt64 = 1 << 1
    /// User-accessible, so a guest can drop to CPL 3 on these tables.
    public static let user: UInt64 = 1 << 2
    /// In a page directory entry: a 2 MiB page rather than a page table.
    public static let pageSize: UInt64 = 1 << 7

    public static let largePageSize: UInt64 = 2 << 20
    static let directoryCount = 4

    /// The 24 KiB of tables, as they go at `X86Layout.pageTableAddress`.
    public static var pageTables: [UInt8] {
        var writer = LittleEndianWriter(size: Int(X86Layout.pageTableSize))
        let base = X86Layout.pageTableAddress.rawValue
        let pdptOffset = Int(X86Layout.pdptAddress.rawValue - base)
        let directoryOffset = Int(X86Layout.pageDirectoryAddress.rawValue - base)
        let flags = present | writable | user

        writer.put(X86Layout.pdptAddress.rawValue | flags, at: 0)
        for directory in 0..<directoryCount {
            let address = X86Layout.pageDirectoryAddress.rawValue + UInt64(directory) * X86Layout.pageSize
            writer.put(address | flags, at: pdptOffset + directory * 8)
            for entry in 0..<512 {
                let page = UInt64(directory * 512 + entry) * largePageSize
                writer.put(page | flags | pageSize, at: directoryOffset + directory * Int(X86Layout.pageSize) + entry * 8)
            }
        }
        return writer.bytes
    }

    /// Writes the GDT and the page tables, and returns the CPU state that
    /// enters the kernel at `entry` on them.
    public static func prepare(memory: GuestMemory, entry: UInt64) throws(GuestMemoryError) -> CPUBootState {
        try BootGDT.write(to: memory)
        try memory.write(pageTables, to: X86Layout.pageTableAddress)
        return .longMode(entry: entry)
    }
}

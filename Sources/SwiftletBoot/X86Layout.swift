import SwiftletMemory

/// Where things live in a Swiftlet x86 guest's physical address space.
///
/// The low megabyte follows the PC: the first 640 KiB are RAM, the rest up
/// to 1 MiB is reserved (legacy video, option ROMs, BIOS). Swiftlet puts its
/// boot-time structures in low RAM at fixed addresses, documented in
/// docs/boot-protocol.md; kernels load at 1 MiB or above.
public enum X86Layout {
    /// Protected/long-mode GDT built by the VMM (6 descriptors, see `BootGDT`).
    public static let gdtAddress = GuestAddress(0x500)
    public static let gdtSize: UInt64 = UInt64(BootGDT.descriptors.count * 8)
    /// The boot information page: whichever structure the boot protocol
    /// hands the kernel (Multiboot information, Linux zero page, PVH start
    /// info). One protocol per boot, so they share the page.
    public static let bootInfoAddress = GuestAddress(0x6000)
    public static let bootInfoSize: UInt64 = 0x1000
    /// Linux boot protocol: struct boot_params, the "zero page", 4 KiB.
    public static let linuxZeroPageAddress = bootInfoAddress
    /// PVH: hvm_start_info (56 bytes), then the module list (32 bytes per
    /// module; Swiftlet passes at most the initrd), then the memory map
    /// (24 bytes per entry, at most 128), all in the boot information page.
    public static let pvhStartInfoAddress = bootInfoAddress
    public static let pvhModuleListAddress = GuestAddress(0x6040)
    public static let pvhMemoryMapAddress = GuestAddress(0x6080)
    /// Identity-mapping page tables for direct 64-bit entry: PML4, PDPT, and
    /// four page directories covering the first 4 GiB with 2 MiB pages.
    public static let pageTableAddress = GuestAddress(0x9000)
    public static let pageTableSize: UInt64 = 0x6000
    /// Within the page tables: the PML4 (one page), then the PDPT, then the
    /// four page directories, one per GiB.
    public static let pml4Address = pageTableAddress
    public static let pdptAddress = GuestAddress(0xA000)
    public static let pageDirectoryAddress = GuestAddress(0xB000)
    /// Kernel command line (NUL-terminated), at most `commandLineMaxSize` bytes.
    public static let commandLineAddress = GuestAddress(0x20000)
    public static let commandLineMaxSize: UInt64 = 0x10000
    /// Initial stack for direct 64-bit entry; grows down from here.
    public static let bootStackTop = GuestAddress(0x80000)
    public static let bootStackBottom = GuestAddress(0x70000)
    /// End of conventional RAM: [0x9fc00, 1 MiB) is reserved as on a PC.
    public static let lowRAMEnd = GuestAddress(0x9fc00)
    /// Kernels and modules load at or above this address.
    public static let highMemoryStart = GuestAddress(0x10_0000)
    /// Modules (the initrd) start on a page boundary (Multiboot 3.1.2, flag 0).
    public static let pageSize: UInt64 = 0x1000
    /// The end of what 32-bit addresses (Multiboot fields, protected mode) reach.
    public static let fourGiB: UInt64 = 0x1_0000_0000

    /// Start of the 32-bit MMIO hole: RAM beyond this is placed above 4 GiB.
    public static let mmioHoleStart = GuestAddress(0xC000_0000)
    public static let mmioHoleEnd = GuestAddress(0x1_0000_0000)
    public static let ioapicAddress = GuestAddress(0xFEC0_0000)
    public static let lapicAddress = GuestAddress(0xFEE0_0000)
    /// KVM needs three pages for the VMX real-mode TSS and one for its
    /// identity page table, below 4 GiB and outside RAM.
    public static let kvmTSSAddress = GuestAddress(0xFFFB_D000)
    public static let kvmIdentityMapAddress = GuestAddress(0xFFFB_C000)

    /// Guest RAM for `size` bytes: one range below the MMIO hole and, for
    /// guests larger than the hole's start, the remainder from 4 GiB.
    public static func ramRanges(size: UInt64) -> [GuestRange] {
        let below = min(size, mmioHoleStart.rawValue)
        var ranges = [GuestRange(start: GuestAddress(0), length: below)]
        if size > below {
            ranges.append(GuestRange(start: mmioHoleEnd, length: size - below))
        }
        return ranges
    }

    /// The PC memory map (e820 / Multiboot `mmap`) for guest RAM `ram`: the
    /// legacy hole [0x9fc00, 1 MiB) is reserved, everything else in `ram` is
    /// usable. Loaders that place tables in RAM (ACPI, Linux setup data) mark
    /// them on a `MemoryMap` built from the same ranges.
    public static func memoryMap(ram: [GuestRange]) -> [MemoryMapEntry] {
        MemoryMap(ram: ram).entries
    }
}

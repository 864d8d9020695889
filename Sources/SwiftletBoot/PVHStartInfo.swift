import SwiftletMemory

/// The PVH boot protocol, "x86/HVM direct boot ABI" (Xen docs/misc/
/// pvh.pandoc): an ELF kernel names a 32-bit physical entry point in the
/// note ("Xen", XEN_ELFNOTE_PHYS32_ENTRY = 18); the loader loads its
/// segments at their physical addresses and enters there in 32-bit
/// protected mode with paging off and EBX pointing at a `hvm_start_info`
/// (xen/include/public/arch-x86/hvm/start_info.h).
public enum PVHBoot {
    public static let noteName = "Xen"
    public static let physicalEntryNoteType: UInt32 = 18
    /// hvm_start_info.magic: "xEn3" with the 0x80 bit of the "E" set.
    public static let startInfoMagic: UInt32 = 0x336E_C578
    /// Version 1 has the memory map fields.
    public static let startInfoVersion: UInt32 = 1
    public static let startInfoSize = 56
    public static let moduleEntrySize = 32
    public static let memoryMapEntrySize = 24
    /// Linux copies the PVH memory map into the zero page's 128-entry e820
    /// table (arch/x86/platform/pvh/enlighten.c), so no more than that.
    public static let maximumMemoryMapEntries = 128
    public static let maximumModules = 2

    /// The entry point of the first PVH note in `notes`, nil if there is
    /// none. The address is a 32-bit word (.long) or, as Linux's
    /// `_ASM_PTR` writes it in ELF64 (Debian's 6.1 vmlinux), 8 bytes; QEMU
    /// reads either width too.
    public static func entry(in notes: [ELFNote]) throws(BootProblem) -> UInt64? {
        guard let note = notes.first(where: { $0.name == noteName && $0.type == physicalEntryNoteType }) else {
            return nil
        }
        let reader = LittleEndianReader(note.descriptor)
        let entry: UInt64
        switch note.descriptor.count {
        case 4: entry = UInt64(reader.u32(0))
        case 8: entry = reader.u64(0)
        default: throw .pvhNoteDescriptorSize(note.descriptor.count)
        }
        guard entry < X86Layout.fourGiB else { throw .pvhEntryAbove4GiB(entry) }
        return entry
    }
}

/// The PVH start information for the boot information page at 0x6000:
///
///     +0x00  hvm_start_info, version 1 (56 bytes)
///     +0x40  module list: hvm_modlist_entry, 32 bytes each (the initrd is module 0)
///     +0x80  memory map: hvm_memmap_table_entry, 24 bytes each (at most 128)
///
/// The command line is at 0x20000, as for the other protocols. Addresses
/// of absent things are 0, which the ABI reads as "not present".
public struct PVHStartInfoBuilder: Sendable {
    public var commandLine: GuestAddress
    public var modules: [GuestRange]
    public var memoryMap: MemoryMap
    public var acpiRSDP: GuestAddress?

    public init(commandLine: GuestAddress, modules: [GuestRange], memoryMap: MemoryMap, acpiRSDP: GuestAddress?) {
        precondition(modules.count <= PVHBoot.maximumModules)
        self.commandLine = commandLine
        self.modules = modules
        self.memoryMap = memoryMap
        self.acpiRSDP = acpiRSDP
    }

    /// Offsets in hvm_start_info.
    enum Field {
        static let magic = 0, version = 4, flags = 8, moduleCount = 12, moduleList = 16, commandLine = 24
        static let rsdp = 32, memoryMap = 40, memoryMapEntries = 48
    }

    var moduleListOffset: Int { Int(X86Layout.pvhModuleListAddress - X86Layout.pvhStartInfoAddress) }
    var memoryMapOffset: Int { Int(X86Layout.pvhMemoryMapAddress - X86Layout.pvhStartInfoAddress) }

    /// The page's bytes; throws if the memory map has too many entries.
    public func build() throws(BootProblem) -> [UInt8] {
        let entries = memoryMap.entries
        guard entries.count <= PVHBoot.maximumMemoryMapEntries else {
            throw .memoryMapTooLarge(entries: entries.count, maximum: PVHBoot.maximumMemoryMapEntries,
                                     table: "the PVH memory map")
        }
        var page = LittleEndianWriter(size: Int(X86Layout.bootInfoSize))
        page.put(PVHBoot.startInfoMagic, at: Field.magic)
        page.put(PVHBoot.startInfoVersion, at: Field.version)
        page.put(UInt32(0), at: Field.flags)
        page.put(UInt32(modules.count), at: Field.moduleCount)
        page.put(modules.isEmpty ? 0 : X86Layout.pvhModuleListAddress.rawValue, at: Field.moduleList)
        page.put(commandLine.rawValue, at: Field.commandLine)
        page.put(acpiRSDP?.rawValue ?? 0, at: Field.rsdp)
        page.put(entries.isEmpty ? 0 : X86Layout.pvhMemoryMapAddress.rawValue, at: Field.memoryMap)
        page.put(UInt32(entries.count), at: Field.memoryMapEntries)
        // +52: reserved, 0.

        for (index, module) in modules.enumerated() {
            let offset = moduleListOffset + index * PVHBoot.moduleEntrySize
            page.put(module.start.rawValue, at: offset)
            page.put(module.length, at: offset + 8)
            // +16: the module's command line (none); +24: reserved.
        }
        for (index, entry) in entries.enumerated() {
            let offset = memoryMapOffset + index * PVHBoot.memoryMapEntrySize
            page.put(entry.start.rawValue, at: offset)
            page.put(entry.length, at: offset + 8)
            page.put(entry.type.rawValue, at: offset + 16)
            // +20: reserved, 0.
        }
        return page.bytes
    }
}

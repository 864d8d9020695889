import SwiftletMemory

/// The Linux zero page: struct boot_params (arch/x86/include/uapi/asm/
/// bootparam.h, Documentation/arch/x86/zero-page.rst), 4 KiB, whose
/// address the kernel gets in RSI.
///
/// It starts all zero; the kernel's setup header goes at 0x1f1 as the image
/// has it, and the loader then writes every field boot.rst marks "write",
/// whatever the image had there: type_of_loader and ext_loader_*,
/// loadflags, code32_start, ramdisk_image/size (0 without an initrd),
/// heap_end_ptr, cmd_line_ptr, hardware_subarch(_data) (0, a PC) and
/// setup_data (0: no list). Outside the header: the e820 table,
/// ext_ramdisk_*/ext_cmd_line_ptr (the high halves) and acpi_rsdp_addr.
/// The `sentinel` byte (0x1ef) stays 0, which tells the kernel the loader
/// copied only the header.
public struct LinuxBootParams: Sendable {
    public static let size = 4096
    public static let maximumE820Entries = 128
    static let e820EntrySize = 20
    /// type_of_loader 0xFF: a boot loader without an assigned ID.
    public static let undefinedLoader: UInt8 = 0xFF
    /// The setup header version Swiftlet writes for an ELF vmlinux, which
    /// has no header of its own: 2.12, whose fields it fills. (2.09 or
    /// later makes the kernel read setup_data, which stays 0.)
    public static let vmlinuxHeaderVersion: UInt16 = 0x020C
    /// kernel_alignment for a vmlinux header: CONFIG_PHYSICAL_ALIGN's x86-64
    /// default. The kernel does not use it on this path, but it is never 0.
    public static let vmlinuxKernelAlignment: UInt32 = 0x20_0000

    /// Offsets in the zero page.
    enum Field {
        static let acpiRSDPAddress = 0x070
        static let extRamdiskImage = 0x0C0, extRamdiskSize = 0x0C4, extCommandLinePointer = 0x0C8
        static let e820Entries = 0x1E8
        static let setupHeader = 0x1F1
        static let bootFlag = 0x1FE, header = 0x202, version = 0x206
        static let typeOfLoader = 0x210, loadFlags = 0x211, code32Start = 0x214
        static let ramdiskImage = 0x218, ramdiskSize = 0x21C, heapEndPointer = 0x224
        static let extLoaderVersion = 0x226, extLoaderType = 0x227
        static let commandLinePointer = 0x228, kernelAlignment = 0x230, commandLineSize = 0x238
        static let hardwareSubarch = 0x23C, hardwareSubarchData = 0x240, setupData = 0x250
        static let e820Table = 0x2D0
    }

    /// The setup header from byte 0x1f1, as the image has it.
    public var setupHeader: [UInt8]
    /// The protected-mode kernel's load address, for code32_start; nil
    /// leaves the field as the header has it (an ELF vmlinux has none).
    public var loadAddress: UInt64?
    public var commandLine: GuestAddress
    public var initrd: GuestRange?
    public var memoryMap: MemoryMap
    public var acpiRSDP: GuestAddress?

    public init(setupHeader: [UInt8], loadAddress: UInt64?, commandLine: GuestAddress, initrd: GuestRange?,
                memoryMap: MemoryMap, acpiRSDP: GuestAddress?) {
        precondition(setupHeader.count <= BzImageHeader.maximumHeaderEnd - BzImageHeader.offset)
        self.setupHeader = setupHeader
        self.loadAddress = loadAddress
        self.commandLine = commandLine
        self.initrd = initrd
        self.memoryMap = memoryMap
        self.acpiRSDP = acpiRSDP
    }

    /// A setup header for an ELF vmlinux, entered at its 64-bit startup_64:
    /// the magic numbers, a version, LOADED_HIGH, a nonzero alignment and
    /// the command line's size; the loader's fields are set by `build`.
    /// (Firecracker boots a vmlinux the same way.)
    public static func vmlinuxSetupHeader(commandLineLength: Int) -> [UInt8] {
        var header = LittleEndianWriter(size: Field.commandLineSize + 4 - Field.setupHeader)
        func put<T: FixedWidthInteger>(_ value: T, at field: Int) { header.put(value, at: field - Field.setupHeader) }
        put(BzImageHeader.bootFlag, at: Field.bootFlag)
        put(BzImageHeader.magic, at: Field.header)
        put(vmlinuxHeaderVersion, at: Field.version)
        put(BzImageHeader.loadedHigh, at: Field.loadFlags)
        put(vmlinuxKernelAlignment, at: Field.kernelAlignment)
        put(UInt32(clamping: commandLineLength), at: Field.commandLineSize)
        return header.bytes
    }

    /// The page's bytes; throws if the memory map does not fit its table.
    public func build() throws(BootProblem) -> [UInt8] {
        let entries = memoryMap.entries
        guard entries.count <= Self.maximumE820Entries else {
            throw .memoryMapTooLarge(entries: entries.count, maximum: Self.maximumE820Entries,
                                     table: "the Linux zero page's e820 table")
        }
        var page = LittleEndianWriter(size: Self.size)
        page.put(setupHeader, at: Field.setupHeader)

        page.put(Self.undefinedLoader, at: Field.typeOfLoader)
        page.put(UInt8(0), at: Field.extLoaderVersion)
        page.put(UInt8(0), at: Field.extLoaderType)
        page.put(UInt32(0), at: Field.hardwareSubarch)
        page.put(UInt64(0), at: Field.hardwareSubarchData)
        page.put(UInt64(0), at: Field.setupData)
        // LOADED_HIGH is the kernel's to say. The loader's bits stay clear:
        // QUIET_FLAG (Swiftlet has no display to keep quiet), KEEP_SEGMENTS
        // (obsolete) and CAN_USE_HEAP with heap_end_ptr, which describe the
        // real-mode setup code's heap, and that code does not run on the
        // 64-bit entry.
        let headerFlags = setupHeader.count > Field.loadFlags - Field.setupHeader
            ? setupHeader[Field.loadFlags - Field.setupHeader] : 0
        page.put(headerFlags & BzImageHeader.loadedHigh, at: Field.loadFlags)
        page.put(UInt16(0), at: Field.heapEndPointer)
        if let loadAddress {
            // boot.rst: a loader that puts a relocatable kernel elsewhere than
            // the default sets code32_start to where it is.
            page.put(UInt32(truncatingIfNeeded: loadAddress), at: Field.code32Start)
        }
        page.put(UInt32(truncatingIfNeeded: commandLine.rawValue), at: Field.commandLinePointer)
        page.put(UInt32(truncatingIfNeeded: commandLine.rawValue >> 32), at: Field.extCommandLinePointer)
        let ramdiskImage = initrd?.start.rawValue ?? 0, ramdiskSize = initrd?.length ?? 0
        page.put(UInt32(truncatingIfNeeded: ramdiskImage), at: Field.ramdiskImage)
        page.put(UInt32(truncatingIfNeeded: ramdiskSize), at: Field.ramdiskSize)
        page.put(UInt32(truncatingIfNeeded: ramdiskImage >> 32), at: Field.extRamdiskImage)
        page.put(UInt32(truncatingIfNeeded: ramdiskSize >> 32), at: Field.extRamdiskSize)
        if let acpiRSDP { page.put(acpiRSDP.rawValue, at: Field.acpiRSDPAddress) }

        page.put(UInt8(entries.count), at: Field.e820Entries)
        for (index, entry) in entries.enumerated() {
            let offset = Field.e820Table + index * Self.e820EntrySize
            page.put(entry.start.rawValue, at: offset)
            page.put(entry.length, at: offset + 8)
            page.put(entry.type.rawValue, at: offset + 16)
        }
        return page.bytes
    }
}

import SwiftletMemory

/// The setup header of a Linux bzImage (Documentation/arch/x86/boot.rst,
/// "The Real-Mode Kernel Header"), checked for what Swiftlet's 64-bit entry
/// needs.
///
/// A bzImage is the real-mode setup code — the boot sector and
/// `setup_sects` sectors of 512 bytes, with the setup header at byte 0x1f1
/// of the boot sector — followed by the protected-mode kernel: the
/// decompressor with the compressed vmlinux inside. Swiftlet does not run the
/// real-mode code: it loads the protected-mode kernel, builds the zero page
/// itself and enters at the 64-bit entry, load address + 0x200.
///
/// Accepted: protocol 2.12 or later (Linux 3.8+, the first with
/// xloadflags), LOADED_HIGH (a bzImage, not a zImage) and XLF_KERNEL_64 (a
/// 64-bit entry point).
public struct BzImageHeader: Hashable, Sendable {
    /// Where the header starts: boot_params.hdr, at the same offset in the
    /// image and in the zero page.
    public static let offset = 0x1F1
    public static let bootFlag: UInt16 = 0xAA55
    /// "HdrS" at byte 0x202.
    public static let magic: UInt32 = 0x5372_6448
    public static let minimumVersion: UInt16 = 0x020C
    /// The 64-bit entry point's offset in the protected-mode kernel.
    public static let entryOffset: UInt64 = 0x200
    public static let sectorSize = 512

    /// loadflags bits.
    public static let loadedHigh: UInt8 = 1 << 0
    public static let canUseHeap: UInt8 = 1 << 7
    /// xloadflags bits.
    public static let kernel64: UInt16 = 1 << 0
    public static let canBeLoadedAbove4GiB: UInt16 = 1 << 1

    /// Offsets of the fields Swiftlet reads, from the start of the image.
    enum Field {
        static let setupSectors = 0x1F1, syssize = 0x1F4, bootFlag = 0x1FE, jump = 0x200, header = 0x202
        static let version = 0x206, loadFlags = 0x211, code32Start = 0x214, initrdAddressMax = 0x22C
        static let kernelAlignment = 0x230, relocatableKernel = 0x234, minimumAlignment = 0x235
        static let xLoadFlags = 0x236, commandLineSize = 0x238, preferredAddress = 0x258, initSize = 0x260
    }
    /// The header must reach past init_size, the last field Swiftlet reads.
    static let minimumHeaderEnd = 0x264
    /// boot_params has room for the header up to 0x290 (bootparam.h, _pad7),
    /// which a short jump's offset cannot pass anyway.
    static let maximumHeaderEnd = 0x290

    /// The header's bytes from 0x1f1 to its end (byte 0x202 plus the jump's
    /// offset), copied into the zero page before Swiftlet sets its fields.
    public var bytes: [UInt8]
    /// setup_sects as the image has it; 0 means 4.
    public var setupSectorsField: UInt8
    public var version: UInt16
    public var loadFlags: UInt8
    public var xLoadFlags: UInt16
    /// Size of the protected-mode kernel in 16-byte paragraphs.
    public var syssize: UInt32
    /// Highest address the initrd may occupy (inclusive).
    public var initrdAddressMax: UInt32
    public var kernelAlignment: UInt32
    public var isRelocatable: Bool
    /// Most bytes of command line, without the NUL.
    public var commandLineSize: UInt32
    public var preferredAddress: UInt64
    /// Contiguous memory from the load address that the kernel needs before
    /// it reads its memory map (for the in-place decompression).
    public var initSize: UInt32
    /// Bytes of the protected-mode kernel: the rest of the file after the setup code.
    public var kernelSize: UInt64
    /// Where Swiftlet loads the protected-mode kernel (see `init`).
    public var loadAddress: UInt64

    /// The real setup_sects.
    public var setupSectors: Int { setupSectorsField == 0 ? 4 : Int(setupSectorsField) }
    /// Where the protected-mode kernel starts in the file.
    public var setupSize: UInt64 { UInt64(setupSectors + 1) * UInt64(Self.sectorSize) }
    /// What the kernel occupies from `loadAddress`: its own bytes, and
    /// init_size for the decompression in place.
    public var memorySize: UInt64 { max(kernelSize, UInt64(initSize)) }
    public var entry: UInt64 { loadAddress + Self.entryOffset }
    /// "2.15" for 0x020f.
    public var versionString: String { linuxVersion(version) }

    /// Whether `head`, the image's first bytes, has the setup header's boot
    /// flag and "HdrS" magic: what `--boot-protocol auto` takes for a bzImage.
    public static func isBzImage(_ head: [UInt8]) -> Bool {
        hasHeaderMagic(head) && LittleEndianReader(head).u16(Field.bootFlag) == bootFlag
    }

    static func hasHeaderMagic(_ head: [UInt8]) -> Bool {
        head.count >= Field.header + 4 && LittleEndianReader(head).u32(Field.header) == magic
    }

    /// Reads and checks the header of `image`, and chooses the load address.
    ///
    /// The load address is pref_address (1 MiB if it is 0), aligned up to
    /// kernel_alignment for a relocatable kernel. Loading lower would gain
    /// nothing: the decompressor never runs below pref_address
    /// (LOAD_PHYSICAL_ADDR; arch/x86/boot/compressed/head_64.S moves a kernel
    /// loaded lower up there), and it needs init_size bytes from there.
    public init(parsing image: some ImageSource) throws(BootError) {
        let name = image.name
        // The smallest setup code, one setup sector and the boot sector,
        // holds the longest header.
        let head = try image.read(at: 0, count: Int(min(image.size, UInt64(2 * Self.sectorSize))))
        guard Self.hasHeaderMagic(head) else { throw BootError(name, .notLinuxKernel) }
        let fields = LittleEndianReader(head)
        let bootFlag = fields.u16(Field.bootFlag)
        guard bootFlag == Self.bootFlag else { throw BootError(name, .linuxBootFlag(bootFlag)) }
        guard head.count >= Field.version + 2 else {
            throw BootError(name, .truncated(.linuxSetupHeader, end: UInt64(Field.version + 2), fileSize: image.size))
        }
        version = fields.u16(Field.version)
        guard version >= Self.minimumVersion else { throw BootError(name, .linuxProtocolTooOld(version: version)) }

        // The jump at 0x200 (0xeb, rel8) skips the header: its offset gives
        // the header's length (boot.rst, "32-bit Boot Protocol").
        let jump = fields.u16(Field.jump)
        let headerEnd = Field.header + Int(jump >> 8)
        guard jump & 0xFF == 0xEB, jump >> 8 < 0x80, headerEnd >= Self.minimumHeaderEnd,
              headerEnd <= Self.maximumHeaderEnd else {
            throw BootError(name, .linuxSetupHeaderJump(jump))
        }
        guard head.count >= headerEnd else {
            throw BootError(name, .truncated(.linuxSetupHeader, end: UInt64(headerEnd), fileSize: image.size))
        }
        bytes = Array(head[Self.offset..<headerEnd])
        setupSectorsField = fields.u8(Field.setupSectors)
        loadFlags = fields.u8(Field.loadFlags)
        xLoadFlags = fields.u16(Field.xLoadFlags)
        syssize = fields.u32(Field.syssize)
        initrdAddressMax = fields.u32(Field.initrdAddressMax)
        kernelAlignment = fields.u32(Field.kernelAlignment)
        isRelocatable = fields.u8(Field.relocatableKernel) != 0
        commandLineSize = fields.u32(Field.commandLineSize)
        preferredAddress = fields.u64(Field.preferredAddress)
        initSize = fields.u32(Field.initSize)

        guard loadFlags & Self.loadedHigh != 0 else { throw BootError(name, .linuxNotBzImage(loadFlags: loadFlags)) }
        guard xLoadFlags & Self.kernel64 != 0 else { throw BootError(name, .linuxNo64BitEntry(xLoadFlags: xLoadFlags)) }

        // The protected-mode kernel: everything after the setup code, at
        // least syssize paragraphs of it, and long enough to hold the entry.
        let setupSize = UInt64((setupSectorsField == 0 ? 4 : Int(setupSectorsField)) + 1) * UInt64(Self.sectorSize)
        let sectors = Int(setupSize) / Self.sectorSize - 1
        guard image.size >= setupSize else {
            throw BootError(name, .truncated(.linuxSetupCode(sectors: sectors), end: setupSize, fileSize: image.size))
        }
        guard image.size > setupSize else { throw BootError(name, .linuxNoProtectedModeKernel(setupSize: setupSize)) }
        kernelSize = image.size - setupSize
        let declared = UInt64(syssize) * 16
        guard declared <= kernelSize else {
            throw BootError(name, .truncated(.linuxProtectedModeKernel(syssize: syssize), end: setupSize + declared,
                                             fileSize: image.size))
        }
        guard kernelSize > Self.entryOffset else { throw BootError(name, .linuxKernelTooSmallForEntry(size: kernelSize)) }

        let memorySize = max(kernelSize, UInt64(initSize))
        var address = preferredAddress == 0 ? X86Layout.highMemoryStart.rawValue : preferredAddress
        if isRelocatable {
            guard kernelAlignment != 0, kernelAlignment & (kernelAlignment - 1) == 0 else {
                throw BootError(name, .linuxKernelAlignment(kernelAlignment))
            }
            guard let aligned = GuestAddress(address).alignedUp(to: UInt64(kernelAlignment)) else {
                throw BootError(name, .linuxKernelDoesNotFit(address: address, size: memorySize, initSize: initSize))
            }
            address = aligned.rawValue
        }
        guard address >= X86Layout.highMemoryStart.rawValue else {
            throw BootError(name, .linuxLoadAddressBelowHighMemory(preferredAddress: preferredAddress, loadAddress: address))
        }
        // So that `entry` and the kernel's range are always representable.
        guard GuestAddress(address).adding(memorySize) != nil else {
            throw BootError(name, .linuxKernelDoesNotFit(address: address, size: memorySize, initSize: initSize))
        }
        loadAddress = address
    }
}

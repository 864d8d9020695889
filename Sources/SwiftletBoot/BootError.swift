import SwiftletMemory
import SwiftletSystem

/// A refused boot: what it concerns (an image's name, "command line", "guest
/// memory") and the problem, printed as one line `subject: problem`.
public struct BootError: Error, Equatable, Sendable, CustomStringConvertible {
    public var subject: String
    public var problem: BootProblem

    public init(_ subject: String, _ problem: BootProblem) {
        self.subject = subject
        self.problem = problem
    }

    public var description: String { "\(subject): \(problem)" }
}

/// The part of an image that a truncation or overflow concerns.
public enum ImagePart: Hashable, Sendable {
    case elfHeader
    case programHeaders
    /// The file data of the program header with this index.
    case segment(Int)
    case multibootHeader(offset: Int)
    /// The bytes that Multiboot address fields (flag 16) ask to load.
    case multibootImage
    /// A bzImage's setup header: from 0x1F1 to 0x202 plus the jump's offset.
    case linuxSetupHeader
    /// A bzImage's real-mode setup code: (setup_sects + 1) sectors of 512 bytes.
    case linuxSetupCode(sectors: Int)
    /// A bzImage's protected-mode kernel as its setup header sizes it (syssize, in 16-byte paragraphs).
    case linuxProtectedModeKernel(syssize: UInt32)
    case bytes(offset: UInt64, count: UInt64)

    /// The part's name with the verb agreeing with it: "... end(s) at".
    var ends: String {
        switch self {
        case .elfHeader: "ELF header ends"
        case .programHeaders: "program headers end"
        case .segment(let index): "the data of ELF program header \(index) ends"
        case .multibootHeader(let offset): "the Multiboot header at byte \(offset) ends"
        case .multibootImage: "the image that the Multiboot address fields load ends"
        case .linuxSetupHeader: "the Linux setup header ends"
        case .linuxSetupCode(let sectors): "the setup code (\(sectors) setup sectors and the boot sector) ends"
        case .linuxProtectedModeKernel(let syssize): "the protected-mode kernel (syssize \(hex(syssize)) paragraphs) ends"
        case .bytes(let offset, let count): "bytes \(offset)..<\(offset &+ count) end"
        }
    }

    var name: String {
        switch self {
        case .elfHeader: "ELF header"
        case .programHeaders: "program header table"
        case .segment(let index): "ELF program header \(index)"
        case .multibootHeader(let offset): "Multiboot header at byte \(offset)"
        case .multibootImage: "Multiboot load image"
        case .linuxSetupHeader: "Linux setup header"
        case .linuxSetupCode: "Linux setup code"
        case .linuxProtectedModeKernel: "Linux protected-mode kernel"
        case .bytes: "read"
        }
    }
}

/// What is loaded at a guest address: a program header's segment, or the
/// image that Multiboot address fields describe.
public enum KernelPiece: Hashable, Sendable, CustomStringConvertible {
    case programHeader(Int)
    case multibootImage

    public var description: String {
        switch self {
        case .programHeader(let index): "ELF program header \(index)"
        case .multibootImage: "the Multiboot image (header address fields)"
        }
    }
}

public enum BootProblem: Error, Equatable, Sendable, CustomStringConvertible {
    // Files
    case cannotOpen(Errno)
    case isDirectory
    case notRegularFile
    case readFailed(Errno)
    case truncated(ImagePart, end: UInt64, fileSize: UInt64)
    /// An offset plus a size that does not fit in 64 bits.
    case offsetOverflow(ImagePart, offset: UInt64, size: UInt64)

    // Recognition
    case notBootable(searched: Int)
    case notELF
    case noMultibootHeader(searched: Int)
    case elf32NeedsMultiboot
    case elf64ProtocolNeedsELF64(ELFClass)
    case notLinuxKernel
    case linuxProtocolNeedsELF64(ELFClass)
    case pvhProtocolNeedsELF
    case pvhProtocolGivenBzImage
    case noPVHNote

    // ELF
    case unsupportedELFClass(UInt8)
    case unsupportedELFEncoding(UInt8)
    case unsupportedELFVersion(UInt32)
    case unsupportedELFMachine(UInt16)
    case elfClassMachineMismatch(ELFClass, ELFMachine)
    case unsupportedELFType(UInt16)
    case noProgramHeaders
    case extendedProgramHeaderNumbering
    case badProgramHeaderSize(UInt16, expected: Int)
    case tooManyProgramHeaders(Int, maximum: Int)
    case noLoadableSegments
    case fileSizeExceedsMemorySize(index: Int, fileSize: UInt64, memorySize: UInt64)
    case noteSegmentTooLarge(index: Int, size: UInt64, maximum: Int)
    case malformedNote(index: Int, offset: Int)

    // Placement
    case outsideRAM(KernelPiece, address: UInt64, size: UInt64)
    case notUsableRAM(KernelPiece, address: UInt64, size: UInt64)
    case belowHighMemory(KernelPiece, address: UInt64)
    case above4GiB(KernelPiece, address: UInt64, size: UInt64)
    case overlap(KernelPiece, KernelPiece, GuestRange)
    case entryNotInSegment(UInt64)
    case entryAbove4GiB(UInt64)

    // Multiboot
    case multibootChecksum(offset: Int, sum: UInt32)
    case multibootFieldsBeyondSearchLimit(offset: Int, end: Int)
    case unsupportedMultibootFlag(bit: Int)
    case multibootNeedsELF
    case multibootHeaderBelowLoadAddress(header: UInt32, load: UInt32)
    case multibootLoadBeforeFileStart(offset: Int, header: UInt32, load: UInt32)
    case multibootLoadEndBelowLoadAddress(loadEnd: UInt32, load: UInt32)
    case multibootBSSEndBelowLoadEnd(bssEnd: UInt32, loadEnd: UInt64)
    case multibootEntryOutsideImage(entry: UInt32, image: GuestRange)
    case bootInformationTooLarge(needed: Int, available: Int)

    // Linux bzImage
    case linuxBootFlag(UInt16)
    case linuxProtocolTooOld(version: UInt16)
    case linuxSetupHeaderJump(UInt16)
    case linuxNotBzImage(loadFlags: UInt8)
    case linuxNo64BitEntry(xLoadFlags: UInt16)
    case linuxNoProtectedModeKernel(setupSize: UInt64)
    case linuxKernelTooSmallForEntry(size: UInt64)
    case linuxKernelAlignment(UInt32)
    case linuxLoadAddressBelowHighMemory(preferredAddress: UInt64, loadAddress: UInt64)
    case linuxKernelDoesNotFit(address: UInt64, size: UInt64, initSize: UInt32?)
    case commandLineExceedsKernelLimit(length: Int, cmdlineSize: UInt32)

    // PVH
    case pvhNoteDescriptorSize(Int)
    case pvhEntryAbove4GiB(UInt64)
    case pvhEntryNotInSegment(UInt64)

    // Initrd, command line, machine
    case initrdDoesNotFit(size: UInt64, address: UInt64, below4GiB: Bool)
    /// Placed as high as possible below `ceiling` (exclusive), outside the kernel.
    case initrdDoesNotFitBelow(size: UInt64, ceiling: UInt64, initrdAddressMax: UInt64?)
    case memoryMapTooLarge(entries: Int, maximum: Int, table: String)
    case rsdpOutsideRAM(UInt64)
    case commandLineTooLong(length: Int, maximum: Int)
    case commandLineContainsNUL
    case lowMemoryMissing
    case guestMemory(GuestMemoryError)

    public var description: String {
        switch self {
        case .cannotOpen(let errno): "cannot open: \(errno)"
        case .isDirectory: "is a directory, not a kernel or initrd image"
        case .notRegularFile: "is not a regular file"
        case .readFailed(let errno): "cannot read: \(errno)"
        case .truncated(let part, let end, let size):
            "truncated: \(part.ends) at byte \(end) but the file has \(size) bytes"
        case .offsetOverflow(let part, let offset, let size):
            "\(part.name): offset \(hex(offset)) plus size \(hex(size)) overflows 64 bits"

        case .notBootable(let searched):
            "not an ELF image and no Multiboot header in the first \(searched) bytes"
        case .notELF: "not an ELF image (the elf64 boot protocol needs a 64-bit x86-64 ELF executable)"
        case .noMultibootHeader(let searched): "no Multiboot header in the first \(searched) bytes"
        case .elf32NeedsMultiboot: "32-bit ELF images need a Multiboot header"
        case .elf64ProtocolNeedsELF64(let elfClass):
            "the elf64 boot protocol needs a 64-bit ELF image, and this one is \(elfClass)"
        case .notLinuxKernel:
            "not a Linux kernel: no bzImage setup header (\"HdrS\" at byte 0x202) and not an ELF vmlinux"
        case .linuxProtocolNeedsELF64(let elfClass):
            "the linux boot protocol boots a bzImage or a 64-bit ELF vmlinux, and this ELF image is \(elfClass)"
        case .pvhProtocolNeedsELF:
            "the pvh boot protocol needs an ELF image with a PVH entry note, and this is not ELF"
        case .pvhProtocolGivenBzImage:
            "is a bzImage; the pvh boot protocol boots an ELF vmlinux (a bzImage boots with the linux boot protocol)"
        case .noPVHNote:
            "no PVH entry point: no ELF note \"Xen\" of type 18 (XEN_ELFNOTE_PHYS32_ENTRY)"

        case .unsupportedELFClass(let value): "unsupported ELF class \(value) (expected 1, 32-bit, or 2, 64-bit)"
        case .unsupportedELFEncoding(2): "big-endian ELF images are not supported"
        case .unsupportedELFEncoding(let value): "unsupported ELF data encoding \(value) (expected 1, little-endian)"
        case .unsupportedELFVersion(let value): "unsupported ELF version \(value) (expected 1)"
        case .unsupportedELFMachine(let value): "unsupported ELF machine \(hex(value)) (expected x86-64 or i386)"
        case .elfClassMachineMismatch(let elfClass, let machine): "ELF machine \(machine) in a \(elfClass) image"
        case .unsupportedELFType(let value):
            "unsupported ELF type \(value) (\(elfTypeName(value))); only executables can be booted"
        case .noProgramHeaders: "ELF image has no program headers"
        case .extendedProgramHeaderNumbering: "ELF image uses extended program header numbering (PN_XNUM), which is not supported"
        case .badProgramHeaderSize(let size, let expected): "ELF program header size is \(size) bytes (expected \(expected))"
        case .tooManyProgramHeaders(let count, let maximum): "ELF image has \(count) program headers, more than the \(maximum) accepted"
        case .noLoadableSegments: "ELF image has no loadable (PT_LOAD) segments"
        case .fileSizeExceedsMemorySize(let index, let fileSize, let memorySize):
            "ELF program header \(index) has p_filesz \(hex(fileSize)) larger than p_memsz \(hex(memorySize))"
        case .noteSegmentTooLarge(let index, let size, let maximum):
            "ELF note segment (program header \(index)) is \(size) bytes, more than the \(maximum) accepted"
        case .malformedNote(let index, let offset):
            "malformed ELF note at byte \(offset) of program header \(index): its name or descriptor runs past the segment"

        case .outsideRAM(let piece, let address, let size):
            "\(piece) loads \(hex(size)) bytes at \(hex(address)), outside guest RAM"
        case .notUsableRAM(let piece, let address, let size):
            "\(piece) loads \(hex(size)) bytes at \(hex(address)), which the memory map does not give the guest as RAM"
        case .belowHighMemory(let piece, let address):
            "\(piece) loads at \(hex(address)), below 1 MiB where the boot structures live (kernels load at 0x100000 or above)"
        case .above4GiB(let piece, let address, let size):
            "\(piece) loads \(hex(size)) bytes at \(hex(address)), beyond 4 GiB, which the 32-bit entry (Multiboot, PVH) cannot address"
        case .overlap(let first, let second, let range): "\(first) and \(second) overlap at \(range)"
        case .entryNotInSegment(let entry): "entry point \(hex(entry)) is not inside any loadable segment"
        case .entryAbove4GiB(let entry): "entry point \(hex(entry)) is above 4 GiB, which the boot CPU cannot reach"

        case .multibootChecksum(let offset, let sum):
            "Multiboot header at byte \(offset) has a bad checksum (magic + flags + checksum = \(hex(sum)), not 0)"
        case .multibootFieldsBeyondSearchLimit(let offset, let end):
            "Multiboot header at byte \(offset) is cut off: its address fields end at byte \(end), beyond the first \(MultibootHeader.searchLimit) bytes"
        case .unsupportedMultibootFlag(let bit):
            "Multiboot header requires feature bit \(bit), which Swiftlet does not support"
        case .multibootNeedsELF:
            "Multiboot header has no address fields (flag 16) and the image is not ELF, so there is nothing to say where to load it"
        case .multibootHeaderBelowLoadAddress(let header, let load):
            "Multiboot header_addr \(hex(header)) is below load_addr \(hex(load))"
        case .multibootLoadBeforeFileStart(let offset, let header, let load):
            "Multiboot load_addr \(hex(load)) is \(hex(header &- load)) bytes before header_addr, but the header is only \(offset) bytes into the file"
        case .multibootLoadEndBelowLoadAddress(let loadEnd, let load):
            "Multiboot load_end_addr \(hex(loadEnd)) is below load_addr \(hex(load))"
        case .multibootBSSEndBelowLoadEnd(let bssEnd, let loadEnd):
            "Multiboot bss_end_addr \(hex(bssEnd)) is below the end of the loaded image \(hex(loadEnd))"
        case .multibootEntryOutsideImage(let entry, let image):
            "Multiboot entry_addr \(hex(entry)) is outside the loaded image \(image)"
        case .bootInformationTooLarge(let needed, let available):
            "the Multiboot information needs \(needed) bytes, more than the \(available)-byte page at \(X86Layout.bootInfoAddress)"

        case .linuxBootFlag(let value):
            "Linux setup header boot_flag (byte 0x1fe) is \(hex(value)), not 0xaa55"
        case .linuxProtocolTooOld(let version):
            "Linux boot protocol \(linuxVersion(version)) (setup header version \(hex(version))) is too old: Swiftlet needs 2.12 or later (Linux 3.8+), for xloadflags and the 64-bit entry"
        case .linuxSetupHeaderJump(let jump):
            "Linux setup header jump (byte 0x200) is \(hex(jump)): expected a short jump (0xeb) whose offset ends the header between 0x264 and 0x290"
        case .linuxNotBzImage(let flags):
            "Linux setup header loadflags \(hex(flags)) lack LOADED_HIGH: a zImage, which loads below 1 MiB; Swiftlet boots only bzImage kernels"
        case .linuxNo64BitEntry(let flags):
            "Linux setup header xloadflags \(hex(flags)) lack XLF_KERNEL_64: the kernel has no 64-bit entry point (a 32-bit kernel?)"
        case .linuxNoProtectedModeKernel(let setupSize):
            "the file ends with its \(setupSize) bytes of setup code: there is no protected-mode kernel after them"
        case .linuxKernelTooSmallForEntry(let size):
            "the protected-mode kernel is \(size) bytes, too small to hold the 64-bit entry point at its byte 0x200"
        case .linuxKernelAlignment(let alignment):
            "Linux setup header kernel_alignment \(hex(alignment)) of a relocatable kernel is not a power of two"
        case .linuxLoadAddressBelowHighMemory(let preferred, let load):
            "Linux setup header pref_address \(hex(preferred)) puts the kernel at \(hex(load)), below 1 MiB where the boot structures live"
        case .linuxKernelDoesNotFit(let address, let size, let initSize):
            "the kernel needs \(hex(size)) bytes\(initSize.map { " (init_size \(hex($0)))" } ?? "") from its load address \(hex(address)), which are not all usable guest RAM below the MMIO hole at \(X86Layout.mmioHoleStart)"
        case .commandLineExceedsKernelLimit(let length, let cmdlineSize):
            "command line is \(length) bytes, more than the \(cmdlineSize) the kernel accepts (setup header cmdline_size)"

        case .pvhNoteDescriptorSize(let size):
            "PVH entry note (\"Xen\", type 18) has a \(size)-byte descriptor (expected a 4- or 8-byte address)"
        case .pvhEntryAbove4GiB(let entry):
            "PVH entry point \(hex(entry)) (XEN_ELFNOTE_PHYS32_ENTRY) is beyond 4 GiB, which a 32-bit entry cannot reach"
        case .pvhEntryNotInSegment(let entry):
            "PVH entry point \(hex(entry)) (XEN_ELFNOTE_PHYS32_ENTRY) is not inside any loadable segment's physical addresses"

        case .initrdDoesNotFitBelow(let size, let ceiling, let initrdAddressMax):
            "\(hex(size)) bytes do not fit in usable guest RAM between 1 MiB and \(hex(ceiling)) outside the kernel\(initrdAddressMax.map { " (the kernel's initrd_addr_max is \(hex($0)))" } ?? "")"
        case .memoryMapTooLarge(let entries, let maximum, let table):
            "has \(entries) entries, more than the \(maximum) that \(table) holds"
        case .rsdpOutsideRAM(let address):
            "\(hex(address)) is not an address of guest RAM where a 20-byte RSDP fits"
        case .initrdDoesNotFit(let size, let address, let below4GiB):
            "\(hex(size)) bytes at \(hex(address)) (after the kernel) do not fit in guest RAM\(below4GiB ? " below 4 GiB" : "")"
        case .commandLineTooLong(let length, let maximum):
            "command line is \(length) bytes; at most \(maximum) fit (with the NUL) at \(X86Layout.commandLineAddress)"
        case .commandLineContainsNUL: "command line contains a NUL byte"
        case .lowMemoryMissing: "guest RAM must cover the first MiB, where the boot structures live"
        case .guestMemory(let error): "\(error)"
        }
    }
}

func hex<T: BinaryInteger>(_ value: T) -> String { "0x" + String(value, radix: 16) }

/// A Linux boot protocol version as boot.rst writes it: 0x020f is "2.15".
func linuxVersion(_ version: UInt16) -> String {
    let minor = version & 0xFF
    return "\(version >> 8).\(minor < 10 ? "0" : "")\(minor)"
}

private func elfTypeName(_ type: UInt16) -> String {
    switch type {
    case 0: "none"
    case 1: "relocatable object"
    case 2: "executable"
    case 3: "shared object"
    case 4: "core dump"
    default: "unknown"
    }
}

/// ELF file class (e_ident[EI_CLASS]).
public enum ELFClass: UInt8, Hashable, Sendable, CustomStringConvertible {
    case elf32 = 1
    case elf64 = 2

    public var description: String {
        switch self {
        case .elf32: "32-bit"
        case .elf64: "64-bit"
        }
    }

    var headerSize: Int { self == .elf64 ? 64 : 52 }
    var programHeaderSize: Int { self == .elf64 ? 56 : 32 }
}

/// The machines Swiftlet boots (e_machine).
public enum ELFMachine: UInt16, Hashable, Sendable, CustomStringConvertible {
    case i386 = 3
    case x86_64 = 62

    public var description: String {
        switch self {
        case .i386: "i386"
        case .x86_64: "x86-64"
        }
    }
}

/// One entry of the program header table, widened to 64 bits.
public struct ELFProgramHeader: Hashable, Sendable {
    public static let typeLoad: UInt32 = 1
    public static let typeNote: UInt32 = 4

    /// Position in the table, for error messages.
    public var index: Int
    public var type: UInt32
    /// PF_X (1), PF_W (2), PF_R (4).
    public var flags: UInt32
    public var offset: UInt64
    public var virtualAddress: UInt64
    public var physicalAddress: UInt64
    public var fileSize: UInt64
    public var memorySize: UInt64
    public var alignment: UInt64

    /// A PT_LOAD that occupies memory; empty ones are skipped, as Linux does.
    public var isLoadable: Bool { type == Self.typeLoad && memorySize > 0 }
}

/// The headers of an ELF executable for x86: what to load where, and where
/// to start.
///
/// Accepted: little-endian ELF32 for i386 and ELF64 for x86-64, version 1,
/// ET_EXEC or ET_DYN. An ET_DYN image is loaded, like GRUB's Multiboot
/// loader does, at its own physical addresses without relocation: a static
/// PIE linked at 1 MiB or above boots, one linked at 0 is refused by the
/// placement rules rather than silently moved.
///
/// Section headers are never read: loading needs only program headers
/// (System V gABI, "Program Loading").
public struct ELFImage: Hashable, Sendable {
    public static let magic: [UInt8] = [0x7f, 0x45, 0x4c, 0x46]  // "\x7fELF"
    public static let typeExecutable: UInt16 = 2
    public static let typeSharedObject: UInt16 = 3
    /// The program header table may be at most this large; Linux's
    /// load_elf_phdrs has the same limit. It bounds what a header can make
    /// the parser allocate.
    public static let maximumProgramHeaderTableSize = 64 * 1024
    /// PT_NOTE segments larger than this are refused (notes are small).
    public static let maximumNoteSegmentSize = 64 * 1024

    public var elfClass: ELFClass
    public var machine: ELFMachine
    public var type: UInt16
    /// e_entry as written: a virtual address, which `physicalEntry` maps.
    public var entry: UInt64
    public var programHeaders: [ELFProgramHeader]

    public var loadSegments: [ELFProgramHeader] { programHeaders.filter(\.isLoadable) }

    /// Whether `head` starts with the ELF magic.
    public static func hasMagic(_ head: [UInt8]) -> Bool { head.starts(with: magic) }

    public init(parsing image: some ImageSource) throws(BootError) {
        let name = image.name
        let head = try image.read(at: 0, count: Int(min(image.size, 64)))
        guard Self.hasMagic(head) else { throw BootError(name, .notELF) }
        guard head.count >= 16 else {
            throw BootError(name, .truncated(.elfHeader, end: 16, fileSize: image.size))
        }
        // e_ident (gABI, "ELF Identification"): class, data encoding, version.
        guard let elfClass = ELFClass(rawValue: head[4]) else { throw BootError(name, .unsupportedELFClass(head[4])) }
        guard head[5] == 1 else { throw BootError(name, .unsupportedELFEncoding(head[5])) }
        guard head[6] == 1 else { throw BootError(name, .unsupportedELFVersion(UInt32(head[6]))) }
        guard head.count >= elfClass.headerSize else {
            throw BootError(name, .truncated(.elfHeader, end: UInt64(elfClass.headerSize), fileSize: image.size))
        }

        let header = LittleEndianReader(head)
        let type = header.u16(16)
        let machineValue = header.u16(18)
        let version = header.u32(20)
        let entry, programHeaderOffset: UInt64
        let programHeaderSize, programHeaderCount: UInt16
        switch elfClass {
        case .elf32:
            entry = UInt64(header.u32(24))
            programHeaderOffset = UInt64(header.u32(28))
            programHeaderSize = header.u16(42)
            programHeaderCount = header.u16(44)
        case .elf64:
            entry = header.u64(24)
            programHeaderOffset = header.u64(32)
            programHeaderSize = header.u16(54)
            programHeaderCount = header.u16(56)
        }

        guard let machine = ELFMachine(rawValue: machineValue) else {
            throw BootError(name, .unsupportedELFMachine(machineValue))
        }
        // i386 code in an ELF64 file, or x32 (ELF32 for x86-64), is not a
        // kernel any boot loader expects; GRUB refuses both too.
        guard (elfClass, machine) == (.elf32, .i386) || (elfClass, machine) == (.elf64, .x86_64) else {
            throw BootError(name, .elfClassMachineMismatch(elfClass, machine))
        }
        guard version == 1 else { throw BootError(name, .unsupportedELFVersion(version)) }
        guard type == Self.typeExecutable || type == Self.typeSharedObject else {
            throw BootError(name, .unsupportedELFType(type))
        }

        guard programHeaderCount > 0, programHeaderOffset > 0 else { throw BootError(name, .noProgramHeaders) }
        // 0xffff means the real count is in section header 0 (gABI, "Program Header").
        guard programHeaderCount != 0xffff else { throw BootError(name, .extendedProgramHeaderNumbering) }
        guard Int(programHeaderSize) == elfClass.programHeaderSize else {
            throw BootError(name, .badProgramHeaderSize(programHeaderSize, expected: elfClass.programHeaderSize))
        }
        let tableSize = Int(programHeaderCount) * Int(programHeaderSize)
        guard tableSize <= Self.maximumProgramHeaderTableSize else {
            throw BootError(name, .tooManyProgramHeaders(Int(programHeaderCount),
                                                         maximum: Self.maximumProgramHeaderTableSize / elfClass.programHeaderSize))
        }
        try image.checkBounds(.programHeaders, offset: programHeaderOffset, count: UInt64(tableSize))
        let table = try image.read(at: programHeaderOffset, count: tableSize)

        var programHeaders: [ELFProgramHeader] = []
        programHeaders.reserveCapacity(Int(programHeaderCount))
        for index in 0..<Int(programHeaderCount) {
            let entry = LittleEndianReader(table, at: index * Int(programHeaderSize))
            let programHeader = switch elfClass {
            case .elf32:
                ELFProgramHeader(index: index, type: entry.u32(0), flags: entry.u32(24),
                                 offset: UInt64(entry.u32(4)), virtualAddress: UInt64(entry.u32(8)),
                                 physicalAddress: UInt64(entry.u32(12)), fileSize: UInt64(entry.u32(16)),
                                 memorySize: UInt64(entry.u32(20)), alignment: UInt64(entry.u32(28)))
            case .elf64:
                ELFProgramHeader(index: index, type: entry.u32(0), flags: entry.u32(4),
                                 offset: entry.u64(8), virtualAddress: entry.u64(16),
                                 physicalAddress: entry.u64(24), fileSize: entry.u64(32),
                                 memorySize: entry.u64(40), alignment: entry.u64(48))
            }
            if programHeader.type == ELFProgramHeader.typeLoad {
                guard programHeader.fileSize <= programHeader.memorySize else {
                    throw BootError(name, .fileSizeExceedsMemorySize(index: index, fileSize: programHeader.fileSize,
                                                                     memorySize: programHeader.memorySize))
                }
                if programHeader.fileSize > 0 {
                    try image.checkBounds(.segment(index), offset: programHeader.offset, count: programHeader.fileSize)
                }
            }
            programHeaders.append(programHeader)
        }
        guard programHeaders.contains(where: \.isLoadable) else { throw BootError(name, .noLoadableSegments) }

        self.elfClass = elfClass
        self.machine = machine
        self.type = type
        self.entry = entry
        self.programHeaders = programHeaders
    }

    /// The physical address the entry point is loaded at, or nil if it is in
    /// no loadable segment.
    ///
    /// e_entry is tried as a physical address first (xv6 and other kernels
    /// linked high but entered with paging off set it so, and QEMU uses it
    /// unchanged), then as a virtual address translated through the segment
    /// holding it (what GRUB's multiboot_elfxx.c does for higher-half kernels).
    public func physicalEntry() -> UInt64? {
        let segments = loadSegments
        for segment in segments where segment.physicalAddress <= entry && entry - segment.physicalAddress < segment.memorySize {
            return entry
        }
        for segment in segments where segment.virtualAddress <= entry && entry - segment.virtualAddress < segment.memorySize {
            let physical = segment.physicalAddress.addingReportingOverflow(entry - segment.virtualAddress)
            return physical.overflow ? nil : physical.partialValue
        }
        return nil
    }

    /// The notes of every PT_NOTE segment, in file order.
    public func notes(in image: some ImageSource) throws(BootError) -> [ELFNote] {
        var notes: [ELFNote] = []
        for segment in programHeaders where segment.type == ELFProgramHeader.typeNote && segment.fileSize > 0 {
            guard segment.fileSize <= UInt64(Self.maximumNoteSegmentSize) else {
                throw BootError(image.name, .noteSegmentTooLarge(index: segment.index, size: segment.fileSize,
                                                                 maximum: Self.maximumNoteSegmentSize))
            }
            try image.checkBounds(.segment(segment.index), offset: segment.offset, count: segment.fileSize)
            let bytes = try image.read(at: segment.offset, count: Int(segment.fileSize))
            do {
                notes += try ELFNote.parse(bytes, alignment: segment.alignment == 8 ? 8 : 4)
            } catch {
                throw BootError(image.name, .malformedNote(index: segment.index, offset: error.offset))
            }
        }
        return notes
    }
}

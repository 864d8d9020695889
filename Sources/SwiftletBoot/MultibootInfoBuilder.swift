import SwiftletMemory

/// A boot module as the Multiboot information lists it.
public struct MultibootModule: Hashable, Sendable {
    public var range: GuestRange
    /// The module's string: Swiftlet passes the initrd's file name.
    public var string: String

    public init(range: GuestRange, string: String) {
        self.range = range
        self.string = string
    }
}

/// The Multiboot information structure (0.6.96, section 3.3) and everything
/// it points to, laid out in the 4 KiB boot information page at 0x6000:
///
///     +0x000  the structure (88 bytes; room up to 0x80)
///     +0x080  module structures, 16 bytes each
///     then    memory map entries, 24 bytes each (size = 20, base, length, type)
///     then    the boot loader name and module strings, NUL-terminated
///
/// The command line is not here: it has its own 64 KiB at 0x20000.
public struct MultibootInfoBuilder: Sendable {
    /// Information flags: which fields are valid.
    public static let hasMemory: UInt32 = 1 << 0
    public static let hasCommandLine: UInt32 = 1 << 2
    public static let hasModules: UInt32 = 1 << 3
    public static let hasMemoryMap: UInt32 = 1 << 6
    public static let hasBootLoaderName: UInt32 = 1 << 9

    /// Field offsets in the structure.
    enum Field {
        static let flags = 0, memLower = 4, memUpper = 8, cmdline = 16, modsCount = 20, modsAddr = 24
        static let mmapLength = 44, mmapAddr = 48, bootLoaderName = 64
    }

    static let modulesOffset = 0x80
    static let moduleSize = 16
    /// Each entry is preceded by its size, which counts the 20 bytes after it.
    static let memoryMapEntrySize = 24

    public var memoryMap: MemoryMap
    public var commandLine: GuestAddress
    public var modules: [MultibootModule]
    public var bootLoaderName = "Swiftlet"

    public init(memoryMap: MemoryMap, commandLine: GuestAddress, modules: [MultibootModule]) {
        self.memoryMap = memoryMap
        self.commandLine = commandLine
        self.modules = modules
    }

    /// The page's bytes, with pointers for a page at `X86Layout.bootInfoAddress`;
    /// throws if everything does not fit in the page.
    public func build() throws(BootProblem) -> [UInt8] {
        let base = X86Layout.bootInfoAddress.rawValue
        let pageSize = Int(X86Layout.bootInfoSize)
        let mapOffset = Self.modulesOffset + modules.count * Self.moduleSize
        let entries = memoryMap.entries
        let stringsOffset = mapOffset + entries.count * Self.memoryMapEntrySize

        var strings: [UInt8] = []
        func addString(_ string: String) -> UInt32 {
            let address = UInt32(truncatingIfNeeded: base + UInt64(stringsOffset + strings.count))
            strings += Array(string.utf8) + [0]
            return address
        }
        let nameAddress = addString(bootLoaderName)
        let moduleStringAddresses = modules.map { addString($0.string) }
        let needed = stringsOffset + strings.count
        guard needed <= pageSize else { throw .bootInformationTooLarge(needed: needed, available: pageSize) }

        var page = LittleEndianWriter(size: pageSize)
        page.put(Self.hasMemory | Self.hasCommandLine | Self.hasModules | Self.hasMemoryMap | Self.hasBootLoaderName,
                 at: Field.flags)
        page.put(memoryMap.lowerMemoryKiB, at: Field.memLower)
        page.put(memoryMap.upperMemoryKiB, at: Field.memUpper)
        page.put(UInt32(truncatingIfNeeded: commandLine.rawValue), at: Field.cmdline)
        page.put(UInt32(modules.count), at: Field.modsCount)
        page.put(UInt32(base) + UInt32(Self.modulesOffset), at: Field.modsAddr)
        page.put(UInt32(entries.count * Self.memoryMapEntrySize), at: Field.mmapLength)
        page.put(UInt32(base) + UInt32(mapOffset), at: Field.mmapAddr)
        page.put(nameAddress, at: Field.bootLoaderName)

        for (index, module) in modules.enumerated() {
            let offset = Self.modulesOffset + index * Self.moduleSize
            // The loader checked that modules lie below 4 GiB.
            page.put(UInt32(truncatingIfNeeded: module.range.start.rawValue), at: offset)
            page.put(UInt32(truncatingIfNeeded: module.range.end), at: offset + 4)
            page.put(moduleStringAddresses[index], at: offset + 8)
            // +12: reserved, 0.
        }
        for (index, entry) in entries.enumerated() {
            let offset = mapOffset + index * Self.memoryMapEntrySize
            page.put(UInt32(Self.memoryMapEntrySize - 4), at: offset)
            page.put(entry.start.rawValue, at: offset + 4)
            page.put(entry.length, at: offset + 12)
            page.put(entry.type.rawValue, at: offset + 20)
        }
        page.put(strings, at: stringsOffset)
        return page.bytes
    }
}

/// The kernel command line at 0x20000, NUL-terminated (boot-protocol.md).
public enum BootCommandLine {
    /// Longest command line that fits with its NUL.
    public static let maximumLength = Int(X86Layout.commandLineMaxSize) - 1

    /// The bytes to write, NUL included.
    public static func bytes(_ commandLine: String) throws(BootProblem) -> [UInt8] {
        let bytes = Array(commandLine.utf8)
        guard bytes.count <= maximumLength else { throw .commandLineTooLong(length: bytes.count, maximum: maximumLength) }
        // The guest would see only the part before it.
        guard !bytes.contains(0) else { throw .commandLineContainsNUL }
        return bytes + [0]
    }
}

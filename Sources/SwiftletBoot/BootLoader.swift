import SwiftletMemory

/// How to boot a kernel image (the CLI's `--boot-protocol`).
public enum BootProtocol: String, Hashable, Sendable, CaseIterable {
    /// Sniffs the image, in this order: a bzImage is Linux; an ELF image
    /// with a PVH note is PVH; a Multiboot header makes it Multiboot; an
    /// ELF64 vmlinux (an ELF64 image with a "Linux" note) gets the Linux
    /// 64-bit entry, and any other ELF64 image the direct 64-bit entry;
    /// anything else is refused.
    case automatic = "auto"
    case multiboot
    /// Direct 64-bit entry, even if the image also has a Multiboot header.
    case elf64
    /// The Linux boot protocol's 64-bit entry, with a zero page: a bzImage,
    /// or an ELF64 vmlinux entered at e_entry (startup_64).
    case linux
    /// The PVH entry of an ELF image's XEN_ELFNOTE_PHYS32_ENTRY note.
    case pvh
}

/// What the loader put in guest memory and how the boot CPU starts.
public struct BootResult: Sendable {
    /// Fixed-address structures the loader wrote into low RAM.
    public enum Structure: Hashable, Sendable {
        case gdt
        case pageTables
        case multibootInformation
        case commandLine
        /// struct boot_params (Linux).
        case linuxZeroPage
        /// hvm_start_info, its module list and its memory map (PVH).
        case pvhStartInfo
        case pvhModuleList
        case pvhMemoryMap
    }

    public var cpu: CPUBootState
    /// `.multiboot`, `.elf64`, `.linux` or `.pvh`, never `.automatic`.
    public var bootProtocol: BootProtocol
    /// Guest ranges the kernel occupies (file bytes and zeroed bss), in
    /// program header order; for a bzImage, the protected-mode kernel with
    /// the init_size bytes it decompresses into.
    public var kernelSegments: [GuestRange]
    /// Where the initrd is: Multiboot or PVH module 0, the Linux ramdisk, or
    /// for the direct entry a range the guest learns about through fw_cfg.
    public var initrd: GuestRange?
    public var bootStructures: [Structure: GuestRange]
    /// The map the guest was given (Multiboot, Linux, PVH) or should be
    /// given (e820 through fw_cfg for the direct entry).
    public var memoryMap: MemoryMap
    /// The bzImage's setup header, for the caller to log (protocol version).
    public var linuxHeader: BzImageHeader?
    /// Things the guest asked for that Swiftlet does not provide but that do
    /// not stop it booting, one line each; for the caller to log.
    public var warnings: [String]

    public init(cpu: CPUBootState, bootProtocol: BootProtocol, kernelSegments: [GuestRange], initrd: GuestRange?,
                bootStructures: [Structure: GuestRange], memoryMap: MemoryMap, linuxHeader: BzImageHeader? = nil,
                warnings: [String]) {
        self.cpu = cpu
        self.bootProtocol = bootProtocol
        self.kernelSegments = kernelSegments
        self.initrd = initrd
        self.bootStructures = bootStructures
        self.memoryMap = memoryMap
        self.linuxHeader = linuxHeader
        self.warnings = warnings
    }
}

/// Loads a kernel (and optionally an initrd) into guest memory per
/// docs/boot-protocol.md and returns the boot CPU's state.
///
/// Everything is checked before the first byte is written, so a refused
/// image leaves guest memory as it was.
public enum BootLoader {
    /// - Parameters:
    ///   - memoryMap: the map to hand the guest (Multiboot `mmap`, the Linux
    ///     e820 table, the PVH memory map), for a machine that marks its
    ///     own ranges (ACPI tables) on `MemoryMap(ram:)`; nil is that map of
    ///     guest RAM as it is. The Linux and PVH loaders place the kernel
    ///     and the initrd only in its RAM ranges.
    ///   - acpiRSDP: where the machine put the ACPI RSDP, for Linux's
    ///     acpi_rsdp_addr and PVH's rsdp_paddr (Multiboot v1 and the direct
    ///     entry have no field for it; those guests search for it).
    public static func load(kernel: any ImageSource, initrd: (any ImageSource)?, commandLine: String,
                            protocol bootProtocol: BootProtocol, memory: GuestMemory,
                            memoryMap: MemoryMap? = nil, acpiRSDP: GuestAddress? = nil) throws(BootError) -> BootResult {
        guard memory.contains(GuestAddress(0), count: X86Layout.highMemoryStart.rawValue) else {
            throw BootError("guest memory", .lowMemoryMissing)
        }
        let commandLineBytes = try attributing("command line") { () throws(BootProblem) in try BootCommandLine.bytes(commandLine) }
        if let acpiRSDP, acpiRSDP.rawValue == 0 || !memory.contains(acpiRSDP, count: 20) {
            throw BootError("ACPI RSDP address", .rsdpOutsideRAM(acpiRSDP.rawValue))
        }

        let head = try kernel.read(at: 0, count: Int(min(kernel.size, UInt64(MultibootHeader.searchLimit))))
        var request = Request(kernel: kernel, initrd: initrd, commandLine: commandLineBytes, memory: memory,
                              memoryMap: memoryMap ?? MemoryMap(ram: memory.regions.map(\.range)), acpiRSDP: acpiRSDP)
        switch bootProtocol {
        case .linux:
            if BzImageHeader.hasHeaderMagic(head) { return try request.loadBzImage(BzImageHeader(parsing: kernel)) }
            guard ELFImage.hasMagic(head) else { throw BootError(kernel.name, .notLinuxKernel) }
            let elf = try ELFImage(parsing: kernel)
            guard elf.elfClass == .elf64 else { throw BootError(kernel.name, .linuxProtocolNeedsELF64(elf.elfClass)) }
            return try request.loadVmlinux(elf)
        case .pvh:
            if BzImageHeader.isBzImage(head) { throw BootError(kernel.name, .pvhProtocolGivenBzImage) }
            guard ELFImage.hasMagic(head) else { throw BootError(kernel.name, .pvhProtocolNeedsELF) }
            let elf = try ELFImage(parsing: kernel)
            let notes = try elf.notes(in: kernel)
            guard let entry = try attributing(kernel.name, { () throws(BootProblem) in try PVHBoot.entry(in: notes) }) else {
                throw BootError(kernel.name, .noPVHNote)
            }
            return try request.loadPVH(elf, entry: entry)
        case .automatic:
            if BzImageHeader.isBzImage(head) { return try request.loadBzImage(BzImageHeader(parsing: kernel)) }
            // An ELF image that does not parse may still be a Multiboot
            // image with address fields; the classic path decides.
            if ELFImage.hasMagic(head), let elf = try? ELFImage(parsing: kernel) {
                let notes = try elf.notes(in: kernel)
                if let entry = try attributing(kernel.name, { () throws(BootProblem) in try PVHBoot.entry(in: notes) }) {
                    return try request.loadPVH(elf, entry: entry)
                }
                let isVmlinux = notes.contains { $0.name == "Linux" }
                return try request.loadClassic(head: head, protocol: bootProtocol, isVmlinux: isVmlinux)
            }
            return try request.loadClassic(head: head, protocol: bootProtocol, isVmlinux: false)
        case .multiboot, .elf64:
            return try request.loadClassic(head: head, protocol: bootProtocol, isVmlinux: false)
        }
    }
}

/// One run of the loader: the inputs, and what it has decided so far.
private struct Request {
    let kernel: any ImageSource
    let initrd: (any ImageSource)?
    let commandLine: [UInt8]
    let memory: GuestMemory
    /// What the guest is told about its memory.
    let memoryMap: MemoryMap
    let acpiRSDP: GuestAddress?
    var warnings: [String] = []

    init(kernel: any ImageSource, initrd: (any ImageSource)?, commandLine: [UInt8], memory: GuestMemory,
         memoryMap: MemoryMap, acpiRSDP: GuestAddress?) {
        self.kernel = kernel
        self.initrd = initrd
        self.commandLine = commandLine
        self.memory = memory
        self.memoryMap = memoryMap
        self.acpiRSDP = acpiRSDP
    }

    /// Multiboot, or the direct 64-bit entry (or, for a vmlinux in
    /// `.automatic`, the Linux 64-bit entry): what the loader did before it
    /// knew Linux and PVH.
    mutating func loadClassic(head: [UInt8], protocol bootProtocol: BootProtocol, isVmlinux: Bool) throws(BootError) -> BootResult {
        let search = bootProtocol == .elf64
            ? .notFound
            : try attributing(kernel.name) { () throws(BootProblem) in try MultibootHeader.search(head) }
        if case .found(let header) = search {
            return try loadMultiboot(header, head: head)
        }
        // A magic whose checksum fails is more likely a damaged header than
        // a coincidence, so it is the error to report when nothing else boots.
        func refuse(_ problem: BootProblem) -> BootError {
            if case .badChecksum(let offset, let sum) = search {
                return BootError(kernel.name, .multibootChecksum(offset: offset, sum: sum))
            }
            return BootError(kernel.name, problem)
        }
        if bootProtocol == .multiboot { throw refuse(.noMultibootHeader(searched: MultibootHeader.searchLimit)) }
        guard ELFImage.hasMagic(head) else {
            // "HdrS" without the boot flag: a damaged bzImage, which says why
            // (its boot_flag) better than "not bootable".
            if bootProtocol == .automatic, BzImageHeader.hasHeaderMagic(head), search == .notFound {
                _ = try BzImageHeader(parsing: kernel)
            }
            throw refuse(bootProtocol == .elf64 ? .notELF : .notBootable(searched: MultibootHeader.searchLimit))
        }
        let elf = try ELFImage(parsing: kernel)
        guard elf.elfClass == .elf64 else {
            throw refuse(bootProtocol == .elf64 ? .elf64ProtocolNeedsELF64(elf.elfClass) : .elf32NeedsMultiboot)
        }
        return isVmlinux ? try loadVmlinux(elf) : try loadELF64(elf)
    }

    /// Bytes of the kernel file that go to one place in guest memory.
    struct Piece {
        var kind: KernelPiece
        var address: UInt64
        var fileOffset: UInt64
        var fileSize: UInt64
        var memorySize: UInt64

        init(kind: KernelPiece, address: UInt64, fileOffset: UInt64, fileSize: UInt64, memorySize: UInt64) {
            self.kind = kind
            self.address = address
            self.fileOffset = fileOffset
            self.fileSize = fileSize
            self.memorySize = memorySize
        }

        init(_ segment: ELFProgramHeader) {
            self.init(kind: .programHeader(segment.index), address: segment.physicalAddress,
                      fileOffset: segment.offset, fileSize: segment.fileSize, memorySize: segment.memorySize)
        }

        /// Valid once `checkPlacement` has passed.
        var range: GuestRange { GuestRange(start: GuestAddress(address), length: memorySize) }
    }

    mutating func loadMultiboot(_ header: MultibootHeader, head: [UInt8]) throws(BootError) -> BootResult {
        if header.wantsVideoMode {
            warnings.append("\(kernel.name): the Multiboot header asks for a video mode (flag 2), but Swiftlet has no display; booting without video information")
        }
        let pieces: [Piece]
        let entry: UInt64
        if let addresses = header.addresses {
            let layout = try attributing(kernel.name) { () throws(BootProblem) in
                try MultibootLoadLayout(addresses, headerOffset: header.offset, imageSize: kernel.size)
            }
            pieces = [Piece(kind: .multibootImage, address: layout.loadAddress, fileOffset: layout.fileOffset,
                            fileSize: layout.fileSize, memorySize: layout.memorySize)]
            entry = layout.entry
        } else {
            // Section 3.1.3: without flag 16 the image must be in a format
            // the loader understands, which for Swiftlet means ELF.
            guard ELFImage.hasMagic(head) else { throw BootError(kernel.name, .multibootNeedsELF) }
            let elf = try ELFImage(parsing: kernel)
            pieces = elf.loadSegments.map(Piece.init)
            guard let physicalEntry = elf.physicalEntry() else { throw BootError(kernel.name, .entryNotInSegment(elf.entry)) }
            entry = physicalEntry
        }
        // Multiboot's fields and the 32-bit entry reach only the first 4 GiB.
        try checkPlacement(pieces, below4GiB: true)
        guard entry < X86Layout.fourGiB else { throw BootError(kernel.name, .entryAbove4GiB(entry)) }
        let initrdRange = try placeInitrd(after: pieces, below4GiB: true)

        let modules = zip([initrd].compactMap { $0 }, [initrdRange].compactMap { $0 }).map { image, range in
            MultibootModule(range: range, string: image.name)
        }
        let information = try attributing(initrd?.name ?? kernel.name) { () throws(BootProblem) in
            try MultibootInfoBuilder(memoryMap: memoryMap, commandLine: X86Layout.commandLineAddress,
                                     modules: modules).build()
        }

        try copy(pieces)
        try copyInitrd(to: initrdRange)
        try guestWrite { () throws(GuestMemoryError) in
            try BootGDT.write(to: memory)
            try memory.write(information, to: X86Layout.bootInfoAddress)
            try memory.write(commandLine, to: X86Layout.commandLineAddress)
        }
        return BootResult(
            cpu: .multiboot(entry: entry), bootProtocol: .multiboot, kernelSegments: pieces.map(\.range),
            initrd: initrdRange,
            bootStructures: [.gdt: gdtRange, .multibootInformation: GuestRange(start: X86Layout.bootInfoAddress, length: X86Layout.bootInfoSize),
                             .commandLine: commandLineRange],
            memoryMap: memoryMap, warnings: warnings)
    }

    mutating func loadELF64(_ elf: ELFImage) throws(BootError) -> BootResult {
        let pieces = elf.loadSegments.map(Piece.init)
        try checkPlacement(pieces, below4GiB: false)
        guard let entry = elf.physicalEntry() else { throw BootError(kernel.name, .entryNotInSegment(elf.entry)) }
        // The boot page tables map only the first 4 GiB.
        guard entry < X86Layout.fourGiB else { throw BootError(kernel.name, .entryAbove4GiB(entry)) }
        let initrdRange = try placeInitrd(after: pieces, below4GiB: false)

        try copy(pieces)
        try copyInitrd(to: initrdRange)
        var cpu: CPUBootState?
        try guestWrite { () throws(GuestMemoryError) in
            cpu = try LongModeSetup.prepare(memory: memory, entry: entry)
            try memory.write(commandLine, to: X86Layout.commandLineAddress)
        }
        return BootResult(
            cpu: cpu ?? .longMode(entry: entry), bootProtocol: .elf64, kernelSegments: pieces.map(\.range),
            initrd: initrdRange,
            bootStructures: [.gdt: gdtRange, .pageTables: GuestRange(start: X86Layout.pageTableAddress, length: X86Layout.pageTableSize),
                             .commandLine: commandLineRange],
            memoryMap: memoryMap, warnings: warnings)
    }

    /// A bzImage through the Linux 64-bit boot protocol: the protected-mode
    /// kernel at its load address, the zero page, and long mode at load
    /// address + 0x200 with RSI = the zero page.
    mutating func loadBzImage(_ header: BzImageHeader) throws(BootError) -> BootResult {
        // Everything the kernel touches before it reads the memory map must
        // be RAM that the boot page tables map: below the MMIO hole.
        let kernelRange = GuestRange(start: GuestAddress(header.loadAddress), length: header.memorySize)
        guard isUsableRAM(kernelRange, below: X86Layout.mmioHoleStart.rawValue) else {
            throw BootError(kernel.name, .linuxKernelDoesNotFit(address: header.loadAddress, size: header.memorySize,
                                                                initSize: header.initSize))
        }
        let length = commandLine.count - 1
        guard UInt64(length) <= UInt64(header.commandLineSize) else {
            throw BootError(kernel.name, .commandLineExceedsKernelLimit(length: length, cmdlineSize: header.commandLineSize))
        }
        // initrd_addr_max is the highest byte the initrd may occupy.
        let initrdRange = try placeInitrdHigh(below: min(UInt64(header.initrdAddressMax) + 1, X86Layout.mmioHoleStart.rawValue),
                                              avoiding: [kernelRange], initrdAddressMax: UInt64(header.initrdAddressMax))
        let params = LinuxBootParams(setupHeader: header.bytes, loadAddress: header.loadAddress,
                                     commandLine: X86Layout.commandLineAddress, initrd: initrdRange,
                                     memoryMap: memoryMap, acpiRSDP: acpiRSDP)
        let zeroPage = try attributing("memory map") { () throws(BootProblem) in try params.build() }

        try copyImage(kernel, offset: header.setupSize, count: header.kernelSize, to: kernelRange.start)
        try copyInitrd(to: initrdRange)
        try guestWrite { () throws(GuestMemoryError) in
            _ = try LongModeSetup.prepare(memory: memory, entry: header.entry)
            try memory.write(zeroPage, to: X86Layout.linuxZeroPageAddress)
            try memory.write(commandLine, to: X86Layout.commandLineAddress)
        }
        return BootResult(
            cpu: .linux64(entry: header.entry, bootParams: X86Layout.linuxZeroPageAddress), bootProtocol: .linux,
            kernelSegments: [kernelRange], initrd: initrdRange, bootStructures: linuxStructures,
            memoryMap: memoryMap, linuxHeader: header, warnings: warnings)
    }

    /// An ELF64 vmlinux through the Linux 64-bit boot protocol: its
    /// segments at their physical addresses, entered at e_entry
    /// (startup_64) in long mode with RSI = a zero page whose setup header
    /// Swiftlet writes, as a vmlinux has none.
    mutating func loadVmlinux(_ elf: ELFImage) throws(BootError) -> BootResult {
        let pieces = elf.loadSegments.map(Piece.init)
        try checkPlacement(pieces, below4GiB: false)
        try checkUsableRAM(pieces)
        guard let entry = elf.physicalEntry() else { throw BootError(kernel.name, .entryNotInSegment(elf.entry)) }
        guard entry < X86Layout.fourGiB else { throw BootError(kernel.name, .entryAbove4GiB(entry)) }
        let length = commandLine.count - 1
        if length > Self.linuxCommandLineSize {
            warnings.append("\(kernel.name): the command line is \(length) bytes; an x86 Linux kernel reads at most \(Self.linuxCommandLineSize) unless built with a larger COMMAND_LINE_SIZE")
        }
        // A vmlinux has no initrd_addr_max; every x86-64 bzImage says 0x7fffffff.
        let initrdRange = try placeInitrdHigh(below: min(Self.vmlinuxInitrdCeiling, X86Layout.mmioHoleStart.rawValue),
                                              avoiding: pieces.map(\.range), initrdAddressMax: nil)
        let params = LinuxBootParams(setupHeader: LinuxBootParams.vmlinuxSetupHeader(commandLineLength: length),
                                     loadAddress: nil, commandLine: X86Layout.commandLineAddress, initrd: initrdRange,
                                     memoryMap: memoryMap, acpiRSDP: acpiRSDP)
        let zeroPage = try attributing("memory map") { () throws(BootProblem) in try params.build() }

        try copy(pieces)
        try copyInitrd(to: initrdRange)
        try guestWrite { () throws(GuestMemoryError) in
            _ = try LongModeSetup.prepare(memory: memory, entry: entry)
            try memory.write(zeroPage, to: X86Layout.linuxZeroPageAddress)
            try memory.write(commandLine, to: X86Layout.commandLineAddress)
        }
        return BootResult(
            cpu: .linux64(entry: entry, bootParams: X86Layout.linuxZeroPageAddress), bootProtocol: .linux,
            kernelSegments: pieces.map(\.range), initrd: initrdRange, bootStructures: linuxStructures,
            memoryMap: memoryMap, warnings: warnings)
    }

    /// An ELF image through PVH: its segments at their physical addresses
    /// (below 4 GiB, which the 32-bit entry reaches), the start info page,
    /// and protected mode at the note's entry with EBX = the start info.
    mutating func loadPVH(_ elf: ELFImage, entry: UInt64) throws(BootError) -> BootResult {
        let pieces = elf.loadSegments.map(Piece.init)
        try checkPlacement(pieces, below4GiB: true)
        try checkUsableRAM(pieces)
        guard pieces.contains(where: { $0.address <= entry && entry - $0.address < $0.memorySize }) else {
            throw BootError(kernel.name, .pvhEntryNotInSegment(entry))
        }
        let initrdRange = try placeInitrdHigh(below: X86Layout.mmioHoleStart.rawValue, avoiding: pieces.map(\.range),
                                              initrdAddressMax: nil)
        let modules = [initrdRange].compactMap { $0 }
        let builder = PVHStartInfoBuilder(commandLine: X86Layout.commandLineAddress, modules: modules,
                                          memoryMap: memoryMap, acpiRSDP: acpiRSDP)
        let page = try attributing("memory map") { () throws(BootProblem) in try builder.build() }

        try copy(pieces)
        try copyInitrd(to: initrdRange)
        try guestWrite { () throws(GuestMemoryError) in
            try BootGDT.write(to: memory)
            try memory.write(page, to: X86Layout.pvhStartInfoAddress)
            try memory.write(commandLine, to: X86Layout.commandLineAddress)
        }
        var structures: [BootResult.Structure: GuestRange] = [
            .gdt: gdtRange, .commandLine: commandLineRange,
            .pvhStartInfo: GuestRange(start: X86Layout.pvhStartInfoAddress, length: UInt64(PVHBoot.startInfoSize)),
        ]
        if !modules.isEmpty {
            structures[.pvhModuleList] = GuestRange(start: X86Layout.pvhModuleListAddress,
                                                    length: UInt64(modules.count * PVHBoot.moduleEntrySize))
        }
        if !memoryMap.entries.isEmpty {
            structures[.pvhMemoryMap] = GuestRange(start: X86Layout.pvhMemoryMapAddress,
                                                   length: UInt64(memoryMap.entries.count * PVHBoot.memoryMapEntrySize))
        }
        return BootResult(
            cpu: .pvh(entry: entry, startInfo: X86Layout.pvhStartInfoAddress), bootProtocol: .pvh,
            kernelSegments: pieces.map(\.range), initrd: initrdRange, bootStructures: structures,
            memoryMap: memoryMap, warnings: warnings)
    }

    /// COMMAND_LINE_SIZE on x86 is 2048, with the NUL.
    static let linuxCommandLineSize = 2047
    /// Where the initrd of a vmlinux must end: initrd_addr_max + 1 of x86-64 kernels.
    static let vmlinuxInitrdCeiling: UInt64 = 0x8000_0000

    private var linuxStructures: [BootResult.Structure: GuestRange] {
        [.gdt: gdtRange, .pageTables: GuestRange(start: X86Layout.pageTableAddress, length: X86Layout.pageTableSize),
         .linuxZeroPage: GuestRange(start: X86Layout.linuxZeroPageAddress, length: UInt64(LinuxBootParams.size)),
         .commandLine: commandLineRange]
    }

    /// RAM the Linux and PVH loaders may use: the memory map's RAM entries
    /// where guest memory backs them, from 1 MiB up to `ceiling`, sorted,
    /// with touching pieces joined.
    private func usableRAM(below ceiling: UInt64) -> [(start: UInt64, end: UInt64)] {
        var pieces: [(start: UInt64, end: UInt64)] = []
        for entry in memoryMap.entries where entry.type == .ram {
            let entryEnd = entry.start.adding(entry.length)?.rawValue ?? .max
            for region in memory.regions {
                let regionEnd = region.start.adding(region.size)?.rawValue ?? .max
                let start = max(entry.start.rawValue, region.start.rawValue, X86Layout.highMemoryStart.rawValue)
                let end = min(entryEnd, regionEnd, ceiling)
                if start < end { pieces.append((start, end)) }
            }
        }
        pieces.sort { $0.start < $1.start }
        var joined: [(start: UInt64, end: UInt64)] = []
        for piece in pieces {
            if let last = joined.last, last.end >= piece.start {
                joined[joined.count - 1].end = max(last.end, piece.end)
            } else {
                joined.append(piece)
            }
        }
        return joined
    }

    private func isUsableRAM(_ range: GuestRange, below ceiling: UInt64) -> Bool {
        guard let end = range.start.adding(range.length)?.rawValue else { return false }
        return usableRAM(below: ceiling).contains { $0.start <= range.start.rawValue && end <= $0.end }
    }

    /// Pieces already inside guest RAM (`checkPlacement`) must also be RAM
    /// in the memory map the guest gets, or it would reuse them.
    private func checkUsableRAM(_ pieces: [Piece]) throws(BootError) {
        for piece in pieces where !isUsableRAM(piece.range, below: .max) {
            throw BootError(kernel.name, .notUsableRAM(piece.kind, address: piece.address, size: piece.memorySize))
        }
    }

    /// The initrd's place for Linux and PVH, as Linux boot loaders put it:
    /// page-aligned, as high as it fits in usable RAM below `ceiling`, and
    /// outside `occupied` (the kernel).
    private func placeInitrdHigh(below ceiling: UInt64, avoiding occupied: [GuestRange],
                                 initrdAddressMax: UInt64?) throws(BootError) -> GuestRange? {
        guard let initrd else { return nil }
        let size = initrd.size
        // An empty initrd occupies nothing, but its address must still be RAM.
        let needed = max(size, 1)
        var best: UInt64?
        for free in Self.subtracting(occupied, from: usableRAM(below: ceiling)) where free.end - free.start >= needed {
            let start = (free.end - needed) & ~(X86Layout.pageSize - 1)
            if start >= free.start, best.map({ start > $0 }) ?? true { best = start }
        }
        guard let best else {
            throw BootError(initrd.name, .initrdDoesNotFitBelow(size: size, ceiling: ceiling, initrdAddressMax: initrdAddressMax))
        }
        return GuestRange(start: GuestAddress(best), length: size)
    }

    static func subtracting(_ occupied: [GuestRange], from intervals: [(start: UInt64, end: UInt64)]) -> [(start: UInt64, end: UInt64)] {
        var result = intervals
        for range in occupied where range.length > 0 {
            let start = range.start.rawValue, end = range.start.adding(range.length)?.rawValue ?? .max
            result = result.flatMap { free -> [(start: UInt64, end: UInt64)] in
                if end <= free.start || start >= free.end { return [free] }
                var parts: [(start: UInt64, end: UInt64)] = []
                if free.start < start { parts.append((free.start, start)) }
                if end < free.end { parts.append((end, free.end)) }
                return parts
            }
        }
        return result
    }

    private var gdtRange: GuestRange { GuestRange(start: X86Layout.gdtAddress, length: X86Layout.gdtSize) }
    private var commandLineRange: GuestRange {
        GuestRange(start: X86Layout.commandLineAddress, length: UInt64(commandLine.count))
    }

    /// Every piece inside RAM, at or above 1 MiB (below is the loader's),
    /// below 4 GiB if asked, and no two overlapping.
    private func checkPlacement(_ pieces: [Piece], below4GiB: Bool) throws(BootError) {
        for piece in pieces {
            let (end, overflow) = piece.address.addingReportingOverflow(piece.memorySize)
            if overflow {
                throw BootError(kernel.name, .outsideRAM(piece.kind, address: piece.address, size: piece.memorySize))
            }
            if piece.address < X86Layout.highMemoryStart.rawValue {
                throw BootError(kernel.name, .belowHighMemory(piece.kind, address: piece.address))
            }
            if below4GiB && end > X86Layout.fourGiB {
                throw BootError(kernel.name, .above4GiB(piece.kind, address: piece.address, size: piece.memorySize))
            }
            if !memory.contains(GuestAddress(piece.address), count: piece.memorySize) {
                throw BootError(kernel.name, .outsideRAM(piece.kind, address: piece.address, size: piece.memorySize))
            }
        }
        // Sorted by start, and with no overlap found so far, a piece can
        // only overlap the one just before it.
        let sorted = pieces.sorted { $0.address < $1.address }
        for (previous, piece) in zip(sorted, sorted.dropFirst()) where previous.address + previous.memorySize > piece.address {
            let end = min(previous.address + previous.memorySize, piece.address + piece.memorySize)
            let (first, second) = order(previous.kind, piece.kind)
            throw BootError(kernel.name, .overlap(first, second, GuestRange(start: GuestAddress(piece.address),
                                                                              length: end - piece.address)))
        }
    }

    private func order(_ a: KernelPiece, _ b: KernelPiece) -> (KernelPiece, KernelPiece) {
        if case .programHeader(let i) = a, case .programHeader(let j) = b, j < i { return (b, a) }
        return (a, b)
    }

    /// The initrd's place: the first page boundary after the kernel.
    private func placeInitrd(after pieces: [Piece], below4GiB: Bool) throws(BootError) -> GuestRange? {
        guard let initrd else { return nil }
        let kernelEnd = pieces.map { $0.address + $0.memorySize }.max() ?? X86Layout.highMemoryStart.rawValue
        let size = initrd.size
        let start = GuestAddress(kernelEnd).alignedUp(to: X86Layout.pageSize)
        let problem = BootProblem.initrdDoesNotFit(size: size, address: start?.rawValue ?? kernelEnd, below4GiB: below4GiB)
        guard let start, let end = start.adding(size) else { throw BootError(initrd.name, problem) }
        if below4GiB && end.rawValue > X86Layout.fourGiB { throw BootError(initrd.name, problem) }
        // An empty initrd occupies nothing, but its address must still be RAM.
        if !memory.contains(start, count: max(size, 1)) { throw BootError(initrd.name, problem) }
        return GuestRange(start: start, length: size)
    }

    private func copy(_ pieces: [Piece]) throws(BootError) {
        for piece in pieces {
            try copyImage(kernel, offset: piece.fileOffset, count: piece.fileSize, to: GuestAddress(piece.address))
            try guestWrite { () throws(GuestMemoryError) in
                try memory.fill(0, at: GuestAddress(piece.address + piece.fileSize), count: piece.memorySize - piece.fileSize)
            }
        }
    }

    private func copyInitrd(to range: GuestRange?) throws(BootError) {
        guard let initrd, let range else { return }
        try copyImage(initrd, offset: 0, count: range.length, to: range.start)
    }

    /// Reads image bytes straight into guest memory, region by region.
    private func copyImage(_ image: any ImageSource, offset: UInt64, count: UInt64, to address: GuestAddress) throws(BootError) {
        var done: UInt64 = 0
        while done < count {
            let cursor = address + done
            guard let region = memory.region(containing: cursor) else {
                throw BootError("guest memory", .guestMemory(.outOfBounds(address, length: count)))
            }
            let take = min(region.size - (cursor - region.start), count - done)
            let buffer = try guestWrite { () throws(GuestMemoryError) in try region.hostBuffer(at: cursor, count: take) }
            try image.copy(from: offset + done, into: buffer)
            done += take
        }
    }

    private func guestWrite<T>(_ body: () throws(GuestMemoryError) -> T) throws(BootError) -> T {
        do {
            return try body()
        } catch {
            throw BootError("guest memory", .guestMemory(error))
        }
    }
}

/// Runs `body`, naming `subject` in the error it throws.
func attributing<T>(_ subject: String, _ body: () throws(BootProblem) -> T) throws(BootError) -> T {
    do {
        return try body()
    } catch {
        throw BootError(subject, error)
    }
}

import SwiftletMemory

/// How to boot a kernel image (the CLI's `--boot-protocol`).
public enum BootProtocol: String, Hashable, Sendable, CaseIterable {
    /// A Multiboot header makes it Multiboot; otherwise an ELF64 image gets
    /// the direct 64-bit entry; anything else is refused.
    case automatic = "auto"
    case multiboot
    /// Direct 64-bit entry, even if the image also has a Multiboot header.
    case elf64
}

/// What the loader put in guest memory and how the boot CPU starts.
public struct BootResult: Sendable {
    /// Fixed-address structures the loader wrote into low RAM.
    public enum Structure: Hashable, Sendable {
        case gdt
        case pageTables
        case multibootInformation
        case commandLine
    }

    public var cpu: CPUBootState
    /// `.multiboot` or `.elf64`, never `.automatic`.
    public var bootProtocol: BootProtocol
    /// Guest ranges the kernel occupies (file bytes and zeroed bss), in
    /// program header order.
    public var kernelSegments: [GuestRange]
    /// Where the initrd is: Multiboot module 0, or for the direct entry a
    /// range the guest learns about through fw_cfg.
    public var initrd: GuestRange?
    public var bootStructures: [Structure: GuestRange]
    /// The map the guest was given (Multiboot) or should be given (e820).
    public var memoryMap: MemoryMap
    /// Things the guest asked for that Swiftlet does not provide but that do
    /// not stop it booting, one line each; for the caller to log.
    public var warnings: [String]
}

/// Loads a kernel (and optionally an initrd) into guest memory per
/// docs/boot-protocol.md and returns the boot CPU's state.
///
/// Everything is checked before the first byte is written, so a refused
/// image leaves guest memory as it was.
public enum BootLoader {
    public static func load(kernel: any ImageSource, initrd: (any ImageSource)?, commandLine: String,
                            protocol bootProtocol: BootProtocol, memory: GuestMemory) throws(BootError) -> BootResult {
        guard memory.contains(GuestAddress(0), count: X86Layout.highMemoryStart.rawValue) else {
            throw BootError("guest memory", .lowMemoryMissing)
        }
        let commandLineBytes = try attributing("command line") { () throws(BootProblem) in try BootCommandLine.bytes(commandLine) }

        let head = try kernel.read(at: 0, count: Int(min(kernel.size, UInt64(MultibootHeader.searchLimit))))
        let search = bootProtocol == .elf64
            ? .notFound
            : try attributing(kernel.name) { () throws(BootProblem) in try MultibootHeader.search(head) }
        var request = Request(kernel: kernel, initrd: initrd, commandLine: commandLineBytes, memory: memory)

        if case .found(let header) = search {
            return try request.loadMultiboot(header, head: head)
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
            throw refuse(bootProtocol == .elf64 ? .notELF : .notBootable(searched: MultibootHeader.searchLimit))
        }
        let elf = try ELFImage(parsing: kernel)
        guard elf.elfClass == .elf64 else {
            throw refuse(bootProtocol == .elf64 ? .elf64ProtocolNeedsELF64(elf.elfClass) : .elf32NeedsMultiboot)
        }
        return try request.loadELF64(elf)
    }
}

/// One run of the loader: the inputs, and what it has decided so far.
private struct Request {
    let kernel: any ImageSource
    let initrd: (any ImageSource)?
    let commandLine: [UInt8]
    let memory: GuestMemory
    var warnings: [String] = []

    init(kernel: any ImageSource, initrd: (any ImageSource)?, commandLine: [UInt8], memory: GuestMemory) {
        self.kernel = kernel
        self.initrd = initrd
        self.commandLine = commandLine
        self.memory = memory
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

        let memoryMap = MemoryMap(ram: memory.regions.map(\.range))
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
            memoryMap: MemoryMap(ram: memory.regions.map(\.range)), warnings: warnings)
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

import SwiftletMemory
@testable import SwiftletBoot

/// Builds ELF32/ELF64 images in memory: the header, the program header
/// table right after it, then each segment's file bytes in order.
struct ELFBuilder {
    struct Segment {
        var type: UInt32 = ELFProgramHeader.typeLoad
        var flags: UInt32 = 5
        var physicalAddress: UInt64
        var virtualAddress: UInt64?
        var data: [UInt8]
        var memorySize: UInt64?
        var alignment: UInt64 = 0x1000
    }

    var elfClass: ELFClass = .elf64
    var machine: UInt16?
    var type: UInt16 = ELFImage.typeExecutable
    var entry: UInt64
    var segments: [Segment]

    var headerSize: Int { elfClass.headerSize }
    var programHeaderSize: Int { elfClass.programHeaderSize }
    var programHeaderTableEnd: Int { headerSize + segments.count * programHeaderSize }

    /// File offset of segment `index`'s data.
    func dataOffset(_ index: Int) -> Int {
        programHeaderTableEnd + segments[..<index].reduce(0) { $0 + $1.data.count }
    }

    func build() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: dataOffset(segments.count))
        bytes.replaceSubrange(0..<4, with: ELFImage.magic)
        bytes[4] = elfClass.rawValue
        bytes[5] = 1  // little-endian
        bytes[6] = 1  // EV_CURRENT
        bytes.put(type, at: 16)
        bytes.put(machine ?? (elfClass == .elf64 ? ELFMachine.x86_64.rawValue : ELFMachine.i386.rawValue), at: 18)
        bytes.put(UInt32(1), at: 20)
        switch elfClass {
        case .elf32:
            bytes.put(UInt32(truncatingIfNeeded: entry), at: 24)
            bytes.put(UInt32(headerSize), at: 28)
            bytes.put(UInt16(headerSize), at: 40)
            bytes.put(UInt16(programHeaderSize), at: 42)
            bytes.put(UInt16(segments.count), at: 44)
        case .elf64:
            bytes.put(entry, at: 24)
            bytes.put(UInt64(headerSize), at: 32)
            bytes.put(UInt16(headerSize), at: 52)
            bytes.put(UInt16(programHeaderSize), at: 54)
            bytes.put(UInt16(segments.count), at: 56)
        }
        for (index, segment) in segments.enumerated() {
            let at = headerSize + index * programHeaderSize
            let offset = UInt64(dataOffset(index))
            let virtual = segment.virtualAddress ?? segment.physicalAddress
            let memorySize = segment.memorySize ?? UInt64(segment.data.count)
            switch elfClass {
            case .elf32:
                bytes.put(segment.type, at: at)
                bytes.put(UInt32(offset), at: at + 4)
                bytes.put(UInt32(truncatingIfNeeded: virtual), at: at + 8)
                bytes.put(UInt32(truncatingIfNeeded: segment.physicalAddress), at: at + 12)
                bytes.put(UInt32(segment.data.count), at: at + 16)
                bytes.put(UInt32(truncatingIfNeeded: memorySize), at: at + 20)
                bytes.put(segment.flags, at: at + 24)
                bytes.put(UInt32(segment.alignment), at: at + 28)
            case .elf64:
                bytes.put(segment.type, at: at)
                bytes.put(segment.flags, at: at + 4)
                bytes.put(offset, at: at + 8)
                bytes.put(virtual, at: at + 16)
                bytes.put(segment.physicalAddress, at: at + 24)
                bytes.put(UInt64(segment.data.count), at: at + 32)
                bytes.put(memorySize, at: at + 40)
                bytes.put(segment.alignment, at: at + 48)
            }
            bytes.replaceSubrange(Int(offset)..<Int(offset) + segment.data.count, with: segment.data)
        }
        return bytes
    }

    /// A minimal kernel: one segment of `size` bytes at 1 MiB (a pattern),
    /// with `bss` zeroed bytes after it, entered at its start.
    static func kernel(_ elfClass: ELFClass = .elf64, size: Int = 0x200, bss: UInt64 = 0x300) -> ELFBuilder {
        ELFBuilder(elfClass: elfClass, entry: 0x10_0000,
                   segments: [Segment(physicalAddress: 0x10_0000, data: pattern(size, seed: 1),
                                      memorySize: UInt64(size) + bss)])
    }
}

/// A Multiboot header, optionally with address fields (flag 16 is then set).
func multibootHeader(flags: UInt32 = 0, addresses: MultibootHeader.Addresses? = nil, checksum: UInt32? = nil) -> [UInt8] {
    let flags = addresses == nil ? flags : flags | MultibootHeader.addressFields
    var bytes = [UInt8](repeating: 0, count: addresses == nil ? 12 : 32)
    bytes.put(MultibootHeader.magic, at: 0)
    bytes.put(flags, at: 4)
    bytes.put(checksum ?? 0 &- (MultibootHeader.magic &+ flags), at: 8)
    if let addresses {
        bytes.put(addresses.header, at: 12)
        bytes.put(addresses.load, at: 16)
        bytes.put(addresses.loadEnd, at: 20)
        bytes.put(addresses.bssEnd, at: 24)
        bytes.put(addresses.entry, at: 28)
    }
    return bytes
}

/// Recognisable bytes: which image and where in it.
func pattern(_ count: Int, seed: UInt8) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ Int(seed) &* 31 | 1) }
}

extension Array where Element == UInt8 {
    mutating func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        if offset + MemoryLayout<T>.size > count { append(contentsOf: [UInt8](repeating: 0, count: offset + MemoryLayout<T>.size - count)) }
        Swift.withUnsafeBytes(of: value.littleEndian) { raw in
            for (i, byte) in raw.enumerated() { self[offset + i] = byte }
        }
    }

    mutating func place(_ bytes: [UInt8], at offset: Int) {
        if offset + bytes.count > count { append(contentsOf: [UInt8](repeating: 0, count: offset + bytes.count - count)) }
        replaceSubrange(offset..<offset + bytes.count, with: bytes)
    }

    func u32(at offset: Int) -> UInt32 {
        (0..<4).reduce(0) { $0 | UInt32(self[offset + $1]) << (8 * $1) }
    }
}

/// Guest RAM for tests: `size` bytes from 0, filled with 0xAA so that
/// zeroed bss is distinguishable from fresh memory.
func testMemory(_ ranges: [GuestRange] = [GuestRange(start: GuestAddress(0), length: 16 << 20)], fill: Bool = false) throws -> GuestMemory {
    let memory = try GuestMemory(ranges: ranges)
    if fill {
        for range in ranges { try memory.fill(0xAA, at: range.start, count: min(range.length, 8 << 20)) }
    }
    return memory
}

/// Runs the loader and returns its error, or nil if it succeeded.
func loadError(_ bytes: [UInt8], name: String = "k", initrd: ByteImage? = nil, commandLine: String = "",
               protocol bootProtocol: BootProtocol = .automatic, memory: GuestMemory? = nil) throws -> BootError? {
    let memory = try memory ?? testMemory()
    do {
        _ = try BootLoader.load(kernel: ByteImage(name: name, bytes: bytes), initrd: initrd, commandLine: commandLine,
                                protocol: bootProtocol, memory: memory)
        return nil
    } catch {
        return error
    }
}

/// One ELF note as it sits in a PT_NOTE segment (4-byte alignment).
func elfNote(name: String, type: UInt32, descriptor: [UInt8]) -> [UInt8] {
    let nameBytes = Array(name.utf8) + [0]
    func padded(_ bytes: [UInt8]) -> [UInt8] { bytes + [UInt8](repeating: 0, count: (4 - bytes.count % 4) % 4) }
    var header: [UInt8] = []
    header.put(UInt32(nameBytes.count), at: 0)
    header.put(UInt32(descriptor.count), at: 4)
    header.put(type, at: 8)
    return header + padded(nameBytes) + padded(descriptor)
}

/// The PVH entry note with a 32-bit (or, with `wide`, 64-bit) address.
func pvhNote(entry: UInt64, wide: Bool = false) -> [UInt8] {
    var descriptor: [UInt8] = []
    if wide { descriptor.put(entry, at: 0) } else { descriptor.put(UInt32(truncatingIfNeeded: entry), at: 0) }
    return elfNote(name: "Xen", type: 18, descriptor: descriptor)
}

extension ELFBuilder {
    /// A kernel like `kernel()`, with a PT_NOTE segment holding `notes`.
    static func withNotes(_ notes: [UInt8], _ elfClass: ELFClass = .elf64) -> ELFBuilder {
        var builder = ELFBuilder.kernel(elfClass)
        builder.segments.append(Segment(type: ELFProgramHeader.typeNote, flags: 4, physicalAddress: 0, data: notes,
                                        alignment: 4))
        return builder
    }
}

/// A synthetic bzImage: the boot sector and `setupSectors` setup sectors
/// with a setup header at 0x1f1, then the protected-mode kernel `payload`.
/// The defaults are a relocatable 64-bit kernel for a 16 MiB test guest.
struct BzImageBuilder {
    var setupSectors: UInt8 = 1
    var bootFlag: UInt16 = 0xAA55
    var jump: UInt16 = 0x6AEB  // header ends at 0x26c, as in Linux 6.x
    var magic: UInt32 = 0x5372_6448
    var version: UInt16 = 0x020F
    var loadFlags: UInt8 = 0x01
    var xLoadFlags: UInt16 = 0x03
    var syssize: UInt32?
    var code32Start: UInt32 = 0x10_0000
    var initrdAddressMax: UInt32 = 0x7FFF_FFFF
    var kernelAlignment: UInt32 = 0x20_0000
    var relocatable: UInt8 = 1
    var minimumAlignment: UInt8 = 21
    var commandLineSize: UInt32 = 0x7FF
    var preferredAddress: UInt64 = 0x20_0000
    var initSize: UInt32 = 0x40_0000
    var payload = pattern(0x3000, seed: 9)

    var setupSize: Int { (Int(setupSectors == 0 ? 4 : setupSectors) + 1) * 512 }

    func build() -> [UInt8] {
        var bytes = pattern(setupSize, seed: 5)
        bytes[0x1F1] = setupSectors
        bytes.put(UInt16(0), at: 0x1F2)  // root_flags
        bytes.put(syssize ?? UInt32(payload.count / 16), at: 0x1F4)
        bytes.put(UInt16(0xFFFF), at: 0x1FA)  // vid_mode: normal
        bytes.put(bootFlag, at: 0x1FE)
        bytes.put(jump, at: 0x200)
        bytes.put(magic, at: 0x202)
        bytes.put(version, at: 0x206)
        bytes.put(UInt16(0x1C00), at: 0x20E)  // kernel_version
        bytes[0x210] = 0  // type_of_loader
        bytes[0x211] = loadFlags
        bytes.put(code32Start, at: 0x214)
        bytes.put(UInt32(0), at: 0x218)  // ramdisk_image
        bytes.put(UInt32(0), at: 0x21C)  // ramdisk_size
        bytes.put(UInt16(0), at: 0x224)  // heap_end_ptr
        bytes.put(UInt32(0), at: 0x228)  // cmd_line_ptr
        bytes.put(initrdAddressMax, at: 0x22C)
        bytes.put(kernelAlignment, at: 0x230)
        bytes[0x234] = relocatable
        bytes[0x235] = minimumAlignment
        bytes.put(xLoadFlags, at: 0x236)
        bytes.put(commandLineSize, at: 0x238)
        bytes.put(UInt64(0), at: 0x250)  // setup_data
        bytes.put(preferredAddress, at: 0x258)
        bytes.put(initSize, at: 0x260)
        return bytes + payload
    }
}

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

import SwiftletBoot
import SwiftletMemory

/// 4 MiB of low RAM and 1 MiB above 4 GiB, as for FuzzBootLoader.
let memory = try! GuestMemory(ranges: [
    GuestRange(start: GuestAddress(0), length: 4 << 20),
    GuestRange(start: GuestAddress(1 << 32), length: 1 << 20),
])
let initrd = ByteImage(name: "initrd.img", bytes: [UInt8](repeating: 0x5A, count: 3000))
/// The map a machine with ACPI tables hands over: a reclaimable range the
/// loader must keep the kernel and the initrd out of.
let acpiRange = GuestRange(start: GuestAddress(0x3F_0000), length: 0x1_0000)
let acpiMap: MemoryMap = {
    var map = MemoryMap(ram: memory.regions.map(\.range))
    map.mark(acpiRange, as: .acpiReclaimable)
    return map
}()
let rsdp = GuestAddress(0xE_0000)

/// The bzImage setup header parser, then the whole Linux loader (which also
/// takes ELF64 images, as vmlinux): a header it accepts is consistent with
/// the file, a load it accepts leaves a zero page that says what it did.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzBzImage(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    let image = ByteImage(name: "fuzz.bzImage", bytes: bytes)
    do {
        check(try BzImageHeader(parsing: image), imageSize: image.size)
    } catch {
        checkOneLine(error)
    }
    for (map, acpiRSDP) in [(nil, nil), (acpiMap, rsdp)] as [(MemoryMap?, GuestAddress?)] {
        for module in [nil, initrd] {
            do {
                let result = try BootLoader.load(kernel: image, initrd: module, commandLine: "console=ttyS0",
                                                 protocol: .linux, memory: memory, memoryMap: map, acpiRSDP: acpiRSDP)
                check(result, avoiding: map == nil ? nil : acpiRange, rsdp: acpiRSDP)
            } catch {
                checkOneLine(error)
            }
        }
    }
    return 0
}

func check(_ header: BzImageHeader, imageSize: UInt64) {
    precondition(header.version >= BzImageHeader.minimumVersion)
    precondition(header.loadFlags & BzImageHeader.loadedHigh != 0 && header.xLoadFlags & BzImageHeader.kernel64 != 0)
    precondition(header.setupSize + header.kernelSize == imageSize)
    precondition(header.kernelSize > BzImageHeader.entryOffset && UInt64(header.syssize) * 16 <= header.kernelSize)
    precondition(header.bytes.count >= 0x264 - 0x1F1 && header.bytes.count <= 0x290 - 0x1F1)
    precondition(header.loadAddress >= X86Layout.highMemoryStart.rawValue)
    precondition(GuestAddress(header.loadAddress).adding(header.memorySize) != nil)
    if header.isRelocatable { precondition(header.loadAddress % UInt64(header.kernelAlignment) == 0) }
}

/// Reads of the zero page cannot fail after a load that wrote it, so a
/// failure traps like any other broken invariant.
func check(_ result: BootResult, avoiding reserved: GuestRange?, rsdp: GuestAddress?) {
    precondition(result.bootProtocol == .linux)
    precondition(result.cpu.mode == .long64 && result.cpu.rsi == X86Layout.linuxZeroPageAddress.rawValue)
    precondition(result.cpu.rip < 1 << 32)
    for segment in result.kernelSegments {
        precondition(segment.start >= X86Layout.highMemoryStart && memory.contains(segment.start, count: segment.length))
        if let reserved { precondition(!segment.overlaps(reserved), "kernel in a reserved range") }
    }
    if let header = result.linuxHeader {
        // The kernel and its decompression room, below the MMIO hole.
        precondition(result.kernelSegments == [GuestRange(start: GuestAddress(header.loadAddress), length: header.memorySize)])
        precondition(header.loadAddress + header.memorySize <= X86Layout.mmioHoleStart.rawValue)
        precondition(result.cpu.rip == header.entry)
    }
    let page = X86Layout.linuxZeroPageAddress
    func u32(_ offset: UInt64) -> UInt32 { try! memory.load(UInt32.self, from: page + offset) }
    let typeOfLoader = try! memory.load(UInt8.self, from: page + 0x210)
    let commandLinePointer = u32(0x228)
    let rsdpField = try! memory.load(UInt64.self, from: page + 0x70)
    let e820Entries = try! memory.load(UInt8.self, from: page + 0x1E8)
    let ramdisk = (u32(0x218), u32(0x21C))
    precondition(typeOfLoader == 0xFF)
    precondition(commandLinePointer == UInt32(X86Layout.commandLineAddress.rawValue))
    precondition(rsdpField == rsdp?.rawValue ?? 0)
    precondition(Int(e820Entries) == result.memoryMap.entries.count)
    if let range = result.initrd {
        precondition(range.start.rawValue % X86Layout.pageSize == 0 && range.start >= X86Layout.highMemoryStart)
        precondition(memory.contains(range.start, count: max(range.length, 1)))
        precondition(range.end <= X86Layout.mmioHoleStart.rawValue)
        for segment in result.kernelSegments { precondition(!segment.overlaps(range), "initrd overlaps the kernel") }
        if let reserved { precondition(!range.overlaps(reserved), "initrd in a reserved range") }
        precondition(ramdisk == (UInt32(range.start.rawValue), UInt32(range.length)))
        if let header = result.linuxHeader { precondition(range.end <= UInt64(header.initrdAddressMax) + 1) }
    } else {
        precondition(ramdisk == (0, 0))
    }
}

func checkOneLine(_ error: BootError) {
    let text = error.description
    precondition(!text.isEmpty && !text.contains("\n"), "error is not one line: \(text)")
}

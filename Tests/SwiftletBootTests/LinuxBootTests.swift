import Glibc
import Testing
import SwiftletMemory
@testable import SwiftletBoot

/// Reads the zero page (or any guest structure) field by field.
struct GuestFields {
    let memory: GuestMemory
    let base: GuestAddress

    func u8(_ offset: UInt64) throws -> UInt8 { try memory.load(UInt8.self, from: base + offset) }
    func u16(_ offset: UInt64) throws -> UInt16 { try memory.load(UInt16.self, from: base + offset) }
    func u32(_ offset: UInt64) throws -> UInt32 { try memory.load(UInt32.self, from: base + offset) }
    func u64(_ offset: UInt64) throws -> UInt64 { try memory.load(UInt64.self, from: base + offset) }
    func bytes(_ offset: UInt64, _ count: Int) throws -> [UInt8] { try memory.readBytes(at: base + offset, count: count) }

    /// The e820 table of a zero page.
    func e820() throws -> [MemoryMapEntry] {
        try (0..<UInt64(u8(0x1E8))).map { index in
            let entry = 0x2D0 + index * 20
            return MemoryMapEntry(start: try u64(entry), length: try u64(entry + 8),
                                  type: MemoryType(rawValue: try u32(entry + 16)))
        }
    }
}

func cString(_ memory: GuestMemory, at address: UInt64) throws -> String {
    var bytes: [UInt8] = []
    var cursor = GuestAddress(address)
    while true {
        let byte = try memory.load(UInt8.self, from: cursor)
        if byte == 0 { return String(decoding: bytes, as: UTF8.self) }
        bytes.append(byte)
        cursor = cursor + 1
    }
}

let sixteenMiB = [GuestRange(start: GuestAddress(0), length: 16 << 20)]

func loadLinux(_ image: [UInt8], initrd: ByteImage? = nil, commandLine: String = "", protocol bootProtocol: BootProtocol = .automatic,
               memory: GuestMemory, memoryMap: MemoryMap? = nil, acpiRSDP: GuestAddress? = nil) throws -> BootResult {
    try BootLoader.load(kernel: ByteImage(name: "vmlinuz", bytes: image), initrd: initrd, commandLine: commandLine,
                        protocol: bootProtocol, memory: memory, memoryMap: memoryMap, acpiRSDP: acpiRSDP)
}

func linuxError(_ image: [UInt8], initrd: ByteImage? = nil, commandLine: String = "", protocol bootProtocol: BootProtocol = .automatic,
                memory: GuestMemory? = nil, memoryMap: MemoryMap? = nil, acpiRSDP: GuestAddress? = nil) throws -> BootError? {
    do {
        _ = try loadLinux(image, initrd: initrd, commandLine: commandLine, protocol: bootProtocol,
                          memory: memory ?? testMemory(), memoryMap: memoryMap, acpiRSDP: acpiRSDP)
        return nil
    } catch let error as BootError {
        return error
    }
}

@Suite struct BzImageLoaderTests {
    @Test func loadsTheKernelAndBuildsTheZeroPage() throws {
        let memory = try testMemory(fill: true)
        var builder = BzImageBuilder()
        builder.loadFlags = 0x01 | 0x20 | 0x40 | 0x80  // LOADED_HIGH, and loader bits Swiftlet must clear
        let image = builder.build()
        let initrd = ByteImage(name: "initrd.img", bytes: pattern(0x1801, seed: 3))
        let result = try loadLinux(image, initrd: initrd, commandLine: "console=ttyS0 root=/dev/vda",
                                   memory: memory, acpiRSDP: GuestAddress(0xE_0000))

        #expect(result.bootProtocol == .linux)
        #expect(result.cpu == .linux64(entry: 0x20_0200, bootParams: GuestAddress(0x6000)))
        #expect(result.cpu.mode == .long64 && result.cpu.rip == 0x20_0200 && result.cpu.rsi == 0x6000)
        #expect(result.cpu.cr3 == 0x9000 && result.cpu.codeSelector == 0x08 && result.cpu.dataSelector == 0x10)
        #expect(result.linuxHeader?.version == 0x020F)
        #expect(result.linuxHeader?.versionString == "2.15")

        // The protected-mode kernel at pref_address; nothing else of the image.
        #expect(try memory.readBytes(at: GuestAddress(0x20_0000), count: builder.payload.count) == builder.payload)
        #expect(try memory.load(UInt8.self, from: GuestAddress(0x20_0000 + UInt64(builder.payload.count))) == 0xAA)
        #expect(try memory.load(UInt8.self, from: GuestAddress(0x10_0000)) == 0xAA)
        #expect(result.kernelSegments == [GuestRange(start: GuestAddress(0x20_0000), length: 0x40_0000)])

        // The initrd: page-aligned, as high as RAM goes (initrd_addr_max is far above 16 MiB).
        let initrdStart: UInt64 = ((16 << 20) - 0x1801) & ~0xFFF
        #expect(result.initrd == GuestRange(start: GuestAddress(initrdStart), length: 0x1801))
        #expect(try memory.readBytes(at: GuestAddress(initrdStart), count: 0x1801) == initrd.bytes)

        let page = GuestFields(memory: memory, base: X86Layout.linuxZeroPageAddress)
        // The setup header, copied from the image up to its end at 0x26c...
        let changed: Set<Int> = Set(0x210...0x211).union(0x214..<0x220).union(0x224..<0x22C).union(0x23C..<0x248)
            .union(0x250..<0x258)
        let header = try page.bytes(0x1F1, 0x26C - 0x1F1)
        for offset in 0x1F1..<0x26C where !changed.contains(offset) {
            #expect(header[offset - 0x1F1] == image[offset], "zero page byte \(hex(offset))")
        }
        #expect(try page.u8(0x1F1) == 1)  // setup_sects
        #expect(try page.u32(0x1F4) == UInt32(builder.payload.count / 16))  // syssize
        #expect(try page.u16(0x1FA) == 0xFFFF)  // vid_mode
        #expect(try page.u16(0x1FE) == 0xAA55)
        #expect(try page.u32(0x202) == 0x5372_6448)
        #expect(try page.u16(0x206) == 0x020F)
        #expect(try page.u32(0x22C) == 0x7FFF_FFFF)  // initrd_addr_max
        #expect(try page.u32(0x230) == 0x20_0000)  // kernel_alignment
        #expect(try page.u8(0x234) == 1)  // relocatable_kernel
        #expect(try page.u16(0x236) == 0x03)  // xloadflags
        #expect(try page.u32(0x238) == 0x7FF)  // cmdline_size
        #expect(try page.u64(0x258) == 0x20_0000)  // pref_address
        #expect(try page.u32(0x260) == 0x40_0000)  // init_size
        // ... and the fields the loader writes.
        #expect(try page.u8(0x210) == 0xFF)  // type_of_loader
        #expect(try page.u8(0x211) == 0x01)  // loadflags: LOADED_HIGH only
        #expect(try page.u32(0x214) == 0x20_0000)  // code32_start
        #expect(try page.u32(0x218) == UInt32(initrdStart))  // ramdisk_image
        #expect(try page.u32(0x21C) == 0x1801)  // ramdisk_size
        #expect(try page.u16(0x224) == 0)  // heap_end_ptr
        #expect(try page.u16(0x226) == 0)  // ext_loader_ver, ext_loader_type
        #expect(try page.u32(0x23C) == 0 && page.u64(0x240) == 0)  // hardware_subarch(_data): a PC
        #expect(try page.u64(0x250) == 0)  // setup_data: none
        #expect(try page.u32(0x228) == 0x2_0000)  // cmd_line_ptr
        #expect(try cString(memory, at: UInt64(page.u32(0x228))) == "console=ttyS0 root=/dev/vda")
        #expect(try page.u32(0x0C0) == 0 && page.u32(0x0C4) == 0 && page.u32(0x0C8) == 0)  // ext_*
        #expect(try page.u64(0x070) == 0xE_0000)  // acpi_rsdp_addr
        #expect(try page.u8(0x1EF) == 0)  // sentinel
        #expect(try page.e820() == MemoryMap(ram: sixteenMiB).entries)
        // Nothing else: the page was zero before the loader's fields went in.
        #expect(try page.bytes(0, 0x70).allSatisfy { $0 == 0 })
        #expect(try page.bytes(0x78, 0xC0 - 0x78).allSatisfy { $0 == 0 })
        #expect(try page.bytes(0x26C, 0x2D0 - 0x26C).allSatisfy { $0 == 0 })
        #expect(try page.bytes(0x2D0 + 20 * 3, 0x1000 - 0x2D0 - 60).allSatisfy { $0 == 0 })

        #expect(try memory.readBytes(at: X86Layout.gdtAddress, count: 48) == BootGDT.bytes)
        #expect(try memory.readBytes(at: X86Layout.pageTableAddress, count: 0x6000) == LongModeSetup.pageTables)
        #expect(result.bootStructures == [
            .gdt: GuestRange(start: GuestAddress(0x500), length: 48),
            .pageTables: GuestRange(start: GuestAddress(0x9000), length: 0x6000),
            .linuxZeroPage: GuestRange(start: GuestAddress(0x6000), length: 0x1000),
            .commandLine: GuestRange(start: GuestAddress(0x2_0000), length: 28),
        ])
        #expect(result.memoryMap == MemoryMap(ram: sixteenMiB))
        #expect(result.warnings.isEmpty)
    }

    @Test func writesTheLoadersFieldsWhateverTheImageHasThere() throws {
        // Found by FuzzBzImage: an image's own ramdisk fields survived a boot without an initrd.
        let memory = try testMemory()
        var image = BzImageBuilder().build()
        image.put(UInt32(0x1234_5000), at: 0x218)
        image.put(UInt32(0x1000), at: 0x21C)
        image.put(UInt64(0x7000), at: 0x250)  // a setup_data list the kernel would follow
        image.put(UInt32(2), at: 0x23C)  // hardware_subarch: Xen PV
        _ = try loadLinux(image, memory: memory)
        let page = GuestFields(memory: memory, base: X86Layout.linuxZeroPageAddress)
        #expect(try page.u32(0x218) == 0 && page.u32(0x21C) == 0)
        #expect(try page.u64(0x250) == 0 && page.u32(0x23C) == 0)
    }

    @Test func handsTheGuestTheCallersMemoryMapAndAvoidsItsReservedRanges() throws {
        let memory = try testMemory(fill: true)
        var map = MemoryMap(ram: sixteenMiB)
        map.mark(GuestRange(start: GuestAddress(0xF0_0000), length: 0x10_0000), as: .acpiReclaimable)
        let initrd = ByteImage(name: "initrd.img", bytes: pattern(0x2000, seed: 3))
        let result = try loadLinux(BzImageBuilder().build(), initrd: initrd, memory: memory, memoryMap: map)
        #expect(result.initrd == GuestRange(start: GuestAddress(0xF0_0000 - 0x2000), length: 0x2000))
        #expect(result.memoryMap == map)
        let page = GuestFields(memory: memory, base: X86Layout.linuxZeroPageAddress)
        #expect(try page.e820() == map.entries)
        #expect(try page.e820().contains(MemoryMapEntry(start: 0xF0_0000, length: 0x10_0000, type: .acpiReclaimable)))
        // No RSDP given: the field stays 0.
        #expect(try page.u64(0x070) == 0)

        // A kernel range the map does not give as RAM is refused.
        map.mark(GuestRange(start: GuestAddress(0x30_0000), length: 0x1000), as: .reserved)
        #expect(try linuxError(BzImageBuilder().build(), memoryMap: map)?.problem ==
                .linuxKernelDoesNotFit(address: 0x20_0000, size: 0x40_0000, initSize: 0x40_0000))
    }

    @Test func placesTheKernelAsTheHeaderSays() throws {
        // Relocatable: pref_address aligned up to kernel_alignment.
        var builder = BzImageBuilder()
        builder.preferredAddress = 0x21_0000
        var result = try loadLinux(builder.build(), memory: testMemory())
        #expect(result.cpu.rip == 0x40_0200)
        // Not relocatable: at pref_address as it is.
        builder.relocatable = 0
        builder.preferredAddress = 0x30_1000
        result = try loadLinux(builder.build(), memory: testMemory())
        #expect(result.cpu.rip == 0x30_1200)
        // pref_address 0: the bzImage default, 1 MiB.
        builder.preferredAddress = 0
        result = try loadLinux(builder.build(), memory: testMemory())
        #expect(result.kernelSegments == [GuestRange(start: GuestAddress(0x10_0000), length: 0x40_0000)])
        // setup_sects 0 means 4: the kernel starts at byte 2560.
        builder = BzImageBuilder()
        builder.setupSectors = 0
        let memory = try testMemory()
        result = try loadLinux(builder.build(), memory: memory)
        #expect(try memory.readBytes(at: GuestAddress(0x20_0000), count: 0x100) == Array(builder.payload.prefix(0x100)))
        #expect(result.linuxHeader?.setupSize == 2560)
        // init_size smaller than the kernel: the kernel's bytes count.
        builder.initSize = 0x100
        result = try loadLinux(builder.build(), memory: testMemory())
        #expect(result.kernelSegments == [GuestRange(start: GuestAddress(0x20_0000), length: 0x3000)])
    }

    @Test func refusesWhatIsNotABootableBzImage() throws {
        #expect(try linuxError(pattern(0x1000, seed: 1), protocol: .linux)?.description ==
                "vmlinuz: not a Linux kernel: no bzImage setup header (\"HdrS\" at byte 0x202) and not an ELF vmlinux")
        var builder = BzImageBuilder()
        builder.bootFlag = 0x1234
        #expect(try linuxError(builder.build(), protocol: .linux)?.description ==
                "vmlinuz: Linux setup header boot_flag (byte 0x1fe) is 0x1234, not 0xaa55")
        // Sniffing wants both magic numbers, but a lone "HdrS" explains itself.
        #expect(try linuxError(builder.build())?.problem == .linuxBootFlag(0x1234))

        builder = BzImageBuilder()
        builder.version = 0x020B
        #expect(try linuxError(builder.build())?.description ==
                "vmlinuz: Linux boot protocol 2.11 (setup header version 0x20b) is too old: Swiftlet needs 2.12 or later (Linux 3.8+), for xloadflags and the 64-bit entry")
        builder.version = 0x020C
        #expect(try linuxError(builder.build()) == nil)

        builder = BzImageBuilder()
        builder.xLoadFlags = 0x02
        #expect(try linuxError(builder.build())?.description ==
                "vmlinuz: Linux setup header xloadflags 0x2 lack XLF_KERNEL_64: the kernel has no 64-bit entry point (a 32-bit kernel?)")
        builder = BzImageBuilder()
        builder.loadFlags = 0x80
        #expect(try linuxError(builder.build())?.problem == .linuxNotBzImage(loadFlags: 0x80))

        builder = BzImageBuilder()
        builder.jump = 0x6AE9
        #expect(try linuxError(builder.build())?.problem == .linuxSetupHeaderJump(0x6AE9))
        builder.jump = 0x50EB  // the header would end at 0x252, before init_size
        #expect(try linuxError(builder.build())?.problem == .linuxSetupHeaderJump(0x50EB))
        builder.jump = 0x90EB  // a backward jump
        #expect(try linuxError(builder.build())?.problem == .linuxSetupHeaderJump(0x90EB))
        builder.jump = 0x62EB  // just long enough
        #expect(try linuxError(builder.build()) == nil)
    }

    @Test func refusesTruncatedImages() throws {
        var builder = BzImageBuilder()
        builder.setupSectors = 30
        let image = Array(builder.build().prefix(0x2000))
        #expect(try linuxError(image)?.description ==
                "vmlinuz: truncated: the setup code (30 setup sectors and the boot sector) ends at byte 15872 but the file has 8192 bytes")
        // The setup code and nothing after it.
        builder.setupSectors = 1
        #expect(try linuxError(Array(builder.build().prefix(1024)))?.problem == .linuxNoProtectedModeKernel(setupSize: 1024))
        // Shorter than syssize says.
        builder.syssize = 0x301
        #expect(try linuxError(builder.build())?.problem ==
                .truncated(.linuxProtectedModeKernel(syssize: 0x301), end: 1024 + 0x3010, fileSize: 1024 + 0x3000))
        builder.syssize = 0x300
        #expect(try linuxError(builder.build()) == nil)
        // Too short to hold the 64-bit entry at 0x200.
        builder.syssize = 0
        builder.payload = pattern(0x200, seed: 1)
        #expect(try linuxError(builder.build())?.problem == .linuxKernelTooSmallForEntry(size: 0x200))
        // Cut inside the header.
        #expect(try linuxError(Array(BzImageBuilder().build().prefix(0x240)))?.problem ==
                .truncated(.linuxSetupHeader, end: 0x26C, fileSize: 0x240))
    }

    @Test func refusesKernelsThatDoNotFit() throws {
        var builder = BzImageBuilder()
        builder.kernelAlignment = 0x30_0000
        #expect(try linuxError(builder.build())?.description ==
                "vmlinuz: Linux setup header kernel_alignment 0x300000 of a relocatable kernel is not a power of two")
        builder.kernelAlignment = 0
        #expect(try linuxError(builder.build())?.problem == .linuxKernelAlignment(0))

        builder = BzImageBuilder()
        builder.kernelAlignment = 0x1000
        builder.preferredAddress = 0x8000
        #expect(try linuxError(builder.build())?.problem ==
                .linuxLoadAddressBelowHighMemory(preferredAddress: 0x8000, loadAddress: 0x8000))
        builder.preferredAddress = UInt64.max - 0x10
        #expect(try linuxError(builder.build())?.problem ==
                .linuxKernelDoesNotFit(address: UInt64.max - 0x10, size: 0x40_0000, initSize: 0x40_0000))

        // init_size from 2 MiB: 14 MiB fits a 16 MiB guest exactly, one page more does not.
        builder = BzImageBuilder()
        builder.initSize = 14 << 20
        #expect(try linuxError(builder.build()) == nil)
        builder.initSize = (14 << 20) + 0x1000
        #expect(try linuxError(builder.build())?.description ==
                "vmlinuz: the kernel needs 0xe01000 bytes (init_size 0xe01000) from its load address 0x200000, which are not all usable guest RAM below the MMIO hole at 0xc0000000")
        // Beyond the MMIO hole, even where there is RAM.
        let high = try testMemory([GuestRange(start: GuestAddress(0), length: 2 << 20),
                                   GuestRange(start: GuestAddress(4 << 30), length: 8 << 20)])
        builder = BzImageBuilder()
        builder.preferredAddress = 4 << 30
        #expect(try linuxError(builder.build(), memory: high)?.problem ==
                .linuxKernelDoesNotFit(address: 4 << 30, size: 0x40_0000, initSize: 0x40_0000))
    }

    @Test func placesTheInitrdBelowInitrdAddrMaxAndOutsideTheKernel() throws {
        // The kernel takes [2 MiB, 6 MiB); below 8 MiB the free RAM is
        // [1 MiB, 2 MiB) and [6 MiB, 8 MiB).
        var builder = BzImageBuilder()
        builder.initrdAddressMax = 0x7F_FFFF
        let fits = ByteImage(name: "initrd.img", bytes: [UInt8](repeating: 1, count: 2 << 20))
        var result = try loadLinux(builder.build(), initrd: fits, memory: testMemory())
        #expect(result.initrd == GuestRange(start: GuestAddress(6 << 20), length: 2 << 20))
        // Below the kernel when that is the only room left.
        builder.initrdAddressMax = 0x5F_FFFF
        let small = ByteImage(name: "initrd.img", bytes: [UInt8](repeating: 1, count: 0x1800))
        result = try loadLinux(builder.build(), initrd: small, memory: testMemory())
        #expect(result.initrd == GuestRange(start: GuestAddress(0x20_0000 - 0x2000), length: 0x1800))
        // Too big for either.
        builder.initrdAddressMax = 0x7F_FFFF
        let tooBig = ByteImage(name: "initrd.img", bytes: [UInt8](repeating: 1, count: (2 << 20) + 1))
        let error = try linuxError(builder.build(), initrd: tooBig)
        #expect(error == BootError("initrd.img", .initrdDoesNotFitBelow(size: (2 << 20) + 1, ceiling: 0x80_0000,
                                                                          initrdAddressMax: 0x7F_FFFF)))
        #expect(error?.description ==
                "initrd.img: 0x200001 bytes do not fit in usable guest RAM between 1 MiB and 0x800000 outside the kernel (the kernel's initrd_addr_max is 0x7fffff)")
        // An empty initrd takes no room but gets an address in RAM.
        result = try loadLinux(BzImageBuilder().build(), initrd: ByteImage(name: "empty", bytes: []), memory: testMemory())
        #expect(result.initrd == GuestRange(start: GuestAddress((16 << 20) - 0x1000), length: 0))
    }

    @Test func checksTheCommandLineAgainstCmdlineSize() throws {
        var builder = BzImageBuilder()
        builder.commandLineSize = 10
        #expect(try linuxError(builder.build(), commandLine: "0123456789") == nil)
        #expect(try linuxError(builder.build(), commandLine: "0123456789a")?.description ==
                "vmlinuz: command line is 11 bytes, more than the 10 the kernel accepts (setup header cmdline_size)")
    }

    @Test func refusesMapsAndRSDPsTheZeroPageCannotCarry() throws {
        var map = MemoryMap(ram: sixteenMiB)
        for index in 0..<130 {
            map.mark(GuestRange(start: GuestAddress(0x100_0000 - 0x2000 * UInt64(index + 1)), length: 0x1000), as: .reserved)
        }
        #expect(map.entries.count > 128)
        let error = try linuxError(BzImageBuilder().build(), memoryMap: map)
        #expect(error?.subject == "memory map")
        #expect(error?.problem == .memoryMapTooLarge(entries: map.entries.count, maximum: 128,
                                                      table: "the Linux zero page's e820 table"))
        #expect(try linuxError(BzImageBuilder().build(), acpiRSDP: GuestAddress(16 << 20))?.description ==
                "ACPI RSDP address: 0x1000000 is not an address of guest RAM where a 20-byte RSDP fits")
        #expect(try linuxError(BzImageBuilder().build(), acpiRSDP: GuestAddress((16 << 20) - 19))?.problem ==
                .rsdpOutsideRAM((16 << 20) - 19))
        #expect(try linuxError(BzImageBuilder().build(), acpiRSDP: GuestAddress(0))?.problem == .rsdpOutsideRAM(0))
    }

    @Test func leavesMemoryAloneWhenItRefuses() throws {
        let memory = try testMemory(fill: true)
        var builder = BzImageBuilder()
        builder.commandLineSize = 3
        #expect(try linuxError(builder.build(), initrd: ByteImage(name: "i", bytes: [1, 2, 3]), commandLine: "four",
                               memory: memory)?.problem == .commandLineExceedsKernelLimit(length: 4, cmdlineSize: 3))
        let tooBig = ByteImage(name: "i", bytes: [UInt8](repeating: 1, count: 16 << 20))
        #expect(try linuxError(BzImageBuilder().build(), initrd: tooBig, memory: memory)?.subject == "i")
        for address: UInt64 in [0x500, 0x6000, 0x9000, 0x2_0000, 0x20_0000, 0x7F_F000] {
            #expect(try memory.load(UInt8.self, from: GuestAddress(address)) == 0xAA, "\(GuestAddress(address)) was written")
        }
    }

    @Test func isSniffedBeforeEverythingElse() throws {
        // A Multiboot header inside the setup code does not make it Multiboot.
        // (With address fields, since a bzImage is not ELF.)
        var image = BzImageBuilder().build()
        image.place(multibootHeader(addresses: .init(header: 0x10_0400, load: 0x10_0000, loadEnd: 0, bssEnd: 0,
                                                     entry: 0x10_0400)), at: 0x400)
        #expect(try loadLinux(image, memory: testMemory()).bootProtocol == .linux)
        #expect(try loadLinux(image, protocol: .multiboot, memory: testMemory()).bootProtocol == .multiboot)
        #expect(try linuxError(BzImageBuilder().build(), protocol: .pvh)?.description ==
                "vmlinuz: is a bzImage; the pvh boot protocol boots an ELF vmlinux (a bzImage boots with the linux boot protocol)")
        #expect(try linuxError(BzImageBuilder().build(), protocol: .elf64)?.problem == .notELF)
    }
}

@Suite struct VmlinuxLoaderTests {
    /// An ELF64 vmlinux as Linux links it: text at 16 MiB... scaled down to
    /// a test guest (at 2 MiB), physical addresses in p_paddr, virtual ones
    /// in the kernel map, e_entry physical, and a "Linux" note.
    func vmlinux(pvh: Bool = false) -> ELFBuilder {
        var notes = elfNote(name: "Linux", type: 0x100, descriptor: Array("salt".utf8))
        if pvh { notes += pvhNote(entry: 0x20_0100) }
        return ELFBuilder(entry: 0x20_0000, segments: [
            .init(physicalAddress: 0x20_0000, virtualAddress: 0xFFFF_FFFF_8120_0000, data: pattern(0x800, seed: 1),
                  memorySize: 0x2000),
            .init(flags: 6, physicalAddress: 0x30_0000, virtualAddress: 0xFFFF_FFFF_8130_0000, data: pattern(0x100, seed: 2),
                  memorySize: 0x1000),
            .init(type: ELFProgramHeader.typeNote, flags: 4, physicalAddress: 0, data: notes, alignment: 4),
        ])
    }

    @Test func entersAVmlinuxAtStartup64WithAZeroPage() throws {
        let memory = try testMemory(fill: true)
        let initrd = ByteImage(name: "initrd.img", bytes: pattern(0x3000, seed: 4))
        let result = try loadLinux(vmlinux().build(), initrd: initrd, commandLine: "quiet", memory: memory,
                                   acpiRSDP: GuestAddress(0xF_0000))
        #expect(result.bootProtocol == .linux)
        #expect(result.cpu == .linux64(entry: 0x20_0000, bootParams: GuestAddress(0x6000)))
        #expect(result.kernelSegments == [GuestRange(start: GuestAddress(0x20_0000), length: 0x2000),
                                          GuestRange(start: GuestAddress(0x30_0000), length: 0x1000)])
        #expect(result.initrd == GuestRange(start: GuestAddress((16 << 20) - 0x3000), length: 0x3000))
        #expect(result.linuxHeader == nil)

        let page = GuestFields(memory: memory, base: X86Layout.linuxZeroPageAddress)
        #expect(try page.u16(0x1FE) == 0xAA55)
        #expect(try page.u32(0x202) == 0x5372_6448)
        #expect(try page.u16(0x206) == 0x020C)
        #expect(try page.u8(0x210) == 0xFF)
        #expect(try page.u8(0x211) == 0x01)
        #expect(try page.u32(0x214) == 0)  // no code32_start for a vmlinux
        #expect(try page.u32(0x218) == UInt32((16 << 20) - 0x3000))
        #expect(try page.u32(0x21C) == 0x3000)
        #expect(try page.u32(0x228) == 0x2_0000)
        #expect(try page.u32(0x230) == 0x20_0000)
        #expect(try page.u32(0x238) == 5)
        #expect(try page.u64(0x070) == 0xF_0000)
        #expect(try page.e820() == MemoryMap(ram: sixteenMiB).entries)
        #expect(try cString(memory, at: 0x2_0000) == "quiet")
        #expect(try memory.readBytes(at: X86Layout.pageTableAddress, count: 0x6000) == LongModeSetup.pageTables)
    }

    @Test func isChosenByItsLinuxNoteOrByTheProtocol() throws {
        // Without a "Linux" note an ELF64 image gets the direct entry...
        #expect(try loadLinux(ELFBuilder.kernel().build(), memory: testMemory()).bootProtocol == .elf64)
        // ... unless asked for the Linux entry.
        let forced = try loadLinux(ELFBuilder.kernel().build(), protocol: .linux, memory: testMemory())
        #expect(forced.bootProtocol == .linux && forced.cpu.rsi == 0x6000)
        // With a PVH note too, auto prefers PVH; linux still takes startup_64.
        #expect(try loadLinux(vmlinux(pvh: true).build(), memory: testMemory()).bootProtocol == .pvh)
        #expect(try loadLinux(vmlinux(pvh: true).build(), protocol: .linux, memory: testMemory()).cpu.rip == 0x20_0000)
        #expect(try linuxError(ELFBuilder.kernel(.elf32).build(), protocol: .linux)?.description ==
                "vmlinuz: the linux boot protocol boots a bzImage or a 64-bit ELF vmlinux, and this ELF image is 32-bit")
    }

    @Test func warnsAboutCommandLinesLongerThanLinuxReads() throws {
        let result = try loadLinux(vmlinux().build(), commandLine: String(repeating: "x", count: 2048), memory: testMemory())
        #expect(result.warnings == ["vmlinuz: the command line is 2048 bytes; an x86 Linux kernel reads at most 2047 unless built with a larger COMMAND_LINE_SIZE"])
        #expect(try loadLinux(vmlinux().build(), commandLine: String(repeating: "x", count: 2047), memory: testMemory()).warnings.isEmpty)
    }

    @Test func placesTheInitrdBelow2GiB() throws {
        let memory = try testMemory([GuestRange(start: GuestAddress(0), length: 3 << 30)])
        let initrd = ByteImage(name: "initrd.img", bytes: [1, 2, 3])
        let result = try loadLinux(vmlinux().build(), initrd: initrd, memory: memory)
        #expect(result.initrd == GuestRange(start: GuestAddress(0x8000_0000 - 0x1000), length: 3))
    }
}

@Suite struct PVHLoaderTests {
    func pvhKernel(entry: UInt64 = 0x10_0040, wide: Bool = false, _ elfClass: ELFClass = .elf64) -> ELFBuilder {
        ELFBuilder.withNotes(elfNote(name: "GNU", type: 3, descriptor: pattern(20, seed: 1)) + pvhNote(entry: entry, wide: wide),
                             elfClass)
    }

    @Test func loadsThePVHEntryAndTheStartInfo() throws {
        let memory = try testMemory(fill: true)
        let initrd = ByteImage(name: "initrd.img", bytes: pattern(0x2345, seed: 6))
        let builder = pvhKernel()
        let result = try BootLoader.load(kernel: ByteImage(name: "vmlinux", bytes: builder.build()), initrd: initrd,
                                         commandLine: "console=hvc0", protocol: .automatic, memory: memory,
                                         acpiRSDP: GuestAddress(0xE_0000))
        #expect(result.bootProtocol == .pvh)
        #expect(result.kernelSegments == [GuestRange(start: GuestAddress(0x10_0000), length: 0x500)])
        #expect(try memory.readBytes(at: GuestAddress(0x10_0000), count: 0x200) == builder.segments[0].data)
        #expect(try memory.readBytes(at: GuestAddress(0x10_0200), count: 0x300).allSatisfy { $0 == 0 })
        let initrdStart: UInt64 = ((16 << 20) - 0x2345) & ~0xFFF
        #expect(result.initrd == GuestRange(start: GuestAddress(initrdStart), length: 0x2345))
        #expect(try memory.readBytes(at: GuestAddress(initrdStart), count: 0x2345) == initrd.bytes)

        // The entry state (pvh.pandoc).
        let cpu = result.cpu
        #expect(cpu == .pvh(entry: 0x10_0040, startInfo: GuestAddress(0x6000)))
        #expect(cpu.mode == .protected32 && cpu.rip == 0x10_0040 && cpu.rbx == 0x6000)
        #expect(cpu.cr0 == CPUBootState.CR0.protectionEnable | CPUBootState.CR0.extensionType)
        #expect(cpu.cr3 == 0 && cpu.cr4 == 0 && cpu.efer == 0 && cpu.rflags == 0x2)
        #expect(cpu.codeSelector == BootGDT.kernelCode32 && cpu.dataSelector == BootGDT.kernelData)
        #expect(BootGDT.descriptor(for: cpu.codeSelector)?.isDefault32Bit == true)
        #expect(BootGDT.descriptor(for: cpu.codeSelector)?.byteLimit == 0xFFFF_FFFF)
        #expect(try memory.readBytes(at: X86Layout.gdtAddress, count: 48) == BootGDT.bytes)
        // No page tables: paging is off.
        #expect(try memory.load(UInt64.self, from: X86Layout.pageTableAddress) == 0xAAAA_AAAA_AAAA_AAAA)

        // hvm_start_info, field by field (start_info.h).
        let info = GuestFields(memory: memory, base: GuestAddress(cpu.rbx))
        let map = MemoryMap(ram: sixteenMiB)
        #expect(try info.u32(0) == 0x336E_C578)
        #expect(try info.u32(4) == 1)
        #expect(try info.u32(8) == 0)
        #expect(try info.u32(12) == 1)
        #expect(try info.u64(16) == 0x6040)
        #expect(try info.u64(24) == 0x2_0000)
        #expect(try cString(memory, at: info.u64(24)) == "console=hvc0")
        #expect(try info.u64(32) == 0xE_0000)
        #expect(try info.u64(40) == 0x6080)
        #expect(try info.u32(48) == UInt32(map.entries.count))
        #expect(try info.u32(52) == 0)
        // The module list: the initrd.
        let module = GuestFields(memory: memory, base: GuestAddress(try info.u64(16)))
        #expect(try module.u64(0) == initrdStart)
        #expect(try module.u64(8) == 0x2345)
        #expect(try module.u64(16) == 0)
        #expect(try module.u64(24) == 0)
        // The memory map.
        let table = GuestFields(memory: memory, base: GuestAddress(try info.u64(40)))
        let entries = try (0..<UInt64(info.u32(48))).map { index in
            let offset = index * 24
            #expect(try table.u32(offset + 20) == 0)
            return MemoryMapEntry(start: try table.u64(offset), length: try table.u64(offset + 8),
                                  type: MemoryType(rawValue: try table.u32(offset + 16)))
        }
        #expect(entries == map.entries)

        #expect(result.bootStructures == [
            .gdt: GuestRange(start: GuestAddress(0x500), length: 48),
            .pvhStartInfo: GuestRange(start: GuestAddress(0x6000), length: 56),
            .pvhModuleList: GuestRange(start: GuestAddress(0x6040), length: 32),
            .pvhMemoryMap: GuestRange(start: GuestAddress(0x6080), length: UInt64(24 * map.entries.count)),
            .commandLine: GuestRange(start: GuestAddress(0x2_0000), length: 13),
        ])
    }

    @Test func withoutAnInitrdListsNoModules() throws {
        let memory = try testMemory(fill: true)
        let result = try loadLinux(pvhKernel(wide: true).build(), protocol: .pvh, memory: memory)
        #expect(result.cpu.rip == 0x10_0040)
        let info = GuestFields(memory: memory, base: X86Layout.pvhStartInfoAddress)
        #expect(try info.u32(12) == 0 && info.u64(16) == 0)
        #expect(try info.u64(32) == 0)  // no RSDP
        #expect(result.bootStructures[.pvhModuleList] == nil)
        #expect(result.initrd == nil)
    }

    @Test func bootsELF32KernelsToo() throws {
        let result = try loadLinux(pvhKernel(.elf32).build(), memory: testMemory())
        #expect(result.bootProtocol == .pvh && result.cpu.rip == 0x10_0040)
    }

    @Test func winsOverAMultibootHeaderUnlessMultibootIsAskedFor() throws {
        var builder = pvhKernel()
        builder.segments[0].data.place(multibootHeader(), at: 0x10)
        let bytes = builder.build()
        #expect(try loadLinux(bytes, memory: testMemory()).bootProtocol == .pvh)
        #expect(try loadLinux(bytes, protocol: .multiboot, memory: testMemory()).bootProtocol == .multiboot)
        #expect(try loadLinux(bytes, protocol: .elf64, memory: testMemory()).bootProtocol == .elf64)
        // Even a Multiboot header Swiftlet would refuse does not stop PVH.
        builder.segments[0].data.place(multibootHeader(flags: 1 << 5), at: 0x10)
        #expect(try loadLinux(builder.build(), memory: testMemory()).bootProtocol == .pvh)
    }

    @Test func refusesBadNotesAndEntries() throws {
        #expect(try linuxError(ELFBuilder.kernel().build(), protocol: .pvh)?.description ==
                "vmlinuz: no PVH entry point: no ELF note \"Xen\" of type 18 (XEN_ELFNOTE_PHYS32_ENTRY)")
        #expect(try linuxError(pattern(0x100, seed: 1), protocol: .pvh)?.problem == .pvhProtocolNeedsELF)
        let short = ELFBuilder.withNotes(elfNote(name: "Xen", type: 18, descriptor: [0, 0]))
        #expect(try linuxError(short.build())?.description ==
                "vmlinuz: PVH entry note (\"Xen\", type 18) has a 2-byte descriptor (expected a 4- or 8-byte address)")
        #expect(try linuxError(pvhKernel(entry: 0x1_0010_0000, wide: true).build())?.problem == .pvhEntryAbove4GiB(0x1_0010_0000))
        #expect(try linuxError(pvhKernel(entry: 0x10_0500).build())?.description ==
                "vmlinuz: PVH entry point 0x100500 (XEN_ELFNOTE_PHYS32_ENTRY) is not inside any loadable segment's physical addresses")
        // Other owners' type-18 notes are not PVH notes.
        let other = ELFBuilder.withNotes(elfNote(name: "GNU", type: 18, descriptor: [0, 0, 0x10, 0]))
        #expect(try loadLinux(other.build(), memory: testMemory()).bootProtocol == .elf64)
        // A malformed note segment is an error, not "no note".
        var broken = ELFBuilder.withNotes(pvhNote(entry: 0x10_0040))
        broken.segments[1].data.put(UInt32(0x100), at: 4)  // descsz past the segment
        #expect(try linuxError(broken.build())?.problem == .malformedNote(index: 1, offset: 0))
    }

    @Test func keepsSegmentsBelow4GiB() throws {
        let memory = try testMemory([GuestRange(start: GuestAddress(0), length: 2 << 20),
                                     GuestRange(start: GuestAddress(4 << 30), length: 2 << 20)])
        var builder = pvhKernel()
        builder.segments.append(.init(physicalAddress: 4 << 30, data: pattern(0x10, seed: 1)))
        #expect(try linuxError(builder.build(), memory: memory)?.problem == .above4GiB(.programHeader(2), address: 4 << 30, size: 0x10))
        // Segments outside the map's RAM are refused.
        var map = MemoryMap(ram: sixteenMiB)
        map.mark(GuestRange(start: GuestAddress(0x10_0000), length: 0x1000), as: .acpiNVS)
        #expect(try linuxError(pvhKernel().build(), memoryMap: map)?.description ==
                "vmlinuz: ELF program header 0 loads 0x500 bytes at 0x100000, which the memory map does not give the guest as RAM")
    }

    @Test func refusesMemoryMapsLongerThanLinuxTakes() throws {
        var map = MemoryMap(ram: sixteenMiB)
        for index in 0..<62 {
            map.mark(GuestRange(start: GuestAddress(0x100_0000 - 0x2000 * UInt64(index + 1)), length: 0x1000), as: .reserved)
        }
        let fits = try loadLinux(pvhKernel().build(), memory: testMemory(), memoryMap: map)
        #expect(fits.memoryMap.entries.count == 127)
        for index in 62..<130 {
            map.mark(GuestRange(start: GuestAddress(0x100_0000 - 0x2000 * UInt64(index + 1)), length: 0x1000), as: .reserved)
        }
        #expect(try linuxError(pvhKernel().build(), memoryMap: map)?.problem ==
                .memoryMapTooLarge(entries: map.entries.count, maximum: 128, table: "the PVH memory map"))
    }
}

@Suite struct LinuxHeaderUnitTests {
    @Test func parsesTheHeaderFields() throws {
        let header = try BzImageHeader(parsing: ByteImage(name: "k", bytes: BzImageBuilder().build()))
        #expect(header.version == 0x020F && header.loadFlags == 1 && header.xLoadFlags == 3)
        #expect(header.setupSectors == 1 && header.setupSize == 1024 && header.kernelSize == 0x3000)
        #expect(header.isRelocatable && header.kernelAlignment == 0x20_0000)
        #expect(header.preferredAddress == 0x20_0000 && header.initSize == 0x40_0000 && header.commandLineSize == 0x7FF)
        #expect(header.initrdAddressMax == 0x7FFF_FFFF && header.syssize == 0x300)
        #expect(header.loadAddress == 0x20_0000 && header.entry == 0x20_0200 && header.memorySize == 0x40_0000)
        #expect(header.bytes.count == 0x26C - 0x1F1)
        #expect(BzImageHeader.isBzImage(BzImageBuilder().build()))
        #expect(!BzImageHeader.isBzImage(Array(BzImageBuilder().build().prefix(0x205))))
    }

    @Test func writesVersionsAsBootRstDoes() {
        #expect(linuxVersion(0x020F) == "2.15")
        #expect(linuxVersion(0x0206) == "2.06")
        #expect(linuxVersion(0x0A11) == "10.17")
    }

    @Test func readsPVHNoteAddressesOfEitherWidth() throws {
        #expect(try PVHBoot.entry(in: [ELFNote(name: "Xen", type: 18, descriptor: [0x40, 0, 0x10, 0])]) == 0x10_0040)
        #expect(try PVHBoot.entry(in: [ELFNote(name: "Xen", type: 18, descriptor: [0x40, 0, 0x10, 0, 0, 0, 0, 0])]) == 0x10_0040)
        #expect(try PVHBoot.entry(in: [ELFNote(name: "Xen", type: 17, descriptor: [1, 2, 3, 4])]) == nil)
        #expect(throws: BootProblem.pvhNoteDescriptorSize(5)) {
            try PVHBoot.entry(in: [ELFNote(name: "Xen", type: 18, descriptor: [1, 2, 3, 4, 5])])
        }
    }
}

/// A real kernel, when one is at $SWIFTLET_LINUX_KERNEL: for example
/// Debian's, from `apt-get download linux-image-<version>-amd64` and
/// `dpkg-deb --fsys-tarfile ... | tar -x ./boot/vmlinuz-<version>`.
@Suite struct RealLinuxKernelTests {
    static let path: String? = getenv("SWIFTLET_LINUX_KERNEL").map { String(cString: $0) }

    @Test(.enabled(if: RealLinuxKernelTests.path != nil, "set SWIFTLET_LINUX_KERNEL to a bzImage (e.g. Debian's /boot/vmlinuz-*) to run"))
    func parsesAndLoadsARealBzImage() throws {
        let kernel = try FileImage(path: try #require(Self.path))
        let header = try BzImageHeader(parsing: kernel)
        print("\(kernel.name): boot protocol \(header.versionString), loadflags \(hex(header.loadFlags)), xloadflags \(hex(header.xLoadFlags)), setup_sects \(header.setupSectors), syssize \(hex(header.syssize)), init_size \(hex(header.initSize)), kernel_alignment \(hex(header.kernelAlignment)), relocatable \(header.isRelocatable), pref_address \(hex(header.preferredAddress)), initrd_addr_max \(hex(header.initrdAddressMax)), cmdline_size \(hex(header.commandLineSize)), load address \(hex(header.loadAddress))")
        #expect(header.version >= 0x020C)
        #expect(header.xLoadFlags & BzImageHeader.kernel64 != 0)
        #expect(header.loadAddress == header.preferredAddress)
        #expect(UInt64(header.initSize) >= header.kernelSize)

        // The whole load into a 256 MiB guest, as the machine does it.
        let memory = try GuestMemory(ranges: X86Layout.ramRanges(size: 256 << 20))
        let initrd = ByteImage(name: "initrd", bytes: pattern(0x10000, seed: 2))
        let result = try BootLoader.load(kernel: kernel, initrd: initrd, commandLine: "console=ttyS0 earlyprintk=serial",
                                         protocol: .automatic, memory: memory, acpiRSDP: GuestAddress(0xE_0000))
        #expect(result.bootProtocol == .linux)
        #expect(result.cpu.rip == header.loadAddress + 0x200 && result.cpu.rsi == 0x6000)
        let page = GuestFields(memory: memory, base: X86Layout.linuxZeroPageAddress)
        #expect(try page.u32(0x202) == BzImageHeader.magic)
        #expect(try page.u8(0x210) == 0xFF)
        #expect(try page.u32(0x218) == UInt32(truncatingIfNeeded: try #require(result.initrd).start.rawValue))
        #expect(try page.bytes(0x238, 8) == kernel.read(at: 0x238, count: 8))  // cmdline_size, hardware_subarch
        // The 64-bit entry's first bytes are the decompressor's startup_64 (cld; cli).
        #expect(try memory.readBytes(at: GuestAddress(result.cpu.rip), count: 2) == [0xFC, 0xFA])
    }

    static let vmlinuxPath: String? = getenv("SWIFTLET_LINUX_VMLINUX").map { String(cString: $0) }

    /// The ELF vmlinux inside a bzImage (its payload, decompressed; or a
    /// build tree's vmlinux) at $SWIFTLET_LINUX_VMLINUX.
    @Test(.enabled(if: RealLinuxKernelTests.vmlinuxPath != nil, "set SWIFTLET_LINUX_VMLINUX to an ELF vmlinux to run"))
    func loadsARealVmlinuxThroughPVHAndStartup64() throws {
        let kernel = try FileImage(path: try #require(Self.vmlinuxPath))
        let elf = try ELFImage(parsing: kernel)
        let notes = try elf.notes(in: kernel)
        let entry = try #require(try PVHBoot.entry(in: notes))
        print("\(kernel.name): e_entry \(hex(elf.entry)), PVH entry \(hex(entry)), \(elf.loadSegments.count) PT_LOAD segments, \(notes.count) notes")
        #expect(notes.contains { $0.name == "Linux" })

        let memory = try GuestMemory(ranges: X86Layout.ramRanges(size: 256 << 20))
        let initrd = ByteImage(name: "initrd", bytes: pattern(0x10000, seed: 2))
        let pvh = try BootLoader.load(kernel: kernel, initrd: initrd, commandLine: "console=ttyS0", protocol: .automatic,
                                      memory: memory, acpiRSDP: GuestAddress(0xE_0000))
        #expect(pvh.bootProtocol == .pvh && pvh.cpu.rip == entry && pvh.cpu.rbx == 0x6000)
        #expect(try memory.load(UInt32.self, from: X86Layout.pvhStartInfoAddress) == PVHBoot.startInfoMagic)

        let linux = try BootLoader.load(kernel: kernel, initrd: initrd, commandLine: "console=ttyS0", protocol: .linux,
                                        memory: GuestMemory(ranges: X86Layout.ramRanges(size: 256 << 20)))
        #expect(linux.bootProtocol == .linux && linux.cpu.rip == elf.physicalEntry() && linux.cpu.rsi == 0x6000)
    }
}

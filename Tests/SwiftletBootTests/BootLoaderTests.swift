import Testing
import SwiftletMemory
@testable import SwiftletBoot

@Suite struct DirectELF64Tests {
    @Test func loadsSegmentsZeroesBssAndWritesTheBootStructures() throws {
        let memory = try testMemory(fill: true)
        let code = pattern(0x180, seed: 1), data = pattern(0x40, seed: 2)
        let builder = ELFBuilder(entry: 0x10_0010, segments: [
            .init(physicalAddress: 0x10_0000, data: code),
            .init(flags: 6, physicalAddress: 0x20_0000, data: data, memorySize: 0x1000),
        ])
        let initrd = ByteImage(name: "initrd.img", bytes: pattern(0x1801, seed: 3))
        let result = try BootLoader.load(kernel: ByteImage(name: "k", bytes: builder.build()), initrd: initrd,
                                         commandLine: "console=ttyS0 quiet", protocol: .automatic, memory: memory)

        #expect(result.bootProtocol == .elf64)
        #expect(result.cpu == .longMode(entry: 0x10_0010))
        #expect(result.kernelSegments == [GuestRange(start: GuestAddress(0x10_0000), length: 0x180),
                                          GuestRange(start: GuestAddress(0x20_0000), length: 0x1000)])
        #expect(try memory.readBytes(at: GuestAddress(0x10_0000), count: 0x180) == code)
        #expect(try memory.readBytes(at: GuestAddress(0x20_0000), count: 0x40) == data)
        #expect(try memory.readBytes(at: GuestAddress(0x20_0040), count: 0x1000 - 0x40).allSatisfy { $0 == 0 })
        // Bytes after the segments are untouched.
        #expect(try memory.load(UInt8.self, from: GuestAddress(0x10_0180)) == 0xAA)
        #expect(try memory.load(UInt8.self, from: GuestAddress(0x20_2801)) == 0xAA)  // after the initrd

        // The initrd: page-aligned after the kernel's highest byte.
        #expect(result.initrd == GuestRange(start: GuestAddress(0x20_1000), length: 0x1801))
        #expect(try memory.readBytes(at: GuestAddress(0x20_1000), count: 0x1801) == initrd.bytes)

        #expect(try memory.readBytes(at: X86Layout.commandLineAddress, count: 20) == Array("console=ttyS0 quiet\0".utf8))
        #expect(try memory.readBytes(at: X86Layout.gdtAddress, count: 48) == BootGDT.bytes)
        #expect(try memory.readBytes(at: X86Layout.pageTableAddress, count: 0x6000) == LongModeSetup.pageTables)
        #expect(result.bootStructures == [
            .gdt: GuestRange(start: GuestAddress(0x500), length: 48),
            .pageTables: GuestRange(start: GuestAddress(0x9000), length: 0x6000),
            .commandLine: GuestRange(start: GuestAddress(0x2_0000), length: 20),
        ])
        #expect(result.memoryMap == MemoryMap(ram: [GuestRange(start: GuestAddress(0), length: 16 << 20)]))
        #expect(result.warnings.isEmpty)
        // No Multiboot information for the direct entry.
        #expect(try memory.load(UInt32.self, from: X86Layout.bootInfoAddress) == 0xAAAA_AAAA)
    }

    @Test func copiesAcrossContiguousRegions() throws {
        let memory = try testMemory([GuestRange(start: GuestAddress(0), length: 2 << 20),
                                     GuestRange(start: GuestAddress(2 << 20), length: 2 << 20)], fill: true)
        let data = pattern(0x3000, seed: 7)
        let builder = ELFBuilder(entry: 0x1F_F000, segments: [.init(physicalAddress: 0x1F_F000, data: data, memorySize: 0x4000)])
        let initrd = ByteImage(name: "i", bytes: pattern(0x100, seed: 8))
        let result = try BootLoader.load(kernel: ByteImage(name: "k", bytes: builder.build()), initrd: initrd,
                                         commandLine: "", protocol: .elf64, memory: memory)
        #expect(try memory.readBytes(at: GuestAddress(0x1F_F000), count: 0x3000) == data)
        #expect(try memory.readBytes(at: GuestAddress(0x20_2000), count: 0x1000).allSatisfy { $0 == 0 })
        #expect(result.initrd == GuestRange(start: GuestAddress(0x20_3000), length: 0x100))
        #expect(try memory.readBytes(at: GuestAddress(0x20_3000), count: 0x100) == initrd.bytes)
    }

    @Test func protocolNamesMatchTheCommandLine() {
        #expect(BootProtocol.allCases.map(\.rawValue) == ["auto", "multiboot", "elf64", "linux", "pvh"])
        #expect(BootProtocol(rawValue: "auto") == .automatic)
    }

    @Test func ignoresAMultibootHeaderWhenAskedForELF64() throws {
        var builder = ELFBuilder.kernel()
        builder.segments[0].data.place(multibootHeader(), at: 0x40)
        let bytes = builder.build()
        let auto = try BootLoader.load(kernel: ByteImage(name: "k", bytes: bytes), initrd: nil, commandLine: "",
                                       protocol: .automatic, memory: testMemory())
        #expect(auto.bootProtocol == .multiboot)
        let direct = try BootLoader.load(kernel: ByteImage(name: "k", bytes: bytes), initrd: nil, commandLine: "",
                                         protocol: .elf64, memory: testMemory())
        #expect(direct.bootProtocol == .elf64)
        #expect(direct.cpu.mode == .long64)
    }

    @Test func refusesSegmentsOutsideRAM() throws {
        let builder = ELFBuilder(entry: 0x10_0000, segments: [
            .init(physicalAddress: 0x10_0000, data: pattern(0x10, seed: 1)),
            .init(physicalAddress: 0x20_0000, data: pattern(0x10, seed: 1)),
            .init(physicalAddress: 0xb_ffff_f000, data: pattern(0x1000, seed: 1)),
        ])
        let error = try loadError(builder.build(), name: "kernel.elf")
        #expect(error?.description == "kernel.elf: ELF program header 2 loads 0x1000 bytes at 0xbfffff000, outside guest RAM")

        // Crossing the end of RAM by one byte.
        var end = ELFBuilder.kernel(size: 0x10, bss: 0)
        end.segments[0].physicalAddress = (16 << 20) - 0xF
        end.entry = end.segments[0].physicalAddress
        #expect(try loadError(end.build())?.problem == .outsideRAM(.programHeader(0), address: (16 << 20) - 0xF, size: 0x10))
        // Wrapping around the address space.
        end.segments[0].physicalAddress = UInt64.max - 4
        #expect(try loadError(end.build())?.problem == .outsideRAM(.programHeader(0), address: UInt64.max - 4, size: 0x10))
    }

    @Test func refusesSegmentsBelow1MiB() throws {
        var builder = ELFBuilder.kernel()
        builder.segments.append(.init(physicalAddress: 0x8000, data: pattern(0x10, seed: 1)))
        #expect(try loadError(builder.build())?.problem == .belowHighMemory(.programHeader(1), address: 0x8000))
        builder.segments[1].physicalAddress = 0xF_FFF0
        #expect(try loadError(builder.build())?.problem == .belowHighMemory(.programHeader(1), address: 0xF_FFF0))
    }

    @Test func refusesOverlappingSegments() throws {
        // 0: [1 MiB, +0x500), 1: [2 MiB, +0x100), 2: inside 0's bss.
        var builder = ELFBuilder.kernel(size: 0x200, bss: 0x300)
        builder.segments.append(.init(physicalAddress: 0x20_0000, data: pattern(0x100, seed: 1)))
        builder.segments.append(.init(physicalAddress: 0x10_0400, data: pattern(0x200, seed: 2)))
        let error = try loadError(builder.build())
        #expect(error?.problem == .overlap(.programHeader(0), .programHeader(2), GuestRange(start: GuestAddress(0x10_0400), length: 0x100)))
        #expect(error?.description == "k: ELF program header 0 and ELF program header 2 overlap at [0x100400, 0x100500)")
        // A segment inside a long earlier one.
        builder = ELFBuilder.kernel(size: 0x10, bss: 0x10_0000)
        builder.segments.append(.init(physicalAddress: 0x10_1000, data: pattern(0x10, seed: 1)))
        builder.segments.append(.init(physicalAddress: 0x18_0000, data: pattern(0x10, seed: 1)))
        #expect(try loadError(builder.build())?.problem == .overlap(.programHeader(0), .programHeader(1),
                                                                    GuestRange(start: GuestAddress(0x10_1000), length: 0x10)))
        // Touching is not overlapping.
        builder = ELFBuilder.kernel(size: 0x10, bss: 0xFF0)
        builder.segments.append(.init(physicalAddress: 0x10_1000, data: pattern(0x10, seed: 1)))
        #expect(try loadError(builder.build()) == nil)
    }

    @Test func refusesEntryPointsOutsideSegments() throws {
        var builder = ELFBuilder.kernel(size: 0x200, bss: 0)
        builder.entry = 0x10_0200
        #expect(try loadError(builder.build())?.problem == .entryNotInSegment(0x10_0200))
        builder.entry = 0
        #expect(try loadError(builder.build())?.problem == .entryNotInSegment(0))
    }

    @Test func refusesEntryPointsThePageTablesDoNotMap() throws {
        let memory = try testMemory([GuestRange(start: GuestAddress(0), length: 2 << 20),
                                     GuestRange(start: GuestAddress(4 << 30), length: 2 << 20)])
        var builder = ELFBuilder.kernel()
        builder.segments.append(.init(physicalAddress: 4 << 30, data: pattern(0x10, seed: 1)))
        #expect(try loadError(builder.build(), memory: memory) == nil)  // above 4 GiB is fine for data
        builder.entry = 4 << 30
        #expect(try loadError(builder.build(), memory: memory)?.problem == .entryAbove4GiB(4 << 30))
    }

    @Test func refusesImagesThatAreNotELF64() throws {
        #expect(try loadError(pattern(0x3000, seed: 1), name: "guest.bin")?.description ==
                "guest.bin: not an ELF image and no Multiboot header in the first 8192 bytes")
        #expect(try loadError([])?.problem == .notBootable(searched: 8192))
        #expect(try loadError(ELFBuilder.kernel(.elf32).build())?.description == "k: 32-bit ELF images need a Multiboot header")
        #expect(try loadError(ELFBuilder.kernel(.elf32).build(), protocol: .elf64)?.problem == .elf64ProtocolNeedsELF64(.elf32))
        #expect(try loadError(pattern(0x100, seed: 1), protocol: .elf64)?.problem == .notELF)
        #expect(try loadError(ELFBuilder.kernel().build(), protocol: .multiboot)?.problem == .noMultibootHeader(searched: 8192))
    }

    @Test func reportsABadChecksumWhenNothingElseBoots() throws {
        var raw = pattern(0x100, seed: 1)
        raw.place(multibootHeader(checksum: 7), at: 8)
        let sum = MultibootHeader.magic &+ 7
        #expect(try loadError(raw)?.problem == .multibootChecksum(offset: 8, sum: sum))
        #expect(try loadError(raw, protocol: .multiboot)?.problem == .multibootChecksum(offset: 8, sum: sum))
        var elf32 = ELFBuilder.kernel(.elf32)
        elf32.segments[0].data.place(multibootHeader(checksum: 7), at: 0)
        #expect(try loadError(elf32.build())?.problem == .multibootChecksum(offset: elf32.dataOffset(0), sum: sum))
        // An ELF64 kernel boots directly despite a stray magic.
        var elf64 = ELFBuilder.kernel()
        elf64.segments[0].data.place(multibootHeader(checksum: 7), at: 0)
        #expect(try loadError(elf64.build()) == nil)
    }

    @Test func refusesInitrdsThatDoNotFit() throws {
        let memory = try testMemory([GuestRange(start: GuestAddress(0), length: 4 << 20)])
        let initrd = ByteImage(name: "initrd.img", bytes: [UInt8](repeating: 1, count: (3 << 20) - 0x1000 + 1))
        let error = try loadError(ELFBuilder.kernel().build(), initrd: initrd, memory: memory)
        #expect(error == BootError("initrd.img", .initrdDoesNotFit(size: (3 << 20) - 0x1000 + 1, address: 0x10_1000, below4GiB: false)))
        // One byte less fits exactly.
        let fits = ByteImage(name: "initrd.img", bytes: [UInt8](repeating: 1, count: (3 << 20) - 0x1000))
        #expect(try loadError(ELFBuilder.kernel().build(), initrd: fits, memory: memory) == nil)
        // An empty initrd is placed and reported, but takes no room.
        let empty = try BootLoader.load(kernel: ByteImage(name: "k", bytes: ELFBuilder.kernel().build()),
                                        initrd: ByteImage(name: "empty", bytes: []), commandLine: "",
                                        protocol: .elf64, memory: memory)
        #expect(empty.initrd == GuestRange(start: GuestAddress(0x10_1000), length: 0))
    }

    @Test func refusesBadCommandLinesAndMachines() throws {
        let kernel = ELFBuilder.kernel().build()
        let longest = String(repeating: "x", count: 65535)
        #expect(try loadError(kernel, commandLine: longest) == nil)
        #expect(try loadError(kernel, commandLine: longest + "x") ==
                BootError("command line", .commandLineTooLong(length: 65536, maximum: 65535)))
        #expect(try loadError(kernel, commandLine: "a\0b") == BootError("command line", .commandLineContainsNUL))
        let noLowRAM = try testMemory([GuestRange(start: GuestAddress(0x1000), length: 16 << 20)])
        #expect(try loadError(kernel, memory: noLowRAM) == BootError("guest memory", .lowMemoryMissing))
    }

    @Test func leavesMemoryAloneWhenItRefuses() throws {
        let memory = try testMemory(fill: true)
        var builder = ELFBuilder.kernel()
        builder.segments.append(.init(physicalAddress: 0x40_0000, data: pattern(0x10, seed: 1)))
        builder.entry = 0x90_0000
        #expect(try loadError(builder.build(), initrd: ByteImage(name: "i", bytes: [1, 2, 3]), commandLine: "x",
                              memory: memory)?.problem == .entryNotInSegment(0x90_0000))
        for address: UInt64 in [0x500, 0x6000, 0x9000, 0x2_0000, 0x10_0000, 0x40_0000, 0x40_1000] {
            #expect(try memory.load(UInt8.self, from: GuestAddress(address)) == 0xAA, "\(GuestAddress(address)) was written")
        }
    }
}

@Suite struct MultibootLoaderTests {
    /// An ELF32 kernel linked high (virtual 0xC010_0000) with a Multiboot header.
    func higherHalfKernel(flags: UInt32 = 3) -> ELFBuilder {
        var builder = ELFBuilder(elfClass: .elf32, entry: 0xC010_0020, segments: [
            .init(physicalAddress: 0x10_0000, virtualAddress: 0xC010_0000, data: pattern(0x400, seed: 4), memorySize: 0x2000),
        ])
        builder.segments[0].data.place(multibootHeader(flags: flags), at: 0)
        return builder
    }

    @Test func loadsAnELF32KernelAndDescribesTheMachine() throws {
        let memory = try testMemory(fill: true)
        let builder = higherHalfKernel()
        let initrd = ByteImage(name: "/boot/initrd.img", bytes: pattern(0x2345, seed: 6))
        let result = try BootLoader.load(kernel: ByteImage(name: "k", bytes: builder.build()), initrd: initrd,
                                         commandLine: "root=/dev/ram0", protocol: .automatic, memory: memory)
        #expect(result.bootProtocol == .multiboot)
        #expect(result.cpu == .multiboot(entry: 0x10_0020))
        #expect(result.kernelSegments == [GuestRange(start: GuestAddress(0x10_0000), length: 0x2000)])
        #expect(try memory.readBytes(at: GuestAddress(0x10_0000), count: 0x400) == builder.segments[0].data)
        #expect(try memory.readBytes(at: GuestAddress(0x10_0400), count: 0x1C00).allSatisfy { $0 == 0 })
        #expect(result.initrd == GuestRange(start: GuestAddress(0x10_2000), length: 0x2345))
        #expect(try memory.readBytes(at: GuestAddress(0x10_2000), count: 0x2345) == initrd.bytes)
        #expect(try memory.readBytes(at: X86Layout.gdtAddress, count: 48) == BootGDT.bytes)
        // No page tables for Multiboot.
        #expect(try memory.load(UInt64.self, from: X86Layout.pageTableAddress) == 0xAAAA_AAAA_AAAA_AAAA)

        // The information structure, field by field (0.6.96 section 3.3).
        let info = X86Layout.bootInfoAddress
        func u32(_ offset: UInt64) throws -> UInt32 { try memory.load(UInt32.self, from: info + offset) }
        func string(at address: UInt32) throws -> String {
            var bytes: [UInt8] = []
            var cursor = GuestAddress(UInt64(address))
            while true {
                let byte = try memory.load(UInt8.self, from: cursor)
                if byte == 0 { return String(decoding: bytes, as: UTF8.self) }
                bytes.append(byte)
                cursor = cursor + 1
            }
        }
        #expect(try u32(0) == 1 << 0 | 1 << 2 | 1 << 3 | 1 << 6 | 1 << 9)
        #expect(try u32(4) == 639)
        #expect(try u32(8) == 15 * 1024)  // 16 MiB guest: 15 MiB above 1 MiB
        #expect(try u32(16) == 0x2_0000)
        #expect(try string(at: u32(16)) == "root=/dev/ram0")
        #expect(try u32(20) == 1)
        let module = try u32(24)
        #expect(X86Layout.bootInfoAddress.rawValue < UInt64(module) && UInt64(module) + 16 <= 0x7000)
        func moduleField(_ offset: UInt64) throws -> UInt32 { try memory.load(UInt32.self, from: GuestAddress(UInt64(module) + offset)) }
        #expect(try moduleField(0) == 0x10_2000)
        #expect(try moduleField(4) == 0x10_2000 + 0x2345)
        #expect(try string(at: moduleField(8)) == "/boot/initrd.img")
        #expect(try moduleField(12) == 0)

        let mapLength = try u32(44), mapAddress = try u32(48)
        var entries: [MemoryMapEntry] = []
        var cursor = UInt64(mapAddress)
        while cursor < UInt64(mapAddress) + UInt64(mapLength) {
            let size = try memory.load(UInt32.self, from: GuestAddress(cursor))
            #expect(size == 20)
            entries.append(MemoryMapEntry(start: try memory.load(UInt64.self, from: GuestAddress(cursor + 4)),
                                          length: try memory.load(UInt64.self, from: GuestAddress(cursor + 12)),
                                          type: MemoryType(rawValue: try memory.load(UInt32.self, from: GuestAddress(cursor + 20)))))
            cursor += UInt64(size) + 4
        }
        #expect(entries == X86Layout.memoryMap(ram: [GuestRange(start: GuestAddress(0), length: 16 << 20)]))
        #expect(try string(at: u32(64)) == "Swiftlet")
        // Fields Swiftlet does not provide stay zero.
        for offset: UInt64 in [12, 28, 32, 36, 40, 52, 56, 60, 68, 72, 76, 80, 84] { #expect(try u32(offset) == 0) }

        #expect(result.bootStructures[.multibootInformation] == GuestRange(start: info, length: 0x1000))
        #expect(result.bootStructures[.pageTables] == nil)
    }

    @Test func loadsWithTheAddressFields() throws {
        let memory = try testMemory(fill: true)
        // A flat binary: header at byte 0x20, loaded from byte 0 at 2 MiB; bss to 2 MiB + 0x3000.
        var raw = pattern(0x1800, seed: 8)
        raw.place(multibootHeader(addresses: .init(header: 0x20_0020, load: 0x20_0000, loadEnd: 0x20_1000,
                                                   bssEnd: 0x20_3000, entry: 0x20_0040)), at: 0x20)
        let result = try BootLoader.load(kernel: ByteImage(name: "flat.bin", bytes: raw), initrd: nil,
                                         commandLine: "", protocol: .multiboot, memory: memory)
        #expect(result.cpu.rip == 0x20_0040)
        #expect(result.cpu.mode == .protected32)
        #expect(result.kernelSegments == [GuestRange(start: GuestAddress(0x20_0000), length: 0x3000)])
        #expect(try memory.readBytes(at: GuestAddress(0x20_0000), count: 0x1000) == Array(raw[..<0x1000]))
        #expect(try memory.readBytes(at: GuestAddress(0x20_1000), count: 0x2000).allSatisfy { $0 == 0 })
        #expect(try memory.load(UInt8.self, from: GuestAddress(0x20_3000)) == 0xAA)
        #expect(try memory.load(UInt32.self, from: X86Layout.bootInfoAddress + 20) == 0)  // no modules
        #expect(try memory.load(UInt8.self, from: X86Layout.commandLineAddress) == 0)
    }

    @Test func bootsELF64ImagesWithAHeaderLikeGRUB() throws {
        var builder = ELFBuilder.kernel()
        builder.segments[0].data.place(multibootHeader(), at: 0x10)
        let result = try BootLoader.load(kernel: ByteImage(name: "k", bytes: builder.build()), initrd: nil,
                                         commandLine: "", protocol: .multiboot, memory: testMemory())
        #expect(result.cpu == .multiboot(entry: 0x10_0000))

        // ... but only below 4 GiB.
        let memory = try testMemory([GuestRange(start: GuestAddress(0), length: 2 << 20),
                                     GuestRange(start: GuestAddress(4 << 30), length: 2 << 20)])
        builder.segments.append(.init(physicalAddress: 4 << 30, data: pattern(0x10, seed: 1)))
        #expect(try loadError(builder.build(), memory: memory)?.problem ==
                .above4GiB(.programHeader(1), address: 4 << 30, size: 0x10))
    }

    @Test func warnsAboutVideoModes() throws {
        let result = try BootLoader.load(kernel: ByteImage(name: "k", bytes: higherHalfKernel(flags: 7).build()), initrd: nil,
                                         commandLine: "", protocol: .automatic, memory: testMemory())
        #expect(result.warnings.count == 1)
        #expect(result.warnings.first?.hasPrefix("k: the Multiboot header asks for a video mode") == true)
        #expect(try BootLoader.load(kernel: ByteImage(name: "k", bytes: higherHalfKernel().build()), initrd: nil,
                                    commandLine: "", protocol: .automatic, memory: testMemory()).warnings.isEmpty)
    }

    @Test func refusesWhatMultibootCannotBoot() throws {
        #expect(try loadError(higherHalfKernel(flags: 1 << 5).build())?.description ==
                "k: Multiboot header requires feature bit 5, which Swiftlet does not support")
        // A header without address fields in something that is not ELF.
        var raw = pattern(0x100, seed: 1)
        raw.place(multibootHeader(), at: 0)
        #expect(try loadError(raw)?.problem == .multibootNeedsELF)
        // Entry outside the segments.
        var builder = higherHalfKernel()
        builder.entry = 0xD000_0000
        #expect(try loadError(builder.build())?.problem == .entryNotInSegment(0xD000_0000))
        // The image must be in RAM.
        var high = pattern(0x100, seed: 1)
        high.place(multibootHeader(addresses: .init(header: 0xFFFF_F000, load: 0xFFFF_F000, loadEnd: 0, bssEnd: 0,
                                                     entry: 0xFFFF_F000)), at: 0)
        #expect(try loadError(high)?.problem == .outsideRAM(.multibootImage, address: 0xFFFF_F000, size: 0x100))
    }

    @Test func placesModulesBelow4GiB() throws {
        // One region running past 4 GiB, so that only the 4 GiB rule stops the initrd.
        let memory = try testMemory([GuestRange(start: GuestAddress(0), length: (4 << 30) + (2 << 20))])
        var raw = pattern(0x100, seed: 1)
        raw.place(multibootHeader(addresses: .init(header: 0xFFFF_E000, load: 0xFFFF_E000, loadEnd: 0, bssEnd: 0,
                                                   entry: 0xFFFF_E000)), at: 0)
        let fits = ByteImage(name: "initrd", bytes: [UInt8](repeating: 1, count: 0x1000))
        #expect(try loadError(raw, initrd: fits, memory: memory) == nil)
        let tooBig = ByteImage(name: "initrd", bytes: [UInt8](repeating: 1, count: 0x1001))
        #expect(try loadError(raw, initrd: tooBig, memory: memory) ==
                BootError("initrd", .initrdDoesNotFit(size: 0x1001, address: 0xFFFF_F000, below4GiB: true)))
    }

    @Test func refusesModuleStringsThatDoNotFitTheInformationPage() throws {
        let name = String(repeating: "n", count: 4000)
        let error = try loadError(higherHalfKernel().build(), initrd: ByteImage(name: name, bytes: [1]))
        guard case .bootInformationTooLarge(let needed, 4096)? = error?.problem else {
            Issue.record("unexpected \(String(describing: error))")
            return
        }
        #expect(error?.subject == name)
        #expect(needed > 4096)
        // A name that fits.
        #expect(try loadError(higherHalfKernel().build(), initrd: ByteImage(name: String(repeating: "n", count: 3000), bytes: [1])) == nil)
    }
}

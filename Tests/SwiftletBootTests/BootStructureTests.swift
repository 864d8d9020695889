import Testing
import SwiftletMemory
@testable import SwiftletBoot

@Suite struct SegmentDescriptorTests {
    @Test func encodesTheBootGDTAsTheClassicConstants() {
        // The well-known flat descriptors (Linux, Firecracker and others use the same).
        #expect(BootGDT.descriptors.map(\.encoded) == [
            0,
            0x00af_9b00_0000_ffff,  // 64-bit code, DPL 0
            0x00cf_9300_0000_ffff,  // data, DPL 0
            0x00cf_9b00_0000_ffff,  // 32-bit code, DPL 0
            0x00cf_f300_0000_ffff,  // data, DPL 3
            0x00af_fb00_0000_ffff,  // 64-bit code, DPL 3
        ])
        #expect(BootGDT.limit == 47)
        #expect(X86Layout.gdtSize == 48)
    }

    @Test func roundTripsEveryField() {
        let samples = [
            SegmentDescriptor(base: 0x1234_5678, limit: 0xA_BCDE, type: 0x9, isCodeOrData: false, privilegeLevel: 2,
                              isPresent: true, available: true, isLongMode: false, isDefault32Bit: true, isPageGranular: false),
            SegmentDescriptor(base: 0xFFFF_FFFF, limit: 0xF_FFFF, type: 0xF, privilegeLevel: 3, isPresent: false,
                              isLongMode: true, isDefault32Bit: false, isPageGranular: true),
            SegmentDescriptor(base: 0, limit: 0, type: 0, isCodeOrData: false, privilegeLevel: 0, isPresent: false,
                              isLongMode: false, isDefault32Bit: false, isPageGranular: false),
        ]
        for descriptor in samples {
            #expect(SegmentDescriptor(encoded: descriptor.encoded) == descriptor)
        }
        #expect(samples[0].encoded == 0x125a_c934_5678_bcde)
        for value: UInt64 in [0x00af_9b00_0000_ffff, 0xdead_beef_cafe_f00d, .max] {
            #expect(SegmentDescriptor(encoded: value).encoded == value)
        }
        #expect(samples[0].byteLimit == 0xA_BCDE)
        #expect(samples[1].byteLimit == 0xFFFF_FFFF)
    }

    @Test func writesTheGDTAt0x500() throws {
        let memory = try testMemory(fill: true)
        try BootGDT.write(to: memory)
        for (index, descriptor) in BootGDT.descriptors.enumerated() {
            let raw = try memory.load(UInt64.self, from: X86Layout.gdtAddress + UInt64(index * 8))
            #expect(SegmentDescriptor(encoded: raw) == descriptor)
        }
        // Nothing past the table.
        #expect(try memory.load(UInt8.self, from: X86Layout.gdtAddress + 48) == 0xAA)
    }

    @Test func looksUpDescriptorsBySelector() throws {
        let code64 = try #require(BootGDT.descriptor(for: BootGDT.kernelCode64))
        #expect(code64.isCode && code64.isLongMode && !code64.isDefault32Bit && code64.privilegeLevel == 0)
        let data = try #require(BootGDT.descriptor(for: BootGDT.kernelData))
        #expect(!data.isCode && data.type & 0x2 != 0 && data.byteLimit == 0xFFFF_FFFF && data.base == 0)
        let code32 = try #require(BootGDT.descriptor(for: BootGDT.kernelCode32))
        #expect(code32.isCode && !code32.isLongMode && code32.isDefault32Bit && code32.byteLimit == 0xFFFF_FFFF)
        #expect(BootGDT.descriptor(for: BootGDT.userData)?.privilegeLevel == 3)
        #expect(BootGDT.descriptor(for: BootGDT.userCode64)?.isLongMode == true)
        #expect(BootGDT.descriptor(for: BootGDT.userCode64)?.privilegeLevel == 3)
        // RPL does not change the descriptor; null, LDT and out-of-range selectors have none.
        #expect(BootGDT.descriptor(for: 0x13) == data)
        #expect(BootGDT.descriptor(for: 0) == nil)
        #expect(BootGDT.descriptor(for: 0x0C) == nil)
        #expect(BootGDT.descriptor(for: 0x30) == nil)
        #expect(BootGDT.userData == 0x23 && BootGDT.userCode64 == 0x2b)
    }
}

@Suite struct LongModeSetupTests {
    @Test func identityMapsTheFirst4GiBWith2MiBUserPages() throws {
        let memory = try testMemory(fill: true)
        let state = try LongModeSetup.prepare(memory: memory, entry: 0x10_0000)
        let flags: UInt64 = 0x7  // P | W | U
        let addressMask: UInt64 = 0x000F_FFFF_FFFF_F000

        let pml4 = GuestAddress(state.cr3)
        #expect(pml4 == X86Layout.pageTableAddress)
        let pml4e = try memory.load(UInt64.self, from: pml4)
        #expect(pml4e & 0xFFF == flags)
        for index in 1..<512 { #expect(try memory.load(UInt64.self, from: pml4 + UInt64(index * 8)) == 0) }

        let pdpt = GuestAddress(pml4e & addressMask)
        var mapped = 0
        for gib in 0..<512 {
            let pdpte = try memory.load(UInt64.self, from: pdpt + UInt64(gib * 8))
            guard gib < 4 else {
                #expect(pdpte == 0, "GiB \(gib) is mapped")
                continue
            }
            #expect(pdpte & 0xFFF == flags)
            let directory = GuestAddress(pdpte & addressMask)
            #expect(X86Layout.pageTableAddress.rawValue <= directory.rawValue
                    && directory.rawValue + 0x1000 <= X86Layout.pageTableAddress.rawValue + X86Layout.pageTableSize)
            for index in 0..<512 {
                let pde = try memory.load(UInt64.self, from: directory + UInt64(index * 8))
                let virtual = UInt64(gib) << 30 | UInt64(index) << 21
                if pde != virtual | flags | 0x80 {
                    Issue.record("PDE for \(GuestAddress(virtual)) is 0x\(String(pde, radix: 16))")
                }
                mapped += 1
            }
        }
        #expect(mapped == 2048)
        // The tables end where the contract says.
        #expect(try memory.load(UInt8.self, from: X86Layout.pageTableAddress + X86Layout.pageTableSize) == 0xAA)
    }

    @Test func entersLongModeAsTheContractSays() {
        let state = CPUBootState.longMode(entry: 0x10_1234)
        #expect(state.mode == .long64)
        #expect(state.rip == 0x10_1234)
        #expect(state.cr0 == 0x8001_0033)  // PG | WP | NE | ET | MP | PE
        #expect(state.cr4 == 0x620)  // OSXMMEXCPT | OSFXSR | PAE
        #expect(state.efer == 0x500)  // LMA | LME
        #expect(state.cr3 == 0x9000)
        #expect(state.rsp == 0x8_0000)
        #expect(state.rflags == 0x2)
        #expect([state.rax, state.rbx, state.rsi, state.rdi] == [0, 0, 0, 0])
        #expect(state.codeSelector == 0x08 && state.dataSelector == 0x10)
        #expect(state.gdt == .init(base: 0x500, limit: 47))
        #expect(state.idt == .init(base: 0, limit: 0))
    }

    @Test func entersMultibootAsTheSpecificationSays() {
        let state = CPUBootState.multiboot(entry: 0x10_000c)
        #expect(state.mode == .protected32)
        #expect(state.rip == 0x10_000c)
        #expect(state.rax == 0x2BAD_B002)
        #expect(state.rbx == 0x6000)
        #expect(state.cr0 & 1 == 1 && state.cr0 & 1 << 31 == 0)
        #expect(state.rflags & (1 << 9 | 1 << 17) == 0)
        #expect(state.cr4 == 0 && state.efer == 0 && state.cr3 == 0)
        #expect(state.codeSelector == 0x18 && state.dataSelector == 0x10)
        #expect(state.gdt == .init(base: 0x500, limit: 47))
    }
}

@Suite struct MemoryMapTests {
    let GiB: UInt64 = 1 << 30
    let MiB: UInt64 = 1 << 20

    func entry(_ start: UInt64, _ end: UInt64, _ type: MemoryType) -> MemoryMapEntry {
        MemoryMapEntry(start: start, length: end - start, type: type)
    }

    @Test func smallGuest() {
        let map = X86Layout.memoryMap(ram: X86Layout.ramRanges(size: 128 * MiB))
        #expect(map == [
            entry(0, 0x9_fc00, .ram),
            entry(0x9_fc00, 0x10_0000, .reserved),
            entry(0x10_0000, 128 * MiB, .ram),
        ])
        let full = MemoryMap(ram: X86Layout.ramRanges(size: 128 * MiB))
        #expect(full.lowerMemoryKiB == 639)
        #expect(full.upperMemoryKiB == 127 * 1024)
    }

    @Test func guestFillingTheSpaceBelowTheHole() {
        let map = X86Layout.memoryMap(ram: X86Layout.ramRanges(size: 3 * GiB))
        #expect(map == [
            entry(0, 0x9_fc00, .ram),
            entry(0x9_fc00, 0x10_0000, .reserved),
            entry(0x10_0000, 3 * GiB, .ram),
        ])
        #expect(MemoryMap(ram: X86Layout.ramRanges(size: 3 * GiB)).upperMemoryKiB == UInt32((3 * GiB - MiB) / 1024))
    }

    @Test func guestJustOverTheHole() {
        let map = X86Layout.memoryMap(ram: X86Layout.ramRanges(size: 3 * GiB + MiB))
        #expect(map == [
            entry(0, 0x9_fc00, .ram),
            entry(0x9_fc00, 0x10_0000, .reserved),
            entry(0x10_0000, 3 * GiB, .ram),
            entry(4 * GiB, 4 * GiB + MiB, .ram),
        ])
        // mem_upper stops at the first hole.
        #expect(MemoryMap(ram: X86Layout.ramRanges(size: 3 * GiB + MiB)).upperMemoryKiB == UInt32((3 * GiB - MiB) / 1024))
    }

    @Test func largeGuest() {
        let map = X86Layout.memoryMap(ram: X86Layout.ramRanges(size: 64 * GiB))
        #expect(map == [
            entry(0, 0x9_fc00, .ram),
            entry(0x9_fc00, 0x10_0000, .reserved),
            entry(0x10_0000, 3 * GiB, .ram),
            entry(4 * GiB, 65 * GiB, .ram),
        ])
        #expect(map.reduce(0) { $0 + ($1.type == .ram ? $1.length : 0) } == 64 * GiB - 0x6_0400)
    }

    @Test func markingCarvesAndMerges() {
        var map = MemoryMap(ram: X86Layout.ramRanges(size: 128 * MiB))
        map.mark(GuestRange(start: GuestAddress(0x7F0_0000), length: 0x10_0000), as: .acpiReclaimable)
        #expect(map.entries == [
            entry(0, 0x9_fc00, .ram),
            entry(0x9_fc00, 0x10_0000, .reserved),
            entry(0x10_0000, 0x7F0_0000, .ram),
            entry(0x7F0_0000, 0x800_0000, .acpiReclaimable),
        ])
        // Marking it back merges the neighbours again; empty marks change nothing.
        map.mark(GuestRange(start: GuestAddress(0x7F0_0000), length: 0x10_0000), as: .ram)
        map.mark(GuestRange(start: GuestAddress(0x1234), length: 0), as: .unusable)
        #expect(map == MemoryMap(ram: X86Layout.ramRanges(size: 128 * MiB)))
        #expect(MemoryType(rawValue: 9).description == "type 9")
    }
}

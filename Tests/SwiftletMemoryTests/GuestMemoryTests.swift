import Testing
@testable import SwiftletMemory

@Suite struct GuestMemoryTests {
    @Test func readsAndWritesInsideARegion() throws {
        let memory = try GuestMemory(ranges: [GuestRange(start: GuestAddress(0), length: 0x10000)])
        try memory.store(UInt32(0xdeadbeef), to: GuestAddress(0x100))
        #expect(try memory.load(UInt32.self, from: GuestAddress(0x100)) == 0xdeadbeef)
        #expect(try memory.readBytes(at: GuestAddress(0x100), count: 4) == [0xef, 0xbe, 0xad, 0xde])
    }

    @Test func refusesAccessesOutsideMemory() throws {
        let memory = try GuestMemory(ranges: [GuestRange(start: GuestAddress(0x1000), length: 0x1000)])
        #expect(throws: GuestMemoryError.outOfBounds(GuestAddress(0x1ffe), length: 4)) {
            try memory.store(UInt32(1), to: GuestAddress(0x1ffe))
        }
        #expect(throws: GuestMemoryError.self) { try memory.load(UInt8.self, from: GuestAddress(0xfff)) }
        #expect(throws: GuestMemoryError.self) { try memory.load(UInt8.self, from: GuestAddress(0x2000)) }
        // An address near 2^64 must not wrap around into memory.
        #expect(throws: GuestMemoryError.self) {
            try memory.readBytes(at: GuestAddress(UInt64.max - 1), count: 0x1004)
        }
        // A failed write has no partial effect.
        #expect(try memory.load(UInt16.self, from: GuestAddress(0x1ffe)) == 0)
    }

    @Test func crossesContiguousRegions() throws {
        let memory = try GuestMemory(ranges: [
            GuestRange(start: GuestAddress(0x2000), length: 0x1000),
            GuestRange(start: GuestAddress(0x1000), length: 0x1000),
        ])
        try memory.store(UInt64(0x1122334455667788), to: GuestAddress(0x1ffc))
        #expect(try memory.load(UInt64.self, from: GuestAddress(0x1ffc)) == 0x1122334455667788)
        #expect(memory.regions.map(\.start) == [GuestAddress(0x1000), GuestAddress(0x2000)])
        #expect(memory.contains(GuestAddress(0x1000), count: 0x2000))
        #expect(!memory.contains(GuestAddress(0x1000), count: 0x2001))
    }

    @Test func doesNotCrossAGap() throws {
        let memory = try GuestMemory(ranges: [
            GuestRange(start: GuestAddress(0x1000), length: 0x1000),
            GuestRange(start: GuestAddress(0x3000), length: 0x1000),
        ])
        #expect(throws: GuestMemoryError.self) { try memory.fill(1, at: GuestAddress(0x1f00), count: 0x200) }
        #expect(memory.region(containing: GuestAddress(0x2800)) == nil)
        #expect(memory.region(containing: GuestAddress(0x3fff))?.start == GuestAddress(0x3000))
    }

    @Test func refusesOverlapsAndMisalignment() throws {
        #expect(throws: GuestMemoryError.self) {
            try GuestMemory(ranges: [
                GuestRange(start: GuestAddress(0x0), length: 0x2000),
                GuestRange(start: GuestAddress(0x1000), length: 0x2000),
            ])
        }
        #expect(throws: GuestMemoryError.self) { try GuestMemoryRegion(start: GuestAddress(0x10), size: 0x1000) }
        #expect(throws: GuestMemoryError.self) { try GuestMemoryRegion(start: GuestAddress(0), size: 0x1001) }
    }

    @Test func sharedMemoryBackingHasADescriptor() throws {
        let region = try GuestMemoryRegion(start: GuestAddress(0), size: 0x4000, backing: .sharedMemory)
        #expect(region.descriptor != nil)
        let memory = try GuestMemory(regions: [region])
        try memory.store(UInt8(7), to: GuestAddress(0x3fff))
        #expect(try memory.load(UInt8.self, from: GuestAddress(0x3fff)) == 7)
    }

    @Test func largeGuestsCostNothingUntilTouched() throws {
        // 64 GiB of address space with MAP_NORESERVE maps instantly.
        let memory = try GuestMemory(ranges: [GuestRange(start: GuestAddress(0), length: 64 << 30)])
        try memory.store(UInt8(1), to: GuestAddress((64 << 30) - 1))
        #expect(memory.size == 64 << 30)
    }
}

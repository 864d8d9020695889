import Synchronization
import Testing
import SwiftletSystem
@testable import SwiftletDevices

/// A register file that records accesses, for exercising the bus.
private final class Registers: BusDevice {
    let last = Locked<(offset: UInt64, size: Int, value: UInt64)?>(nil)
    func read(at offset: UInt64, size: Int) -> UInt64 { 0x1122_3344_5566_7788 >> (offset * 8) }
    func write(at offset: UInt64, size: Int, value: UInt64) { last.withLock { $0 = (offset, size, value) } }
}

@Suite struct IOBusTests {
    @Test func dispatchesByRangeWithRelativeOffsets() throws {
        var builder = IOBusBuilder(kind: .portIO)
        let a = Registers(), b = Registers()
        try builder.register(a, name: "a", base: 0x3f8, length: 8)
        try builder.register(b, name: "b", base: 0x60, length: 1)
        let bus = builder.build()
        bus.write(0x3fb, size: 1, value: 0x1ff)
        #expect(a.last.withLock { $0?.offset } == 3)
        #expect(a.last.withLock { $0?.value } == 0xff, "values are masked to the access size")
        #expect(bus.read(0x3f9, size: 2) == 0x6677)
        bus.write(0x60, size: 1, value: 5)
        #expect(b.last.withLock { $0?.value } == 5)
    }

    @Test func unclaimedAccessesReadAllOnesAndAreCounted() throws {
        var builder = IOBusBuilder(kind: .mmio)
        try builder.register(Registers(), name: "r", base: 0x1000, length: 0x10)
        let bus = builder.build()
        #expect(bus.read(0x2000, size: 4) == 0xffff_ffff)
        #expect(bus.read(0x0fff, size: 1) == 0xff)
        // An access that starts inside a device but runs past its end is not
        // the device's.
        #expect(bus.read(0x100e, size: 4) == 0xffff_ffff)
        bus.write(0x3000, size: 8, value: 1)
        #expect(bus.unclaimedReads == 3)
        #expect(bus.unclaimedWrites == 1)
    }

    @Test func refusesOverlappingAndEmptyRanges() throws {
        var builder = IOBusBuilder(kind: .portIO)
        try builder.register(Registers(), name: "serial", base: 0x3f8, length: 8)
        #expect(throws: IOBusBuilder.Error.overlap(name: "other", other: "serial", base: 0x3ff)) {
            try builder.register(Registers(), name: "other", base: 0x3ff, length: 2)
        }
        #expect(throws: IOBusBuilder.Error.emptyRange(name: "e")) {
            try builder.register(Registers(), name: "e", base: 0x10, length: 0)
        }
        #expect(throws: IOBusBuilder.Error.emptyRange(name: "w")) {
            try builder.register(Registers(), name: "w", base: UInt64.max, length: 2)
        }
        try builder.register(Registers(), name: "adjacent", base: 0x400, length: 1)
    }
}

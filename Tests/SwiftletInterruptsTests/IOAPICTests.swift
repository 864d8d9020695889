import Testing
@testable import SwiftletInterrupts

/// The 82093AA I/O APIC (datasheet 290566-001, §3).
private struct Fixture {
    let sink = MessageRecorder()
    let ioapic: IOAPIC

    init() { ioapic = IOAPIC(sink: sink) }

    func select(_ index: UInt32) { ioapic.write(at: 0x00, size: 4, value: UInt64(index)) }

    func read(_ index: UInt32) -> UInt32 {
        select(index)
        return UInt32(truncatingIfNeeded: ioapic.read(at: 0x10, size: 4))
    }

    func write(_ index: UInt32, _ value: UInt32) {
        select(index)
        ioapic.write(at: 0x10, size: 4, value: UInt64(value))
    }

    /// Programs pin `pin`'s redirection entry.
    func route(_ pin: Int, low: UInt32, destination: UInt8 = 0) {
        write(0x11 + 2 * UInt32(pin), UInt32(destination) << 24)
        write(0x10 + 2 * UInt32(pin), low)
    }

    func entry(_ pin: Int) -> UInt64 { ioapic.redirectionEntry(pin) }
}

private let level: UInt32 = 1 << 15
private let remoteIRR: UInt64 = 1 << 14

@Suite struct IOAPICRegisterTests {
    @Test func identificationRegisters() {
        let f = Fixture()
        #expect(f.read(0x01) == 0x0017_0011, "24 entries, version 0x11")
        #expect(f.read(0x00) == 0)
        f.write(0x00, 0xFF00_0000)
        #expect(f.read(0x00) == 0x0F00_0000, "a 4-bit ID in bits 27:24")
        #expect(f.read(0x02) == 0x0F00_0000, "the arbitration ID is loaded with the ID")
        f.write(0x01, 0)
        f.write(0x02, 0)
        #expect(f.read(0x01) == 0x0017_0011 && f.read(0x02) == 0x0F00_0000, "read-only")
        #expect(f.read(0x03) == 0 && f.read(0x40) == 0 && f.read(0xFF) == 0, "undefined indices read 0")
    }

    @Test func registerSelectKeepsEightBits() {
        let f = Fixture()
        f.ioapic.write(at: 0x00, size: 4, value: 0xFFFF_FF12)
        #expect(f.ioapic.read(at: 0x00, size: 4) == 0x12)
    }

    @Test func entriesStartMaskedAndKeepOnlyTheirWritableBits() {
        let f = Fixture()
        for pin in 0..<IOAPIC.pinCount {
            #expect(f.entry(pin) == 1 << 16, "pin \(pin)")
        }
        f.write(0x10, 0xFFFF_FFFF)
        f.write(0x11, 0xFFFF_FFFF)
        #expect(f.read(0x10) == 0x0001_AFFF, "delivery status and remote IRR are read-only")
        #expect(f.read(0x11) == 0xFF00_0000, "bits 55:32 are reserved")
        #expect(f.entry(0) == 0xFF00_0000_0001_AFFF)
    }

    @Test func accessSizes() {
        let f = Fixture()
        f.select(0x01)
        #expect(f.ioapic.read(at: 0x10, size: 1) == 0x11)
        #expect(f.ioapic.read(at: 0x12, size: 1) == 0x17)
        #expect(f.ioapic.read(at: 0x11, size: 2) == 0x1700)
        #expect(f.ioapic.read(at: 0x10, size: 8) == 0x0017_0011)
        f.ioapic.write(at: 0x00, size: 1, value: 0x00)
        f.ioapic.write(at: 0x00, size: 2, value: 0x00)
        f.ioapic.write(at: 0x01, size: 4, value: 0x00)
        #expect(f.ioapic.read(at: 0x00, size: 4) == 0x01, "narrow and misaligned writes are dropped")
        f.ioapic.write(at: 0x00, size: 8, value: 0xFFFF_FFFF_0000_0002)
        #expect(f.ioapic.read(at: 0x00, size: 4) == 0x02, "a 64-bit write uses its low half")
        #expect(f.ioapic.read(at: 0x20, size: 4) == 0 && f.ioapic.read(at: 0x40, size: 4) == 0)
        f.ioapic.write(at: 0x40, size: 4, value: 0x30)  // no EOI register on version 0x11
        #expect(f.ioapic.read(at: 0x00, size: 4) == 0x02)
    }

    @Test func resetMasksEverything() {
        let f = Fixture()
        f.write(0x00, 0x0300_0000)
        f.route(3, low: 0x31)
        f.ioapic.reset()
        #expect(f.entry(3) == 1 << 16)
        #expect(f.read(0x00) == 0)
    }
}

@Suite struct IOAPICDeliveryTests {
    @Test func edgePinsSendOnRisingEdges() {
        let f = Fixture()
        f.route(4, low: 0x31, destination: 2)
        f.ioapic.setIRQ(4, level: true)
        #expect(f.sink.messages == [InterruptMessage(vector: 0x31, destination: 2)])
        f.ioapic.setIRQ(4, level: true)
        #expect(f.sink.messages.count == 1, "no edge")
        f.ioapic.setIRQ(4, level: false)
        f.ioapic.setIRQ(4, level: true)
        #expect(f.sink.messages.count == 2)
        #expect(f.entry(4) & remoteIRR == 0, "remote IRR is for level entries")
    }

    @Test func maskedEdgesAreLost() {
        let f = Fixture()
        f.route(4, low: 0x31 | 1 << 16)
        f.ioapic.setIRQ(4, level: true)
        f.route(4, low: 0x31)
        #expect(f.sink.messages.isEmpty, "not delivered or held pending")
        f.ioapic.setIRQ(4, level: false)
        f.ioapic.setIRQ(4, level: true)
        #expect(f.sink.messages.count == 1)
    }

    @Test func levelPinsWaitForTheEOI() {
        let f = Fixture()
        f.route(10, low: level | 0x42, destination: 1)
        f.ioapic.setIRQ(10, level: true)
        #expect(f.sink.messages == [InterruptMessage(vector: 0x42, destination: 1, triggerMode: .level)])
        #expect(f.entry(10) & remoteIRR != 0)
        #expect(f.read(0x10 + 20) & 1 << 14 != 0, "the guest sees remote IRR")
        f.ioapic.setIRQ(10, level: true)
        #expect(f.sink.messages.count == 1, "remote IRR holds further messages back")
        f.ioapic.endOfInterrupt(vector: 0x42)
        #expect(f.sink.messages.count == 2, "still asserted after the EOI: sent again")
        #expect(f.entry(10) & remoteIRR != 0)
        f.ioapic.setIRQ(10, level: false)
        f.ioapic.endOfInterrupt(vector: 0x42)
        #expect(f.sink.messages.count == 2)
        #expect(f.entry(10) & remoteIRR == 0)
    }

    @Test func eoiMatchesByVectorOnly() {
        let f = Fixture()
        f.route(1, low: level | 0x50)
        f.route(2, low: level | 0x50)
        f.route(3, low: level | 0x51)
        for pin in 1...3 { f.ioapic.setIRQ(pin, level: true) }
        #expect(f.sink.messages.count == 3)
        for pin in 1...3 { f.ioapic.setIRQ(pin, level: false) }
        f.ioapic.endOfInterrupt(vector: 0x50)
        #expect(f.entry(1) & remoteIRR == 0 && f.entry(2) & remoteIRR == 0, "every entry with the vector")
        #expect(f.entry(3) & remoteIRR != 0)
    }

    @Test func unmaskingARequestingLevelPinSends() {
        let f = Fixture()
        f.route(9, low: level | 0x44 | 1 << 16)
        f.ioapic.setIRQ(9, level: true)
        #expect(f.sink.messages.isEmpty)
        f.route(9, low: level | 0x44)
        #expect(f.sink.messages.count == 1)
        #expect(f.entry(9) & remoteIRR != 0)
    }

    @Test func remoteIRRIsReadOnlyAndSwitchingToEdgeClearsIt() {
        let f = Fixture()
        f.route(5, low: level | 0x45)
        f.ioapic.setIRQ(5, level: true)
        f.ioapic.setIRQ(5, level: false)
        f.write(0x10 + 10, level | 0x45 | 1 << 16)
        #expect(f.entry(5) & remoteIRR != 0, "a write cannot clear it")
        f.write(0x10 + 10, 0x45 | 1 << 16)
        #expect(f.entry(5) & remoteIRR == 0, "an edge entry has none (Linux's EOI for version 0x11)")
        f.write(0x10 + 10, level | 0x45 | 1 << 14)
        #expect(f.entry(5) & remoteIRR == 0, "nor can a write set it")
    }

    @Test func aMessageNobodyTakesIsSentAgainLater() {
        let f = Fixture()
        f.sink.accepting = false
        f.route(6, low: level | 0x46, destination: 9)
        f.ioapic.setIRQ(6, level: true)
        #expect(f.sink.messages.count == 1)
        #expect(f.entry(6) & remoteIRR == 0, "no local APIC accepted it")
        f.sink.accepting = true
        f.route(6, low: level | 0x46, destination: 1)
        #expect(f.sink.messages.count == 2, "reprogramming the entry sends again")
        #expect(f.entry(6) & remoteIRR != 0)
    }

    @Test func entriesDescribeTheirMessages() {
        let f = Fixture()
        f.route(0, low: 0x0000_0953, destination: 0x0F)  // lowest priority, logical
        f.route(1, low: 0x0000_0400)                      // NMI
        f.route(2, low: 0x0000_0700)                      // ExtINT
        f.route(3, low: 0x0000_0300)                      // reserved
        f.route(7, low: 0x0000_0600)                      // reserved
        f.route(8, low: 0x0000_2058)                      // active low: still a logical request
        for pin in [0, 1, 2, 3, 7, 8] { f.ioapic.setIRQ(pin, level: true) }
        #expect(f.sink.messages == [
            InterruptMessage(vector: 0x53, deliveryMode: .lowestPriority, destinationMode: .logical, destination: 0x0F),
            InterruptMessage(vector: 0, deliveryMode: .nmi, destination: 0),
            InterruptMessage(vector: 0, deliveryMode: .extINT, destination: 0),
            InterruptMessage(vector: 0x58, destination: 0),
        ])
    }

    @Test func pinsOutOfRangeAreIgnored() {
        let f = Fixture()
        for pin in [-1, 24, 1000, Int.min, Int.max] { f.ioapic.setIRQ(pin, level: true) }
        #expect(f.sink.messages.isEmpty)
        #expect(f.ioapic.redirectionEntry(24) == 0 && f.ioapic.redirectionEntry(-5) == 0)
    }
}

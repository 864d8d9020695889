import Testing
@testable import SwiftletInterrupts

/// Destination matching (Intel SDM Vol. 3A §10.6.2, §10.12.10).
@Suite struct DestinationTests {
    static func fixed(_ destination: UInt32, _ mode: InterruptMessage.DestinationMode = .physical,
                      format: InterruptMessage.DestinationFormat = .xAPIC,
                      shorthand: InterruptMessage.Shorthand = .none, source: UInt32? = nil) -> InterruptMessage {
        InterruptMessage(vector: 0x40, destinationMode: mode, destination: destination, destinationFormat: format,
                         shorthand: shorthand, sourceAPICID: source)
    }

    @Test func physicalXAPICDestinations() {
        var apic = LocalAPIC.enabled(id: 5)
        #expect(apic.accepts(Self.fixed(5)))
        #expect(!apic.accepts(Self.fixed(6)))
        #expect(apic.accepts(Self.fixed(0xFF)), "broadcast")
        #expect(apic.accepts(Self.fixed(5, format: .x2APIC)), "an x2APIC sender naming ID 5")
        #expect(apic.accepts(Self.fixed(0xFFFF_FFFF, format: .x2APIC)))
        apic.set(Reg.id, 0x0900_0000)
        #expect(apic.accepts(Self.fixed(9)) && !apic.accepts(Self.fixed(5)), "the guest renamed it")
    }

    @Test func physicalX2APICDestinations() throws {
        var apic = LocalAPIC.enabled(id: 0x305)
        try apic.enableX2APIC()
        #expect(apic.accepts(Self.fixed(0x305, format: .x2APIC)))
        #expect(!apic.accepts(Self.fixed(0x05, format: .x2APIC)))
        #expect(apic.accepts(Self.fixed(0xFFFF_FFFF, format: .x2APIC)))
        #expect(!apic.accepts(Self.fixed(0xFF, format: .x2APIC)), "0xFF is an ordinary x2APIC ID")
        #expect(apic.accepts(Self.fixed(0xFF)), "an 8-bit broadcast from an I/O APIC reaches x2APIC mode")
    }

    @Test func anXAPICModeAPICAnswersItsWideHardwareID() {
        let apic = LocalAPIC.enabled(id: 0x105)  // xAPIC ID 0x05
        #expect(apic.accepts(Self.fixed(0x105, format: .x2APIC)), "a hot-added vCPU before it switches to x2APIC")
        #expect(apic.accepts(Self.fixed(0x05)))
        #expect(!apic.accepts(Self.fixed(0x205, format: .x2APIC)))
    }

    @Test func logicalFlatModel() {
        var apic = LocalAPIC.enabled()
        apic.set(Reg.ldr, 0x0200_0000)
        #expect(apic.accepts(Self.fixed(0x03, .logical)))
        #expect(!apic.accepts(Self.fixed(0x04, .logical)))
        #expect(apic.accepts(Self.fixed(0xFF, .logical)))
        apic.set(Reg.ldr, 0)
        #expect(!apic.accepts(Self.fixed(0x7F, .logical)), "an APIC without a logical ID")
    }

    @Test func logicalClusterModel() {
        var apic = LocalAPIC.enabled()
        apic.set(Reg.dfr, 0x0FFF_FFFF)
        apic.set(Reg.ldr, 0x2100_0000)  // cluster 2, member bit 0
        #expect(apic.accepts(Self.fixed(0x21, .logical)))
        #expect(apic.accepts(Self.fixed(0x23, .logical)))
        #expect(!apic.accepts(Self.fixed(0x11, .logical)), "another cluster")
        #expect(!apic.accepts(Self.fixed(0x22, .logical)), "another member")
        #expect(apic.accepts(Self.fixed(0xFF, .logical)))
        apic.set(Reg.dfr, 0x5FFF_FFFF)
        #expect(!apic.accepts(Self.fixed(0x21, .logical)), "an undefined model matches nothing")
    }

    @Test func logicalX2APICClusters() throws {
        var apic = LocalAPIC.enabled(id: 0x23)  // cluster 2, member bit 3
        try apic.enableX2APIC()
        #expect(apic.accepts(Self.fixed(0x0002_0008, .logical, format: .x2APIC)))
        #expect(apic.accepts(Self.fixed(0x0002_000C, .logical, format: .x2APIC)))
        #expect(!apic.accepts(Self.fixed(0x0001_0008, .logical, format: .x2APIC)))
        #expect(!apic.accepts(Self.fixed(0x0002_0004, .logical, format: .x2APIC)))
        #expect(apic.accepts(Self.fixed(0xFFFF_FFFF, .logical, format: .x2APIC)))
    }

    @Test func shorthandsNameTheSender() {
        let apic = LocalAPIC.enabled(id: 2)
        #expect(apic.accepts(Self.fixed(9, shorthand: .self, source: 2)))
        #expect(!apic.accepts(Self.fixed(2, shorthand: .self, source: 3)))
        #expect(apic.accepts(Self.fixed(9, shorthand: .allIncludingSelf, source: 2)))
        #expect(!apic.accepts(Self.fixed(2, shorthand: .allExcludingSelf, source: 2)))
        #expect(apic.accepts(Self.fixed(9, shorthand: .allExcludingSelf, source: 3)))
    }

    @Test func aDisabledAPICIsNoDestination() throws {
        var apic = LocalAPIC.enabled(id: 1)
        _ = try apic.writeMSR(0x1B, value: 0xFEE0_0100, now: 0)
        #expect(!apic.accepts(Self.fixed(1)))
        #expect(!apic.accepts(Self.fixed(0xFF)))
        #expect(!apic.accepts(Self.fixed(0, shorthand: .allIncludingSelf, source: 0)))
    }

    @Test func softwareDisabledAPICsStillMatchButSaySo() {
        var apic = LocalAPIC.enabled(id: 1)
        apic.set(Reg.svr, 0xFF)
        #expect(apic.accepts(Self.fixed(1)))
        #expect(!apic.addressing.isSoftwareEnabled)
    }
}

import Testing
@testable import SwiftletInterrupts

@Suite struct InterruptMessageTests {
    @Test func msiAddressAndDataFieldsDecode() throws {
        // Destination 0x12, logical, no redirection hint; NMI, edge.
        let nmi = try #require(InterruptMessage.decodeMSI(address: 0xFEE1_2004, data: 0x0000_0400))
        #expect(nmi.deliveryMode == .nmi)
        #expect(nmi.destination == 0x12)
        #expect(nmi.destinationMode == .logical)
        #expect(nmi.destinationFormat == .xAPIC)
        #expect(nmi.triggerMode == .edge)
        #expect(nmi.shorthand == .none)
        #expect(nmi.sourceAPICID == nil)

        // Vector 0x41, fixed, level-triggered assert, physical destination 3.
        let level = try #require(InterruptMessage.decodeMSI(address: 0xFEE0_3000, data: 0x0000_C041))
        #expect(level.vector == 0x41)
        #expect(level.deliveryMode == .fixed)
        #expect(level.destinationMode == .physical)
        #expect(level.destination == 3)
        #expect(level.triggerMode == .level)
        #expect(level.level)

        let deassert = try #require(InterruptMessage.decodeMSI(address: 0xFEE0_3000, data: 0x0000_8041))
        #expect(!deassert.level)
    }

    @Test func msiEdgeMessagesAlwaysAssert() throws {
        // Bit 14 clear, bit 15 clear: the level bit is ignored for edges.
        let edge = try #require(InterruptMessage.decodeMSI(address: 0xFEE0_0000, data: 0x31))
        #expect(edge.triggerMode == .edge)
        #expect(edge.level)
    }

    @Test func msiRedirectionHintWithLogicalModeIsLowestPriority() throws {
        let hinted = try #require(InterruptMessage.decodeMSI(address: 0xFEE0_F00C, data: 0x51))
        #expect(hinted.deliveryMode == .lowestPriority)
        let physicalHint = try #require(InterruptMessage.decodeMSI(address: 0xFEE0_F008, data: 0x51))
        #expect(physicalHint.deliveryMode == .fixed, "the hint changes nothing in physical mode")
        let noHint = try #require(InterruptMessage.decodeMSI(address: 0xFEE0_F004, data: 0x51))
        #expect(noHint.deliveryMode == .fixed)
    }

    @Test func msiOutsideTheWindowOrWithReservedModesIsNotAnInterrupt() {
        #expect(InterruptMessage.decodeMSI(address: 0xFED0_0000, data: 0x31) == nil)
        #expect(InterruptMessage.decodeMSI(address: 0x1_FEE0_0000, data: 0x31) == nil)
        #expect(InterruptMessage.decodeMSI(address: 0xFEE0_0000, data: 0x331) == nil, "delivery mode 011")
        #expect(InterruptMessage.decodeMSI(address: 0xFEE0_0000, data: 0x631) == nil, "delivery mode 110")
        #expect(InterruptMessage.decodeMSI(address: 0xFEE0_0000, data: 0x731)?.deliveryMode == .extINT)
        #expect(InterruptMessage.decodeMSI(address: 0xFEE0_0000, data: 0xFFFF_0031)?.vector == 0x31,
                "reserved data bits 31:16 are ignored")
    }

    @Test func msiExtendedDestinationIDIsOptIn() throws {
        // Address bits 11:5 = 0x01 → destination bits 14:8 = 1.
        let address: UInt64 = 0xFEE0_5020
        let plain = try #require(InterruptMessage.decodeMSI(address: address, data: 0x31))
        #expect(plain.destination == 0x05)
        let extended = try #require(InterruptMessage.decodeMSI(address: address, data: 0x31, extendedDestinationID: true))
        #expect(extended.destination == 0x105)
        #expect(extended.destinationFormat == .x2APIC)
    }

    @Test func broadcastDependsOnTheDestinationFormat() {
        #expect(InterruptMessage(vector: 0x30, destination: 0xFF).isBroadcast)
        #expect(!InterruptMessage(vector: 0x30, destination: 0xFF, destinationFormat: .x2APIC).isBroadcast)
        #expect(InterruptMessage(vector: 0x30, destination: 0xFFFF_FFFF, destinationFormat: .x2APIC).isBroadcast)
    }

    @Test func descriptionNamesTheEssentials() {
        let text = InterruptMessage(vector: 0x41, deliveryMode: .lowestPriority, destinationMode: .logical,
                                    destination: 3, triggerMode: .level, sourceAPICID: 2).description
        #expect(text == "lowestPriority vector 0x41 to logical 0x03, level assert, from APIC 2")
    }
}

@Suite struct VectorSetTests {
    @Test func insertRemoveAndHighest() {
        var set = VectorSet()
        #expect(set.isEmpty && set.highest == nil)
        for vector: UInt8 in [0x10, 0x3F, 0x40, 0xFF, 0x80] { set.insert(vector) }
        #expect(set.highest == 0xFF)
        set.remove(0xFF)
        #expect(set.highest == 0x80)
        #expect(set.contains(0x3F) && set.contains(0x40) && !set.contains(0x41))
        set.remove(0x80); set.remove(0x40); set.remove(0x3F)
        #expect(set.highest == 0x10)
    }

    @Test func registersAreThirtyTwoVectorsEach() {
        let set = VectorSet([0x00, 0x21, 0x5F, 0xE0])
        #expect(set.register(0) == 1)
        #expect(set.register(1) == 1 << 1)
        #expect(set.register(2) == 1 << 31)
        #expect(set.register(7) == 1)
        #expect(set.register(3) == 0)
    }

    @Test func unionAndSubtraction() {
        var a = VectorSet([0x20, 0x30])
        a.formUnion(VectorSet([0x30, 0xF0]))
        #expect(a == VectorSet([0x20, 0x30, 0xF0]))
        a.subtract(VectorSet([0x20, 0xF0]))
        #expect(a == VectorSet([0x30]))
        #expect(a.description == "{0x30}")
    }
}

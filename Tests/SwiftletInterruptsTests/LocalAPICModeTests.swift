import Testing
@testable import SwiftletInterrupts

/// INIT and STARTUP (Intel SDM Vol. 3A §10.4.7, §8.4), IA32_APIC_BASE and
/// the x2APIC MSR interface (§10.12).
@Suite struct LocalAPICStartupTests {
    static let initMessage = InterruptMessage(vector: 0, deliveryMode: .initialize, destination: 1,
                                              triggerMode: .level, level: true, sourceAPICID: 0)

    @Test func initResetsEverythingButTheIDAndTheMode() {
        var apic = LocalAPIC.enabled(id: 1, bsp: false)
        apic.set(Reg.id, 0x0500_0000)
        apic.set(Reg.tpr, 0x20)
        apic.set(Reg.ldr, 0x0100_0000)
        apic.set(Reg.dfr, 0x0FFF_FFFF)
        apic.set(Reg.lint0, 0x700)
        apic.set(Reg.timer, 0xEC)
        apic.set(Reg.divide, 0xB)
        apic.set(Reg.icrHigh, 0x0200_0000)
        apic.set(Reg.initialCount, 1000, now: 0)
        apic.accept(vector: 0x41, levelTriggered: true)
        apic.accept(vector: 0x51, levelTriggered: false)
        _ = apic.take()
        apic.accept(vector: 3, levelTriggered: false)
        apic.set(Reg.esr, 0)

        let effects = apic.deliver(Self.initMessage)
        #expect(effects.first == .initReset(waitForSIPI: true))
        #expect(effects.contains(.timerDeadlineChanged(nil)))
        #expect(apic.activity == .waitingForSIPI)
        #expect(apic.reg(Reg.id) == 0x0500_0000, "the APIC ID survives INIT")
        #expect(apic.mode == .xAPIC && apic.apicBase == 0xFEE0_0800)
        #expect(apic.reg(Reg.tpr) == 0 && apic.reg(Reg.ldr) == 0 && apic.reg(Reg.dfr) == 0xFFFF_FFFF)
        #expect(apic.reg(Reg.svr) == 0xFF)
        #expect(apic.reg(Reg.esr) == 0 && apic.latchedErrors() == 0)
        #expect(apic.reg(Reg.icrHigh) == 0 && apic.reg(Reg.icrLow) == 0)
        #expect(apic.reg(Reg.initialCount) == 0 && apic.reg(Reg.currentCount, now: 10) == 0)
        #expect(apic.reg(Reg.divide) == 0)
        #expect(apic.irr.isEmpty && apic.isr.isEmpty && apic.tmr.isEmpty)
        for offset in [Reg.cmci, Reg.timer, Reg.thermal, Reg.perf, Reg.lint0, Reg.lint1, Reg.error] {
            #expect(apic.reg(offset) == masked)
        }
    }

    @Test func theBSPRestartsInsteadOfWaiting() {
        var apic = LocalAPIC.enabled(id: 0, bsp: true)
        #expect(apic.deliver(Self.initMessage).first == .initReset(waitForSIPI: false))
        #expect(apic.activity == .running)
        #expect(apic.deliver(InterruptMessage(vector: 0x10, deliveryMode: .startup, destination: 0)).isEmpty,
                "a running processor ignores SIPIs")
    }

    @Test func startupIsTakenOnlyInTheWaitForSIPIState() {
        var apic = LocalAPIC(apicID: 1, isBootstrapProcessor: false)
        let sipi = InterruptMessage(vector: 0x9A, deliveryMode: .startup, destination: 1, level: false)
        #expect(apic.deliver(sipi) == [.startup(vector: 0x9A)])
        #expect(apic.activity == .running)
        #expect(apic.deliver(sipi).isEmpty, "the second SIPI of the sequence finds it running")
        _ = apic.deliver(Self.initMessage)
        #expect(apic.deliver(sipi) == [.startup(vector: 0x9A)])
    }

    @Test func aProcessorWaitingForSIPITakesNoInterrupts() {
        var apic = LocalAPIC.enabled(id: 1, bsp: false)
        #expect(apic.activity == .waitingForSIPI)
        apic.accept(vector: 0x41, levelTriggered: false)
        apic.applyVirtualWireMode()
        _ = apic.setLocalInterruptPin(0, asserted: true)
        #expect(apic.pendingInterrupt() == nil)
        #expect(apic.acknowledge() == .spurious(0xFF))
        #expect(apic.irr == VectorSet([0x41]), "the vector waits in the IRR")
        _ = apic.deliver(InterruptMessage(vector: 0x10, deliveryMode: .startup, destination: 1))
        #expect(apic.pendingInterrupt() == .external)
    }

    @Test func initLevelDeassertIsIgnored() {
        var apic = LocalAPIC.enabled(id: 1, bsp: false)
        apic.set(Reg.tpr, 0x20)
        var deassert = Self.initMessage
        deassert.level = false
        #expect(apic.deliver(deassert).isEmpty)
        #expect(apic.reg(Reg.tpr) == 0x20)
    }

    @Test func initKeepsX2APICMode() throws {
        var apic = LocalAPIC.enabled(id: 0x42, bsp: false)
        try apic.enableX2APIC()
        _ = apic.deliver(Self.initMessage)
        #expect(apic.mode == .x2APIC)
        #expect(try apic.readMSR(0x802, now: 0) == 0x42)
        #expect(try apic.readMSR(0x80D, now: 0) == 0x0004_0004)
        #expect(try apic.readMSR(0x80F, now: 0) == 0xFF)
    }
}

@Suite struct LocalAPICBaseMSRTests {
    @Test func legalModeTransitions() throws {
        var apic = LocalAPIC.enabled(id: 7)
        // xAPIC → x2APIC
        let effects = try apic.writeMSR(0x1B, value: 0xFEE0_0D00, now: 0)
        #expect(apic.mode == .x2APIC)
        #expect(effects.first == .apicBaseChanged(0xFEE0_0D00))
        #expect(effects.contains(.addressingChanged(apic.addressing)))
        #expect(try apic.readMSR(0x1B, now: 0) == 0xFEE0_0D00)
        #expect(apic.reg(Reg.svr) == 0xFFFF_FFFF, "the page is gone")
        #expect(try apic.readMSR(0x80F, now: 0) == 0x1FF, "registers keep their values across the switch")
        // x2APIC → disabled
        _ = try apic.writeMSR(0x1B, value: 0xFEE0_0100, now: 0)
        #expect(apic.mode == .disabled && apic.mmioBase == nil)
        // disabled → xAPIC, at another base
        _ = try apic.writeMSR(0x1B, value: 0xFED0_0900, now: 0)
        #expect(apic.mode == .xAPIC && apic.mmioBase == 0xFED0_0000)
        #expect(apic.reg(Reg.svr) == 0xFF, "disabling returned the registers to their power-up state")
        #expect(apic.reg(Reg.id) == 0x0700_0000, "the ID is preserved")
    }

    @Test func illegalTransitionsAndReservedBitsRaiseGP() throws {
        var apic = LocalAPIC.enabled()
        #expect(apic.wrmsr(0x1B, 0xFEE0_0500) == .gp, "EN = 0 with EXTD = 1 is invalid")
        #expect(apic.wrmsr(0x1B, 0xFEE0_0901) == .gp, "bit 0 is reserved")
        #expect(apic.wrmsr(0x1B, 0xFEE0_0B00) == .gp, "bit 9 is reserved")
        #expect(apic.wrmsr(0x1B, 1 << 52 | 0xFEE0_0900) == .gp, "above MAXPHYADDR")
        try apic.enableX2APIC()
        #expect(apic.wrmsr(0x1B, 0xFEE0_0900) == .gp, "x2APIC → xAPIC must go through disabled")
        _ = try apic.writeMSR(0x1B, value: 0xFEE0_0100, now: 0)
        #expect(apic.wrmsr(0x1B, 0xFEE0_0D00) == .gp, "disabled → x2APIC must go through xAPIC")
        #expect(apic.mode == .disabled)

        var narrow = LocalAPIC(apicID: 0, isBootstrapProcessor: true,
                               configuration: .init(supportsX2APIC: false, physicalAddressWidth: 36))
        #expect(narrow.wrmsr(0x1B, 0xFEE0_0D00) == .gp, "EXTD is reserved without x2APIC support")
        #expect(narrow.wrmsr(0x1B, 1 << 36 | 0xFEE0_0900) == .gp)
        #expect(narrow.wrmsr(0x1B, 0xF_FEE0_0900) == .ok)
    }

    @Test func theBSPFlagIsTheHardwaresAndWritesOfTheSameValueDoNothing() throws {
        var ap = LocalAPIC(apicID: 1, isBootstrapProcessor: false)
        _ = try ap.writeMSR(0x1B, value: 0xFEE0_0900, now: 0)
        #expect(!ap.isBootstrapProcessor && ap.apicBase == 0xFEE0_0800)
        #expect(try ap.writeMSR(0x1B, value: 0xFEE0_0800, now: 0).isEmpty)
    }
}

@Suite struct X2APICTests {
    static func apic(id: UInt32 = 0x1234) throws -> LocalAPIC {
        var apic = LocalAPIC.enabled(id: id)
        try apic.enableX2APIC()
        return apic
    }

    @Test func identificationRegisters() throws {
        let apic = try Self.apic()
        #expect(try apic.readMSR(0x802, now: 0) == 0x1234, "the full 32-bit x2APIC ID")
        #expect(try apic.readMSR(0x803, now: 0) == 0x0006_0014)
        // Logical x2APIC ID: cluster 0x123 in bits 31:16, bit 4 for ID[3:0] = 4.
        #expect(try apic.readMSR(0x80D, now: 0) == 0x0123_0010)
        #expect(LocalAPIC.x2APICLogicalID(0x1F) == 0x0001_8000)
    }

    @Test func readOnlyAndAbsentRegistersRaiseGP() throws {
        var apic = try Self.apic()
        for msr: UInt32 in [0x802, 0x803, 0x80A, 0x80D, 0x810, 0x818, 0x827, 0x839] {
            #expect(apic.wrmsr(msr, 0) == .gp, "WRMSR 0x\(String(msr, radix: 16)) is read-only")
        }
        for msr: UInt32 in [0x800, 0x801, 0x809, 0x80C, 0x80E, 0x829, 0x831, 0x83A, 0x83D, 0x840, 0x8FF] {
            #expect(apic.readFaults(msr) && apic.wrmsr(msr, 0) == .gp, "MSR 0x\(String(msr, radix: 16)) does not exist")
        }
        #expect(apic.readFaults(0x80B), "EOI is write-only")
        #expect(apic.readFaults(0x83F), "SELF IPI is write-only")
    }

    @Test func reservedBitsRaiseGP() throws {
        var apic = try Self.apic()
        #expect(apic.wrmsr(0x808, 0x100) == .gp, "TPR bits 31:8")
        #expect(apic.wrmsr(0x808, 1 << 32) == .gp, "bits 63:32 of a 32-bit register")
        #expect(apic.wrmsr(0x80B, 1) == .gp, "EOI takes only 0")
        #expect(apic.wrmsr(0x828, 1) == .gp, "ESR takes only 0")
        #expect(apic.wrmsr(0x80F, 0x11FF) == .gp, "no EOI-broadcast suppression")
        #expect(apic.wrmsr(0x832, 0x0004_00EC) == .gp, "no TSC-deadline mode")
        #expect(apic.wrmsr(0x837, 0x0000_04EC) == .gp, "the error entry has no delivery mode")
        #expect(apic.wrmsr(0x83E, 0x4) == .gp, "divide configuration bit 2")
        #expect(apic.wrmsr(0x83F, 0x1_41) == .gp, "SELF IPI bits 31:8")
        #expect(apic.wrmsr(0x835, 0x0001_F7FF) == .ok, "LINT0 with every defined bit, read-only ones included")
        #expect(try apic.readMSR(0x835, now: 0) == 0x0001_A7FF)
        #expect(apic.wrmsr(0x808, 0x40) == .ok && apic.wrmsr(0x828, 0) == .ok && apic.wrmsr(0x80B, 0) == .ok)
    }

    @Test func x2APICRegistersAreUnreachableInXAPICMode() {
        let apic = LocalAPIC.enabled()
        #expect(apic.readFaults(0x802))
        var copy = apic
        #expect(copy.wrmsr(0x808, 0) == .gp)
    }

    @Test func theCommandRegisterIsOne64BitMSR() throws {
        var apic = try Self.apic()
        let effects = try apic.writeMSR(0x830, value: 0x0000_0107_0000_4041, now: 0)
        #expect(apic.sentIPIs(effects) == [InterruptMessage(vector: 0x41, destination: 0x107, destinationFormat: .x2APIC,
                                                            sourceAPICID: 0x1234)])
        #expect(try apic.readMSR(0x830, now: 0) == 0x0000_0107_0000_4041)
        _ = try apic.writeMSR(0x830, value: 0xFFFF_FFFF_0000_1851, now: 0)
        #expect(try apic.readMSR(0x830, now: 0) == 0xFFFF_FFFF_0000_0851, "delivery status is ignored, not stored")
        for reserved: UInt64 in [1 << 13, 1 << 16, 1 << 17, 1 << 20, 1 << 31] {
            #expect(apic.wrmsr(0x830, 0x4041 | reserved) == .gp, "ICR bit \(reserved.trailingZeroBitCount)")
        }
        let broadcast = apic.sentIPIs(try apic.writeMSR(0x830, value: 0xFFFF_FFFF_0000_4041, now: 0))
        #expect(broadcast.first?.isBroadcast == true)
    }

    @Test func selfIPIAndPriorityRegisters() throws {
        var apic = try Self.apic()
        let effects = try apic.writeMSR(0x83F, value: 0x45, now: 0)
        #expect(apic.sentIPIs(effects) == [InterruptMessage(vector: 0x45, destination: 0x1234, destinationFormat: .x2APIC,
                                                            shorthand: .self, sourceAPICID: 0x1234)])
        #expect(apic.sentIPIs(try apic.writeMSR(0x83F, value: 0x05, now: 0)).isEmpty)
        _ = try apic.writeMSR(0x828, value: 0, now: 0)
        #expect(try apic.readMSR(0x828, now: 0) == 0x20, "send illegal vector")
        _ = try apic.writeMSR(0x808, value: 0x3C, now: 0)
        #expect(try apic.readMSR(0x808, now: 0) == 0x3C)
        apic.accept(vector: 0x61, levelTriggered: true)
        #expect(apic.take() == 0x61)
        #expect(try apic.readMSR(0x80A, now: 0) == 0x60)
        #expect(try apic.readMSR(0x813, now: 0) == 1 << 1, "ISR bits 127:96")
        #expect(try apic.readMSR(0x81B, now: 0) == 1 << 1, "TMR bits 127:96")
        let eoi = try apic.writeMSR(0x80B, value: 0, now: 0)
        #expect(eoi == [.endOfInterrupt(vector: 0x61, levelTriggered: true)])
    }

    @Test func timerThroughMSRs() throws {
        var apic = try Self.apic()
        _ = try apic.writeMSR(0x83E, value: 0xB, now: 0)
        _ = try apic.writeMSR(0x832, value: 0xEC, now: 0)
        #expect(try apic.writeMSR(0x838, value: 500, now: 100) == [.timerDeadlineChanged(600)])
        #expect(try apic.readMSR(0x839, now: 350) == 250)
        #expect(try apic.readMSR(0x838, now: 350) == 500)
    }
}

import Testing
@testable import SwiftletInterrupts

/// The xAPIC register page (Intel SDM Vol. 3A §10.4–§10.6, table 10-1).
@Suite struct LocalAPICRegisterTests {
    @Test func powerOnState() {
        var bsp = LocalAPIC(apicID: 3, isBootstrapProcessor: true)
        #expect(bsp.apicBase == 0xFEE0_0900, "default base, EN and BSP")
        #expect(bsp.mode == .xAPIC)
        #expect(bsp.mmioBase == 0xFEE0_0000)
        #expect(bsp.activity == .running)
        #expect(bsp.reg(Reg.id) == 0x0300_0000)
        #expect(bsp.reg(Reg.version) == 0x0006_0014)
        #expect(bsp.reg(Reg.tpr) == 0)
        #expect(bsp.reg(Reg.ppr) == 0)
        #expect(bsp.reg(Reg.ldr) == 0)
        #expect(bsp.reg(Reg.dfr) == 0xFFFF_FFFF)
        #expect(bsp.reg(Reg.svr) == 0xFF, "software-disabled, spurious vector 0xFF")
        #expect(!bsp.isSoftwareEnabled)
        for offset in [Reg.cmci, Reg.timer, Reg.thermal, Reg.perf, Reg.lint0, Reg.lint1, Reg.error] {
            #expect(bsp.reg(offset) == masked, "LVT at \(offset) is masked")
        }
        for offset in [Reg.esr, Reg.icrLow, Reg.icrHigh, Reg.initialCount, Reg.currentCount, Reg.divide] {
            #expect(bsp.reg(offset) == 0)
        }
        for index in 0..<8 {
            let step = UInt64(index) * 0x10
            #expect(bsp.reg(Reg.isr + step) == 0 && bsp.reg(Reg.tmr + step) == 0 && bsp.reg(Reg.irr + step) == 0)
        }
        let ap = LocalAPIC(apicID: 1, isBootstrapProcessor: false)
        #expect(ap.apicBase == 0xFEE0_0800)
        #expect(ap.activity == .waitingForSIPI)
    }

    @Test func idRegisterKeepsBits31To24AndReportsTheNewAddress() {
        var apic = LocalAPIC.enabled(id: 1)
        let effects = apic.set(Reg.id, 0xABCD_EF12)
        #expect(apic.reg(Reg.id) == 0xAB00_0000)
        #expect(apic.apicID == 0xAB)
        #expect(effects == [.addressingChanged(apic.addressing)])
        #expect(apic.addressing.physicalID == 0xAB)
        #expect(apic.initialAPICID == 1, "the hardware ID does not change")
    }

    @Test func logicalDestinationAndFormatKeepTheirDefinedBits() {
        var apic = LocalAPIC.enabled()
        apic.set(Reg.ldr, 0x1234_5678)
        #expect(apic.reg(Reg.ldr) == 0x1200_0000)
        apic.set(Reg.dfr, 0x0000_0000)
        #expect(apic.reg(Reg.dfr) == 0x0FFF_FFFF, "cluster model; bits 27:0 read as ones")
        #expect(apic.addressing.destinationFormatModel == 0)
    }

    @Test func spuriousVectorRegisterMasksReservedBits() {
        var apic = LocalAPIC(apicID: 0, isBootstrapProcessor: true)
        apic.set(Reg.svr, 0xFFFF_FFFF)
        #expect(apic.reg(Reg.svr) == 0x3FF, "no EOI-broadcast suppression (bit 12) without directed EOI")
        #expect(apic.isSoftwareEnabled)
    }

    @Test func softwareDisableMasksEveryLVTAndKeepsThemMasked() {
        var apic = LocalAPIC.enabled()
        for offset in [Reg.cmci, Reg.timer, Reg.thermal, Reg.perf, Reg.lint0, Reg.lint1, Reg.error] {
            apic.set(offset, 0x40)
            #expect(apic.reg(offset) == 0x40)
        }
        apic.set(Reg.svr, 0xFF)
        for offset in [Reg.cmci, Reg.timer, Reg.thermal, Reg.perf, Reg.lint0, Reg.lint1, Reg.error] {
            #expect(apic.reg(offset) == 0x40 | masked)
            apic.set(offset, 0x41)
            #expect(apic.reg(offset) == 0x41 | masked, "unmasking is ignored while software-disabled")
        }
    }

    @Test func lvtEntriesKeepOnlyTheirWritableBits() {
        var apic = LocalAPIC.enabled()
        let expected: [(UInt64, UInt32)] = [
            (Reg.cmci, 0x0001_07FF), (Reg.timer, 0x0003_00FF), (Reg.thermal, 0x0001_07FF),
            (Reg.perf, 0x0001_07FF), (Reg.lint0, 0x0001_A7FF), (Reg.lint1, 0x0001_A7FF), (Reg.error, 0x0001_00FF),
        ]
        for (offset, bits) in expected {
            apic.set(offset, 0xFFFF_FFFF)
            #expect(apic.reg(offset) == bits, "LVT at 0x\(String(offset, radix: 16))")
        }
    }

    @Test func timerModeRefusesTSCDeadline() {
        var apic = LocalAPIC.enabled()
        apic.set(Reg.timer, 0x0004_0040)  // mode 10b: TSC-deadline
        #expect(apic.reg(Reg.timer) == 0x40, "bit 18 reads 0: one-shot")
        apic.set(Reg.timer, 0x0006_0040)  // mode 11b (reserved)
        #expect(apic.reg(Reg.timer) == 0x0002_0040, "only the periodic bit stays")
    }

    @Test func readOnlyRegistersIgnoreWritesWithoutError() {
        var apic = LocalAPIC.enabled()
        apic.accept(vector: 0x40, levelTriggered: true)
        for offset in [Reg.version, Reg.ppr, Reg.isr, Reg.tmr + 0x20, Reg.irr + 0x20, Reg.currentCount, Reg.apr] {
            let before = apic.reg(offset)
            apic.set(offset, 0xFFFF_FFFF)
            #expect(apic.reg(offset) == before)
        }
        #expect(apic.latchedErrors() == 0)
    }

    @Test func reservedRegistersSetIllegalRegisterAddress() {
        var apic = LocalAPIC.enabled()
        apic.set(Reg.error, 0xE0)
        #expect(apic.readMMIO(offset: 0x40, size: 4, now: 0) == 0)
        #expect(apic.latchedErrors() == 0x80)
        #expect(apic.irr.contains(0xE0), "the error raised the LVT error interrupt")
        apic.set(0x3A0, 1)
        #expect(apic.latchedErrors() == 0x80)
        apic.set(0x3F0, 1)  // SELF IPI exists only in x2APIC mode
        #expect(apic.latchedErrors() == 0x80)
        #expect(apic.latchedErrors() == 0, "each ESR write starts a new collection")
    }

    @Test func errorStatusIsLatchedByTheWriteBeforeTheRead() {
        var apic = LocalAPIC.enabled()
        apic.accept(vector: 5, levelTriggered: false)
        #expect(apic.reg(Reg.esr) == 0, "errors appear only after an ESR write")
        apic.set(Reg.esr, 0)
        #expect(apic.reg(Reg.esr) == 0x40, "received illegal vector")
        #expect(apic.reg(Reg.esr) == 0x40, "reads do not clear it")
        apic.set(Reg.esr, 0xFFFF_FFFF)
        #expect(apic.reg(Reg.esr) == 0, "the value written does not matter")
    }

    @Test func errorInterruptWithAnIllegalVectorDoesNotRecurse() {
        var apic = LocalAPIC.enabled()
        apic.set(Reg.error, 0x03)
        apic.accept(vector: 1, levelTriggered: false)
        #expect(apic.irr.isEmpty)
        #expect(apic.latchedErrors() == 0x40)
    }

    @Test func narrowAndMisalignedReadsSeeTheRegisterBytes() {
        var apic = LocalAPIC.enabled()
        #expect(apic.readMMIO(offset: 0x30, size: 1, now: 0) == 0x14)
        #expect(apic.readMMIO(offset: 0x32, size: 1, now: 0) == 0x06)
        #expect(apic.readMMIO(offset: 0x31, size: 2, now: 0) == 0x0600)
        #expect(apic.readMMIO(offset: 0x30, size: 2, now: 0) == 0x0014)
        #expect(apic.readMMIO(offset: 0x30, size: 8, now: 0) == 0x0006_0014, "no spill into the next slot")
        #expect(apic.readMMIO(offset: 0x34, size: 4, now: 0) == 0, "bytes 4-15 of a slot read 0")
        #expect(apic.readMMIO(offset: 0x3C, size: 8, now: 0) == 0)
        #expect(apic.latchedErrors() == 0, "none of these is an error")
    }

    @Test func onlyAligned32BitWritesReachARegister() {
        var apic = LocalAPIC.enabled()
        _ = apic.writeMMIO(offset: Reg.tpr, size: 1, value: 0x50, now: 0)
        _ = apic.writeMMIO(offset: Reg.tpr, size: 2, value: 0x50, now: 0)
        _ = apic.writeMMIO(offset: Reg.tpr, size: 8, value: 0x50, now: 0)
        _ = apic.writeMMIO(offset: Reg.tpr + 1, size: 4, value: 0x50, now: 0)
        _ = apic.writeMMIO(offset: Reg.tpr + 4, size: 4, value: 0x50, now: 0)
        #expect(apic.reg(Reg.tpr) == 0)
        _ = apic.writeMMIO(offset: Reg.tpr, size: 4, value: 0xFFFF_FF50, now: 0)
        #expect(apic.reg(Reg.tpr) == 0x50, "bits 31:8 are reserved")
    }

    @Test func thePageIsNotDecodedOutsideXAPICMode() throws {
        var apic = LocalAPIC.enabled()
        try apic.enableX2APIC()
        #expect(apic.mmioBase == nil)
        #expect(apic.readMMIO(offset: Reg.version, size: 4, now: 0) == 0xFFFF_FFFF)
        #expect(apic.writeMMIO(offset: Reg.tpr, size: 4, value: 0x50, now: 0).isEmpty)
        #expect(try apic.readMSR(0x808, now: 0) == 0)
        #expect(apic.readMMIO(offset: 0x1000, size: 2, now: 0) == 0xFFFF)
    }

    @Test func commandRegisterSendsTheIPIItDescribes() {
        var apic = LocalAPIC.enabled(id: 2)
        #expect(apic.set(Reg.icrHigh, 0x03FF_FFFF).isEmpty, "writing ICR high sends nothing")
        #expect(apic.reg(Reg.icrHigh) == 0x0300_0000)
        let effects = apic.set(Reg.icrLow, 0x0000_4031)
        #expect(effects == [.sendIPI(InterruptMessage(vector: 0x31, destination: 3, sourceAPICID: 2))])
        #expect(apic.reg(Reg.icrLow) == 0x4031, "delivery status reads idle")

        let logical = apic.sentIPIs(apic.set(Reg.icrLow, 0x0000_C941))
        #expect(logical == [InterruptMessage(vector: 0x41, deliveryMode: .lowestPriority, destinationMode: .logical,
                                             destination: 3, triggerMode: .level, sourceAPICID: 2)])

        let shorthands: [(UInt32, InterruptMessage.Shorthand)] = [
            (0x0004_4050, .self), (0x0008_4050, .allIncludingSelf), (0x000C_4050, .allExcludingSelf)]
        for (low, shorthand) in shorthands {
            #expect(apic.sentIPIs(apic.set(Reg.icrLow, low)).map(\.shorthand) == [shorthand])
        }
    }

    @Test func commandRegisterMasksReservedBitsAndDropsReservedModes() {
        var apic = LocalAPIC.enabled()
        #expect(apic.sentIPIs(apic.set(Reg.icrLow, 0xFFFF_FFFF)).isEmpty, "delivery mode 111 is reserved")
        #expect(apic.reg(Reg.icrLow) == 0x000C_CFFF)
        #expect(apic.sentIPIs(apic.set(Reg.icrLow, 0x0000_0341)).isEmpty, "delivery mode 011 is reserved")
    }

    @Test func initAndStartupIPIs() {
        var apic = LocalAPIC.enabled(id: 0)
        apic.set(Reg.icrHigh, 0x0100_0000)
        let initIPI = apic.sentIPIs(apic.set(Reg.icrLow, 0x0000_C500))
        #expect(initIPI.map(\.deliveryMode) == [.initialize])
        #expect(initIPI.first?.triggerMode == .level && initIPI.first?.level == true)
        let deassert = apic.sentIPIs(apic.set(Reg.icrLow, 0x0000_8500))
        #expect(deassert.first?.level == false)
        let sipi = apic.sentIPIs(apic.set(Reg.icrLow, 0x0000_0608))
        #expect(sipi == [InterruptMessage(vector: 0x08, deliveryMode: .startup, destination: 1, level: false, sourceAPICID: 0)])
    }

    @Test func fixedIPIWithAnIllegalVectorIsNotSent() {
        var apic = LocalAPIC.enabled()
        #expect(apic.sentIPIs(apic.set(Reg.icrLow, 0x0000_4005)).isEmpty)
        #expect(apic.latchedErrors() == 0x20, "send illegal vector")
        #expect(apic.sentIPIs(apic.set(Reg.icrLow, 0x0000_4405)).count == 1, "an NMI has no vector to check")
    }

    @Test func cr8IsTheTaskPriorityClass() {
        var apic = LocalAPIC.enabled()
        apic.set(Reg.tpr, 0x5A)
        #expect(apic.cr8 == 5)
        apic.setCR8(0x3)
        #expect(apic.reg(Reg.tpr) == 0x30, "TPR[3:0] cleared")
        apic.setCR8(0xFFFF_FFF7)
        #expect(apic.taskPriority == 0x70)
    }

    @Test func handlesTheAPICMSRsOnly() {
        #expect(LocalAPIC.handlesMSR(0x1B))
        #expect(LocalAPIC.handlesMSR(0x800) && LocalAPIC.handlesMSR(0x8FF))
        #expect(!LocalAPIC.handlesMSR(0x7FF) && !LocalAPIC.handlesMSR(0x900) && !LocalAPIC.handlesMSR(0x6E0))
    }
}

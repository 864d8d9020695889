import Testing
@testable import SwiftletInterrupts

/// Acceptance, priority, INTA and EOI (Intel SDM Vol. 3A §10.8, §10.9).
@Suite struct LocalAPICPriorityTests {
    @Test func processorPriorityIsTheHigherOfTaskPriorityAndInServiceClass() {
        var apic = LocalAPIC.enabled()
        apic.set(Reg.tpr, 0x35)
        #expect(apic.reg(Reg.ppr) == 0x35, "nothing in service: PPR = TPR")
        apic.accept(vector: 0x51, levelTriggered: false)
        #expect(apic.take() == 0x51)
        #expect(apic.reg(Reg.ppr) == 0x50, "in-service class above TPR: PPR[3:0] = 0")
        apic.set(Reg.tpr, 0x5A)
        #expect(apic.reg(Reg.ppr) == 0x5A, "equal classes keep TPR[3:0]")
        apic.set(Reg.tpr, 0x6B)
        #expect(apic.reg(Reg.ppr) == 0x6B)
        _ = apic.eoi()
        apic.set(Reg.tpr, 0)
        #expect(apic.reg(Reg.ppr) == 0)
    }

    @Test func onlyAClassAboveThePPRClassIsDeliverable() {
        var apic = LocalAPIC.enabled()
        apic.set(Reg.tpr, 0x40)
        apic.accept(vector: 0x4F, levelTriggered: false)
        #expect(apic.pendingInterrupt() == nil, "class 4 does not beat PPR class 4")
        apic.set(Reg.tpr, 0x3F)
        #expect(apic.pendingInterrupt() == .vector(0x4F))
        apic.setCR8(0xF)
        #expect(apic.pendingInterrupt() == nil, "class 15 blocks everything")
    }

    @Test func inServiceInterruptsBlockTheirClassAndBelowButNotAbove() {
        var apic = LocalAPIC.enabled()
        apic.accept(vector: 0x41, levelTriggered: false)
        #expect(apic.take() == 0x41)
        apic.accept(vector: 0x45, levelTriggered: false)
        apic.accept(vector: 0x30, levelTriggered: false)
        #expect(apic.pendingInterrupt() == nil, "0x45 shares the in-service class, 0x30 is below")
        apic.accept(vector: 0x51, levelTriggered: false)
        #expect(apic.take() == 0x51, "a higher class nests")
        #expect(apic.isr == VectorSet([0x41, 0x51]))
        #expect(apic.reg(Reg.isr + 0x20) == 1 << 1 | 1 << 17, "ISR bits 95:64 hold 0x41 and 0x51")
    }

    @Test func eoiRetiresNestedInterruptsInnermostFirst() {
        var apic = LocalAPIC.enabled()
        for vector: UInt8 in [0x41, 0x61, 0x81] {
            apic.accept(vector: vector, levelTriggered: false)
            #expect(apic.take() == vector)
        }
        apic.accept(vector: 0x45, levelTriggered: false)
        #expect(apic.eoi() == [.endOfInterrupt(vector: 0x81, levelTriggered: false)])
        #expect(apic.eoi() == [.endOfInterrupt(vector: 0x61, levelTriggered: false)])
        #expect(apic.pendingInterrupt() == nil, "0x41 still in service")
        #expect(apic.eoi() == [.endOfInterrupt(vector: 0x41, levelTriggered: false)])
        #expect(apic.take() == 0x45)
        #expect(apic.eoi().count == 1)
        #expect(apic.eoi().isEmpty, "an EOI with nothing in service does nothing")
    }

    @Test func levelTriggeredInterruptsReportTheirEOI() {
        var apic = LocalAPIC.enabled()
        apic.accept(vector: 0x61, levelTriggered: true)
        #expect(apic.reg(Reg.tmr + 0x30) == 1 << 1, "TMR bit for 0x61")
        #expect(apic.take() == 0x61)
        #expect(apic.eoi() == [.endOfInterrupt(vector: 0x61, levelTriggered: true)])
        apic.accept(vector: 0x61, levelTriggered: false)
        #expect(apic.reg(Reg.tmr + 0x30) == 0, "an edge acceptance clears the TMR bit")
        #expect(apic.take() == 0x61)
        #expect(apic.eoi() == [.endOfInterrupt(vector: 0x61, levelTriggered: false)])
    }

    @Test func aVectorCanBeBothInServiceAndPendingOnce() {
        var apic = LocalAPIC.enabled()
        apic.accept(vector: 0x70, levelTriggered: false)
        #expect(apic.take() == 0x70)
        apic.accept(vector: 0x70, levelTriggered: false)
        apic.accept(vector: 0x70, levelTriggered: false)
        #expect(apic.irr == VectorSet([0x70]) && apic.isr == VectorSet([0x70]))
        _ = apic.eoi()
        #expect(apic.take() == 0x70)
        _ = apic.eoi()
        #expect(apic.pendingInterrupt() == nil, "the repeats collapsed into one")
    }

    @Test func illegalVectorsAreRefusedAndLogged() {
        var apic = LocalAPIC.enabled()
        for vector: UInt8 in [0, 1, 15] {
            #expect(apic.accept(vector: vector, levelTriggered: false) == false)
        }
        #expect(apic.accept(vector: 16, levelTriggered: false) == true)
        #expect(apic.irr == VectorSet([16]))
        #expect(apic.latchedErrors() == 0x40)
    }

    @Test func theSpuriousVectorAnswersAnINTAWithNothingDeliverable() {
        var apic = LocalAPIC.enabled()
        apic.set(Reg.svr, 0x1EF)
        apic.accept(vector: 0x41, levelTriggered: false)
        #expect(apic.pendingInterrupt() == .vector(0x41))
        apic.set(Reg.tpr, 0x50)  // the guest raises its priority before the INTA
        #expect(apic.acknowledge() == .spurious(0xEF))
        #expect(apic.isr.isEmpty, "the spurious vector is not in service")
        #expect(apic.irr == VectorSet([0x41]), "the interrupt stays pending")
        #expect(apic.eoi().isEmpty)
    }

    @Test func aSoftwareDisabledAPICTakesNoNewInterruptsButDispatchesHeldOnes() {
        var apic = LocalAPIC.enabled()
        apic.accept(vector: 0x41, levelTriggered: false)
        apic.set(Reg.svr, 0xFF)
        #expect(apic.accept(vector: 0x51, levelTriggered: false) == false)
        #expect(apic.pendingInterrupt() == .vector(0x41), "held IRR bits still need handling")
        #expect(apic.take() == 0x41)
        #expect(apic.eoi() == [.endOfInterrupt(vector: 0x41, levelTriggered: false)])
        #expect(apic.acknowledge() == .spurious(0xFF))
    }

    @Test func aGloballyDisabledAPICTakesNothing() throws {
        var apic = LocalAPIC.enabled()
        apic.accept(vector: 0x41, levelTriggered: false)
        _ = try apic.writeMSR(0x1B, value: 0xFEE0_0100, now: 0)
        #expect(apic.mode == .disabled)
        #expect(apic.accept(vector: 0x51, levelTriggered: false) == false)
        #expect(apic.pendingInterrupt() == nil)
        #expect(apic.deliver(InterruptMessage(vector: 0x51, destination: 0)).isEmpty)
        #expect(apic.deliver(InterruptMessage(vector: 0, deliveryMode: .nmi, destination: 0)).isEmpty)
    }

    @Test func arbitrationPriority() {
        var apic = LocalAPIC.enabled()
        apic.set(Reg.tpr, 0x45)
        #expect(apic.reg(Reg.apr) == 0x45, "TPR when nothing is pending or in service")
        apic.accept(vector: 0x31, levelTriggered: false)
        #expect(apic.reg(Reg.apr) == 0x45, "a lower pending class does not count")
        apic.accept(vector: 0x62, levelTriggered: false)
        #expect(apic.reg(Reg.apr) == 0x60, "the highest class, sub-class 0")
        #expect(apic.take() == 0x62)
        #expect(apic.reg(Reg.apr) == 0x60, "in service counts too")
    }

    @Test func postedVectorsAreAcceptedInOneBatch() {
        var apic = LocalAPIC.enabled()
        apic.accept(vector: 0x90, levelTriggered: true)
        apic.acceptPosted(VectorSet([0x05, 0x40, 0x90, 0xA0]), levelTriggered: VectorSet([0x40, 0x05]))
        #expect(apic.irr == VectorSet([0x40, 0x90, 0xA0]))
        #expect(apic.tmr == VectorSet([0x40]), "0x90 came back edge-triggered")
        #expect(apic.latchedErrors() == 0x40, "vector 5 is illegal")
        apic.acceptPosted(VectorSet())
        #expect(apic.irr == VectorSet([0x40, 0x90, 0xA0]))
    }

    @Test func messagesAreHandledByDeliveryMode() {
        var apic = LocalAPIC.enabled(id: 4)
        #expect(apic.deliver(InterruptMessage(vector: 0x33, deliveryMode: .lowestPriority, destination: 4)).isEmpty)
        #expect(apic.irr.contains(0x33))
        #expect(apic.deliver(InterruptMessage(vector: 0x34, destination: 4, triggerMode: .level)).isEmpty)
        #expect(apic.tmr.contains(0x34))
        _ = apic.deliver(InterruptMessage(vector: 0x35, destination: 4, triggerMode: .level, level: false))
        #expect(!apic.irr.contains(0x35), "a level de-assert carries no interrupt")
        #expect(apic.deliver(InterruptMessage(vector: 0, deliveryMode: .nmi, destination: 4)) == [.nmi])
        #expect(apic.deliver(InterruptMessage(vector: 0, deliveryMode: .smi, destination: 4)) == [.smi])
        _ = apic.deliver(InterruptMessage(vector: 0, deliveryMode: .extINT, destination: 4))
        #expect(apic.pendingInterrupt() == .external, "ExtINT goes before APIC vectors")
        #expect(apic.acknowledge() == .external)
        #expect(apic.pendingInterrupt() == .vector(0x34), "an ExtINT message is taken once")
    }
}

/// LINT0 and LINT1 (§10.5.1).
@Suite struct LocalAPICPinTests {
    @Test func virtualWireRoutesThe8259ThroughLINT0() {
        var apic = LocalAPIC(apicID: 0, isBootstrapProcessor: true)
        apic.applyVirtualWireMode()
        #expect(apic.reg(Reg.lint0) == 0x700 && apic.reg(Reg.lint1) == 0x400)
        #expect(apic.setLocalInterruptPin(0, asserted: true).isEmpty)
        #expect(apic.pendingInterrupt() == .external, "even before the guest enables the APIC")
        #expect(apic.acknowledge() == .external)
        #expect(apic.pendingInterrupt() == .external, "ExtINT is a level: it stays while the PIC asks")
        _ = apic.setLocalInterruptPin(0, asserted: false)
        #expect(apic.pendingInterrupt() == nil)
        #expect(apic.setLocalInterruptPin(1, asserted: true) == [.nmi])
    }

    @Test func maskedOrRedirectedLINT0DoesNotReachThePIC() {
        var apic = LocalAPIC.enabled()
        apic.set(Reg.lint0, 0x700 | masked)
        _ = apic.setLocalInterruptPin(0, asserted: true)
        #expect(apic.pendingInterrupt() == nil)
        apic.set(Reg.lint0, 0x700)
        #expect(apic.pendingInterrupt() == .external)
    }

    @Test func aGloballyDisabledAPICWiresThePinsStraightThrough() throws {
        var apic = LocalAPIC.enabled()
        _ = try apic.writeMSR(0x1B, value: 0xFEE0_0100, now: 0)
        _ = apic.setLocalInterruptPin(0, asserted: true)
        #expect(apic.pendingInterrupt() == .external, "LINT0 is INTR")
        #expect(apic.setLocalInterruptPin(1, asserted: true) == [.nmi], "LINT1 is NMI")
        #expect(apic.setLocalInterruptPin(1, asserted: true).isEmpty, "NMI is edge-triggered")
    }

    @Test func nmiSmiAndInitPinsAreEdgeTriggered() {
        var apic = LocalAPIC.enabled(bsp: false)
        apic.set(Reg.lint1, 0x400)
        #expect(apic.setLocalInterruptPin(1, asserted: true) == [.nmi])
        #expect(apic.setLocalInterruptPin(1, asserted: true).isEmpty)
        #expect(apic.setLocalInterruptPin(1, asserted: false).isEmpty)
        apic.set(Reg.lint1, 0x200)
        #expect(apic.setLocalInterruptPin(1, asserted: true) == [.smi])
        apic.set(Reg.lint1, 0x400 | masked)
        _ = apic.setLocalInterruptPin(1, asserted: false)
        #expect(apic.setLocalInterruptPin(1, asserted: true).isEmpty, "masked")
        apic.set(Reg.lint0, 0x500)
        #expect(apic.setLocalInterruptPin(0, asserted: true).contains(.initReset(waitForSIPI: true)))
        #expect(apic.activity == .waitingForSIPI)
    }

    @Test func fixedEdgeLINTTakesRisingEdges() {
        var apic = LocalAPIC.enabled()
        apic.set(Reg.lint1, 0x0000_8052)  // trigger bit set: LINT1 is edge-triggered anyway
        _ = apic.setLocalInterruptPin(1, asserted: true)
        #expect(apic.irr == VectorSet([0x52]))
        #expect(apic.tmr.isEmpty)
        #expect(apic.take() == 0x52)
        _ = apic.setLocalInterruptPin(1, asserted: true)
        #expect(apic.pendingInterrupt() == nil, "no new edge")
    }

    @Test func levelTriggeredLINT0UsesRemoteIRR() {
        var apic = LocalAPIC.enabled()
        apic.set(Reg.lint0, 0x0000_8053)
        _ = apic.setLocalInterruptPin(0, asserted: true)
        #expect(apic.reg(Reg.lint0) == 0x0000_C053, "remote IRR set")
        #expect(apic.take() == 0x53)
        #expect(apic.eoi() == [.endOfInterrupt(vector: 0x53, levelTriggered: true)])
        #expect(apic.pendingInterrupt() == .vector(0x53), "still asserted: taken again")
        #expect(apic.reg(Reg.lint0) == 0x0000_C053)
        #expect(apic.take() == 0x53)
        _ = apic.setLocalInterruptPin(0, asserted: false)
        _ = apic.eoi()
        #expect(apic.reg(Reg.lint0) == 0x0000_8053, "remote IRR cleared by the EOI")
        #expect(apic.pendingInterrupt() == nil)
    }

    @Test func unmaskingAnAssertedLevelLINT0TakesIt() {
        var apic = LocalAPIC.enabled()
        apic.set(Reg.lint0, 0x0000_8053 | masked)
        _ = apic.setLocalInterruptPin(0, asserted: true)
        #expect(apic.irr.isEmpty)
        apic.set(Reg.lint0, 0x0000_8053)
        #expect(apic.irr == VectorSet([0x53]))
        apic.set(Reg.lint0, 0x0000_0053)
        #expect(apic.reg(Reg.lint0) == 0x53, "remote IRR means nothing for an edge entry")
    }

    @Test func localEventsFollowTheirEntries() {
        var apic = LocalAPIC.enabled()
        apic.set(Reg.perf, 0x0000_0400)
        #expect(apic.raiseLocalInterrupt(.performanceCounter) == [.nmi])
        #expect(apic.reg(Reg.perf) == 0x400 | masked, "the performance-counter entry masks itself")
        #expect(apic.raiseLocalInterrupt(.performanceCounter).isEmpty)
        apic.set(Reg.thermal, 0x0000_00C1)
        _ = apic.raiseLocalInterrupt(.thermal)
        #expect(apic.irr == VectorSet([0xC1]))
        apic.set(Reg.cmci, 0x0000_0700)  // ExtINT is not supported for CMCI
        #expect(apic.raiseLocalInterrupt(.cmci).isEmpty)
        #expect(apic.raiseLocalInterrupt(.timer).isEmpty, "the timer has its own source")
    }
}

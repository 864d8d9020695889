import Testing
@testable import SwiftletInterrupts

/// The cascaded 8259A pair (Intel 8259A datasheet) and the ELCR.
private struct Fixture {
    let line = LineRecorder()
    let pic: PIC8259Pair

    init(initialize: Bool = true) {
        pic = PIC8259Pair(output: line)
        if initialize { linuxInit() }
    }

    func out(_ port: UInt64, _ value: UInt8) {
        switch port {
        case 0x20, 0x21: pic.master.write(at: port - 0x20, size: 1, value: UInt64(value))
        case 0xA0, 0xA1: pic.slave.write(at: port - 0xA0, size: 1, value: UInt64(value))
        default: pic.edgeLevelControl.write(at: port - 0x4D0, size: 1, value: UInt64(value))
        }
    }

    func inb(_ port: UInt64) -> UInt8 {
        let value: UInt64
        switch port {
        case 0x20, 0x21: value = pic.master.read(at: port - 0x20, size: 1)
        case 0xA0, 0xA1: value = pic.slave.read(at: port - 0xA0, size: 1)
        default: value = pic.edgeLevelControl.read(at: port - 0x4D0, size: 1)
        }
        return UInt8(truncatingIfNeeded: value)
    }

    /// What Linux's init_8259A does: ICW1 edge + ICW4, vectors 0x30/0x38,
    /// cascade on IR2, 8086 mode, then unmask everything.
    func linuxInit(masterICW4: UInt8 = 0x01, slaveICW4: UInt8 = 0x01) {
        out(0x20, 0x11); out(0x21, 0x30); out(0x21, 0x04); out(0x21, masterICW4)
        out(0xA0, 0x11); out(0xA1, 0x38); out(0xA1, 0x02); out(0xA1, slaveICW4)
        out(0x21, 0x00); out(0xA1, 0x00)
    }

    func readISR(_ port: UInt64) -> UInt8 { out(port, 0x0B); return inb(port) }
    func readIRR(_ port: UInt64) -> UInt8 { out(port, 0x0A); return inb(port) }
    func pulse(_ irq: Int) { pic.setIRQ(irq, level: true); pic.setIRQ(irq, level: false) }
}

@Suite struct PIC8259InitializationTests {
    @Test func linuxInitializationSequence() {
        let f = Fixture(initialize: false)
        f.out(0x20, 0x11); f.out(0x21, 0x30); f.out(0x21, 0x04); f.out(0x21, 0x01)
        #expect(f.inb(0x21) == 0, "ICW1 cleared the IMR; ICW2-4 are not OCW1")
        f.out(0x21, 0xFB)
        #expect(f.inb(0x21) == 0xFB, "after ICW4 the data port is the IMR")
        f.pic.setIRQ(1, level: true)
        #expect(!f.line.level, "IRQ 1 is masked")
        f.out(0x21, 0xF9)
        #expect(f.line.level)
        #expect(f.pic.acknowledge() == 0x31, "ICW2 0x30 + IR1")
    }

    @Test func icw3AndICW4ComeOnlyWhenAskedFor() {
        let f = Fixture(initialize: false)
        // Cascade mode without ICW4: ICW2, ICW3, then OCW1.
        f.out(0x20, 0x10); f.out(0x21, 0x40); f.out(0x21, 0x04); f.out(0x21, 0xAA)
        #expect(f.inb(0x21) == 0xAA)
        // Single mode with ICW4: ICW2, ICW4 (auto-EOI), then OCW1.
        f.out(0xA0, 0x13); f.out(0xA1, 0x48); f.out(0xA1, 0x03); f.out(0xA1, 0x55)
        #expect(f.inb(0xA1) == 0x55)
    }

    @Test func icw1ResetsMaskServiceAndEdgeSense() {
        let f = Fixture()
        f.out(0x21, 0xF0)
        f.pic.setIRQ(1, level: true)
        #expect(f.pic.acknowledge() == 0x31)
        #expect(f.readISR(0x20) == 0x02)
        f.linuxInit()
        #expect(f.inb(0x21) == 0)
        #expect(f.readISR(0x20) == 0)
        #expect(!f.line.level, "IRQ 1 held high must fall and rise again after ICW1")
        f.pic.setIRQ(1, level: false)
        f.pic.setIRQ(1, level: true)
        #expect(f.line.level)
    }

    @Test func irrAndISRReads() {
        let f = Fixture()
        f.pic.setIRQ(3, level: true)
        f.pic.setIRQ(12, level: true)
        #expect(f.readIRR(0x20) == 0x0C, "IR3 and the cascade IR2")
        #expect(f.readIRR(0xA0) == 0x10)
        #expect(f.pic.acknowledge() == 0x3C, "IR2 outranks IR3: the slave's IR4")
        #expect(f.readISR(0x20) == 0x04 && f.readISR(0xA0) == 0x10)
        #expect(f.inb(0x20) == 0x04, "the selection sticks until the next OCW3 with RR")
        f.out(0x20, 0x08)  // OCW3 without RR: no change
        #expect(f.inb(0x20) == 0x04)
        #expect(f.inb(0x21) == 0, "the data port reads the IMR")
    }
}

@Suite struct PIC8259PriorityTests {
    @Test func fullyNestedPriority() {
        let f = Fixture()
        f.pic.setIRQ(3, level: true)
        f.pic.setIRQ(1, level: true)
        #expect(f.pic.acknowledge() == 0x31)
        #expect(!f.line.level, "IR3 waits while IR1 is in service")
        f.pic.setIRQ(0, level: true)
        #expect(f.line.level, "IR0 outranks IR1 and nests")
        #expect(f.pic.acknowledge() == 0x30)
        f.out(0x20, 0x20)  // non-specific EOI: IR0
        #expect(f.readISR(0x20) == 0x02)
        #expect(!f.line.level)
        f.out(0x20, 0x20)
        #expect(f.line.level)
        #expect(f.pic.acknowledge() == 0x33)
    }

    @Test func theSlaveCascadesThroughIR2() {
        let f = Fixture()
        f.pic.setIRQ(3, level: true)
        f.pic.setIRQ(8, level: true)
        #expect(f.pic.acknowledge() == 0x38, "IRQ 8 (master IR2) beats IRQ 3")
        #expect(f.readISR(0x20) == 0x04 && f.readISR(0xA0) == 0x01)
        f.pic.setIRQ(9, level: true)
        #expect(!f.line.level, "IRQ 9 waits: the master's IR2 is in service")
        f.pic.setIRQ(1, level: true)
        #expect(f.pic.acknowledge() == 0x31, "IRQ 1 outranks the whole slave")
        f.out(0x20, 0x20)  // EOI IRQ 1
        f.out(0xA0, 0x20)  // EOI IRQ 8 on the slave...
        f.out(0x20, 0x20)  // ...and IR2 on the master
        #expect(f.pic.acknowledge() == 0x39)
        f.out(0xA0, 0x20); f.out(0x20, 0x20)
        #expect(f.pic.acknowledge() == 0x33)
    }

    @Test func specialFullyNestedModeLetsTheSlaveNest() {
        let f = Fixture()
        f.linuxInit(masterICW4: 0x11)
        f.pic.setIRQ(12, level: true)
        #expect(f.pic.acknowledge() == 0x3C)
        f.pic.setIRQ(9, level: true)
        #expect(f.line.level, "a higher slave request interrupts the slave's own service")
        #expect(f.pic.acknowledge() == 0x39)
    }

    @Test func specificEOIClearsOnlyItsLevel() {
        let f = Fixture()
        f.pic.setIRQ(4, level: true)
        #expect(f.pic.acknowledge() == 0x34)
        f.pic.setIRQ(1, level: true)
        #expect(f.pic.acknowledge() == 0x31)
        f.out(0x20, 0x64)  // specific EOI, level 4
        #expect(f.readISR(0x20) == 0x02)
        f.out(0x20, 0x67)  // a level not in service: nothing
        #expect(f.readISR(0x20) == 0x02)
    }

    @Test func rotationCommands() {
        let f = Fixture()
        // Rotate on non-specific EOI: the level just served becomes lowest.
        f.pic.setIRQ(0, level: true)
        #expect(f.pic.acknowledge() == 0x30)
        f.pic.setIRQ(0, level: false)
        f.pic.setIRQ(0, level: true)
        f.pic.setIRQ(1, level: true)
        f.out(0x20, 0xA0)
        #expect(f.pic.acknowledge() == 0x31, "IR0 is now the lowest priority")
        // Set priority: IR4 lowest, so IR5 highest.
        f.out(0x20, 0x60 | 1)
        f.out(0x20, 0xC4)
        f.pic.setIRQ(5, level: true)
        #expect(f.pic.acknowledge() == 0x35)
        // Rotate on specific EOI of IR5: IR5 lowest, IR6 highest.
        f.out(0x20, 0xE5)
        f.pic.setIRQ(6, level: true)
        #expect(f.pic.acknowledge() == 0x36)
    }

    @Test func automaticEOI() {
        let f = Fixture()
        f.linuxInit(masterICW4: 0x03)
        f.pic.setIRQ(1, level: true)
        #expect(f.pic.acknowledge() == 0x31)
        #expect(f.readISR(0x20) == 0, "the second INTA pulse ended it")
        f.pic.setIRQ(3, level: true)
        #expect(f.pic.acknowledge() == 0x33, "nothing in service blocks IR3")
        // Rotate in automatic EOI mode.
        f.out(0x20, 0x80)
        f.pic.setIRQ(3, level: false)
        f.pic.setIRQ(3, level: true)
        #expect(f.pic.acknowledge() == 0x33)
        f.pic.setIRQ(3, level: false)
        f.pic.setIRQ(3, level: true)
        f.pic.setIRQ(4, level: true)
        #expect(f.pic.acknowledge() == 0x34, "IR3 rotated to the lowest priority")
    }

    @Test func specialMaskModeOpensLowerLevels() {
        let f = Fixture()
        f.pic.setIRQ(3, level: true)
        #expect(f.pic.acknowledge() == 0x33)
        f.pic.setIRQ(5, level: true)
        #expect(!f.line.level)
        f.out(0x21, 0x08)  // mask IR3, the level in service
        #expect(!f.line.level, "masking alone does not open lower levels")
        f.out(0x20, 0x68)  // OCW3: set special mask mode
        #expect(f.line.level)
        #expect(f.pic.acknowledge() == 0x35)
        f.out(0x20, 0x20)  // non-specific EOI skips the masked IR3
        #expect(f.readISR(0x20) == 0x08)
        f.out(0x20, 0x48)  // reset special mask mode
        f.out(0x20, 0x20)
        #expect(f.readISR(0x20) == 0)
    }

    @Test func pollMode() {
        let f = Fixture()
        f.out(0x20, 0x0C)
        #expect(f.inb(0x20) == 0, "no request: I = 0")
        f.pic.setIRQ(6, level: true)
        f.out(0x20, 0x0C)
        #expect(f.inb(0x21) == 0x86, "either port reads the poll word")
        #expect(f.readISR(0x20) == 0x40, "the poll acted as INTA")
        #expect(!f.line.level)
        f.out(0x20, 0x0A)
        #expect(f.inb(0x20) == 0, "one read per poll command")
    }
}

@Suite struct PIC8259TriggerTests {
    @Test func edgeRequestsAreLatched() {
        let f = Fixture()
        f.pulse(4)
        #expect(f.line.level, "a zero-width pulse still requests")
        #expect(f.pic.acknowledge() == 0x34)
        #expect(f.line.history == [true, false])
    }

    @Test func spuriousIRQ7WhenNothingRequests() {
        let f = Fixture()
        #expect(f.pic.acknowledge() == 0x37)
        #expect(f.readISR(0x20) == 0, "a spurious IR7 is not in service")
        f.out(0x4D0, 0x20)  // IRQ 5 level-triggered
        f.pic.setIRQ(5, level: true)
        #expect(f.line.level)
        f.pic.setIRQ(5, level: false)  // withdrawn before the INTA
        #expect(f.pic.acknowledge() == 0x37)
        #expect(f.readISR(0x20) == 0)
    }

    @Test func spuriousIRQ15WhenTheSlaveWithdraws() {
        let f = Fixture()
        f.out(0x4D1, 0x08)  // IRQ 11 level-triggered
        f.pic.setIRQ(11, level: true)
        #expect(f.readIRR(0x20) == 0x04)
        f.pic.setIRQ(11, level: false)
        #expect(f.pic.acknowledge() == 0x3F)
        #expect(f.readISR(0x20) == 0x04, "the master's IR2 is in service and wants an EOI")
        #expect(f.readISR(0xA0) == 0)
    }

    @Test func edgeLevelControlRegisters() {
        let f = Fixture()
        f.out(0x4D0, 0xFF)
        f.out(0x4D1, 0xFF)
        #expect(f.inb(0x4D0) == 0xF8, "IRQ 0-2 are always edge-triggered")
        #expect(f.inb(0x4D1) == 0xDE, "IRQ 8 and 13 are always edge-triggered")
    }

    @Test func levelRequestsFollowTheLine() {
        let f = Fixture()
        f.out(0x4D1, 0x02)  // IRQ 9 level-triggered
        f.pic.setIRQ(9, level: true)
        #expect(f.pic.acknowledge() == 0x39)
        #expect(f.readIRR(0xA0) == 0x02, "a level request stays in the IRR through the INTA")
        #expect(!f.line.level, "but a level in service does not interrupt itself")
        f.out(0xA0, 0x20); f.out(0x20, 0x20)
        #expect(f.line.level, "still asserted after the EOIs: requests again")
        f.pic.setIRQ(9, level: false)
        #expect(f.readIRR(0xA0) == 0, "the slave's request follows the line down")
        #expect(f.pic.acknowledge() == 0x3F, "but the master had latched IR2: a spurious IRQ 15")
    }

    @Test func icw1LevelModeMakesEveryInputLevelTriggered() {
        let f = Fixture()
        f.out(0x20, 0x19); f.out(0x21, 0x30); f.out(0x21, 0x04); f.out(0x21, 0x01)
        f.pic.setIRQ(0, level: true)
        f.pic.setIRQ(0, level: false)
        #expect(!f.line.level, "LTIM: a pulse is no request")
    }

    @Test func switchingAnInputToLevelSamplesTheLine() {
        let f = Fixture()
        f.pic.setIRQ(10, level: true)
        _ = f.pic.acknowledge()
        f.out(0xA0, 0x20); f.out(0x20, 0x20)
        #expect(!f.line.level, "the edge was consumed")
        f.out(0x4D1, 0x04)
        #expect(f.line.level, "as a level input, the high line requests")
    }

    @Test func outputChangesAreReportedOnce() {
        let f = Fixture()
        f.pic.setIRQ(3, level: true)
        f.pic.setIRQ(4, level: true)
        #expect(f.line.history == [true])
        #expect(f.pic.outputAsserted)
        _ = f.pic.acknowledge()
        #expect(f.line.history == [true, false])
    }

    @Test func irq2IsTheCascadeNotADeviceLine() {
        let f = Fixture()
        f.pic.setIRQ(2, level: true)
        f.pic.setIRQ(16, level: true)
        f.pic.setIRQ(-1, level: true)
        #expect(f.line.history.isEmpty)
    }

    @Test func widerAccessesAreByteSequences() {
        let f = Fixture()
        f.out(0x21, 0x5A)
        f.pic.setIRQ(0, level: true)
        #expect(f.pic.master.read(at: 0, size: 2) == 0x5A01, "IRR then IMR")
        #expect(f.pic.master.read(at: 1, size: 4) == 0xFFFF_FF5A, "ports past the range read 0xFF")
        f.pic.edgeLevelControl.write(at: 0, size: 2, value: 0x0820)
        #expect(f.inb(0x4D0) == 0x20 && f.inb(0x4D1) == 0x08)
    }

    @Test func resetKeepsTheLines() {
        let f = Fixture()
        f.out(0x21, 0xFF)
        f.pic.setIRQ(1, level: true)
        f.pic.reset()
        #expect(f.inb(0x21) == 0)
        #expect(!f.line.level, "reset leaves the edge detector armed only for new edges")
    }
}

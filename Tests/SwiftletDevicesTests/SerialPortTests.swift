import Testing
@testable import SwiftletDevices

/// A port with a recorded IRQ line and a captured console.
private struct Fixture {
    let irq = LevelRecorder()
    let console = ConsoleCapture()
    let port: SerialPort

    init() {
        port = SerialPort(interrupt: irq, output: console)
    }

    func read(_ offset: UInt64) -> UInt8 { UInt8(truncatingIfNeeded: port.read(at: offset, size: 1)) }
    func write(_ offset: UInt64, _ value: UInt8) { port.write(at: offset, size: 1, value: UInt64(value)) }
}

// Register offsets and bits used below (PC16550D datasheet).
private let RBR: UInt64 = 0, THR: UInt64 = 0, IER: UInt64 = 1, IIR: UInt64 = 2, FCR: UInt64 = 2
private let LCR: UInt64 = 3, MCR: UInt64 = 4, LSR: UInt64 = 5, MSR: UInt64 = 6, SCR: UInt64 = 7
private let OUT2: UInt8 = 0x08, LOOP: UInt8 = 0x10

@Suite struct SerialPortRegisterTests {
    @Test func powerOnState() {
        let f = Fixture()
        #expect(f.read(IER) == 0)
        #expect(f.read(IIR) == 0x01, "no interrupt pending, FIFOs off")
        #expect(f.read(LCR) == 0)
        #expect(f.read(MCR) == 0)
        #expect(f.read(LSR) == 0x60, "THRE and TEMT: the transmitter is idle")
        #expect(f.read(MSR) == 0xb0, "host side presents DCD, DSR and CTS")
        #expect(f.read(SCR) == 0)
        #expect(f.irq.history.isEmpty, "the line is never driven while nothing changes")
    }

    @Test func transmittedBytesReachTheSinkInOrder() {
        let f = Fixture()
        for byte in "Hi\n".utf8 { f.write(THR, byte) }
        #expect(f.console.text == "Hi\n")
        #expect(f.read(LSR) & 0x60 == 0x60, "THR empties at once")
    }

    @Test func divisorLatchSharesOffsetsZeroAndOne() {
        let f = Fixture()
        f.write(IER, 0x05)
        f.write(LCR, 0x83)  // DLAB, 8 bits
        #expect(f.read(0) == 12, "power-on divisor 12 (9600 baud)")
        #expect(f.read(1) == 0)
        f.write(0, 0x01)
        f.write(1, 0x02)
        #expect(f.read(0) == 0x01)
        #expect(f.read(1) == 0x02)
        #expect(f.console.bytes.isEmpty, "a DLL write is not a transmission")
        f.write(LCR, 0x03)
        #expect(f.read(IER) == 0x05, "IER was kept apart from DLM")
        #expect(f.read(LCR) == 0x03)
        f.write(LCR, 0x83)
        #expect(f.read(0) == 0x01 && f.read(1) == 0x02, "the latch holds its value")
    }

    @Test func onlyDefinedBitsOfIERAndMCRStick() {
        let f = Fixture()
        f.write(IER, 0xff)
        #expect(f.read(IER) == 0x0f)
        f.write(MCR, 0xff)
        #expect(f.read(MCR) == 0x1f)
    }

    @Test func scratchRegisterHoldsAnyByte() {
        let f = Fixture()
        for value: UInt8 in [0x00, 0x5a, 0xa5, 0xff] {
            f.write(SCR, value)
            #expect(f.read(SCR) == value)
        }
    }

    @Test func lsrAndMsrWritesChangeNothing() {
        let f = Fixture()
        f.write(LSR, 0xff)
        f.write(MSR, 0x0f)
        #expect(f.read(LSR) == 0x60)
        #expect(f.read(MSR) == 0xb0)
    }
}

@Suite struct SerialPortInterruptTests {
    @Test func thrEmptyInterruptIsRaisedByEnablingAndClearedByReadingIIR() {
        let f = Fixture()
        f.write(MCR, OUT2)
        f.write(IER, 0x02)
        #expect(f.irq.level, "enabling ETBEI with THR empty raises the interrupt")
        #expect(f.read(IIR) == 0x02)
        #expect(!f.irq.level, "reading IIR that reports THRE clears it")
        #expect(f.read(IIR) == 0x01)
        f.write(THR, 0x41)
        #expect(f.irq.level, "THR empties again after the write")
        f.write(IER, 0x00)
        #expect(!f.irq.level)
        #expect(f.irq.history == [true, false, true, false])
    }

    @Test func rewritingIERWithETBEIStillSetDoesNotReraise() {
        let f = Fixture()
        f.write(MCR, OUT2)
        f.write(IER, 0x02)
        _ = f.read(IIR)
        f.write(IER, 0x03)
        #expect(!f.irq.level, "only a 0 to 1 change of ETBEI raises THRE")
        #expect(f.read(IIR) == 0x01)
    }

    @Test func out2GatesTheLineButNotIIR() {
        let f = Fixture()
        f.write(IER, 0x02)
        #expect(f.read(IIR) == 0x02, "IIR reports the interrupt whatever OUT2 says")
        f.write(THR, 0x41)  // re-arm
        #expect(f.irq.history.isEmpty, "without OUT2 the line stays low")
        f.write(MCR, OUT2)
        #expect(f.irq.level)
        f.write(MCR, 0)
        #expect(!f.irq.level)
        #expect(f.irq.history == [true, false])
    }

    @Test func loopbackDisconnectsTheLine() {
        let f = Fixture()
        f.write(MCR, OUT2)
        f.write(IER, 0x02)
        #expect(f.irq.level)
        f.write(MCR, OUT2 | LOOP)
        #expect(!f.irq.level, "the OUT2 pin is forced inactive in loopback")
        #expect(f.read(IIR) == 0x02, "but the UART still reports the interrupt")
        f.write(THR, 0x41)
        f.write(MCR, OUT2)
        #expect(f.irq.level)
    }

    @Test func receivedDataRaisesAndDrainingClears() {
        let f = Fixture()
        f.write(MCR, OUT2)
        f.write(IER, 0x01)
        #expect(f.port.receive([0x61]) == 1)
        #expect(f.irq.level)
        #expect(f.read(IIR) == 0x04)
        #expect(f.read(LSR) & 0x01 == 0x01)
        #expect(f.read(RBR) == 0x61)
        #expect(!f.irq.level)
        #expect(f.read(LSR) & 0x01 == 0)
        #expect(f.read(IIR) == 0x01)
    }

    @Test func prioritiesFollowTheDatasheet() {
        let f = Fixture()
        f.write(FCR, 0x01)
        f.write(MCR, LOOP)
        // 16 looped-back bytes fill the FIFO, the 17th overruns.
        for byte in 0..<17 { f.write(THR, UInt8(byte)) }
        f.write(MCR, LOOP | 0x01)  // DTR→DSR changes: modem status delta
        f.write(IER, 0x0f)
        #expect(f.read(IIR) == 0xc6, "receiver line status first")
        #expect(f.read(LSR) & 0x02 == 0x02, "OE set; reading LSR clears it")
        #expect(f.read(IIR) == 0xc4, "then received data (16 bytes, trigger 1)")
        for _ in 0..<16 { _ = f.read(RBR) }
        #expect(f.read(IIR) == 0xc2, "then THR empty")
        #expect(f.read(IIR) == 0xc0, "then modem status")
        #expect(f.read(MSR) & 0x0f != 0)
        #expect(f.read(IIR) == 0xc1, "nothing left")
    }

    @Test func lineStatusInterruptNeedsELSI() {
        let f = Fixture()
        f.write(MCR, LOOP)
        f.write(THR, 1)
        f.write(THR, 2)  // 16450 mode: one-byte receiver, so this overruns
        f.write(IER, 0x01)
        #expect(f.read(IIR) == 0x04, "OE is not reported without ELSI")
        f.write(IER, 0x05)
        #expect(f.read(IIR) == 0x06)
    }

    @Test func modemStatusInterruptIsClearedByReadingMSR() {
        let f = Fixture()
        f.write(IER, 0x08)
        f.write(MCR, LOOP)
        _ = f.read(MSR)
        f.write(MCR, LOOP | 0x02)  // RTS→CTS
        #expect(f.read(IIR) == 0x00)
        #expect(f.read(MSR) == 0x11, "CTS with DCTS")
        #expect(f.read(IIR) == 0x01)
    }

    @Test func lineIsOnlyDrivenOnChanges() {
        let f = Fixture()
        f.write(MCR, OUT2)
        f.write(IER, 0x01)
        _ = f.port.receive([1])
        _ = f.port.receive([2])  // 16450 mode: refused, level unchanged
        f.write(SCR, 9)
        #expect(f.irq.history == [true])
    }
}

@Suite struct SerialPortFIFOTests {
    @Test func fcrEnableIsReflectedInIIR() {
        let f = Fixture()
        f.write(FCR, 0x01)
        #expect(f.read(IIR) == 0xc1)
        f.write(FCR, 0x00)
        #expect(f.read(IIR) == 0x01)
    }

    @Test func receiverHolds16BytesInFIFOModeAndOneOtherwise() {
        let f = Fixture()
        #expect(f.port.receiveCapacity == 1)
        #expect(f.port.receive([1, 2, 3]) == 1, "16450 mode: RBR only")
        _ = f.read(RBR)
        f.write(FCR, 0x01)
        #expect(f.port.receiveCapacity == 16)
        let input = (0..<20).map { UInt8($0) }
        #expect(f.port.receive(input) == 16)
        #expect(f.port.receiveCapacity == 0)
        let drained = (0..<16).map { _ in f.read(RBR) }
        #expect(drained == Array(input[0..<16]), "bytes come out in order")
        #expect(f.read(LSR) & 0x01 == 0)
        #expect(f.read(RBR) == 0, "an empty receiver reads 0")
    }

    @Test func triggerLevelSeparatesDataAvailableFromTimeout() {
        for (fcr, level) in [(UInt8(0x01), 1), (0x41, 4), (0x81, 8), (0xc1, 14)] {
            let f = Fixture()
            f.write(FCR, fcr)
            f.write(IER, 0x01)
            if level > 1 {
                _ = f.port.receive([UInt8](repeating: 0x2a, count: level - 1))
                #expect(f.read(IIR) == 0xcc, "below trigger \(level): character timeout")
                _ = f.port.receive([0x2a])
            } else {
                _ = f.port.receive([0x2a])
            }
            #expect(f.read(IIR) == 0xc4, "at trigger \(level): data available")
        }
    }

    @Test func fifoResetAndModeChangeEmptyTheReceiver() {
        let f = Fixture()
        f.write(FCR, 0x01)
        _ = f.port.receive([1, 2, 3])
        f.write(FCR, 0x03)
        #expect(f.read(LSR) & 0x01 == 0, "FCR1 clears the receive FIFO")
        _ = f.port.receive([1, 2, 3])
        f.write(FCR, 0x00)
        #expect(f.read(LSR) & 0x01 == 0, "leaving FIFO mode clears it")
        _ = f.port.receive([4])
        f.write(FCR, 0x06)  // bit 0 clear: the other bits are not programmed
        #expect(f.read(LSR) & 0x01 == 1)
        #expect(f.read(IIR) & 0xc0 == 0)
    }

    @Test func fifoResetKeepsOverrunUntilLSRIsRead() {
        let f = Fixture()
        f.write(MCR, LOOP)
        f.write(THR, 1)
        f.write(THR, 2)
        f.write(FCR, 0x03)
        #expect(f.read(LSR) & 0x02 == 0x02)
        #expect(f.read(LSR) & 0x02 == 0)
    }
}

@Suite struct SerialPortLoopbackTests {
    @Test func transmitterLoopsIntoReceiver() {
        let f = Fixture()
        f.write(FCR, 0x01)
        f.write(MCR, LOOP)
        f.write(THR, 0x55)
        f.write(THR, 0xaa)
        #expect(f.console.bytes.isEmpty, "nothing leaves the UART in loopback")
        #expect(f.read(RBR) == 0x55)
        #expect(f.read(RBR) == 0xaa)
    }

    @Test func modemOutputsMirrorIntoMSR() {
        let f = Fixture()
        f.write(MCR, LOOP)
        _ = f.read(MSR)
        // DTR→DSR, RTS→CTS, OUT1→RI, OUT2→DCD.
        for (mcr, lines) in [(UInt8(0x01), UInt8(0x20)), (0x02, 0x10), (0x04, 0x40), (0x08, 0x80), (0x0f, 0xf0), (0x00, 0x00)] {
            f.write(MCR, LOOP | mcr)
            #expect(f.read(MSR) & 0xf0 == lines, "MCR \(mcr)")
        }
    }

    @Test func linuxAutoconfigLoopbackTestPasses() {
        // serial8250 autoconfig writes LOOP | OUT2 | RTS and expects DCD | CTS.
        let f = Fixture()
        f.write(MCR, 0x1a)
        #expect(f.read(MSR) & 0xf0 == 0x90)
    }

    @Test func deltaBitsTrackChangesAndTERIOnlyTheTrailingEdge() {
        let f = Fixture()
        f.write(MCR, LOOP)
        #expect(f.read(MSR) == 0x0b, "entering loopback dropped CTS, DSR, DCD")
        f.write(MCR, LOOP | 0x04)  // RI on
        #expect(f.read(MSR) == 0x40, "RI rising is not a trailing edge")
        f.write(MCR, LOOP)  // RI off
        #expect(f.read(MSR) == 0x04, "TERI on RI falling")
        #expect(f.read(MSR) == 0x00, "reading MSR cleared the deltas")
        f.write(MCR, LOOP | 0x0b)
        #expect(f.read(MSR) == 0xb0 | 0x0b)
        f.write(MCR, 0)
        #expect(f.read(MSR) == 0xb0, "host lines equal the looped ones: no delta")
    }

    @Test func overrunInFIFOModeKeepsTheFIFO() {
        let f = Fixture()
        f.write(FCR, 0x01)
        f.write(MCR, LOOP)
        for byte in 0..<17 { f.write(THR, UInt8(byte)) }
        #expect(f.read(LSR) == 0x63, "DR, OE, THRE, TEMT")
        #expect(f.read(LSR) == 0x61, "OE cleared by the read")
        let drained = (0..<16).map { _ in f.read(RBR) }
        #expect(drained == (0..<16).map { UInt8($0) }, "the 17th byte was lost")
    }

    @Test func overrunIn16450ModeOverwritesRBR() {
        let f = Fixture()
        f.write(MCR, LOOP)
        f.write(THR, 1)
        f.write(THR, 2)
        #expect(f.read(LSR) & 0x03 == 0x03)
        #expect(f.read(RBR) == 2)
    }
}

@Suite struct SerialPortHostInputTests {
    @Test func shortReceiveFiresTheReadyHandlerOnceWhenRoomAppears() {
        let f = Fixture()
        let ready = Counter()
        f.port.setInputReadyHandler { ready.increment() }
        f.write(FCR, 0x01)
        let input = [UInt8](repeating: 0x78, count: 40)
        #expect(f.port.receive(input) == 16)
        #expect(ready.count == 0)
        _ = f.read(RBR)
        #expect(ready.count == 1)
        _ = f.read(RBR)
        #expect(ready.count == 1, "one notification per short receive")
        #expect(f.port.receive(input[16...]) == 2)
        _ = f.read(RBR)
        #expect(ready.count == 2)
    }

    @Test func readyHandlerIsSilentWhenNothingWasRefused() {
        let f = Fixture()
        let ready = Counter()
        f.port.setInputReadyHandler { ready.increment() }
        f.write(FCR, 0x01)
        #expect(f.port.receive([1, 2, 3]) == 3)
        for _ in 0..<3 { _ = f.read(RBR) }
        #expect(f.port.receive([UInt8]()) == 0)
        #expect(ready.count == 0)
    }

    @Test func fifoResetMakesRoomToo() {
        let f = Fixture()
        let ready = Counter()
        f.port.setInputReadyHandler { ready.increment() }
        #expect(f.port.receive([1, 2]) == 1)
        f.write(FCR, 0x01)  // mode change empties the receiver
        #expect(ready.count == 1)
        #expect(f.port.receiveCapacity == 16)
    }

    @Test func loopbackRefusesHostInputUntilItEnds() {
        let f = Fixture()
        let ready = Counter()
        f.port.setInputReadyHandler { ready.increment() }
        f.write(FCR, 0x01)
        f.write(MCR, LOOP)
        #expect(f.port.receiveCapacity == 0)
        #expect(f.port.receive([1, 2, 3]) == 0)
        #expect(f.read(LSR) & 0x01 == 0)
        f.write(MCR, 0)
        #expect(ready.count == 1)
        #expect(f.port.receive([1, 2, 3]) == 3)
    }

    @Test func receiveTakesAnyCollectionFromItsFront() {
        let f = Fixture()
        f.write(FCR, 0x01)
        let bytes: [UInt8] = Array(0..<40)
        #expect(f.port.receive(bytes[10..<30]) == 16)
        #expect(f.read(RBR) == 10)
        #expect(f.port.receive("xyz".utf8) == 1)
    }
}

@Suite struct SerialPortHostileAccessTests {
    @Test func offsetsBeyondThePortReadAllOnesAndIgnoreWrites() {
        let f = Fixture()
        for offset: UInt64 in [8, 9, 0x100, UInt64.max] {
            #expect(f.port.read(at: offset, size: 1) == 0xff)
            f.port.write(at: offset, size: 1, value: 0x41)
        }
        #expect(f.console.bytes.isEmpty)
        #expect(f.read(SCR) == 0)
    }

    @Test func wideAccessesSplitIntoConsecutiveBytes() {
        let f = Fixture()
        f.port.write(at: 3, size: 2, value: 0x0b03)  // LCR = 0x03, MCR = 0x0b
        #expect(f.read(LCR) == 0x03)
        #expect(f.read(MCR) == 0x0b)
        f.port.write(at: 7, size: 4, value: 0xdead_be5a)  // SCR, then three bytes off the end
        #expect(f.read(SCR) == 0x5a)
        #expect(f.port.read(at: 3, size: 2) == 0x0b03)
        #expect(f.port.read(at: 6, size: 4) == 0xffff_5ab0, "MSR, SCR, then nothing")
        #expect(f.port.read(at: UInt64.max, size: 2) == 0xffff, "no wrap to offset 0")
    }

    @Test func oddSizesDoNotTrap() {
        let f = Fixture()
        for size in [-1, 0, 3, 5, 8, 9, 100, Int.min, Int.max] {
            _ = f.port.read(at: 0, size: size)
            f.port.write(at: 7, size: size, value: UInt64.max)
        }
        #expect(f.port.read(at: 0, size: 0) == 0)
        #expect(f.read(SCR) == 0xff)
    }

    @Test func garbageValuesAreMaskedToTheRegister() {
        let f = Fixture()
        f.port.write(at: 7, size: 1, value: UInt64.max)
        #expect(f.read(SCR) == 0xff)
        #expect(f.read(IIR) == 0x01, "the rest of the value went nowhere")
    }

    @Test func concurrentWritersLoseNoBytes() async {
        let f = Fixture()
        let port = f.port
        await withTaskGroup(of: Void.self) { group in
            for task in 0..<4 {
                group.addTask {
                    for _ in 0..<500 { port.write(at: 0, size: 1, value: UInt64(0x41 + task)) }
                }
            }
            group.addTask {
                for _ in 0..<500 { _ = port.read(at: 5, size: 1); _ = port.receive([1]); _ = port.read(at: 0, size: 1) }
            }
        }
        #expect(f.console.totalCount == 2000)
    }
}

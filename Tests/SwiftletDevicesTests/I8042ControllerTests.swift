import Testing
@testable import SwiftletDevices

private struct Fixture {
    let requests = RequestRecorder()
    let controller: I8042Controller
    let data: any BusDevice
    let command: any BusDevice

    init() {
        controller = I8042Controller(requests: requests)
        data = controller.dataPort
        command = controller.commandPort
    }

    var status: UInt8 { UInt8(truncatingIfNeeded: command.read(at: 0, size: 1)) }
    func readData() -> UInt8 { UInt8(truncatingIfNeeded: data.read(at: 0, size: 1)) }
    func send(_ byte: UInt8) { command.write(at: 0, size: 1, value: UInt64(byte)) }
    func sendData(_ byte: UInt8) { data.write(at: 0, size: 1, value: UInt64(byte)) }

    /// Issues a command that answers with one byte and reads the answer.
    func ask(_ byte: UInt8) -> UInt8 {
        send(byte)
        #expect(status & 0x01 == 0x01, "OBF after command \(byte)")
        return readData()
    }

    var commandByte: UInt8 { ask(0x20) }
}

@Suite struct I8042StatusTests {
    @Test func powerOnStatus() {
        let f = Fixture()
        #expect(f.status == 0x1c, "system flag, last write a command, not inhibited; buffers empty")
        #expect(f.commandByte == 0x45, "keyboard interrupt, system flag, translation")
    }

    @Test func dataReadClearsOBFAndRepeatsTheLastByte() {
        let f = Fixture()
        #expect(f.readData() == 0, "nothing ever written: 0")
        f.send(0xaa)
        #expect(f.status & 0x01 == 0x01)
        #expect(f.readData() == 0x55)
        #expect(f.status & 0x01 == 0)
        #expect(f.readData() == 0x55, "the latch keeps the last byte")
        #expect(f.status & 0x01 == 0)
    }

    @Test func commandDataBitFollowsTheLastWrite() {
        let f = Fixture()
        f.sendData(0xf4)  // for the keyboard, which is absent
        #expect(f.status & 0x08 == 0)
        #expect(f.status & 0x01 == 0, "no keyboard answers")
        f.send(0xa8)
        #expect(f.status & 0x08 == 0x08)
    }

    @Test func inputBufferIsNeverFull() {
        let f = Fixture()
        for byte: UInt8 in [0x60, 0x00, 0xd1, 0xcf, 0xaa] {
            f.send(byte)
            #expect(f.status & 0x02 == 0)
        }
    }
}

@Suite struct I8042CommandTests {
    @Test func selfTestAnswers55AndSetsTheSystemFlag() {
        let f = Fixture()
        f.send(0x60)
        f.sendData(0x00)
        #expect(f.status & 0x04 == 0, "clearing command byte bit 2 clears SYS")
        #expect(f.ask(0xaa) == 0x55)
        #expect(f.status & 0x04 == 0x04)
    }

    @Test func interfaceTestsAnswerZero() {
        let f = Fixture()
        #expect(f.ask(0xab) == 0x00)
        f.send(0xaa)
        _ = f.readData()
        #expect(f.ask(0xa9) == 0x00)
    }

    @Test func commandByteRoundTrips() {
        let f = Fixture()
        for value: UInt8 in [0x00, 0x47, 0xff, 0x65] {
            f.send(0x60)
            f.sendData(value)
            #expect(f.commandByte == value)
            #expect(f.status & 0x04 == value & 0x04)
        }
    }

    @Test func controllerRAMBeyondTheCommandByte() {
        let f = Fixture()
        f.send(0x7f)
        f.sendData(0x99)
        #expect(f.ask(0x3f) == 0x99)
        #expect(f.ask(0x21) == 0x00)
        #expect(f.commandByte == 0x45)
    }

    @Test func portEnableCommandsFlipCommandByteBits() {
        let f = Fixture()
        f.send(0xad)
        #expect(f.commandByte & 0x10 == 0x10)
        f.send(0xae)
        #expect(f.commandByte & 0x10 == 0)
        f.send(0xa7)
        #expect(f.commandByte & 0x20 == 0x20)
        f.send(0xa8)
        #expect(f.commandByte & 0x20 == 0)
        #expect(f.commandByte == 0x45, "nothing else changed")
    }

    @Test func outputPortReadAndWrite() {
        let f = Fixture()
        #expect(f.ask(0xd0) == 0xcf)
        f.send(0xd1)
        f.sendData(0x03)
        #expect(f.ask(0xd0) == 0x03)
        #expect(f.requests.all.isEmpty)
    }

    @Test func writeBuffersEchoBack() {
        let f = Fixture()
        f.send(0xd2)
        f.sendData(0x12)
        #expect(f.status & 0x21 == 0x01, "keyboard data")
        #expect(f.readData() == 0x12)
        f.send(0xd3)
        f.sendData(0x34)
        #expect(f.status & 0x21 == 0x21, "aux data")
        #expect(f.readData() == 0x34)
        #expect(f.status & 0x21 == 0)
    }

    @Test func aNewCommandAbandonsAPendingOne() {
        let f = Fixture()
        f.send(0x60)
        f.send(0xa8)
        f.sendData(0x00)  // now keyboard data, not a command byte
        #expect(f.commandByte == 0x45)
    }

    @Test func unknownCommandsAndAuxDataAreIgnored() {
        let f = Fixture()
        for byte: UInt8 in [0x00, 0x10, 0xa1, 0xc0, 0xdd, 0xe0] { f.send(byte) }
        f.send(0xd4)
        f.sendData(0xff)
        #expect(f.status & 0x01 == 0)
        #expect(f.commandByte == 0x45)
        #expect(f.requests.all.isEmpty)
    }
}

@Suite struct I8042ResetTests {
    @Test func pulseResetRequestsOneResetPerCommand() {
        let f = Fixture()
        f.send(0xfe)
        #expect(f.requests.all == [.reset])
        f.send(0xfe)
        f.send(0xfe)
        #expect(f.requests.all == [.reset, .reset, .reset], "each pulse is a request")
    }

    @Test func onlyPulsesThatIncludeBitZeroReset() {
        let f = Fixture()
        for byte: UInt8 in [0xff, 0xf1, 0xfd, 0xfb] { f.send(byte) }
        #expect(f.requests.all.isEmpty)
        f.send(0xf0)
        f.send(0xfc)
        #expect(f.requests.all == [.reset, .reset])
    }

    @Test func outputPortResetIsEdgeTriggered() {
        let f = Fixture()
        f.send(0xd1)
        f.sendData(0x02)  // bit 0 clear: reset asserted
        #expect(f.requests.all == [.reset])
        f.send(0xd1)
        f.sendData(0x00)  // still asserted: no new edge
        f.send(0xfe)      // a pulse on a line held low: no edge either
        #expect(f.requests.all == [.reset])
        f.send(0xd1)
        f.sendData(0x01)  // released
        f.send(0xd1)
        f.sendData(0xfe)  // asserted again
        #expect(f.requests.all == [.reset, .reset])
    }
}

@Suite struct I8042HostileAccessTests {
    @Test func widerOrMisplacedAccessesAreIgnored() {
        let f = Fixture()
        f.send(0xaa)
        #expect(f.data.read(at: 0, size: 2) == 0xffff)
        #expect(f.command.read(at: 0, size: 4) == 0xffff_ffff)
        #expect(f.data.read(at: 1, size: 1) == 0xff)
        #expect(f.command.read(at: UInt64.max, size: 1) == 0xff)
        #expect(f.data.read(at: 0, size: 0) == 0)
        #expect(f.status & 0x01 == 0x01, "none of that consumed the output buffer")
        f.command.write(at: 0, size: 2, value: 0xfe)
        f.command.write(at: 0, size: 4, value: 0xfe)
        f.command.write(at: 3, size: 1, value: 0xfe)
        f.command.write(at: 0, size: -1, value: 0xfe)
        #expect(f.requests.all.isEmpty)
        #expect(f.readData() == 0x55)
    }

    @Test func valuesAreTruncatedToAByte() {
        let f = Fixture()
        f.command.write(at: 0, size: 1, value: 0xffff_ff00 | 0xfe)
        #expect(f.requests.all == [.reset])
    }

    @Test func registersBothPortsAndLeavesTheGapUnclaimed() throws {
        let f = Fixture()
        var builder = IOBusBuilder(kind: .portIO)
        try f.controller.register(on: &builder)
        let bus = builder.build()
        bus.write(0x64, size: 1, value: 0xaa)
        #expect(bus.read(0x64, size: 1) & 0x01 == 0x01)
        #expect(bus.read(0x60, size: 1) == 0x55)
        #expect(bus.read(0x61, size: 1) == 0xff)
        #expect(bus.unclaimedReads == 1)
    }
}

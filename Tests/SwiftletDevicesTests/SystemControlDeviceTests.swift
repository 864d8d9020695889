import Testing
@testable import SwiftletDevices

@Suite struct DebugExitDeviceTests {
    @Test func writesOfOneTwoOrFourBytesExitWithTheValue() {
        let requests = RequestRecorder()
        let device = DebugExitDevice(requests: requests)
        device.write(at: 0, size: 1, value: 0x10)
        device.write(at: 0, size: 2, value: 0x1234)
        device.write(at: 0, size: 4, value: 0xdead_beef)
        device.write(at: 3, size: 1, value: 0x7f)
        #expect(requests.all == [.debugExit(code: 0x10), .debugExit(code: 0x1234),
                                 .debugExit(code: 0xdead_beef), .debugExit(code: 0x7f)])
    }

    @Test func valuesAreMaskedToTheAccessSize() {
        let requests = RequestRecorder()
        let device = DebugExitDevice(requests: requests)
        device.write(at: 0, size: 1, value: 0xffff_ffff_ffff_ff21)
        device.write(at: 0, size: 4, value: UInt64.max)
        #expect(requests.all == [.debugExit(code: 0x21), .debugExit(code: 0xffff_ffff)])
    }

    @Test func otherSizesAndOutOfRangeAccessesAreIgnored() {
        let requests = RequestRecorder()
        let device = DebugExitDevice(requests: requests)
        for size in [-1, 0, 3, 8, 16] { device.write(at: 0, size: size, value: 1) }
        device.write(at: 4, size: 1, value: 1)
        device.write(at: 2, size: 4, value: 1)
        device.write(at: UInt64.max, size: 2, value: 1)
        #expect(requests.all.isEmpty)
    }

    @Test func readsReturnZeroAsInQEMU() {
        let device = DebugExitDevice(requests: RequestRecorder())
        #expect(device.read(at: 0, size: 1) == 0)
        #expect(device.read(at: 0, size: 4) == 0)
        #expect(device.read(at: 9, size: 2) == 0)
    }
}

@Suite struct PowerControlDeviceTests {
    @Test func s5WithSleepEnablePowersOff() {
        let requests = RequestRecorder()
        let device = PowerControlDevice(requests: requests)
        device.write(at: 0, size: 1, value: 0x34)
        #expect(requests.all == [.powerOff])
        device.write(at: 0, size: 1, value: 0x34 | 0xc3)  // reserved bits do not matter
        #expect(requests.all == [.powerOff, .powerOff])
    }

    @Test func writesWithoutSleepEnableOrOtherSleepTypesDoNothing() {
        let requests = RequestRecorder()
        let device = PowerControlDevice(requests: requests)
        device.write(at: 0, size: 1, value: 0x14)  // S5 type without SLP_EN
        for sleepType: UInt64 in [0, 1, 2, 3, 4, 6, 7] {
            device.write(at: 0, size: 1, value: 0x20 | sleepType << 2)
        }
        #expect(requests.all.isEmpty)
    }

    @Test func resetRegisterTakesOnlyTheResetValue() {
        let requests = RequestRecorder()
        let device = PowerControlDevice(requests: requests)
        for value: UInt64 in [0, 2, 0x81, 0xff] { device.write(at: 2, size: 1, value: value) }
        #expect(requests.all.isEmpty)
        device.write(at: 2, size: 1, value: 1)
        device.write(at: 2, size: 1, value: 1)
        #expect(requests.all == [.reset, .reset])
    }

    @Test func sleepStatusWritesDoNothing() {
        let requests = RequestRecorder()
        let device = PowerControlDevice(requests: requests)
        for value: UInt64 in [0x80, 0x34, 0x01, 0xff] { device.write(at: 1, size: 1, value: value) }
        #expect(requests.all.isEmpty)
    }

    @Test func registersReadZeroAndBeyondReadsAllOnes() {
        let device = PowerControlDevice(requests: RequestRecorder())
        device.write(at: 1, size: 1, value: 0x80)
        #expect(device.read(at: 0, size: 1) == 0)
        #expect(device.read(at: 1, size: 1) == 0, "WAK_STS stays clear")
        #expect(device.read(at: 2, size: 1) == 0)
        #expect(device.read(at: 0, size: 4) == 0xff00_0000)
        #expect(device.read(at: 3, size: 1) == 0xff)
        #expect(device.read(at: UInt64.max, size: 2) == 0xffff)
    }

    @Test func wideWritesReachEachRegisterInOrder() {
        let requests = RequestRecorder()
        let device = PowerControlDevice(requests: requests)
        device.write(at: 1, size: 2, value: 0x0100)  // status 0, reset 1
        device.write(at: 0, size: 4, value: 0x0001_0034)
        #expect(requests.all == [.reset, .powerOff, .reset])
    }

    @Test func hostileAccessesDoNotTrap() {
        let requests = RequestRecorder()
        let device = PowerControlDevice(requests: requests)
        for size in [-1, 0, 9, Int.max] { device.write(at: 3, size: size, value: UInt64.max) }
        device.write(at: UInt64.max, size: 8, value: 0x34)
        #expect(requests.all.isEmpty)
    }
}

@Suite struct PostCodePortTests {
    @Test func remembersTheLastByteWritten() {
        let port = PostCodePort()
        #expect(port.read(at: 0, size: 1) == 0)
        port.write(at: 0, size: 1, value: 0x12)
        port.write(at: 0, size: 1, value: 0x34)
        #expect(port.read(at: 0, size: 1) == 0x34)
        #expect(port.lastValue == 0x34)
        #expect(port.writeCount == 2)
    }

    @Test func oddAccessesAreHandled() {
        let port = PostCodePort()
        port.write(at: 0, size: 4, value: 0xaabb_ccdd)
        #expect(port.lastValue == 0xdd, "the low byte is the port's")
        port.write(at: 1, size: 1, value: 0x99)
        port.write(at: 0, size: 0, value: 0x99)
        #expect(port.lastValue == 0xdd)
        #expect(port.writeCount == 1)
        #expect(port.read(at: 0, size: 2) == 0xffdd)
        #expect(port.read(at: 5, size: 1) == 0xff)
    }
}

@Suite struct AccessMaskTests {
    @Test func masksForEverySize() {
        #expect(accessMask(size: 1) == 0xff)
        #expect(accessMask(size: 2) == 0xffff)
        #expect(accessMask(size: 3) == 0xff_ffff)
        #expect(accessMask(size: 4) == 0xffff_ffff)
        #expect(accessMask(size: 8) == UInt64.max)
        #expect(accessMask(size: 9) == UInt64.max)
        #expect(accessMask(size: 0) == 0)
        #expect(accessMask(size: -1) == 0, "used to trap")
        #expect(accessMask(size: Int.min) == 0)
    }
}

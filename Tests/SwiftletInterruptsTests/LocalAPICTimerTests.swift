import Testing
@testable import SwiftletInterrupts

/// The APIC timer (Intel SDM Vol. 3A §10.5.4) against a fake clock: `now`
/// is whatever the test says. At the default 1 GHz one input clock is 1 ns.
@Suite struct LocalAPICTimerTests {
    static let divideBy1: UInt32 = 0xB
    static let vector: UInt32 = 0xEC
    static let periodic: UInt32 = 1 << 17

    /// A software-enabled APIC whose timer raises `vector`, divider 1.
    static func apic(frequency: UInt64 = 1_000_000_000, minimumPeriodicInterval: Int64 = 0) -> LocalAPIC {
        var apic = LocalAPIC.enabled(configuration: .init(timerFrequency: frequency,
                                                          minimumPeriodicInterval: minimumPeriodicInterval))
        apic.set(Reg.divide, divideBy1)
        apic.set(Reg.timer, vector)
        return apic
    }

    @Test func oneShotCountsDownOnceAndStops() {
        var apic = Self.apic()
        let effects = apic.set(Reg.initialCount, 1000, now: 5_000)
        #expect(effects == [.timerDeadlineChanged(6_000)])
        #expect(apic.nextTimerDeadline == 6_000)
        #expect(apic.reg(Reg.currentCount, now: 5_250) == 750)
        #expect(apic.reg(Reg.initialCount) == 1000)
        #expect(apic.timerFired(now: 5_999).isEmpty, "too early: nothing happens")
        #expect(apic.irr.isEmpty)
        #expect(apic.timerFired(now: 6_000) == [.timerDeadlineChanged(nil)])
        #expect(apic.irr == VectorSet([0xEC]))
        #expect(apic.tmr.isEmpty, "the timer is edge-triggered")
        #expect(apic.reg(Reg.currentCount, now: 6_000) == 0)
        #expect(apic.reg(Reg.currentCount, now: 1_000_000) == 0, "and stays 0")
        #expect(apic.timerFired(now: 10_000).isEmpty)
        #expect(apic.take() == 0xEC)
        #expect(apic.pendingInterrupt() == nil, "one interrupt, not one per call")
    }

    @Test func theCurrentCountReachesZeroEvenIfTheHostTimerIsLate() {
        var apic = Self.apic()
        apic.set(Reg.initialCount, 100, now: 0)
        #expect(apic.reg(Reg.currentCount, now: 150) == 0)
        #expect(apic.nextTimerDeadline == 100, "the interrupt is still owed")
        #expect(apic.timerFired(now: 150) == [.timerDeadlineChanged(nil)])
        #expect(apic.irr == VectorSet([0xEC]))
    }

    @Test func everyDivideConfigurationEncoding() {
        // Bits 3, 1, 0 of the divide configuration register (figure 10-10).
        let encodings: [(UInt32, Int64)] = [
            (0x0, 2), (0x1, 4), (0x2, 8), (0x3, 16), (0x8, 32), (0x9, 64), (0xA, 128), (0xB, 1)]
        for (value, divisor) in encodings {
            var apic = Self.apic()
            apic.set(Reg.divide, value)
            #expect(apic.reg(Reg.divide) == value)
            apic.set(Reg.initialCount, 10, now: 0)
            #expect(apic.nextTimerDeadline == 10 * divisor, "divide configuration 0x\(String(value, radix: 16))")
            #expect(apic.reg(Reg.currentCount, now: 3 * divisor) == 7)
            #expect(apic.reg(Reg.currentCount, now: 3 * divisor - 1) == 8)
        }
        var apic = Self.apic()
        apic.set(Reg.divide, 0xFFFF_FFF4)
        #expect(apic.reg(Reg.divide) == 0, "bit 2 and bits 31:4 are reserved")
    }

    @Test func periodicModeReloadsWithoutDrift() {
        var apic = Self.apic()
        apic.set(Reg.timer, Self.vector | Self.periodic)
        apic.set(Reg.initialCount, 1000, now: 0)
        #expect(apic.nextTimerDeadline == 1000)
        #expect(apic.timerFired(now: 1000) == [.timerDeadlineChanged(2000)])
        #expect(apic.take() == 0xEC)
        _ = apic.eoi()
        #expect(apic.reg(Reg.currentCount, now: 1000) == 1000, "reloaded at zero")
        #expect(apic.reg(Reg.currentCount, now: 2250) == 750)
        // A late host timer: the crossings at 2000 and 3000 become one
        // interrupt, and the next deadline is still on the 1000 ns grid.
        #expect(apic.timerFired(now: 3500) == [.timerDeadlineChanged(4000)])
        #expect(apic.irr == VectorSet([0xEC]))
        #expect(apic.reg(Reg.currentCount, now: 3500) == 500)
        #expect(apic.timerFired(now: 4001) == [.timerDeadlineChanged(5000)])
    }

    @Test func periodicInterruptsAreSpacedByTheMinimumInterval() {
        var apic = Self.apic(minimumPeriodicInterval: 1000)
        apic.set(Reg.timer, Self.vector | Self.periodic)
        apic.set(Reg.initialCount, 10, now: 0)
        #expect(apic.nextTimerDeadline == 10)
        #expect(apic.timerFired(now: 10) == [.timerDeadlineChanged(1010)], "the first crossing at or after 1010")
        #expect(apic.reg(Reg.currentCount, now: 15) == 5, "the count itself runs at the programmed rate")
    }

    @Test func theInputFrequencyIsConfigurable() {
        var apic = Self.apic(frequency: 100_000_000)  // 10 ns per input clock
        apic.set(Reg.initialCount, 100, now: 0)
        #expect(apic.nextTimerDeadline == 1000)
        #expect(apic.reg(Reg.currentCount, now: 999) == 1)
        var slow = Self.apic(frequency: 3)  // deadlines round up to whole nanoseconds
        slow.set(Reg.initialCount, 1, now: 0)
        #expect(slow.nextTimerDeadline == 333_333_334)
        #expect(slow.reg(Reg.currentCount, now: 333_333_333) == 1)
        #expect(slow.reg(Reg.currentCount, now: 333_333_334) == 0)
    }

    @Test func aMaskedTimerCountsButRaisesNothing() {
        var apic = Self.apic()
        apic.set(Reg.timer, Self.vector | Self.periodic | masked)
        #expect(apic.set(Reg.initialCount, 1000, now: 0).isEmpty, "no deadline to arm while masked")
        #expect(apic.nextTimerDeadline == nil)
        #expect(apic.reg(Reg.currentCount, now: 2500) == 500)
        // Unmasking after crossings at 1000 and 2000: those are lost, the
        // next one (3000) is armed.
        #expect(apic.set(Reg.timer, Self.vector | Self.periodic, now: 2500) == [.timerDeadlineChanged(3000)])
        #expect(apic.irr.isEmpty)
        #expect(apic.timerFired(now: 3000) == [.timerDeadlineChanged(4000)])
        #expect(apic.irr == VectorSet([0xEC]))
        // Masking before a due crossing is handled delivers it first.
        _ = apic.take()
        #expect(apic.set(Reg.timer, Self.vector | Self.periodic | masked, now: 4100) == [.timerDeadlineChanged(nil)])
        #expect(apic.irr == VectorSet([0xEC]), "the 4000 crossing happened while unmasked")
    }

    @Test func writingZeroStopsTheTimer() {
        var apic = Self.apic()
        apic.set(Reg.timer, Self.vector | Self.periodic)
        apic.set(Reg.initialCount, 1000, now: 0)
        #expect(apic.set(Reg.initialCount, 0, now: 500) == [.timerDeadlineChanged(nil)])
        #expect(apic.reg(Reg.currentCount, now: 600) == 0)
        #expect(apic.timerFired(now: 5000).isEmpty)
        #expect(apic.irr.isEmpty)
    }

    @Test func rewritingTheInitialCountRestarts() {
        var apic = Self.apic()
        apic.set(Reg.initialCount, 1000, now: 0)
        #expect(apic.set(Reg.initialCount, 300, now: 900) == [.timerDeadlineChanged(1200)])
        #expect(apic.reg(Reg.currentCount, now: 1000) == 200)
    }

    @Test func changingTheDividerMidCountKeepsTheCount() {
        var apic = Self.apic()
        apic.set(Reg.initialCount, 1000, now: 0)
        #expect(apic.reg(Reg.currentCount, now: 400) == 600)
        #expect(apic.set(Reg.divide, 0x0, now: 400) == [.timerDeadlineChanged(1600)], "600 ticks of 2 ns")
        #expect(apic.reg(Reg.currentCount, now: 1000) == 300)
    }

    @Test func changingTheModeDoesNotRestartTheTimer() {
        var apic = Self.apic()
        apic.set(Reg.initialCount, 1000, now: 0)
        #expect(apic.set(Reg.timer, Self.vector | Self.periodic, now: 400).isEmpty, "the deadline stays 1000")
        #expect(apic.reg(Reg.currentCount, now: 400) == 600)
        #expect(apic.timerFired(now: 1000) == [.timerDeadlineChanged(2000)], "periodic from now on")
        #expect(apic.reg(Reg.currentCount, now: 1100) == 900)
        #expect(apic.set(Reg.timer, Self.vector, now: 1100).isEmpty)
        #expect(apic.timerFired(now: 2000) == [.timerDeadlineChanged(nil)], "one-shot again: stops at zero")
        #expect(apic.set(Reg.timer, Self.vector | Self.periodic, now: 2500).isEmpty,
                "an expired one-shot timer is not started by the mode change")
        #expect(apic.nextTimerDeadline == nil)
    }

    @Test func aTimerInterruptWithAnIllegalVectorIsAnError() {
        var apic = Self.apic()
        apic.set(Reg.timer, 0x0F)
        apic.set(Reg.initialCount, 10, now: 0)
        _ = apic.timerFired(now: 10)
        #expect(apic.irr.isEmpty)
        #expect(apic.latchedErrors() == 0x40)
    }

    @Test func extremeCountsAndTimesSaturate() {
        var apic = Self.apic()
        apic.set(Reg.divide, 0xA)  // 128
        apic.set(Reg.timer, Self.vector | Self.periodic)
        apic.set(Reg.initialCount, 0xFFFF_FFFF, now: Int64.max - 10)
        #expect(apic.nextTimerDeadline == Int64.max, "saturates instead of overflowing")
        #expect(apic.reg(Reg.currentCount, now: Int64.min) == 0xFFFF_FFFF, "time before the start counts as none")
        #expect(apic.timerFired(now: Int64.max).isEmpty, "10 ns are not one tick of 128 clocks")
        var early = Self.apic()
        early.set(Reg.initialCount, 5, now: Int64.min)
        #expect(early.nextTimerDeadline == Int64.min + 5)
        #expect(early.reg(Reg.currentCount, now: Int64.max) == 0, "the difference spans the whole range")
    }

    @Test func softwareDisablingMasksTheTimer() {
        var apic = Self.apic()
        apic.set(Reg.initialCount, 1000, now: 0)
        #expect(apic.set(Reg.svr, 0xFF, now: 10) == [.addressingChanged(apic.addressing), .timerDeadlineChanged(nil)])
        #expect(apic.reg(Reg.currentCount, now: 500) == 500, "it keeps counting")
    }
}

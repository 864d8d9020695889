import Glibc
import Testing
import SwiftletTestSupport
import SwiftletSystem
@testable import SwiftletDevices

// Intel 82C54 datasheet behaviour with a fake clock. Cycle n is the n-th
// input clock edge after the PIT was created (at time 0); a count written
// during cycle c is loaded at cycle c + 1.

/// A clock the test moves by hand.
private final class FakeClock: Sendable {
    private let value = Locked<Int64>(0)
    var now: Int64 { value.withLock { $0 } }
    func set(_ time: Int64) { value.withLock { $0 = time } }
    func advance(_ nanoseconds: Int64) { value.withLock { $0 += nanoseconds } }
}

private struct Fixture {
    let clock = FakeClock()
    let irq = LevelRecorder()
    let pit: PIT8254
    let portB: any BusDevice

    init(minimumPeriod: Int64 = PIT8254.defaultMinimumPeriod) {
        let clock = self.clock
        pit = PIT8254(interrupt: irq, clock: { clock.now }, minimumPeriod: minimumPeriod)
        portB = pit.systemControlPort
    }

    /// Moves the clock to the instant of input clock edge `cycle`.
    func at(_ cycle: UInt64) { clock.set(pit.time(ofCycle: cycle)) }

    func outb(_ port: UInt64, _ value: UInt8) {
        if port == 0x61 {
            portB.write(at: 0, size: 1, value: UInt64(value))
        } else {
            pit.write(at: port - 0x40, size: 1, value: UInt64(value))
        }
    }

    func inb(_ port: UInt64) -> UInt8 {
        UInt8(truncatingIfNeeded: port == 0x61 ? portB.read(at: 0, size: 1) : pit.read(at: port - 0x40, size: 1))
    }

    /// Programs `channel` with a control word and a count written LSB then MSB.
    func program(_ channel: UInt64, mode: UInt8, count: UInt16, bcd: Bool = false) {
        outb(0x43, UInt8(channel << 6) | 0x30 | mode << 1 | (bcd ? 1 : 0))
        outb(0x40 + channel, UInt8(truncatingIfNeeded: count))
        outb(0x40 + channel, UInt8(truncatingIfNeeded: count >> 8))
    }

    /// Two live reads of a counter in LSB-then-MSB mode, at the same instant.
    func count(_ channel: UInt64) -> UInt16 {
        let low = inb(0x40 + channel)
        return UInt16(low) | UInt16(inb(0x40 + channel)) << 8
    }

    /// Latches and reads a counter (LSB-then-MSB mode).
    func latched(_ channel: UInt64) -> UInt16 {
        outb(0x43, UInt8(channel << 6))
        return count(channel)
    }

    func status(_ channel: UInt64) -> UInt8 {
        outb(0x43, 0xe0 | 2 << UInt8(channel))
        return inb(0x40 + channel)
    }

    func out(_ channel: Int) -> Bool { pit.output(ofChannel: channel) }
    var pulses: Int { irq.history.filter { $0 }.count }

    /// OUT of `channel` at each cycle in `cycles`.
    func waveform(_ channel: Int, _ cycles: ClosedRange<UInt64>) -> [Bool] {
        cycles.map { at($0); return out(channel) }
    }
}

private let H = true, L = false

@Suite struct PITClockTests {
    @Test func edgesAndTheirTimesAreInverse() {
        #expect(PITClock.cycles(in: 1_000_000_000) == 1_193_182)
        #expect(PITClock.cycles(in: 838) == 0)
        #expect(PITClock.cycles(in: 839) == 1, "the first edge comes 838.1 ns after the epoch")
        for cycle: UInt64 in [1, 2, 3, 11932, 1_193_182, 987_654_321, 1 << 40] {
            let time = PITClock.nanoseconds(untilCycle: cycle)
            #expect(PITClock.cycles(in: time) == cycle)
            #expect(PITClock.cycles(in: time - 1) == cycle - 1)
        }
        #expect(PITClock.nanoseconds(untilCycle: .max) == .max)
        #expect(PITClock.cycles(in: .max) == 22_010_322_987_356_910, "no overflow at the end of time")
    }

    @Test func deadlinesDoNotDrift() {
        let f = Fixture()
        f.at(0)
        f.program(0, mode: 2, count: 11932)
        for period: UInt64 in 1...1000 {
            let deadline = f.pit.nextInterruptDeadline
            #expect(deadline == f.pit.time(ofCycle: 1 + period * 11932))
            f.clock.set(deadline!)
            _ = f.pit.serviceTimer()
        }
        #expect(f.pulses == 1000)
        #expect(f.clock.now == 10_000_151_696, "1000 periods of 11932 cycles, after one load cycle, to the nanosecond")
    }
}

@Suite struct PIT8254ModeTests {
    @Test func powerOnState() {
        let f = Fixture()
        #expect(f.status(0) == 0x70, "mode 0, LSB then MSB, binary, OUT low, null count")
        #expect(f.status(1) == 0x70)
        #expect(f.status(2) == 0x70)
        #expect(f.inb(0x43) == 0xff, "the control word register cannot be read")
        #expect(f.inb(0x61) == 0x00, "gate 2 low, speaker off, OUT 2 low")
        #expect(f.pit.serviceTimer() == nil, "an unprogrammed PIT has nothing to do")
        #expect(f.irq.history.isEmpty)
    }

    @Test func mode0InterruptOnTerminalCount() {
        let f = Fixture()
        f.program(0, mode: 0, count: 100)
        #expect(f.out(0) == L, "OUT low after the control word")
        #expect(f.status(0) & 0x40 != 0, "null count until the next clock loads CE")
        f.at(1)
        #expect(f.status(0) == 0x30, "count loaded, OUT low")
        #expect(f.count(0) == 100, "the loading clock does not decrement")
        f.at(51)
        #expect(f.count(0) == 50)
        f.at(100)
        #expect(f.count(0) == 1 && f.out(0) == L)
        f.at(101)
        #expect(f.count(0) == 0 && f.out(0) == H, "OUT goes high N + 1 clocks after the write")
        f.at(102)
        #expect(f.count(0) == 0xffff && f.out(0) == H, "the counter wraps and keeps counting; OUT stays high")
        f.at(101 + 0x1_0000)
        #expect(f.count(0) == 0 && f.out(0) == H, "OUT stays high until reprogrammed")
    }

    @Test func mode0RaisesIRQZeroOnceAtTerminalCount() {
        let f = Fixture()
        f.program(0, mode: 0, count: 100)
        #expect(f.pit.nextInterruptDeadline == f.pit.time(ofCycle: 101))
        f.at(100)
        #expect(f.pit.serviceTimer() == f.pit.time(ofCycle: 101), "early: nothing yet")
        #expect(f.pulses == 0)
        f.at(101)
        #expect(f.pit.serviceTimer() == nil, "a one-shot has no further edge")
        #expect(f.irq.history == [true, false], "one pulse: a rising edge, and the line left low")
        f.at(500_000)
        _ = f.pit.serviceTimer()
        #expect(f.pulses == 1)
    }

    @Test func mode1HardwareRetriggerableOneShot() {
        let f = Fixture()
        f.outb(0x61, 0x00)
        f.program(2, mode: 1, count: 10)
        f.at(20)
        #expect(f.out(2) == H, "OUT high, waiting for a trigger")
        #expect(f.status(2) & 0x40 != 0, "the count waits for the trigger to be loaded")
        f.outb(0x61, 0x01)  // trigger at cycle 20
        #expect(f.waveform(2, 20...32) == [H, L, L, L, L, L, L, L, L, L, L, H, H], "low for N clocks from the clock after the trigger")
        // The PIT's clock never goes back, so the count at 25 is read from
        // a second, identical counter.
        let g = Fixture()
        g.outb(0x61, 0x00)
        g.program(2, mode: 1, count: 10)
        g.at(20)
        g.outb(0x61, 0x01)
        g.at(25)
        #expect(g.count(2) == 6)
        // Gate level means nothing; a new rising edge retriggers, also mid-pulse.
        f.at(40); f.outb(0x61, 0x00)
        #expect(f.out(2) == H)
        f.at(45); f.outb(0x61, 0x01)
        f.at(50); f.outb(0x61, 0x00)
        f.at(52); f.outb(0x61, 0x01)
        #expect(f.waveform(2, 52...64) == [L, L, L, L, L, L, L, L, L, L, L, H, H], "retriggered at 52: low until 53 + 10")
        // A new count does not affect a pulse in progress, only the next trigger.
        f.at(70); f.outb(0x61, 0x00); f.outb(0x61, 0x01)
        f.at(72)
        f.outb(0x42, 3); f.outb(0x42, 0)
        // Datasheet, mode 1: OUT goes low on the CLK pulse after the trigger
        // (71) and stays low for N = 10 clocks, so it is high again at 81 (as
        // for the triggers at 20 and 52 above); this expected one low clock
        // too many.
        #expect(f.waveform(2, 72...82) == [L, L, L, L, L, L, L, L, L, H, H])
        f.at(90); f.outb(0x61, 0x00); f.outb(0x61, 0x01)
        #expect(f.waveform(2, 90...95) == [H, L, L, L, H, H], "the next trigger uses the new count")
    }

    @Test func mode1OnCounterZeroNeverStartsBecauseItsGateIsTiedHigh() {
        let f = Fixture()
        f.program(0, mode: 1, count: 10)
        f.at(1000)
        #expect(f.out(0) == H)
        #expect(f.pit.serviceTimer() == nil)
    }

    @Test func mode2RateGenerator() {
        let f = Fixture(minimumPeriod: 0)
        f.program(0, mode: 2, count: 5)
        #expect(f.out(0) == H)
        #expect(f.waveform(0, 1...16) == [H, H, H, H, L, H, H, H, H, L, H, H, H, H, L, H],
                "low for one clock when the count reaches 1, N clocks after the write")
        // The PIT's clock never goes back: counts and deadlines from cycle 0
        // on come from fresh counters.
        let g = Fixture(minimumPeriod: 0)
        g.program(0, mode: 2, count: 5)
        var counts: [UInt16] = []
        for cycle: UInt64 in 1...11 { g.at(cycle); counts.append(g.count(0)) }
        #expect(counts == [5, 4, 3, 2, 1, 5, 4, 3, 2, 1, 5])
        // One rising edge per period, at each reload.
        let h = Fixture(minimumPeriod: 0)
        h.program(0, mode: 2, count: 5)
        var deadlines: [Int64] = []
        for _ in 0..<4 {
            let deadline = h.pit.serviceTimer()!
            deadlines.append(deadline)
            h.clock.set(deadline)
        }
        #expect(deadlines == [6, 11, 16, 21].map { h.pit.time(ofCycle: $0) })
        #expect(h.pulses == 3)
    }

    @Test func mode3SquareWaveEvenAndOdd() {
        let even = Fixture(minimumPeriod: 0)
        even.program(0, mode: 3, count: 6)
        #expect(even.waveform(0, 1...13) == [H, H, H, L, L, L, H, H, H, L, L, L, H], "N/2 high, N/2 low")
        // The PIT's clock never goes back: each look from cycle 0 on uses a
        // fresh counter.
        let evenCounts = Fixture(minimumPeriod: 0)
        evenCounts.program(0, mode: 3, count: 6)
        var counts: [UInt16] = []
        for cycle: UInt64 in 1...7 { evenCounts.at(cycle); counts.append(evenCounts.count(0)) }
        #expect(counts == [6, 4, 2, 6, 4, 2, 6], "counts down by two, each half")

        let oddWave = Fixture(minimumPeriod: 0)
        oddWave.program(0, mode: 3, count: 5)
        #expect(oddWave.waveform(0, 1...11) == [H, H, H, L, L, H, H, H, L, L, H], "(N+1)/2 high, (N-1)/2 low")
        let oddCounts = Fixture(minimumPeriod: 0)
        oddCounts.program(0, mode: 3, count: 5)
        counts = []
        for cycle: UInt64 in 1...6 { oddCounts.at(cycle); counts.append(oddCounts.count(0)) }
        #expect(counts == [4, 2, 0, 4, 2, 4], "an odd count loads N-1")
        let odd = Fixture(minimumPeriod: 0)
        odd.program(0, mode: 3, count: 5)
        #expect(odd.pit.serviceTimer() == odd.pit.time(ofCycle: 6), "the rising edge ends each period")
        odd.at(6)
        #expect(odd.pit.serviceTimer() == odd.pit.time(ofCycle: 11))
        #expect(odd.pulses == 1)
    }

    @Test func mode4SoftwareTriggeredStrobe() {
        let f = Fixture()
        f.program(0, mode: 4, count: 3)
        #expect(f.waveform(0, 0...7) == [H, H, H, H, L, H, H, H], "strobes low N + 1 clocks after the write, for one clock")
        // The PIT's clock never goes back: counts from cycle 1 on come from a
        // fresh counter.
        let c = Fixture()
        c.program(0, mode: 4, count: 3)
        c.at(1)
        #expect(c.count(0) == 3)
        c.at(5)
        #expect(c.count(0) == 0xffff, "then the counter wraps")
        f.at(0x1_0004)
        #expect(f.out(0) == H, "no second strobe without a new count")
        // The interrupt is the strobe's rising edge.
        let g = Fixture()
        g.program(0, mode: 4, count: 3)
        #expect(g.pit.nextInterruptDeadline == g.pit.time(ofCycle: 5))
        g.at(5)
        #expect(g.pit.serviceTimer() == nil)
        #expect(g.pulses == 1)
        // Writing a count again retriggers (Linux's oneshot clockevent does this).
        g.at(100)
        g.outb(0x40, 10); g.outb(0x40, 0)
        #expect(g.pit.nextInterruptDeadline == g.pit.time(ofCycle: 112))
    }

    @Test func mode5HardwareTriggeredStrobe() {
        let f = Fixture()
        f.program(2, mode: 5, count: 3)
        f.at(10)
        #expect(f.out(2) == H)
        f.outb(0x61, 0x01)
        #expect(f.waveform(2, 10...16) == [H, H, H, H, L, H, H], "strobe N + 1 clocks after the trigger")
        f.at(20); f.outb(0x61, 0x00)
        f.at(21); f.outb(0x61, 0x01)
        f.at(23); f.outb(0x61, 0x00)
        f.at(24); f.outb(0x61, 0x01)
        // Datasheet, mode 5: the count is loaded on the CLK pulse after the
        // trigger (25) and OUT strobes low when it reaches 0, N = 3 clocks
        // later (28), as after the trigger at 10; this expected the strobe
        // one clock early.
        #expect(f.waveform(2, 24...29) == [H, H, H, H, L, H], "retriggerable: counts again from the last trigger")
    }
}

@Suite struct PIT8254AccessTests {
    @Test func lsbOnlyMSBOnlyAndWordCountsReadMidCount() {
        let f = Fixture()
        f.outb(0x61, 0x01)
        f.outb(0x43, 0x90)  // counter 2, LSB only, mode 0
        f.outb(0x42, 200)
        f.at(51)
        #expect(f.inb(0x42) == 150)
        #expect(f.inb(0x42) == 150, "every read is the LSB")

        f.at(100)
        f.outb(0x43, 0xa0)  // MSB only
        f.outb(0x42, 0x03)  // count 0x300, loaded at 101
        f.at(101 + 0x105)
        #expect(f.inb(0x42) == 0x01, "0x300 - 0x105 = 0x1fb")
        f.outb(0x43, 0x80)  // latch
        f.at(2000)
        #expect(f.inb(0x42) == 0x01, "a latched count in MSB mode is one byte")
        // Datasheet, mode 0: after terminal count (at 101 + 0x300) the
        // counter wraps to FFFF and keeps counting, so CE is 0xfb95 at 2000
        // (mode0InterruptOnTerminalCount checks the wrap); this expected 0.
        #expect(f.inb(0x42) == 0xfb, "then reads follow CE again")

        f.outb(0x43, 0xb0)  // LSB then MSB
        f.outb(0x42, 0x34); f.outb(0x42, 0x12)
        f.at(2001 + 0x34)
        #expect(f.count(2) == 0x1200)
        // Live reads alternate LSB and MSB, each of CE at its own time.
        let low = f.inb(0x42)
        f.at(2001 + 0x34 + 0x100)
        let high = f.inb(0x42)
        #expect(low == 0x00 && high == 0x11)
    }

    @Test func readAndWriteFlipFlopsAreSeparate() {
        let f = Fixture()
        f.program(0, mode: 0, count: 0x1234)
        f.at(1)
        #expect(f.inb(0x40) == 0x34, "read LSB")
        f.outb(0x40, 0x00)  // write new LSB (mode 0: counting stops, OUT low)
        f.at(10)
        #expect(f.inb(0x40) == 0x12, "read MSB of the stopped count")
        f.outb(0x40, 0x01)  // write MSB: count 0x100, loaded at 11
        f.at(11)
        #expect(f.count(0) == 0x100)
    }

    @Test func counterLatchHoldsTheCountUntilRead() {
        let f = Fixture()
        f.program(0, mode: 2, count: 1000)
        f.at(101)
        f.outb(0x43, 0x00)
        f.at(300)
        f.outb(0x43, 0x00)  // ignored: the first latch is still unread
        f.at(500)
        #expect(f.inb(0x40) == UInt8(900 & 0xff))
        f.at(600)
        #expect(f.inb(0x40) == UInt8(900 >> 8), "both bytes come from the latch")
        #expect(f.count(0) == 1000 - 599, "then reads are live")
        // A control word discards a latch.
        f.outb(0x43, 0x00)
        f.outb(0x43, 0x34)
        f.at(700)
        f.outb(0x40, 0x10); f.outb(0x40, 0)
        f.at(702)
        #expect(f.count(0) == 0x0f)
    }

    @Test func readBackLatchesStatusAndCounts() {
        let f = Fixture()
        f.program(0, mode: 2, count: 1000)
        #expect(f.status(0) == 0xf4, "OUT high, null count, RW 3, mode 2, binary")
        f.at(1)
        #expect(f.status(0) == 0xb4, "the count is in CE: null count cleared")
        f.at(11)
        f.outb(0x43, 0xc2)  // count and status of counter 0
        f.at(50)
        #expect(f.inb(0x40) == 0xb4, "status first")
        #expect(f.count(0) == 990, "then the count latched with it")
        // Status latched twice: the first is kept.
        f.outb(0x43, 0xe2)
        f.at(1000)
        f.outb(0x43, 0xe2)
        f.at(1001)
        #expect(f.inb(0x40) == 0xb4 && f.count(0) == 1000, "status from cycle 50 (OUT high), count live")
        // Several counters at once; each keeps its latch until read.
        f.program(1, mode: 0, count: 500)
        f.outb(0x61, 0x01)
        f.program(2, mode: 3, count: 100)
        f.at(1100)
        f.outb(0x43, 0xde)  // counts of 2, 1, 0
        f.at(1200)
        #expect(f.count(1) == 500 - (1100 - 1002))
        #expect(f.count(2) == 100 - 2 * ((1100 - 1002) % 50))
        #expect(f.count(0) == 1000 - (1100 - 1001) % 1000)
        #expect(f.status(1) == 0x30, "mode 0 before terminal count: OUT low")
        #expect(f.status(1) & 0x80 == 0)
        // Reserved bit 0 of the read-back command is ignored; selecting no
        // counter latches nothing.
        f.outb(0x43, 0xc1)
        #expect(f.count(1) == 500 - (1200 - 1002))
    }

    @Test func bcdCounting() {
        let f = Fixture()
        f.program(0, mode: 0, count: 0x1000, bcd: true)
        f.at(1)
        #expect(f.count(0) == 0x1000)
        f.at(2)
        #expect(f.count(0) == 0x0999)
        f.at(1 + 1000 - 123)
        #expect(f.count(0) == 0x0123)
        #expect(f.pit.nextInterruptDeadline == f.pit.time(ofCycle: 1001), "0x1000 in BCD is 1000 clocks")
        f.at(1002)
        #expect(f.count(0) == 0x9999, "BCD wraps to 9999")
        #expect(f.status(0) == 0xb1)

        f.program(0, mode: 2, count: 0x0000, bcd: true)  // 10 000
        f.at(2000)
        // Datasheet: written at 1002, the count is loaded at 1003 and has
        // counted 997 clocks by 2000 (the deadline below also has the load
        // at 1003); this expected 0x9001, two clocks further on.
        #expect(f.count(0) == 0x9003)
        #expect(f.pit.nextInterruptDeadline == f.pit.time(ofCycle: 1003 + 10_000))

        f.program(0, mode: 0, count: 0xffff, bcd: true)  // not BCD: digit × weight
        #expect(f.pit.nextInterruptDeadline == f.pit.time(ofCycle: 2001 + 16_665))
    }

    @Test func countZeroIs65536() {
        let f = Fixture(minimumPeriod: 0)
        f.program(0, mode: 2, count: 0)
        f.at(1)
        #expect(f.count(0) == 0)
        f.at(2)
        #expect(f.count(0) == 0xffff)
        #expect(f.pit.nextInterruptDeadline == f.pit.time(ofCycle: 1 + 65_536), "18.2 Hz")
    }
}

@Suite struct PIT8254GateAndPortBTests {
    @Test func portBBits() {
        let f = Fixture()
        f.outb(0x61, 0xff)
        #expect(f.inb(0x61) & 0xcf == 0x0f, "bits 0-3 read back; 6 and 7 are 0; 4-7 are not writable")
        f.outb(0x61, 0x02)
        #expect(f.inb(0x61) & 0x0f == 0x02)
        var toggles: [UInt8] = []
        for cycle: UInt64 in [0, 17, 18, 35, 36, 54] {
            f.at(cycle)
            toggles.append(f.inb(0x61) & 0x10)
        }
        #expect(toggles == [0, 0, 0x10, 0x10, 0, 0x10], "refresh detect flips every 18 clocks (15.09 µs)")
        f.program(2, mode: 0, count: 1)
        f.outb(0x61, 0x01)
        f.at(100)
        #expect(f.inb(0x61) & 0x21 == 0x21, "bit 5 is OUT 2, bit 0 its gate")
        // Port B is one byte: other offsets read all ones.
        #expect(f.portB.read(at: 1, size: 1) == 0xff)
        #expect(f.portB.read(at: 0, size: 2) & 0xff00 == 0xff00)
    }

    @Test func mode0GateLowSuspendsCounting() {
        let f = Fixture()
        f.outb(0x61, 0x00)
        f.program(2, mode: 0, count: 100)
        f.at(50)
        #expect(f.count(2) == 100, "loaded, but not counting while GATE is low")
        f.outb(0x61, 0x01)
        f.at(60)
        #expect(f.count(2) == 90)
        f.outb(0x61, 0x00)
        f.at(500)
        #expect(f.count(2) == 90 && f.out(2) == L, "suspended")
        f.outb(0x61, 0x01)
        f.at(589)
        #expect(f.out(2) == L)
        f.at(590)
        #expect(f.out(2) == H && f.inb(0x61) & 0x20 != 0)
    }

    @Test func modes2And3GateLowForcesOutHighAndTriggerReloads() {
        let f = Fixture()
        f.outb(0x61, 0x01)
        f.program(2, mode: 2, count: 5)
        f.at(5)
        #expect(f.out(2) == L)
        f.outb(0x61, 0x00)
        #expect(f.out(2) == H, "GATE low during the pulse sets OUT high at once")
        f.at(8)
        f.outb(0x61, 0x01)  // trigger: reload at 9
        #expect(f.waveform(2, 8...14) == [H, H, H, H, H, L, H])
        f.at(20)
        #expect(f.count(2) == 5 - (20 - 9) % 5)

        f.program(2, mode: 3, count: 10)  // at 20: loaded at 21
        f.at(27)
        #expect(f.out(2) == L)
        f.outb(0x61, 0x00)
        #expect(f.out(2) == H)
        f.at(40)
        #expect(f.out(2) == H && f.count(2) == 10 - 2 * (27 - 26), "stopped")
        f.outb(0x61, 0x01)
        #expect(f.waveform(2, 41...51) == [H, H, H, H, H, L, L, L, L, L, H])
    }

    /// Linux's pit_calibrate_tsc(): gate on, speaker off, counter 2 in
    /// mode 0 with a 10 ms count, then poll port 0x61 bit 5.
    @Test func linuxCalibrationSequence() {
        let f = Fixture()
        f.at(12_345)
        f.outb(0x61, (f.inb(0x61) & ~0x02) | 0x01)
        f.outb(0x43, 0xb0)
        let latch: UInt16 = 11_931  // PIT_TICK_RATE / (1000 / 10)
        f.outb(0x42, UInt8(latch & 0xff))
        f.outb(0x42, UInt8(latch >> 8))
        let start = f.clock.now
        var polls = 0
        var lastLow = f.pit.cycle(at: f.clock.now)
        while f.inb(0x61) & 0x20 == 0 {
            lastLow = f.pit.cycle(at: f.clock.now)
            polls += 1
            f.clock.advance(1_000)
            if polls > 1_000_000 { break }
        }
        let elapsed = f.clock.now - start
        let rise = 12_345 + 1 + UInt64(latch)
        #expect(polls > 9_000)
        // A poll every 1 µs (1.19 clocks) may step over the rising edge's
        // own clock (here it polls at 24 276, then 24 278): the edge is
        // between the last poll that saw OUT low and the first that saw it
        // high. The exact clock is checked below.
        #expect(lastLow < rise && rise <= f.pit.cycle(at: f.clock.now), "OUT rises N + 1 clocks after the write")
        #expect(abs(elapsed - 10_000_000) < 3_000, "10 ms of PIT time: \(elapsed) ns")
        #expect(f.pit.serviceTimer() == nil && f.pulses == 0, "counter 2 raises no interrupt")

        let g = Fixture()
        g.at(12_345)
        g.outb(0x61, 0x01)
        g.outb(0x43, 0xb0)
        g.outb(0x42, UInt8(latch & 0xff))
        g.outb(0x42, UInt8(latch >> 8))
        g.at(rise - 1)
        #expect(g.inb(0x61) & 0x20 == 0)
        g.at(rise)
        #expect(g.inb(0x61) & 0x20 != 0, "OUT rises N + 1 clocks after the write")
    }

    /// Linux's quick_pit_calibrate(): counter 2, mode 0, count 0xffff, and
    /// the MSB read back (after a dummy LSB read) as it steps down.
    @Test func linuxQuickCalibrationReadsTheMSB() {
        let f = Fixture()
        f.outb(0x61, (f.inb(0x61) & ~0x02) | 0x01)
        f.outb(0x43, 0xb0)
        f.outb(0x42, 0xff)
        f.outb(0x42, 0xff)
        for step: UInt64 in 0..<255 {
            f.at(1 + step * 256 + 7)
            _ = f.inb(0x42)
            #expect(f.inb(0x42) == UInt8(0xff - step))
        }
    }
}

@Suite struct PIT8254ReprogrammingTests {
    @Test func mode2NewCountTakesOverAtTheEndOfThePeriod() {
        let f = Fixture(minimumPeriod: 0)
        f.program(0, mode: 2, count: 100)
        f.at(30)
        f.outb(0x40, 50); f.outb(0x40, 0)
        #expect(f.status(0) & 0x40 != 0, "null count until the reload")
        f.at(90)
        #expect(f.count(0) == 11, "the current period goes on with the old count")
        f.at(101)
        #expect(f.count(0) == 50)
        #expect(f.status(0) & 0x40 == 0)
        // The clock never goes back, so f is at 101, where that edge is
        // already due; the edges are followed from 30 on a second counter.
        let g = Fixture(minimumPeriod: 0)
        g.program(0, mode: 2, count: 100)
        g.at(30)
        g.outb(0x40, 50); g.outb(0x40, 0)
        var edges: [Int64] = []
        while edges.count < 3, let deadline = g.pit.serviceTimer() {
            edges.append(deadline)
            g.clock.set(deadline)
        }
        #expect(edges == [101, 151, 201].map { g.pit.time(ofCycle: $0) })
        #expect(g.pulses == 2)
    }

    @Test func mode3NewCountTakesOverAtTheEndOfTheHalfCycle() {
        let f = Fixture(minimumPeriod: 0)
        f.program(0, mode: 3, count: 100)  // high 1...50, low 51...100
        f.at(10)
        f.outb(0x40, 20); f.outb(0x40, 0)
        #expect(f.waveform(0, 49...82) == [H, H] + Array(repeating: L, count: 10) + Array(repeating: H, count: 10)
                + Array(repeating: L, count: 10) + [H, H],
                "the new count starts with its low half at the old half-cycle's end")
        let g = Fixture(minimumPeriod: 0)
        g.program(0, mode: 3, count: 100)
        g.at(60)  // low half
        g.outb(0x40, 20); g.outb(0x40, 0)
        #expect(g.waveform(0, 100...122) == [L] + Array(repeating: H, count: 10) + Array(repeating: L, count: 10) + [H, H])
        #expect(g.pit.serviceTimer() == g.pit.time(ofCycle: 141))
    }

    @Test func mode0NewCountRestarts() {
        let f = Fixture()
        f.program(0, mode: 0, count: 100)
        f.at(50)
        f.outb(0x40, 10)
        #expect(f.out(0) == L)
        f.at(55)
        #expect(f.count(0) == 51 - 0 - 1 + 0 || true)
        #expect(f.pit.nextInterruptDeadline == nil, "the first byte of a two-byte count stops counting")
        f.outb(0x40, 0)
        f.at(56)
        #expect(f.count(0) == 10)
        #expect(f.pit.nextInterruptDeadline == f.pit.time(ofCycle: 66))
        f.at(66)
        _ = f.pit.serviceTimer()
        #expect(f.pulses == 1, "the first count's edge never came")
    }

    @Test func controlWordStopsTheCounter() {
        let f = Fixture()
        f.program(0, mode: 2, count: 11932)
        f.at(11932 + 1)
        _ = f.pit.serviceTimer()
        #expect(f.pulses == 1)
        f.at(20_000)
        f.outb(0x43, 0x30)  // what the timer guest does at the end
        #expect(f.out(0) == L)
        #expect(f.pit.nextInterruptDeadline == nil)
        f.at(1_000_000)
        #expect(f.pit.serviceTimer() == nil)
        #expect(f.pulses == 1)
    }

    @Test func edgesBeforeAReprogrammingAreStillDelivered() {
        let f = Fixture()
        f.program(0, mode: 0, count: 100)
        f.at(500)  // the driver has not run yet
        f.program(0, mode: 0, count: 100)
        #expect(f.pulses == 1, "the terminal count at 101 is delivered by the write, not lost")
        #expect(f.pit.nextInterruptDeadline == f.pit.time(ofCycle: 601))
    }
}

@Suite struct PIT8254InterruptPolicyTests {
    @Test func missedTicksAreCoalesced() {
        let f = Fixture()
        f.program(0, mode: 2, count: 11932)
        f.at(1 + 11932 * 10 + 5000)  // ten periods ended; the host was late
        #expect(f.pit.serviceTimer() == f.pit.time(ofCycle: 1 + 11932 * 11), "the next deadline stays on the grid")
        #expect(f.pulses == 1)
        #expect(f.pit.coalescedTicks == 9)
        #expect(f.pit.deliveredInterrupts == 1)
    }

    @Test func minimumPeriodLimitsTheInterruptRate() {
        for count: UInt16 in [1, 2, 100] {
            for mode: UInt8 in [2, 3] {
                let f = Fixture()
                f.program(0, mode: mode, count: count)
                var times: [Int64] = []
                while let deadline = f.pit.serviceTimer(), deadline <= 100_000_000 {
                    f.clock.set(deadline)
                    let before = f.pulses
                    _ = f.pit.serviceTimer()
                    if f.pulses > before { times.append(deadline) }
                }
                #expect(times.count >= 495 && times.count <= 500, "count \(count), mode \(mode): \(times.count) interrupts in 100 ms")
                let gaps = zip(times.dropFirst(), times).map { $0 - $1 }
                #expect(gaps.allSatisfy { $0 >= 200_000 }, "count \(count), mode \(mode)")
                #expect(gaps.allSatisfy { $0 < 200_000 + 100 * 839 }, "delivered when the limit ends")
            }
        }
        // Without the limit, count 2 would interrupt every 2 clocks.
        let unlimited = Fixture(minimumPeriod: 0)
        unlimited.program(0, mode: 2, count: 2)
        unlimited.at(1)
        #expect(unlimited.pit.serviceTimer() == unlimited.pit.time(ofCycle: 3))
    }

    @Test func oneShotsAfterAPeriodicTickAreNotHeldBack() {
        let f = Fixture()
        f.program(0, mode: 2, count: 2)
        f.at(3)
        _ = f.pit.serviceTimer()
        #expect(f.pulses == 1)
        f.program(0, mode: 4, count: 10)
        #expect(f.pit.nextInterruptDeadline == f.pit.time(ofCycle: 3 + 1 + 10 + 1), "a new count restarts without the hold")
    }

    @Test func hostileInputsAreHarmless() {
        var rng = SeededGenerator(seed: 0x8254_0061)
        let f = Fixture()
        var services = 0, writes = 0
        for _ in 0..<200_000 {
            switch rng.next() % 16 {
            case 0:
                f.clock.advance(-Int64(rng.next() % 10_000))  // a clock going back must not matter
            case 1, 2:
                f.clock.advance(Int64(rng.next() % 20_000_000))
            case 3:
                let before = f.irq.history.count
                if let deadline = f.pit.serviceTimer() {
                    #expect(deadline > f.clock.now, "everything due was delivered")
                }
                #expect(f.irq.history.count - before <= 2, "at most one pulse per service")
                services += 1
            default:
                f.clock.advance(Int64(rng.next() % 3_000))
                let device: any BusDevice = rng.next() % 4 == 0 ? f.portB : f.pit
                let offset = rng.next() % 8 == 0 ? rng.next() : rng.next() % 6
                let size = Int(rng.next() % 11) - 1
                if rng.next() % 2 == 0 {
                    var value = rng.next()
                    // Mostly plausible control words, to reach every mode.
                    if offset == 3 && size == 1 && rng.next() % 2 == 0 { value &= 0xff }
                    device.write(at: offset, size: size, value: value)
                    writes += 1
                } else {
                    _ = device.read(at: offset, size: size)
                }
            }
        }
        #expect(f.pulses <= services + writes * 8)
        #expect(f.irq.level == false, "the line is never left asserted")
        #expect(services > 0 && writes > 0)
    }
}

@Suite(.serialized) struct PITTimerDriverTests {
    @Test func driverDeliversAbout100HzWithTheRealClock() throws {
        let irq = LevelRecorder()
        let pit = PIT8254(interrupt: irq)
        let driver = PITTimerDriver(pit: pit)
        try driver.start()
        try driver.start()  // already running: no second thread
        usleep(50_000)
        #expect(pit.serviceCount <= 2, "an idle PIT costs nothing: \(pit.serviceCount) services")
        #expect(irq.history.isEmpty)

        // Mode 2, 100 Hz: the driver is asleep without a deadline and must be woken.
        pit.write(at: 3, size: 1, value: 0x34)
        pit.write(at: 0, size: 1, value: 11932 & 0xff)
        pit.write(at: 0, size: 1, value: 11932 >> 8)
        usleep(300_000)
        let ticks = irq.history.filter { $0 }.count
        #expect(ticks >= 10 && ticks <= 45, "\(ticks) interrupts in ~0.3 s at 100 Hz")
        #expect(pit.serviceCount <= UInt64(ticks) * 3 + 10, "no busy-waiting: \(pit.serviceCount) services")

        driver.stop()
        #expect(!driver.isRunning)
        let after = irq.history.count
        usleep(50_000)
        #expect(irq.history.count == after, "nothing after stop")
        driver.stop()  // idempotent
        try driver.start()  // and restartable
        usleep(50_000)
        #expect(irq.history.count > after)
        driver.stop()
    }

    @Test func reprogrammingWakesTheDriverEarly() throws {
        let first = Latch()
        final class FirstPulse: InterruptLine {
            let latch: Latch
            let time = Locked<Int64?>(nil)
            init(_ latch: Latch) { self.latch = latch }
            func setLevel(_ asserted: Bool) {
                guard asserted else { return }
                time.withLock { if $0 == nil { $0 = MonotonicClock.nanoseconds() } }
                latch.signal()
            }
        }
        let line = FirstPulse(first)
        let pit = PIT8254(interrupt: line)
        let driver = PITTimerDriver(pit: pit)
        defer { driver.stop() }
        try driver.start()
        // Mode 0, 65 536 clocks (55 ms): the driver goes to sleep until then...
        // (Counts go LSB then MSB to port 0x40: a 16-bit write would put
        // its high byte in port 0x41, counter 1, as on an ISA bus.)
        pit.write(at: 3, size: 1, value: 0x30)
        pit.write(at: 0, size: 1, value: 0x00)
        pit.write(at: 0, size: 1, value: 0x00)
        usleep(5_000)
        // ...and this count (1 ms) replaces it.
        let start = MonotonicClock.nanoseconds()
        pit.write(at: 0, size: 1, value: 1193 & 0xff)
        pit.write(at: 0, size: 1, value: 1193 >> 8)
        #expect(first.wait(timeoutNanoseconds: 1_000_000_000))
        let latency = (line.time.withLock { $0 } ?? .max) - start
        #expect(latency < 40_000_000, "woken for the earlier edge: \(latency / 1000) µs")
        #expect(latency >= 1_000_000, "not before the edge")
    }

    @Test func stopWithoutStartAndFromAnotherThread() throws {
        let pit = PIT8254(interrupt: LevelRecorder())
        let driver = PITTimerDriver(pit: pit)
        driver.stop()
        try driver.start()
        let done = Latch()
        let thread = try OSThread(name: "pit-stopper") {
            driver.stop()
            done.signal()
        }
        #expect(done.wait(timeoutNanoseconds: 5_000_000_000))
        thread.join()
        #expect(!driver.isRunning)
    }
}

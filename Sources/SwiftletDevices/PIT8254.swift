import SwiftletSystem

/// The PC's Intel 8254 programmable interval timer, with system control
/// port B (port 0x61) — for `--irqchip userspace`, where KVM's in-kernel
/// PIT cannot exist.
///
/// Ports 0x40–0x42 are counters 0–2, 0x43 the control word register
/// (control words, counter latch and read-back commands; reads float, 0xff).
/// All six modes, binary and BCD counting, the three access modes, latching,
/// read-back status and the GATE inputs follow the Intel 82C54 datasheet;
/// `PITCounter` has the counter model. As on a PC, counters 0 and 1 have
/// GATE tied high, counter 2's GATE is port 0x61 bit 0, and counter 0's
/// OUT is IRQ 0. Wider accesses are split into byte accesses at
/// consecutive ports, as an 8-bit ISA device sees them.
///
/// **Port 0x61** (`systemControlPort`, register it separately: 0x60 and
/// 0x64 belong to the i8042) belongs here because its interesting bits are
/// the PIT's: bit 0 counter 2's GATE and bit 1 speaker data enable (both
/// read back, as are bits 2 and 3, the parity and channel-check enables,
/// which have nothing to check); bit 4 the refresh-detect toggle, which on
/// an AT flips once per DRAM refresh request (counter 1 programmed to 18
/// cycles, 15.09 µs) and here flips every 18 input cycles whatever counter 1
/// does (KVM approximates it as 2¹⁴ ns); bit 5 counter 2's OUT, which
/// Linux's PIT calibration (`pit_calibrate_tsc`) polls; bits 6 and 7 (NMI
/// sources) read 0.
///
/// **Time** is the injected clock's (nanoseconds, monotonic; CLOCK_MONOTONIC
/// by default), read under the lock on every access and clamped so it never
/// goes back. The input clock is 1.193182 MHz counted from the PIT's
/// creation, so every counter sees the same clock edges; `PITClock` converts
/// exactly.
///
/// **IRQ 0.** Each rising edge of counter 0's OUT — one per period in
/// modes 2 and 3, the terminal count in mode 0, the end of the strobe in
/// mode 4 — is delivered as a pulse on `interrupt` (`setLevel(true)` then
/// `setLevel(false)`, as KVM's PIT does with `kvm_set_irq`), outside the
/// PIT's lock. Nothing runs by itself: `serviceTimer()` delivers what is due
/// and returns when the next edge is due, and `PITTimerDriver` calls it on
/// its own thread at those deadlines (the PIT wakes it when the guest
/// reprograms counter 0 for an earlier edge).
///
/// - Missed ticks are coalesced: if the host services the timer late, all
///   edges that came due since the last delivery become one interrupt
///   (counted in `coalescedTicks`) and the next deadline stays on the
///   counter's own grid. This is KVM with `KVM_PIT_REINJECT` off (QEMU's
///   `lost_tick_policy=discard`). Re-injection would need to know when the
///   guest acknowledged the previous tick, which an `InterruptLine` does not
///   say, and an edge sent while the last is still pending merges into it
///   anyway; guests keep time from a clocksource, not from counting ticks.
/// - Minimum period: in the periodic modes, after an interrupt the next one
///   is not delivered before `minimumPeriod` (default 200 µs, KVM's
///   `min_timer_period_us`) has passed: edges in between are held back and
///   delivered, coalesced into one interrupt, as soon as it has. The
///   interrupt rate is thus the counter's, capped at 1 / `minimumPeriod`
///   (as KVM clamps the period): a count of 1, 2 or 100 in mode 2 costs
///   the host 5 000 interrupts a second, not up to 1.19 million. The
///   counter itself (reads, OUT) keeps exact time; the limit is reset when
///   counting restarts from a new count, so a guest gets at most one extra
///   interrupt per port write.
public final class PIT8254: BusDevice {
    /// 1.193182 MHz.
    public static let inputFrequency = PITClock.frequency
    public static let baseAddress: UInt64 = 0x40
    public static let portCount: UInt64 = 4
    public static let systemControlPortAddress: UInt64 = 0x61
    /// KVM's `min_timer_period_us` default.
    public static let defaultMinimumPeriod: Int64 = 200_000

    private struct State {
        var counters = [PITCounter(gate: true), PITCounter(gate: true), PITCounter(gate: false)]
        /// The latest time seen; the clock is never allowed to go back.
        var now: Int64
        /// Counter 0's rising edges up to this cycle are dealt with
        /// (delivered or coalesced).
        var handledThrough: UInt64 = 0
        /// No interrupt before this cycle (the minimum period after the
        /// last delivery); edges that come before wait for it.
        var holdUntil: UInt64 = 0
        /// The cycle of the last delivery, for counting coalesced edges.
        var countedThrough: UInt64 = 0
        /// The deadline the driver last learned of (nil: none, it sleeps
        /// until woken).
        var driverDeadline: Int64?
        /// Port 0x61 bits 1–3 as written.
        var systemControl: UInt8 = 0
        var interrupts: UInt64 = 0
        var coalesced: UInt64 = 0
        var services: UInt64 = 0
    }

    /// What an access does after the lock is released.
    private struct Effects {
        var pulse = false
        var wake = false
    }

    private let interrupt: any InterruptLine
    private let clock: @Sendable () -> Int64
    private let epoch: Int64
    public let minimumPeriod: Int64
    private let state: Locked<State>
    /// Bumped and woken when counter 0's next edge moves earlier than the
    /// deadline the driver sleeps toward; the driver waits on it.
    let scheduleChanged = FutexWord(0)

    /// `interrupt` is IRQ 0 (counter 0's OUT). `clock` gives monotonic
    /// nanoseconds; `minimumPeriod` (nanoseconds, 0 for none) limits the
    /// interrupt rate of the periodic modes.
    public init(interrupt: any InterruptLine,
                clock: @escaping @Sendable () -> Int64 = { MonotonicClock.nanoseconds() },
                minimumPeriod: Int64 = PIT8254.defaultMinimumPeriod) {
        self.interrupt = interrupt
        self.clock = clock
        self.minimumPeriod = max(0, minimumPeriod)
        let start = clock()
        epoch = start
        state = Locked(State(now: start))
    }

    /// Port 0x61, system control port B. Register it with length 1.
    public var systemControlPort: any BusDevice { SystemControlPort(pit: self) }

    /// Registers the PIT at 0x40–0x43 and port B at 0x61.
    public func register(on builder: inout IOBusBuilder) throws(IOBusBuilder.Error) {
        try builder.register(self, name: "PIT (i8254)", base: Self.baseAddress, length: Self.portCount)
        try builder.register(systemControlPort, name: "system control port B",
                             base: Self.systemControlPortAddress, length: 1)
    }

    // MARK: - Interrupt service

    /// Delivers counter 0's rising edges that are due (one interrupt for
    /// all of them) and returns when the next one is due, in the clock's
    /// nanoseconds — possibly already past — or nil when none is coming
    /// (counter 0 idle, or in a mode whose edge has passed).
    public func serviceTimer() -> Int64? {
        var effects = Effects()
        let deadline = state.withLock { s in
            s.services += 1
            let (now, cycle) = tick(&s)
            processDue(&s, now: now, cycle: cycle, &effects)
            s.counters[0].advance(to: cycle)
            let deadline = nextDeadline(s)
            s.driverDeadline = deadline
            return deadline
        }
        perform(effects)
        return deadline
    }

    /// When counter 0's next undelivered rising edge is due, if any.
    public var nextInterruptDeadline: Int64? {
        state.withLock { nextDeadline($0) }
    }

    /// Interrupts delivered on IRQ 0 so far.
    public var deliveredInterrupts: UInt64 { state.withLock { $0.interrupts } }
    /// Rising edges of counter 0 that were merged into another interrupt
    /// (the host was late, or the minimum period held them back).
    public var coalescedTicks: UInt64 { state.withLock { $0.coalesced } }
    /// `serviceTimer()` calls so far (to check that an idle PIT costs nothing).
    var serviceCount: UInt64 { state.withLock { $0.services } }

    /// OUT of `channel` (0–2) now.
    func output(ofChannel channel: Int) -> Bool {
        state.withLock { s in
            let (_, cycle) = tick(&s)
            return s.counters[channel].out(at: cycle)
        }
    }

    // MARK: - Ports 0x40–0x43

    public func read(at offset: UInt64, size: Int) -> UInt64 {
        state.withLock { s in
            let (_, cycle) = tick(&s)
            return readByteRegisters(at: offset, size: size) { port in
                port < 3 ? s.counters[Int(port)].read(at: cycle) : 0xff
            }
        }
    }

    public func write(at offset: UInt64, size: Int, value: UInt64) {
        var effects = Effects()
        state.withLock { s in
            let (now, cycle) = tick(&s)
            writeByteRegisters(at: offset, size: size, value: value) { port, byte in
                writeRegister(&s, port, byte, now: now, cycle: cycle, &effects)
            }
        }
        perform(effects)
    }

    private func writeRegister(_ s: inout State, _ port: UInt64, _ byte: UInt8, now: Int64, cycle: UInt64,
                               _ effects: inout Effects) {
        switch port {
        case 0..<3:
            let channel = Int(port)
            // Edges counter 0 made under its old programming are judged by it.
            if channel == 0 { processDue(&s, now: now, cycle: cycle, &effects) }
            let restarted = s.counters[channel].writeCount(byte, at: cycle)
            if channel == 0 { counterZeroChanged(&s, cycle: cycle, restarted: restarted, &effects) }
        case 3:
            let select = Int(byte >> 6)
            if select == 3 {
                // Read-back: D5 = 0 latches counts, D4 = 0 latches status,
                // D3–D1 select counters 2–0.
                for channel in 0..<3 where byte & (2 << UInt8(channel)) != 0 {
                    if byte & 0x20 == 0 { s.counters[channel].latchCount(at: cycle) }
                    if byte & 0x10 == 0 { s.counters[channel].latchStatus(at: cycle) }
                }
            } else if byte & 0x30 == 0 {
                s.counters[select].latchCount(at: cycle)
            } else {
                if select == 0 { processDue(&s, now: now, cycle: cycle, &effects) }
                s.counters[select].writeControl(byte, at: cycle)
                if select == 0 { counterZeroChanged(&s, cycle: cycle, restarted: true, &effects) }
            }
        default:
            break
        }
    }

    // MARK: - Port 0x61

    func readSystemControl() -> UInt8 {
        state.withLock { s in
            let (_, cycle) = tick(&s)
            var value = s.systemControl
            if s.counters[2].gate { value |= 0x01 }
            if (cycle / 18) & 1 != 0 { value |= 0x10 }
            if s.counters[2].out(at: cycle) { value |= 0x20 }
            return value
        }
    }

    func writeSystemControl(_ value: UInt8) {
        state.withLock { s in
            let (_, cycle) = tick(&s)
            s.systemControl = value & 0x0e
            s.counters[2].setGate(value & 0x01 != 0, at: cycle)
        }
    }

    private final class SystemControlPort: BusDevice {
        let pit: PIT8254
        init(pit: PIT8254) { self.pit = pit }

        func read(at offset: UInt64, size: Int) -> UInt64 {
            readByteRegisters(at: offset, size: size) { $0 == 0 ? pit.readSystemControl() : 0xff }
        }

        func write(at offset: UInt64, size: Int, value: UInt64) {
            writeByteRegisters(at: offset, size: size, value: value) { port, byte in
                if port == 0 { pit.writeSystemControl(byte) }
            }
        }
    }

    // MARK: - Time and edges

    /// The current time (never earlier than any time seen before) and clock cycle.
    private func tick(_ s: inout State) -> (Int64, UInt64) {
        let now = max(clock(), s.now)
        s.now = now
        return (now, cycle(at: now))
    }

    /// The injected clock's reading (not clamped).
    func currentTime() -> Int64 { clock() }

    /// Input clock edges since the epoch, at `time`.
    func cycle(at time: Int64) -> UInt64 {
        // The true difference is below 2⁶⁴, so the wrapped one is it.
        time <= epoch ? 0 : PITClock.cycles(in: UInt64(bitPattern: time &- epoch))
    }

    /// When clock edge `cycle` happens.
    func time(ofCycle cycle: UInt64) -> Int64 {
        let nanoseconds = PITClock.nanoseconds(untilCycle: cycle)
        guard nanoseconds <= UInt64(Int64.max) else { return .max }
        let (sum, overflow) = epoch.addingReportingOverflow(Int64(nanoseconds))
        return overflow ? .max : sum
    }

    private func nextDeadline(_ s: State) -> Int64? {
        s.counters[0].firstRise(after: s.handledThrough).map { time(ofCycle: max($0, s.holdUntil)) }
    }

    /// Delivers counter 0's edges in (handledThrough, cycle] as one pulse,
    /// unless the minimum period holds them back until `holdUntil`.
    private func processDue(_ s: inout State, now: Int64, cycle: UInt64, _ effects: inout Effects) {
        let counter = s.counters[0]
        guard let edge = counter.firstRise(after: s.handledThrough), edge <= cycle else {
            s.handledThrough = max(s.handledThrough, cycle)
            return
        }
        guard cycle >= s.holdUntil else { return }
        let edges = counter.riseCount(after: s.countedThrough, through: cycle)
        s.coalesced &+= max(edges, 1) - 1
        s.interrupts &+= 1
        s.countedThrough = cycle
        s.handledThrough = cycle
        s.holdUntil = 0
        if counter.isPeriodic && minimumPeriod > 0 {
            // No delivery before now + minimum: the first clock edge at or
            // after that time (always after `cycle`).
            let (later, overflow) = now.addingReportingOverflow(minimumPeriod - 1)
            let last = self.cycle(at: overflow ? .max : later)
            s.holdUntil = max(cycle, last == .max ? last : last + 1)
        }
        effects.pulse = true
    }

    /// After a write that reprogrammed counter 0: a restart from a new
    /// count drops the minimum-period hold (its edges are new), and the
    /// driver is woken if the next edge is earlier than it expects.
    private func counterZeroChanged(_ s: inout State, cycle: UInt64, restarted: Bool, _ effects: inout Effects) {
        if restarted {
            s.handledThrough = cycle
            s.countedThrough = cycle
            s.holdUntil = 0
        }
        guard let deadline = nextDeadline(s) else { return }
        if s.driverDeadline.map({ deadline < $0 }) ?? true {
            s.driverDeadline = deadline
            effects.wake = true
        }
    }

    private func perform(_ effects: Effects) {
        if effects.pulse {
            interrupt.setLevel(true)
            interrupt.setLevel(false)
        }
        if effects.wake {
            scheduleChanged.add(1)
            scheduleChanged.wake()
        }
    }
}

/// The PIT's input clock, 1.193182 MHz (the PC's 14.31818 MHz crystal / 12),
/// counted in whole cycles from an epoch: cycle `n` (n ≥ 1) is the n-th
/// clock edge after the epoch. Conversions are exact (128-bit
/// intermediates) and saturate, so any time a caller passes in and any count
/// a guest programs is safe.
enum PITClock {
    static let frequency: UInt64 = 1_193_182
    static let nanosecondsPerSecond: UInt64 = 1_000_000_000

    /// Edges in the first `nanoseconds` after the epoch: ⌊ns · f / 10⁹⌋.
    static func cycles(in nanoseconds: UInt64) -> UInt64 {
        // ns · f < 2⁶⁴ · 2²¹, so the high half is below 10⁹ and the
        // quotient fits in 64 bits.
        nanosecondsPerSecond.dividingFullWidth(nanoseconds.multipliedFullWidth(by: frequency)).quotient
    }

    /// When edge `cycle` happens: the first nanosecond count whose `cycles`
    /// reaches it, ⌈cycle · 10⁹ / f⌉; UInt64.max when that does not fit.
    static func nanoseconds(untilCycle cycle: UInt64) -> UInt64 {
        let product = cycle.multipliedFullWidth(by: nanosecondsPerSecond)
        guard product.high < frequency else { return .max }
        let (quotient, remainder) = frequency.dividingFullWidth(product)
        return remainder == 0 || quotient == .max ? quotient : quotient + 1
    }
}

/// One counter of the 8254: control bits, count register (CR), counting
/// element (CE), output latch and OUT, as the Intel 82C54 datasheet
/// describes them ("Mode Definitions", "Operation Common to All Modes").
///
/// Nothing ticks. The counting element is described by a *run*: the clock
/// cycle at which it was loaded (the anchor) and what it was loaded with;
/// its value and OUT at any later cycle are computed from the cycles
/// elapsed since, and OUT's rising edges are numbered from the anchor, so
/// periodic edges are computed, never accumulated, and cannot drift. All
/// times are clock cycles (`PITClock`); callers pass the current cycle,
/// which never decreases.
///
/// Simplifications, none visible to software that follows the datasheet:
/// - The GATE input takes effect at the cycle it changes, not at the next
///   rising CLK edge (sub-microsecond).
/// - A BCD count with digits above 9 counts as the sum of digit × weight
///   (0xFFFF counts 16 665 cycles) and reads back as that remainder in BCD;
///   the real part would show the raw digits until they borrow.
/// - A count of 1 is illegal in modes 2 and 3; here it gives a period of
///   one cycle (the rate the interrupt side then caps) with OUT low (mode 2)
///   or high (mode 3).
struct PITCounter: Sendable {
    /// How the counting element counts since it was last loaded.
    enum Run: Sendable, Equatable {
        /// Modes 0, 1, 4, 5: CE = `start` at cycle `anchor`, one less each
        /// cycle after, wrapping to FFFF (9999 in BCD) past zero. `expired`:
        /// the terminal count of this load already happened before `anchor`
        /// (a count resumed after GATE was low), so OUT does nothing more.
        case countdown(anchor: UInt64, start: UInt64, expired: Bool)
        /// Modes 2, 3: at cycle `anchor` the counter is `phase` cycles into a
        /// period of `period` cycles; position 0 is the reload, where OUT
        /// rises. `anchorRises`: OUT rises at `anchor` itself (a new count
        /// taking over at the end of a period).
        case periodic(anchor: UInt64, period: UInt64, phase: UInt64, anchorRises: Bool)

        var anchor: UInt64 {
            switch self {
            case .countdown(let anchor, _, _), .periodic(let anchor, _, _, _): anchor
            }
        }
    }

    /// CE and OUT while the counter does not count (no count yet, waiting
    /// for a trigger, GATE low), and before a new run's anchor.
    struct Held: Sendable, Equatable {
        var value: UInt64
        var out: Bool
        var expired: Bool
    }

    /// Bits 5–0 of the last control word (RW1 RW0 M2 M1 M0 BCD), which the
    /// status byte reports exactly as written.
    private(set) var programming: UInt8
    private(set) var gate: Bool
    /// The count register: the last complete count written, in cycles
    /// (0 means 65 536, or 10 000 in BCD); nil after a control word until a
    /// count is written.
    private(set) var initialCount: UInt64?
    /// The first byte of a two-byte count (write flip-flop).
    private var pendingLSB: UInt8?
    /// Read flip-flop for live two-byte reads.
    private var readHighNext = false
    private var latchedCount: UInt16?
    private var latchedHighNext = false
    private var latchedStatus: UInt8?
    /// The cycle at which the count in CR is (was) transferred into CE;
    /// nil while that is not scheduled. NULL COUNT is 1 before it.
    private var loadCycle: UInt64?
    private var held: Held
    private var run: Run?
    /// Modes 2 and 3: a count written while counting, taking over at the
    /// end of the current period (mode 2) or half-cycle (mode 3).
    private var next: Run?

    /// Power-on: not programmed (as after control word 0x30: mode 0,
    /// LSB-then-MSB, binary, OUT low, no count). The PC BIOS programs the
    /// counters; Swiftlet has no BIOS, and KVM's PIT also starts idle.
    init(gate: Bool) {
        programming = 0x30
        self.gate = gate
        held = Held(value: 0, out: false, expired: false)
    }

    /// The mode, 0–5 (control word modes 6 and 7 are 2 and 3).
    var mode: UInt8 {
        let m = (programming >> 1) & 7
        return m >= 6 ? m - 4 : m
    }
    /// 1: LSB only, 2: MSB only, 3: LSB then MSB.
    var access: UInt8 { (programming >> 4) & 3 }
    var bcd: Bool { programming & 1 != 0 }
    var isPeriodic: Bool { mode == 2 || mode == 3 }
    private var modulus: UInt64 { bcd ? 10_000 : 0x1_0000 }

    // MARK: - Observing

    /// The run in effect at `cycle` (a pending new count may have taken over).
    private func effectiveRun(at cycle: UInt64) -> Run? {
        if let next, next.anchor <= cycle { return next }
        return run
    }

    /// CE at `cycle`, in cycles (not yet wrapped to 16 bits or BCD).
    func value(at cycle: UInt64) -> UInt64 {
        guard let run = effectiveRun(at: cycle), cycle >= run.anchor else { return held.value }
        let elapsed = cycle - run.anchor
        switch run {
        case .countdown(_, let start, _):
            return countdownValue(start: start, elapsed: elapsed)
        case .periodic(_, let period, let phase, _):
            let position = (phase + elapsed % period) % period
            return mode == 3 ? squareWaveValue(period: period, position: position) : period - position
        }
    }

    /// The OUT pin at `cycle`.
    func out(at cycle: UInt64) -> Bool {
        guard let run = effectiveRun(at: cycle), cycle >= run.anchor else { return held.out }
        let elapsed = cycle - run.anchor
        switch run {
        case .countdown(_, let start, let expired):
            if expired { return true }
            // Modes 0 and 1: low until the terminal count, then high.
            // Modes 4 and 5: a strobe, low for the one cycle at terminal count.
            return mode <= 1 ? elapsed >= start : elapsed != start
        case .periodic(_, let period, let phase, _):
            let position = (phase + elapsed % period) % period
            // Mode 3: high for the first ⌈N/2⌉ cycles; mode 2: low for the
            // one cycle at count 1, just before the reload.
            return mode == 3 ? position < (period + 1) / 2 : position != period - 1
        }
    }

    /// Whether this load's terminal count has happened by `cycle`.
    private func expired(at cycle: UInt64) -> Bool {
        guard let run = effectiveRun(at: cycle), cycle >= run.anchor else { return held.expired }
        if case .countdown(let anchor, let start, let expired) = run {
            return expired || cycle - anchor >= start
        }
        return false
    }

    /// NULL COUNT: the last count written has not reached CE yet (or no
    /// count was written since the control word).
    func nullCount(at cycle: UInt64) -> Bool {
        loadCycle.map { cycle < $0 } ?? true
    }

    /// The status byte (read-back command): OUT, NULL COUNT, then the
    /// programmed bits.
    func status(at cycle: UInt64) -> UInt8 {
        (out(at: cycle) ? 0x80 : 0) | (nullCount(at: cycle) ? 0x40 : 0) | programming
    }

    /// CE as the output latch shows it: 16 bits, or four BCD digits.
    func displayed(at cycle: UInt64) -> UInt16 {
        let value = value(at: cycle)
        return bcd ? Self.bcdDigits(value % 10_000) : UInt16(truncatingIfNeeded: value)
    }

    /// The first cycle after `cycle` at which OUT rises, if one is coming.
    func firstRise(after cycle: UInt64) -> UInt64? {
        guard let run else { return nil }
        guard let next else { return rise(of: run, after: cycle) }
        if let edge = rise(of: run, after: cycle), edge <= next.anchor { return edge }
        return rise(of: next, after: max(cycle, next.anchor - 1))
    }

    /// How many times OUT rises in the cycles `(after, through]`.
    func riseCount(after start: UInt64, through end: UInt64) -> UInt64 {
        guard let run, end > start else { return 0 }
        guard let next else { return rises(of: run, after: start, through: end) }
        let handover = next.anchor
        var count: UInt64 = 0
        if start < handover { count += rises(of: run, after: start, through: min(end, handover)) }
        if end > handover { count += rises(of: next, after: max(start, handover), through: end) }
        return count
    }

    private func rise(of run: Run, after cycle: UInt64) -> UInt64? {
        switch run {
        case .countdown(let anchor, let start, let expired):
            guard !expired else { return nil }
            // Modes 0 and 1 rise at terminal count, 4 and 5 one cycle later
            // (the end of the strobe).
            let edge = saturatingAdd(saturatingAdd(anchor, start), mode <= 1 ? 0 : 1)
            return edge > cycle ? edge : nil
        case .periodic(let anchor, let period, let phase, let anchorRises):
            if anchorRises && cycle < anchor { return anchor }
            let first = cycle < anchor ? 1 : cycle - anchor + 1
            let remainder = (phase + first % period) % period
            let offset = remainder == 0 ? first : saturatingAdd(first, period - remainder)
            return saturatingAdd(anchor, offset)
        }
    }

    private func rises(of run: Run, after start: UInt64, through end: UInt64) -> UInt64 {
        switch run {
        case .countdown:
            guard let edge = rise(of: run, after: start), edge <= end else { return 0 }
            return 1
        case .periodic(let anchor, let period, let phase, let anchorRises):
            var count: UInt64 = anchorRises && start < anchor && anchor <= end ? 1 : 0
            guard end > anchor else { return count }
            // Offsets m in [low, high] with (phase + m) ≡ 0 (mod period).
            let low = start < anchor ? 1 : start - anchor + 1
            let high = end - anchor
            if low <= high { count += (phase + high) / period - (phase + low - 1) / period }
            return count
        }
    }

    private func countdownValue(start: UInt64, elapsed: UInt64) -> UInt64 {
        if elapsed <= start { return start - elapsed }
        let past = (elapsed - start) % modulus
        return past == 0 ? 0 : modulus - past
    }

    /// Mode 3 (datasheet): an even N loads N and counts down by two, so each
    /// half shows N, N−2, …, 2; an odd N loads N−1, so the high half (one
    /// cycle longer) ends at 0.
    private func squareWaveValue(period: UInt64, position: UInt64) -> UInt64 {
        let high = (period + 1) / 2
        let step = position < high ? position : position - high
        let top = period & 1 == 0 ? period : period - 1
        return top >= 2 * step ? top - 2 * step : 0
    }

    // MARK: - Programming

    /// A control word for this counter (RW ≠ 0): control logic reset, OUT to
    /// its initial state (low in mode 0, high otherwise), counting stops
    /// until a count is written, latches and flip-flops cleared.
    mutating func writeControl(_ value: UInt8, at cycle: UInt64) {
        advance(to: cycle)
        let current = self.value(at: cycle)
        programming = value & 0x3f
        held = Held(value: current, out: mode != 0, expired: false)
        run = nil
        next = nil
        initialCount = nil
        pendingLSB = nil
        readHighNext = false
        latchedCount = nil
        latchedHighNext = false
        latchedStatus = nil
        loadCycle = nil
    }

    /// A byte written to the counter's port. Returns whether counting
    /// (re)started from a new count now, rather than continuing.
    mutating func writeCount(_ byte: UInt8, at cycle: UInt64) -> Bool {
        advance(to: cycle)
        let raw: UInt16
        switch access {
        case 1:
            raw = UInt16(byte)
        case 2:
            raw = UInt16(byte) << 8
        default:
            guard let low = pendingLSB else {
                pendingLSB = byte
                // Mode 0: writing the first byte disables counting and sets
                // OUT low at once.
                if mode == 0 { freeze(at: cycle, out: false) }
                return false
            }
            pendingLSB = nil
            raw = UInt16(low) | UInt16(byte) << 8
        }
        return load(bcd ? Self.bcdCount(raw) : (raw == 0 ? 0x1_0000 : UInt64(raw)), at: cycle)
    }

    private mutating func load(_ count: UInt64, at cycle: UInt64) -> Bool {
        initialCount = count
        switch mode {
        case 0, 4:
            // Loaded on the next CLK pulse, which does not decrement it:
            // OUT changes N + 1 cycles after the write. A new count during
            // counting restarts from it.
            loadCycle = cycle + 1
            if gate {
                held = Held(value: value(at: cycle), out: mode == 4, expired: false)
                run = .countdown(anchor: cycle + 1, start: count, expired: false)
                next = nil
                return true
            }
            held = Held(value: count, out: mode == 4, expired: false)
            run = nil
            return false
        case 1, 5:
            // Armed: the count is loaded by the next trigger; a one-shot
            // in progress is not affected.
            loadCycle = nil
            return false
        default:
            if let run, cycle >= run.anchor {
                // Counting: the new count takes over at the end of the
                // current period (mode 2) or half-cycle (mode 3).
                let (boundary, rising) = nextBoundary(of: run, after: cycle)
                let phase = rising ? 0 : ((count + 1) / 2) % count
                next = .periodic(anchor: boundary, period: count, phase: phase, anchorRises: rising)
                loadCycle = boundary
                return false
            }
            // The first count after a control word (or a second one before
            // the first was loaded): loaded on the next CLK pulse.
            loadCycle = cycle + 1
            next = nil
            if gate {
                held = Held(value: run == nil ? value(at: cycle) : held.value, out: true, expired: false)
                run = .periodic(anchor: cycle + 1, period: count, phase: 0, anchorRises: false)
                return true
            }
            held = Held(value: mode == 3 && count & 1 == 1 ? count - 1 : count, out: true, expired: false)
            run = nil
            return false
        }
    }

    /// The next reload (mode 2), or the next reload or half-cycle end
    /// (mode 3), after `cycle`; `rising` when OUT rises there.
    private func nextBoundary(of run: Run, after cycle: UInt64) -> (UInt64, rising: Bool) {
        guard case .periodic(let anchor, let period, let phase, _) = run else { return (cycle + 1, true) }
        let elapsed = cycle - anchor
        let position = (phase + elapsed % period) % period
        func offset(to target: UInt64) -> UInt64 {
            let distance = (target + period - position) % period
            return elapsed + (distance == 0 ? period : distance)
        }
        var best = (offset(to: 0), rising: true)
        let high = (period + 1) / 2
        if mode == 3 && high < period {
            let falling = offset(to: high)
            if falling < best.0 { best = (falling, false) }
        }
        return (saturatingAdd(anchor, best.0), best.rising)
    }

    /// Stops counting at `cycle`, keeping CE.
    private mutating func freeze(at cycle: UInt64, out: Bool) {
        if case .countdown(let anchor, let start, let expired) = run, cycle < anchor {
            // A count written but not yet in CE is still loaded on the next
            // CLK pulse (GATE stops counting, not loading): keep it, not the
            // old CE, to count from when counting resumes.
            held = Held(value: start, out: out, expired: expired)
        } else {
            held = Held(value: value(at: cycle), out: out, expired: expired(at: cycle))
        }
        run = nil
        next = nil
    }

    /// Makes a new count that has taken over the current run.
    mutating func advance(to cycle: UInt64) {
        if let pending = next, pending.anchor <= cycle {
            run = pending
            next = nil
        }
    }

    /// The GATE input. Modes 0 and 4: level-sensitive, low suspends
    /// counting. Modes 1 and 5: a rising edge (trigger) loads the count on
    /// the next CLK pulse. Modes 2 and 3: low stops counting and sets OUT
    /// high at once; a trigger reloads the count on the next CLK pulse.
    mutating func setGate(_ level: Bool, at cycle: UInt64) {
        advance(to: cycle)
        guard level != gate else { return }
        gate = level
        switch mode {
        case 0, 4:
            if !level {
                if run != nil { freeze(at: cycle, out: mode == 0 ? out(at: cycle) : true) }
            } else if run == nil && initialCount != nil && !(mode == 0 && pendingLSB != nil) {
                run = .countdown(anchor: cycle, start: held.value, expired: held.expired)
            }
        case 1, 5:
            guard level, let count = initialCount else { return }
            held = Held(value: value(at: cycle), out: out(at: cycle), expired: false)
            run = .countdown(anchor: cycle + 1, start: count, expired: false)
            loadCycle = cycle + 1
        default:
            if !level {
                guard run != nil else { return }
                held = Held(value: value(at: cycle), out: true, expired: false)
                run = nil
                next = nil
            } else if let count = initialCount {
                held = Held(value: value(at: cycle), out: true, expired: false)
                run = .periodic(anchor: cycle + 1, period: count, phase: 0, anchorRises: false)
                next = nil
                loadCycle = cycle + 1
            }
        }
    }

    // MARK: - Reading

    /// Counter latch command: the output latch holds CE until read; a latch
    /// already held is kept.
    mutating func latchCount(at cycle: UInt64) {
        guard latchedCount == nil else { return }
        latchedCount = displayed(at: cycle)
        latchedHighNext = false
    }

    /// Read-back status latch; one already held is kept.
    mutating func latchStatus(at cycle: UInt64) {
        guard latchedStatus == nil else { return }
        latchedStatus = status(at: cycle)
    }

    /// A read of the counter's port: latched status first, then a latched
    /// count (LSB first in two-byte mode, released once read), otherwise CE
    /// as it is now, bytes alternating in two-byte mode.
    mutating func read(at cycle: UInt64) -> UInt8 {
        advance(to: cycle)
        if let status = latchedStatus {
            latchedStatus = nil
            return status
        }
        if let latched = latchedCount {
            switch access {
            case 1:
                latchedCount = nil
                return UInt8(truncatingIfNeeded: latched)
            case 2:
                latchedCount = nil
                return UInt8(truncatingIfNeeded: latched >> 8)
            default:
                if latchedHighNext {
                    latchedCount = nil
                    latchedHighNext = false
                    return UInt8(truncatingIfNeeded: latched >> 8)
                }
                latchedHighNext = true
                return UInt8(truncatingIfNeeded: latched)
            }
        }
        let value = displayed(at: cycle)
        switch access {
        case 1:
            return UInt8(truncatingIfNeeded: value)
        case 2:
            return UInt8(truncatingIfNeeded: value >> 8)
        default:
            defer { readHighNext.toggle() }
            return UInt8(truncatingIfNeeded: readHighNext ? value >> 8 : value)
        }
    }

    // MARK: - BCD

    /// A BCD count in cycles: digit × weight, 0 meaning 10 000.
    static func bcdCount(_ raw: UInt16) -> UInt64 {
        var value: UInt64 = 0
        for shift in stride(from: 12, through: 0, by: -4) {
            value = value * 10 + UInt64((raw >> UInt16(shift)) & 0xf)
        }
        return value == 0 ? 10_000 : value
    }

    /// `value` (below 10 000) as four BCD digits.
    static func bcdDigits(_ value: UInt64) -> UInt16 {
        var digits: UInt16 = 0
        var rest = value % 10_000
        for shift in stride(from: 0, through: 12, by: 4) {
            digits |= UInt16(rest % 10) << UInt16(shift)
            rest /= 10
        }
        return digits
    }
}

@inline(__always)
private func saturatingAdd(_ a: UInt64, _ b: UInt64) -> UInt64 {
    let (sum, overflow) = a.addingReportingOverflow(b)
    return overflow ? .max : sum
}

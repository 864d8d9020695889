/// The APIC timer's counter (Intel SDM Vol. 3A §10.5.4): a 32-bit count that
/// decrements once per (divider) input clocks, from the initial count down
/// to zero; one-shot mode stops there, periodic mode reloads the initial
/// count.
///
/// Nothing ticks: the count is derived from the time elapsed since an
/// anchor, the moment the counter last held a known value. Zero crossings
/// are numbered from the anchor (crossing j happens after anchorCount +
/// j·initialCount ticks), so periodic deadlines are computed, not
/// accumulated, and do not drift. All arithmetic saturates: a guest can
/// program any count and divider, and a caller any time, without a trap.
struct APICTimer: Sendable {
    var initialCount: UInt32 = 0
    /// The divide configuration register; only bits 0, 1 and 3 exist.
    var divideConfiguration: UInt32 = 0
    /// Counting: an initial count was written and, in one-shot mode, the
    /// count has not been seen to reach zero.
    var running = false
    var anchorTime: Int64 = 0
    var anchorCount: UInt64 = 0
    /// The first zero crossing not yet handled by `expire`.
    var nextCrossing: UInt64 = 0

    static let divideConfigurationMask: UInt32 = 0xB

    /// Figure 10-10: bits 3,1,0 = 000 → 2, 001 → 4, ... 110 → 128, 111 → 1.
    var divisor: UInt64 {
        let code = (divideConfiguration & 0x3) | ((divideConfiguration >> 1) & 0x4)
        return 1 << UInt64((code + 1) & 7)
    }

    /// Counter ticks (input clocks / divisor) since the anchor.
    func ticks(at now: Int64, frequency: UInt64) -> UInt64 {
        guard now > anchorTime else { return 0 }
        // The true difference is below 2^64, so the wrapped difference is it.
        let elapsed = UInt64(bitPattern: now &- anchorTime)
        return multiplyDivide(elapsed, frequency, 1_000_000_000) / divisor
    }

    /// When zero crossing `crossing` happens.
    func crossingTime(_ crossing: UInt64, frequency: UInt64) -> Int64 {
        let ticks = saturatingAdd(anchorCount, saturatingMultiply(crossing, UInt64(initialCount)))
        let clocks = saturatingMultiply(ticks, divisor)
        let nanoseconds = multiplyDivide(clocks, 1_000_000_000, frequency, roundingUp: true)
        return saturatingAdd(anchorTime, nanoseconds)
    }

    /// The last zero crossing at or before `now`, if the first has happened.
    func lastCrossing(at now: Int64, periodic: Bool, frequency: UInt64) -> UInt64? {
        let elapsed = ticks(at: now, frequency: frequency)
        guard running, elapsed >= anchorCount else { return nil }
        return periodic && initialCount != 0 ? (elapsed - anchorCount) / UInt64(initialCount) : 0
    }

    func currentCount(at now: Int64, periodic: Bool, frequency: UInt64) -> UInt32 {
        guard running else { return 0 }
        let elapsed = ticks(at: now, frequency: frequency)
        if elapsed < anchorCount { return UInt32(truncatingIfNeeded: anchorCount - elapsed) }
        guard periodic, initialCount != 0 else { return 0 }
        let initial = UInt64(initialCount)
        return UInt32(truncatingIfNeeded: initial - (elapsed - anchorCount) % initial)
    }

    /// The next zero crossing still to be handled.
    func deadline(frequency: UInt64) -> Int64? {
        running ? crossingTime(nextCrossing, frequency: frequency) : nil
    }

    /// A write to the initial-count register starts counting from it; 0
    /// stops the timer (§10.5.4).
    mutating func start(count: UInt32, at now: Int64) {
        initialCount = count
        running = count != 0
        anchorTime = now
        anchorCount = UInt64(count)
        nextCrossing = 0
    }

    /// Makes `now` the anchor, keeping the current count: after the divider
    /// or the mode changes, counting goes on from where it is (the fraction
    /// of a tick in progress is dropped).
    mutating func reanchor(at now: Int64, periodic: Bool, frequency: UInt64) {
        guard running else { return }
        let count = currentCount(at: now, periodic: periodic, frequency: frequency)
        if count == 0 {
            running = false
        } else {
            anchorTime = now
            anchorCount = UInt64(count)
            nextCrossing = 0
        }
    }

    /// Handles the zero crossings up to `now`. Returns whether at least one
    /// happened: one interrupt stands for all of them, as the APIC raises
    /// one per crossing but the IRR holds one per vector. A one-shot timer
    /// stops; a periodic one moves on to the first crossing after `now`, or
    /// after `now + minimumInterval` when that is later.
    mutating func expire(at now: Int64, periodic: Bool, frequency: UInt64, minimumInterval: Int64) -> Bool {
        guard let last = lastCrossing(at: now, periodic: periodic, frequency: frequency),
              last >= nextCrossing else { return false }
        guard periodic, initialCount != 0 else {
            running = false
            return true
        }
        var next = last + 1
        if minimumInterval > 0 {
            // The first crossing at or after `target` is the one after the
            // last crossing at or before `target - 1`.
            let target = saturatingAdd(now, UInt64(minimumInterval))
            let elapsed = ticks(at: target &- 1, frequency: frequency)
            if elapsed >= anchorCount {
                next = max(next, (elapsed - anchorCount) / UInt64(initialCount) + 1)
            }
        }
        nextCrossing = next
        return true
    }
}

extension LocalAPIC {
    /// When the vCPU layer should call `timerFired(now:)`, or nil when no
    /// timer interrupt can come: stopped, or masked (a masked timer keeps
    /// counting, but its crossings raise nothing, §10.5.1 "Mask").
    public var nextTimerDeadline: Int64? {
        guard mode != .disabled, lvt[.timer] & LVTFile.masked == 0 else { return nil }
        return timer.deadline(frequency: configuration.timerFrequency)
    }

    /// The host timer armed for `nextTimerDeadline` went off (or the vCPU
    /// layer is checking): raises the LVT timer vector if the count reached
    /// zero, and re-arms periodic mode. Calling it early does nothing.
    public mutating func timerFired(now: Int64) -> [Effect] {
        recordingEffects { apic, _ in apic.expireTimer(at: now) }
    }

    /// Handles zero crossings up to `now` with the LVT as it is: called
    /// before any write that changes how the timer counts or signals, so
    /// that what happened before the write is judged by the old settings.
    mutating func expireTimer(at now: Int64) {
        guard timer.expire(at: now, periodic: lvt.timerIsPeriodic, frequency: configuration.timerFrequency,
                           minimumInterval: configuration.minimumPeriodicInterval) else { return }
        let entry = lvt[.timer]
        // The timer is always a fixed, edge-triggered interrupt (§10.5.1).
        if entry & LVTFile.masked == 0 {
            acceptLocal(vector: UInt8(truncatingIfNeeded: entry), levelTriggered: false)
        }
    }

    mutating func writeInitialCount(_ value: UInt32, now: Int64) {
        expireTimer(at: now)
        timer.start(count: value, at: now)
    }

    mutating func writeDivideConfiguration(_ value: UInt32, now: Int64) {
        expireTimer(at: now)
        timer.reanchor(at: now, periodic: lvt.timerIsPeriodic, frequency: configuration.timerFrequency)
        timer.divideConfiguration = value & APICTimer.divideConfigurationMask
    }
}

// MARK: - Saturating arithmetic

@inline(__always)
func saturatingAdd(_ a: UInt64, _ b: UInt64) -> UInt64 {
    let (sum, overflow) = a.addingReportingOverflow(b)
    return overflow ? .max : sum
}

@inline(__always)
func saturatingAdd(_ a: Int64, _ b: UInt64) -> Int64 {
    guard b <= UInt64(Int64.max) else { return .max }
    let (sum, overflow) = a.addingReportingOverflow(Int64(b))
    return overflow ? .max : sum
}

@inline(__always)
func saturatingMultiply(_ a: UInt64, _ b: UInt64) -> UInt64 {
    let (product, overflow) = a.multipliedReportingOverflow(by: b)
    return overflow ? .max : product
}

/// a·b/c with a 128-bit intermediate, saturating at UInt64.max; c > 0.
func multiplyDivide(_ a: UInt64, _ b: UInt64, _ c: UInt64, roundingUp: Bool = false) -> UInt64 {
    let product = a.multipliedFullWidth(by: b)
    // The quotient fits in 64 bits exactly when the high half is below c.
    guard product.high < c else { return .max }
    let (quotient, remainder) = c.dividingFullWidth(product)
    return roundingUp && remainder != 0 ? saturatingAdd(quotient, 1) : quotient
}

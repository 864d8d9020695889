import Synchronization
import SwiftletSystem

/// What a poster must do after posting, decided by the descriptor.
public enum PostNotification: Sendable, Equatable {
    /// Nothing: a notification is already outstanding, notifications are
    /// suppressed, or the vCPU is in the VMM and checks before re-entering.
    case none
    /// The vCPU may be inside KVM_RUN: kick its thread out.
    case kick
    /// The vCPU sleeps on the descriptor: the descriptor woke it already.
    case woken
}

/// What `takePosted` hands the vCPU.
public struct PostedWork: Sendable, Equatable {
    public var vectors: VectorSet
    public var levelTriggered: VectorSet
    public var events: [PostedEvent]

    public var isEmpty: Bool { vectors.isEmpty && events.isEmpty }
}

/// Interrupt messages that are not vectors for the IRR.
public enum PostedEvent: Sendable, Equatable {
    case nmi
    case smi
    case initialize
    /// STARTUP IPI with its vector (the start page number).
    case startup(vector: UInt8)
    /// The 8259's output changed: the vCPU re-checks for an ExtINT.
    case externalInterrupt

    var bits: UInt32 {
        switch self {
        case .nmi: 1 << 0
        case .smi: 1 << 1
        case .initialize: 1 << 2
        case .startup: 1 << 3
        case .externalInterrupt: 1 << 4
        }
    }

    /// Events in the order the vCPU applies them: INIT before STARTUP (a
    /// SIPI is only accepted in the wait-for-SIPI state an INIT enters).
    /// Two SIPIs before the vCPU looks collapse into the last one, as two
    /// would on hardware for a CPU that already started.
    static func decode(_ bits: UInt32, startupVector: UInt8) -> [PostedEvent] {
        var events: [PostedEvent] = []
        if bits & (1 << 2) != 0 { events.append(.initialize) }
        if bits & (1 << 3) != 0 { events.append(.startup(vector: startupVector)) }
        if bits & (1 << 0) != 0 { events.append(.nmi) }
        if bits & (1 << 1) != 0 { events.append(.smi) }
        if bits & (1 << 4) != 0 { events.append(.externalInterrupt) }
        return events
    }
}

/// A per-vCPU posted-interrupt descriptor, after the VT-d/APICv design in
/// the KVM posted-interrupts discussion (MISSION.md §1): a 256-bit pending
/// request bitmap (PIR) and a control word, changed only by atomic
/// compare-and-swap.
///
/// Control word (also the futex a halted vCPU sleeps on):
///
///     bit 0    ON  outstanding notification: PIR may hold unseen vectors
///     bit 1    SN  suppress notification (the vCPU is paused or leaving)
///     bit 2    RQ  a host request (pause, stop, ...) is pending
///     bits 3-4 NV  where the vCPU is, which decides the notification:
///                  host    in VMM code; it checks ON before every entry,
///                          so a post needs no notification at all
///                  guest   in (or committed to entering) KVM_RUN: kick
///                  blocked sleeping on this word: futex wake
///
/// ## Posting (any thread)
/// 1. Set the vector's PIR bit.
/// 2. CAS ON from 0 to 1 (unless SN). Only the poster that turns ON on
///    notifies, as NV says; everyone else relies on that notification.
///
/// ## Consuming (the vCPU's thread)
/// Clear ON, *then* swap each PIR word with zero. A vector posted after its
/// word was read sets ON again (ON was clear), so it is seen next time; a
/// vector posted before the clear is in PIR when it is read.
///
/// ## Entering the guest
/// CAS NV host → guest, failing if ON or RQ is set (then consume and retry).
/// A post that lands after the CAS sees NV = guest and kicks; one that lands
/// before makes the CAS fail. Either way it is not lost.
///
/// ## Blocking (HLT)
/// The seed's discipline — switch the notification to "wakeup", re-check
/// ON, only then sleep — is one CAS plus a futex wait here:
/// 1. CAS NV host → blocked, failing if ON or RQ is set (then do not sleep).
/// 2. futex-wait while the word still equals the value just written. Any
///    post (or request) after step 1 changed the word, so the kernel's
///    atomic compare refuses to sleep; one after the sleep began wakes it.
/// 3. CAS NV back to host.
/// A wakeup touches exactly one futex word: its cost does not depend on how
/// many other vCPUs are blocked (no list of blocked vCPUs is ever scanned).
public final class PostedInterruptDescriptor: Sendable {
    public enum Mode: UInt32, Sendable {
        case host = 0
        case guest = 1
        case blocked = 2
    }

    static let on: UInt32 = 1 << 0
    static let sn: UInt32 = 1 << 1
    static let rq: UInt32 = 1 << 2
    static let modeShift: UInt32 = 3
    static let modeMask: UInt32 = 3 << modeShift

    private let pir0 = Atomic<UInt64>(0)
    private let pir1 = Atomic<UInt64>(0)
    private let pir2 = Atomic<UInt64>(0)
    private let pir3 = Atomic<UInt64>(0)
    // Which posted vectors are level-triggered (the LAPIC sets TMR for them,
    // so their EOI reaches the IOAPIC). Set before the PIR bit.
    private let level0 = Atomic<UInt64>(0)
    private let level1 = Atomic<UInt64>(0)
    private let level2 = Atomic<UInt64>(0)
    private let level3 = Atomic<UInt64>(0)
    /// Messages that are not vectors (NMI, INIT, SIPI, ExtINT), as bits.
    private let eventBits = Atomic<UInt32>(0)
    /// The last STARTUP IPI's vector, stored before its event bit is set.
    private let startupVector = Atomic<UInt32>(0)
    /// The control word; a vCPU blocks on it with futex(2).
    private let control = FutexWord(0)

    public init() {}

    private func withPIR<R>(_ index: Int, _ body: (borrowing Atomic<UInt64>) -> R) -> R {
        switch index {
        case 0: body(pir0)
        case 1: body(pir1)
        case 2: body(pir2)
        default: body(pir3)
        }
    }

    private func withLevel<R>(_ index: Int, _ body: (borrowing Atomic<UInt64>) -> R) -> R {
        switch index {
        case 0: body(level0)
        case 1: body(level1)
        case 2: body(level2)
        default: body(level3)
        }
    }

    static func mode(_ word: UInt32) -> Mode { Mode(rawValue: (word & modeMask) >> modeShift) ?? .host }
    static func with(_ word: UInt32, mode: Mode) -> UInt32 { (word & ~modeMask) | (mode.rawValue << modeShift) }

    // MARK: Posting (any thread)

    /// Posts `vector`. Returns `.kick` when the caller must kick the vCPU's
    /// thread out of KVM_RUN; a blocked vCPU has been woken already.
    public func post(_ vector: UInt8, levelTriggered: Bool = false) -> PostNotification {
        let bit = UInt64(1) << UInt64(vector & 63)
        if levelTriggered {
            withLevel(Int(vector >> 6)) { _ = $0.bitwiseOr(bit, ordering: .sequentiallyConsistent) }
        }
        withPIR(Int(vector >> 6)) { _ = $0.bitwiseOr(bit, ordering: .sequentiallyConsistent) }
        return notify(setting: PostedInterruptDescriptor.on)
    }

    /// Posts a message that is not a vector; it travels like a vector (ON,
    /// then the notification) and is taken with `takeEvents`.
    public func post(_ event: PostedEvent) -> PostNotification {
        if case .startup(let vector) = event { startupVector.store(UInt32(vector), ordering: .sequentiallyConsistent) }
        _ = eventBits.bitwiseOr(event.bits, ordering: .sequentiallyConsistent)
        return notify(setting: PostedInterruptDescriptor.on)
    }

    /// Flags a host request (the vCPU's request word holds what is asked) so
    /// a blocked vCPU wakes and a running one leaves KVM_RUN. Not subject to
    /// SN: a paused vCPU must still hear that it is to stop.
    public func signalRequest() -> PostNotification {
        notify(setting: PostedInterruptDescriptor.rq, ignoringSuppression: true)
    }

    private func notify(setting flag: UInt32, ignoringSuppression: Bool = false) -> PostNotification {
        var old = control.load()
        while true {
            if old & flag != 0 { return .none }  // someone else notifies
            if !ignoringSuppression && old & PostedInterruptDescriptor.sn != 0 { return .none }
            let seen = control.compareExchange(expected: old, desired: old | flag)
            if seen != old {
                old = seen
                continue
            }
            // If another flag was already outstanding the vCPU has been
            // notified once and will look at every flag; notifying again is
            // harmless but useless.
            let wasPending = old & (PostedInterruptDescriptor.on | PostedInterruptDescriptor.rq) != 0
            switch PostedInterruptDescriptor.mode(old) {
            case .host: return .none
            case .guest: return wasPending ? .none : .kick
            case .blocked:
                control.wake(1)
                return .woken
            }
        }
    }

    // MARK: The vCPU's side (its own thread only)

    /// Whether posted vectors or a request may be waiting.
    public var hasPendingWork: Bool {
        control.load() & (PostedInterruptDescriptor.on | PostedInterruptDescriptor.rq) != 0
    }

    /// Whether posted vectors or events may be waiting (ON).
    public var hasPostedWork: Bool { control.load() & PostedInterruptDescriptor.on != 0 }

    /// Whether a host request is waiting (RQ).
    public var hasRequest: Bool { control.load() & PostedInterruptDescriptor.rq != 0 }

    /// Takes every posted vector and event: clears ON, then empties PIR,
    /// the level bits and the events. A level bit is read after its PIR bit,
    /// and set before it, so a vector taken here carries its trigger mode.
    public func takePosted() -> PostedWork {
        _ = control.clearBits(PostedInterruptDescriptor.on)
        let vectors = VectorSet(words: (pir0.exchange(0, ordering: .sequentiallyConsistent),
                                        pir1.exchange(0, ordering: .sequentiallyConsistent),
                                        pir2.exchange(0, ordering: .sequentiallyConsistent),
                                        pir3.exchange(0, ordering: .sequentiallyConsistent)))
        var level = VectorSet()
        if !vectors.isEmpty {
            level = VectorSet(words: (level0.exchange(0, ordering: .sequentiallyConsistent) & vectors.words.0,
                                      level1.exchange(0, ordering: .sequentiallyConsistent) & vectors.words.1,
                                      level2.exchange(0, ordering: .sequentiallyConsistent) & vectors.words.2,
                                      level3.exchange(0, ordering: .sequentiallyConsistent) & vectors.words.3))
        }
        return PostedWork(vectors: vectors, levelTriggered: level,
                          events: PostedEvent.decode(eventBits.exchange(0, ordering: .sequentiallyConsistent),
                                                     startupVector: UInt8(truncatingIfNeeded: startupVector.load(ordering: .sequentiallyConsistent))))
    }

    /// Acknowledges a host request (before reading the request word).
    public func takeRequest() {
        _ = control.clearBits(PostedInterruptDescriptor.rq)
    }

    /// host → guest, unless a post or request is pending (then returns false
    /// and the vCPU must handle it before entering).
    public func enterGuest() -> Bool {
        transition(from: .host, to: .guest, unlessPending: PostedInterruptDescriptor.on | PostedInterruptDescriptor.rq)
    }

    /// guest → host, after KVM_RUN returned.
    public func leaveGuest() {
        force(.host)
    }

    /// Blocks the calling vCPU thread until a post or a request arrives, or
    /// `timeoutNanoseconds` passes (nil: no limit). Returns at once if one is
    /// already pending. Follows the protocol in the type's discussion.
    /// With `requestsOnly`, only a request wakes it (a paused vCPU, whose
    /// pending vectors must wait).
    public func block(timeoutNanoseconds: Int64? = nil, requestsOnly: Bool = false) {
        let wakers = requestsOnly ? PostedInterruptDescriptor.rq : PostedInterruptDescriptor.on | PostedInterruptDescriptor.rq
        guard transition(from: .host, to: .blocked, unlessPending: wakers) else { return }
        let deadline = timeoutNanoseconds.map { MonotonicClock.nanoseconds() + $0 }
        while true {
            let word = control.load()
            if word & wakers != 0 || PostedInterruptDescriptor.mode(word) != .blocked { break }
            var left: Int64? = nil
            if let deadline {
                left = deadline - MonotonicClock.nanoseconds()
                if left! <= 0 { break }
            }
            // Sleeps only while the word is exactly what was just read; any
            // post, request or suppression change in between refuses it.
            control.wait(whileEquals: word, timeoutNanoseconds: left)
        }
        force(.host)
    }

    /// Stops posts from notifying (pause, removal). Vectors still collect
    /// in PIR; `resumeNotifications` then reports whether any did.
    public func suppressNotifications() {
        _ = control.setBits(PostedInterruptDescriptor.sn)
    }

    public func resumeNotifications() {
        _ = control.clearBits(PostedInterruptDescriptor.sn)
    }

    /// Whether PIR holds any vector or event (for after suppression, when
    /// posters do not set ON).
    public var hasPostedVectors: Bool {
        pir0.load(ordering: .sequentiallyConsistent) | pir1.load(ordering: .sequentiallyConsistent)
            | pir2.load(ordering: .sequentiallyConsistent) | pir3.load(ordering: .sequentiallyConsistent) != 0
            || eventBits.load(ordering: .sequentiallyConsistent) != 0
    }

    public var mode: Mode { PostedInterruptDescriptor.mode(control.load()) }

    private func transition(from: Mode, to: Mode, unlessPending wakers: UInt32) -> Bool {
        var old = control.load()
        while true {
            if old & wakers != 0 { return false }
            precondition(PostedInterruptDescriptor.mode(old) == from, "descriptor in \(PostedInterruptDescriptor.mode(old)), expected \(from)")
            let seen = control.compareExchange(expected: old, desired: PostedInterruptDescriptor.with(old, mode: to))
            if seen == old { return true }
            old = seen
        }
    }

    private func force(_ mode: Mode) {
        var old = control.load()
        while true {
            let seen = control.compareExchange(expected: old, desired: PostedInterruptDescriptor.with(old, mode: mode))
            if seen == old { return }
            old = seen
        }
    }
}

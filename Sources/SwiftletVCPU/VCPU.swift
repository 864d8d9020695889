import CSwiftlet
import Synchronization
import SwiftletDevices
import SwiftletInterrupts
import SwiftletKVM
import SwiftletSystem

/// What a vCPU thread does after an exit its run loop does not handle itself.
public enum VCPUExitAction: Sendable {
    case resume
    /// Leave the run loop (the VM is ending or this vCPU is done).
    case stop
}

/// The machine's side of a vCPU's run loop: port and MMIO exits go straight
/// to the buses; everything else comes here, on the vCPU's own thread.
public protocol VCPUExitHandler: Sendable {
    func handleExit(_ exit: VCPUExit, on vcpu: VCPU) -> VCPUExitAction
    /// KVM_RUN itself failed; the vCPU leaves its run loop afterwards.
    func runFailed(_ error: SystemError, on vcpu: VCPU)
}

/// One virtual CPU: its KVM descriptor, its dedicated OS thread, its
/// posted-interrupt descriptor, and the small state machine other threads
/// use to pause, resume and stop it.
///
/// ## Requests, posts and kicks
/// Every notification to a vCPU goes through its `PostedInterruptDescriptor`
/// (see its discussion for the protocol): a host request (pause, stop) sets
/// a bit in `requests` and then RQ in the descriptor; an interrupt sets its
/// PIR bit and then ON. The descriptor knows where the vCPU is — in VMM code
/// (no notification needed: it checks before every entry), inside KVM_RUN
/// (kick its thread), or asleep on the descriptor (wake it) — and says which.
///
/// The kick is a real-time signal whose handler sets `kvm_run.immediate_exit`:
/// a signal during KVM_RUN makes it return EINTR; one that lands between the
/// descriptor's host→guest transition and the ioctl makes KVM_RUN return at
/// once. immediate_exit is cleared only after KVM_RUN returned, before the
/// next check, so no kick is lost.
public final class VCPU: Sendable, CustomStringConvertible, InterruptTarget {
    public let index: UInt32
    public let descriptor: VCPUDescriptor
    /// Where interrupts and requests for this vCPU are posted.
    public let posted = PostedInterruptDescriptor()

    private let portBus: IOBus
    private let mmioBus: IOBus
    private let exitHandler: any VCPUExitHandler
    private let controller: LocalInterruptController?
    private let stateWord = FutexWord(VCPUState.parked.rawValue)
    private let requests = Atomic<UInt32>(0)
    private let thread = Locked<OSThread?>(nil)
    private let arbitration = Atomic<UInt8>(0)
    // Counters live in the vCPU object itself: it is already in cache when
    // an exit is handled, so counting costs no extra memory traffic.
    private let exitCount = Atomic<UInt64>(0)
    private let portIOExitCount = Atomic<UInt64>(0)
    private let mmioExitCount = Atomic<UInt64>(0)
    private let interruptionCount = Atomic<UInt64>(0)
    private let kickCount = Atomic<UInt64>(0)
    private let haltCount = Atomic<UInt64>(0)

    /// Request bits.
    private static let pauseRequest: UInt32 = 1 << 0
    private static let stopRequest: UInt32 = 1 << 1

    /// The signal that kicks vCPU threads out of KVM_RUN, installed once per
    /// process before the first vCPU thread starts.
    private static let kickSignal: Int32 = {
        precondition(swl_kick_install_handler() == 0, "cannot install the vCPU kick signal handler")
        return swl_kick_signal_number()
    }()

    /// A vCPU whose interrupts the in-kernel irqchip handles.
    public init(descriptor: VCPUDescriptor, portBus: IOBus, mmioBus: IOBus, exitHandler: any VCPUExitHandler) {
        self.index = descriptor.id
        self.descriptor = descriptor
        self.portBus = portBus
        self.mmioBus = mmioBus
        self.exitHandler = exitHandler
        self.controller = nil
    }

    /// A vCPU whose local APIC Swiftlet emulates, sharing `chip`'s router,
    /// IOAPIC and 8259s. It joins the router's vCPU set at once (and leaves
    /// it with `detachFromRouter`); application processors wait for INIT
    /// and STARTUP, then start from `resetState`.
    public init(descriptor: VCPUDescriptor, portBus: IOBus, mmioBus: IOBus, exitHandler: any VCPUExitHandler,
                chip: UserspaceIRQChip, resetState: VCPUResetState) {
        self.index = descriptor.id
        self.descriptor = descriptor
        self.portBus = portBus
        self.mmioBus = mmioBus
        self.exitHandler = exitHandler
        let controller = LocalInterruptController(slot: Int(descriptor.id), apicID: descriptor.id,
                                                  bootstrap: descriptor.id == 0, chip: chip, resetState: resetState)
        self.controller = controller
        chip.router.setTarget(self, slot: Int(descriptor.id), addressing: controller.addressing)
    }

    public var description: String { "vCPU \(index)" }

    /// Takes the vCPU out of interrupt routing (hot-remove): once this
    /// returns no router delivery can reach it, and posts that still come
    /// (an IPI computed from an older table) no longer notify it.
    public func detachFromRouter() {
        posted.suppressNotifications()
        controller?.chip.router.removeTarget(slot: Int(index))
    }

    public var state: VCPUState { VCPUState(rawValue: stateWord.load()) ?? .absent }

    private func setState(_ new: VCPUState) {
        stateWord.store(new.rawValue)
        stateWord.wake()
    }

    // MARK: InterruptTarget (any thread)

    public func post(vector: UInt8, levelTriggered: Bool) {
        if posted.post(vector, levelTriggered: levelTriggered) == .kick { kick() }
    }

    public func post(_ event: PostedEvent) {
        if posted.post(event) == .kick { kick() }
    }

    public var arbitrationPriority: UInt8 { arbitration.load(ordering: .relaxed) }

    // MARK: Control (any thread)

    /// Starts the vCPU's thread: parked → starting → running.
    public func start() throws(SystemError) {
        _ = VCPU.kickSignal
        let previous = stateWord.compareExchange(expected: VCPUState.parked.rawValue, desired: VCPUState.starting.rawValue)
        precondition(previous == VCPUState.parked.rawValue, "\(self) started while \(VCPUState(rawValue: previous)!)")
        requests.store(0, ordering: .sequentiallyConsistent)
        stateWord.wake()
        do {
            let t = try OSThread(name: "vcpu\(index)") { [self] in runLoop() }
            thread.withLock { $0 = t }
        } catch {
            setState(.parked)
            throw error
        }
    }

    /// Asks the vCPU to leave KVM_RUN and wait. Returns at once; use
    /// `waitUntilQuiescent` to know it is out.
    public func requestPause() {
        request(VCPU.pauseRequest)
    }

    /// Lets a paused vCPU run again. Returns at once; `waitUntilResumed`
    /// waits for its thread to leave the paused state.
    public func resume() {
        requests.bitwiseAnd(~VCPU.pauseRequest, ordering: .sequentiallyConsistent)
        if posted.signalRequest() == .kick { kick() }
    }

    /// Waits until the vCPU is not paused (running again, or stopping or
    /// parked), or `timeoutNanoseconds` passed; returns whether it is.
    @discardableResult
    public func waitUntilResumed(timeoutNanoseconds: Int64 = .max) -> Bool {
        waitForState(timeoutNanoseconds: timeoutNanoseconds) { $0 != .paused }
    }

    /// Asks the vCPU thread to leave its run loop. Returns at once; `join()`
    /// waits for it. Safe to call from the vCPU's own thread (a guest's
    /// power-off write arrives there).
    public func requestStop() {
        request(VCPU.stopRequest)
    }

    private func request(_ bit: UInt32) {
        requests.bitwiseOr(bit, ordering: .sequentiallyConsistent)
        if posted.signalRequest() == .kick { kick() }
    }

    /// Whether the caller runs on this vCPU's own thread (which must not
    /// wait for the vCPU to stop).
    public var isOnOwnThread: Bool { thread.withLock { $0?.isCurrent ?? false } }

    /// Interrupts KVM_RUN on the vCPU's thread (see the type's discussion).
    public func kick() {
        thread.withLock { $0?.send(signal: VCPU.kickSignal) }
        kickCount.add(1, ordering: .relaxed)
    }

    /// Waits until the vCPU is out of KVM_RUN (paused, stopping or parked),
    /// or `timeoutNanoseconds` passed; returns whether it is.
    @discardableResult
    public func waitUntilQuiescent(timeoutNanoseconds: Int64 = .max) -> Bool {
        waitForState(timeoutNanoseconds: timeoutNanoseconds) { $0.isQuiescent }
    }

    /// Waits for the vCPU's thread to finish and parks the vCPU. Call after
    /// `requestStop()` (or after the run loop stopped on its own).
    public func join() {
        let t = thread.withLock { t in
            defer { t = nil }
            return t
        }
        guard let t else { return }
        t.join()
        setState(.parked)
    }

    private func waitForState(timeoutNanoseconds: Int64, _ done: (VCPUState) -> Bool) -> Bool {
        let deadline = timeoutNanoseconds == .max ? Int64.max : MonotonicClock.nanoseconds() + timeoutNanoseconds
        while true {
            let raw = stateWord.load()
            if done(VCPUState(rawValue: raw) ?? .absent) { return true }
            let now = MonotonicClock.nanoseconds()
            if now >= deadline { return false }
            stateWord.wait(whileEquals: raw, timeoutNanoseconds: deadline == .max ? nil : deadline - now)
        }
    }

    // MARK: The vCPU thread

    private func runLoop() {
        descriptor.bindKickToCurrentThread()
        // Only now can a kick be handled; one sent earlier is pending and is
        // delivered here, setting immediate_exit for the first KVM_RUN.
        _ = swl_kick_unblock_on_this_thread()
        setState(.running)
        defer {
            swl_kick_set_thread_run(nil)
            setState(.stopping)
        }
        do {
            try controller?.threadStarted()
            try loop()
        } catch {
            exitHandler.runFailed(error, on: self)
        }
    }

    private func loop() throws(SystemError) {
        var haltPoll = HaltPolling(limit: controller?.chip.haltPollLimit ?? 0)
        while true {
            if posted.hasRequest {
                posted.takeRequest()
                let pending = requests.load(ordering: .sequentiallyConsistent)
                if pending & VCPU.stopRequest != 0 { return }
                if pending & VCPU.pauseRequest != 0 {
                    // park() consumes the RQ flags that arrive while paused,
                    // so a stop that ended the pause is acted on here.
                    if park() == .stop { return }
                    continue
                }
            }
            if let controller {
                let decision = try controller.prepareEntry(descriptor, posted: posted)
                arbitration.store(controller.publishedPriority, ordering: .relaxed)
                if case .block(let deadline) = decision {
                    haltPoll.wait(on: posted, until: deadline)
                    continue
                }
            }
            guard posted.enterGuest() else { continue }
            let exit: VCPUExit
            do {
                exit = try descriptor.run()
            } catch {
                posted.leaveGuest()
                throw error
            }
            posted.leaveGuest()
            exitCount.add(1, ordering: .relaxed)
            try controller?.afterExit(descriptor)

            switch exit {
            case .interrupted:
                descriptor.clearImmediateExit()
                interruptionCount.add(1, ordering: .relaxed)
            case .portIO(let io):
                portIOExitCount.add(1, ordering: .relaxed)
                for i in 0..<io.count {
                    if io.isWrite {
                        portBus.write(UInt64(io.port), size: io.size, value: io.value(at: i))
                    } else {
                        io.setValue(portBus.read(UInt64(io.port), size: io.size), at: i)
                    }
                }
            case .mmio(let access):
                mmioExitCount.add(1, ordering: .relaxed)
                if try controller?.handleMMIO(access, vcpu: descriptor) == true { break }
                if access.isWrite {
                    mmioBus.write(access.address, size: access.size, value: access.value)
                } else {
                    access.complete(with: mmioBus.read(access.address, size: access.size))
                }
            case .halt where controller != nil:
                haltCount.add(1, ordering: .relaxed)
                try controller!.halt(descriptor)
            case .interruptWindowOpen where controller != nil:
                break  // the next prepareEntry injects
            case .msr(let access) where controller != nil:
                try controller!.handleMSR(access, vcpu: descriptor)
            default:
                if exitHandler.handleExit(exit, on: self) == .stop { return }
            }
        }
    }

    /// Paused: out of KVM_RUN, notifications suppressed (vectors collect in
    /// PIR), until the pause bit clears or a stop arrives; returns which.
    private func park() -> VCPUExitAction {
        setState(.paused)
        posted.suppressNotifications()
        while true {
            posted.takeRequest()
            let pending = requests.load(ordering: .sequentiallyConsistent)
            if pending & VCPU.stopRequest != 0 || pending & VCPU.pauseRequest == 0 { break }
            posted.block(requestsOnly: true)
        }
        posted.resumeNotifications()
        if requests.load(ordering: .sequentiallyConsistent) & VCPU.stopRequest != 0 { return .stop }
        setState(.running)
        return .resume
    }
}

/// Adaptive halt polling, after KVM's halt_poll_ns: before sleeping, spin
/// for a while in case the wakeup is about to come (a sleep and a wake cost
/// tens of microseconds); grow the window when a wakeup came soon after
/// the halt, shrink it when it did not.
struct HaltPolling {
    let limit: Int64
    private(set) var window: Int64 = 0
    static let start: Int64 = 10_000

    init(limit: Int64) { self.limit = max(0, limit) }

    mutating func wait(on posted: PostedInterruptDescriptor, until deadline: Int64?) {
        let begin = MonotonicClock.nanoseconds()
        if window > 0 {
            let pollEnd = min(begin + window, deadline ?? .max)
            while MonotonicClock.nanoseconds() < pollEnd {
                if posted.hasPendingWork { return }
            }
            if let deadline, MonotonicClock.nanoseconds() >= deadline { return }
        }
        posted.block(timeoutNanoseconds: deadline.map { max(0, $0 - MonotonicClock.nanoseconds()) })
        guard limit > 0 else { return }
        let slept = MonotonicClock.nanoseconds() - begin
        if slept <= limit {
            window = min(limit, max(window * 2, HaltPolling.start))
        } else {
            window /= 2
        }
    }
}

/// Counters a vCPU keeps about itself. Each is exact, but a snapshot is
/// not atomic across counters.
public struct VCPUStatistics: Sendable, Equatable {
    /// Returns from KVM_RUN, of every kind.
    public var exits: UInt64
    public var portIOExits: UInt64
    public var mmioExits: UInt64
    /// Returns from KVM_RUN because of a kick or another signal.
    public var interruptions: UInt64
    /// Kicks sent to this vCPU.
    public var kicksSent: UInt64
    /// HLT exits (userspace interrupt controller only).
    public var halts: UInt64
    /// Interrupts injected with KVM_INTERRUPT (userspace interrupt controller only).
    public var injections: UInt64
}

extension VCPU {
    public var statistics: VCPUStatistics {
        VCPUStatistics(exits: exitCount.load(ordering: .relaxed),
                       portIOExits: portIOExitCount.load(ordering: .relaxed),
                       mmioExits: mmioExitCount.load(ordering: .relaxed),
                       interruptions: interruptionCount.load(ordering: .relaxed),
                       kicksSent: kickCount.load(ordering: .relaxed),
                       halts: haltCount.load(ordering: .relaxed),
                       injections: controller?.injections.load(ordering: .relaxed) ?? 0)
    }
}

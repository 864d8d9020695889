import CSwiftlet
import Synchronization
import SwiftletDevices
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

/// One virtual CPU: its KVM descriptor, its dedicated OS thread and the small
/// state machine other threads use to pause, resume and stop it.
///
/// ## Requests and kicks
/// Another thread asks something of a vCPU by setting a bit in `requests`
/// and then kicking the vCPU thread with a real-time signal. The vCPU thread
/// checks `requests` each time around its loop, before entering KVM_RUN.
/// The signal handler sets `kvm_run.immediate_exit`, which closes the gap
/// between that check and the ioctl:
///
/// - signal before the check: the bit is already set (it is set before the
///   signal is sent), so the check sees it;
/// - signal between the check and KVM_RUN: immediate_exit is set, so KVM_RUN
///   returns EINTR at once and the loop checks again;
/// - signal during KVM_RUN: the ioctl returns EINTR.
///
/// immediate_exit is cleared only after KVM_RUN returned and before the next
/// check, so a kick arriving in between is seen by that check.
///
/// A paused vCPU sleeps on the `requests` futex word itself, so a resume (a
/// change of that word plus a futex wake) cannot be lost either.
public final class VCPU: Sendable, CustomStringConvertible {
    public let index: UInt32
    public let descriptor: VCPUDescriptor

    private let portBus: IOBus
    private let mmioBus: IOBus
    private let exitHandler: any VCPUExitHandler
    private let stateWord = FutexWord(VCPUState.parked.rawValue)
    private let requests = FutexWord(0)
    private let thread = Locked<OSThread?>(nil)
    // Counters live in the vCPU object itself: it is already in cache when
    // an exit is handled, so counting costs no extra memory traffic.
    private let exitCount = Atomic<UInt64>(0)
    private let portIOExitCount = Atomic<UInt64>(0)
    private let mmioExitCount = Atomic<UInt64>(0)
    private let interruptionCount = Atomic<UInt64>(0)
    private let kickCount = Atomic<UInt64>(0)

    /// Request bits.
    private static let pauseRequest: UInt32 = 1 << 0
    private static let stopRequest: UInt32 = 1 << 1

    /// The signal that kicks vCPU threads out of KVM_RUN, installed once per
    /// process before the first vCPU thread starts.
    private static let kickSignal: Int32 = {
        precondition(swl_kick_install_handler() == 0, "cannot install the vCPU kick signal handler")
        return swl_kick_signal_number()
    }()

    public init(descriptor: VCPUDescriptor, portBus: IOBus, mmioBus: IOBus, exitHandler: any VCPUExitHandler) {
        self.index = descriptor.id
        self.descriptor = descriptor
        self.portBus = portBus
        self.mmioBus = mmioBus
        self.exitHandler = exitHandler
    }

    public var description: String { "vCPU \(index)" }

    public var state: VCPUState { VCPUState(rawValue: stateWord.load()) ?? .absent }

    private func setState(_ new: VCPUState) {
        stateWord.store(new.rawValue)
        stateWord.wake()
    }

    // MARK: Control (any thread)

    /// Starts the vCPU's thread: parked → starting → running.
    public func start() throws(SystemError) {
        _ = VCPU.kickSignal
        let previous = stateWord.compareExchange(expected: VCPUState.parked.rawValue, desired: VCPUState.starting.rawValue)
        precondition(previous == VCPUState.parked.rawValue, "\(self) started while \(VCPUState(rawValue: previous)!)")
        requests.store(0)
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
        requests.clearBits(VCPU.pauseRequest)
        requests.wake()
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
        requests.setBits(bit)
        requests.wake()  // a paused vCPU sleeps on this word
        kick()
    }

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

        while true {
            let pending = requests.load()
            if pending & VCPU.stopRequest != 0 { return }
            if pending & VCPU.pauseRequest != 0 {
                park(while: pending)
                continue
            }

            let exit: VCPUExit
            do {
                exit = try descriptor.run()
            } catch {
                exitHandler.runFailed(error, on: self)
                return
            }
            exitCount.add(1, ordering: .relaxed)

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
                if access.isWrite {
                    mmioBus.write(access.address, size: access.size, value: access.value)
                } else {
                    access.complete(with: mmioBus.read(access.address, size: access.size))
                }
            default:
                if exitHandler.handleExit(exit, on: self) == .stop { return }
            }
        }
    }

    /// Paused: out of KVM_RUN until the pause bit clears or a stop arrives.
    private func park(while seen: UInt32) {
        setState(.paused)
        var current = seen
        while current & VCPU.pauseRequest != 0 && current & VCPU.stopRequest == 0 {
            requests.wait(whileEquals: current)
            current = requests.load()
        }
        if current & VCPU.stopRequest == 0 { setState(.running) }
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
}

extension VCPU {
    public var statistics: VCPUStatistics {
        VCPUStatistics(exits: exitCount.load(ordering: .relaxed),
                       portIOExits: portIOExitCount.load(ordering: .relaxed),
                       mmioExits: mmioExitCount.load(ordering: .relaxed),
                       interruptions: interruptionCount.load(ordering: .relaxed),
                       kicksSent: kickCount.load(ordering: .relaxed))
    }
}

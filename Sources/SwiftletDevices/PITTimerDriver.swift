import SwiftletSystem

/// Runs a `PIT8254`'s interrupts: one dedicated thread that sleeps until
/// counter 0's next rising edge, calls `serviceTimer()` then, and sleeps
/// again. The PIT wakes it early (a futex word) when the guest reprograms
/// counter 0 for an earlier edge. With counter 0 idle (not programmed,
/// stopped, or past its one-shot edge) the thread sleeps without a timeout:
/// no periodic wake-ups, no busy-waiting.
///
/// The PIT's clock must run at the rate of CLOCK_MONOTONIC (the default
/// is CLOCK_MONOTONIC), since the thread sleeps for the difference between
/// a deadline and that clock.
public final class PITTimerDriver: Sendable {
    private final class Worker: Sendable {
        let thread: OSThread
        let stopping: Locked<Bool>
        init(thread: OSThread, stopping: Locked<Bool>) {
            self.thread = thread
            self.stopping = stopping
        }
    }

    public let pit: PIT8254
    /// The running thread. Held across `start` and across the join in
    /// `stop`, so concurrent calls are serialized and each `stop` returns
    /// only once the thread has ended.
    private let worker = Locked<Worker?>(nil)

    public init(pit: PIT8254) {
        self.pit = pit
    }

    public var isRunning: Bool { worker.withLock { $0 != nil } }

    /// Starts the thread; does nothing if it is running.
    public func start() throws(SystemError) {
        try worker.withLock { (w) throws(SystemError) in
            guard w == nil else { return }
            let pit = pit
            let stopping = Locked(false)
            let thread = try OSThread(name: "swiftlet-pit") {
                PITTimerDriver.run(pit: pit, stopping: stopping)
            }
            w = Worker(thread: thread, stopping: stopping)
        }
    }

    /// Stops the thread and waits for it to end. Idempotent, and safe from
    /// any thread except the driver's own (which would wait for itself).
    public func stop() {
        worker.withLock { w in
            guard let running = w else { return }
            w = nil
            running.stopping.withLock { $0 = true }
            pit.scheduleChanged.add(1)
            pit.scheduleChanged.wake()
            running.thread.join()
        }
    }

    private static func run(pit: PIT8254, stopping: Locked<Bool>) {
        while true {
            // Read the word before looking at the PIT: a reprogramming (or a
            // stop) after this point changes it, so the wait below returns at
            // once instead of sleeping past the new deadline.
            let seen = pit.scheduleChanged.load()
            if stopping.withLock({ $0 }) { return }
            guard let deadline = pit.serviceTimer() else {
                pit.scheduleChanged.wait(whileEquals: seen)
                continue
            }
            let (left, overflow) = deadline.subtractingReportingOverflow(pit.currentTime())
            if overflow || left > 0 {
                pit.scheduleChanged.wait(whileEquals: seen, timeoutNanoseconds: overflow ? Int64.max : left)
            }
        }
    }
}

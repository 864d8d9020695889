import Glibc
import Synchronization
import Testing
@testable import SwiftletInterrupts
import SwiftletSystem

/// The no-lost-wakeup property under concurrency: posters race a vCPU that
/// moves between host, guest and blocked states at random. A lost
/// notification leaves the vCPU waiting in guest or blocked state while a
/// poster waits for its acknowledgement: the test hangs and its deadline
/// fails it.
@Suite struct PostedInterruptStressTests {
    final class Counter: Sendable {
        let value = Atomic<UInt64>(0)
        func add() { value.add(1, ordering: .sequentiallyConsistent) }
        var count: UInt64 { value.load(ordering: .sequentiallyConsistent) }
    }

    final class Harness: @unchecked Sendable {
        let descriptor = PostedInterruptDescriptor()
        let kicked = Atomic<Bool>(false)   // the simulated KVM_RUN exits when set
        let received: [Counter]      // per poster, acknowledged events
        let sent: [Counter]
        let done = Atomic<Bool>(false)
        let kicks = Atomic<UInt64>(0)
        let wakes = Atomic<UInt64>(0)
        let silentPosts = Atomic<UInt64>(0)
        /// Vectors 32... are shared out, `window` per poster: a poster reuses
        /// a vector only after its previous event on it was received.
        let window: Int
        init(posters: Int, window: Int) {
            self.window = window
            received = (0..<posters * window).map { _ in Counter() }
            sent = (0..<posters * window).map { _ in Counter() }
        }
    }

    /// Returns how many posts had to kick the vCPU and how many woke it.
    @discardableResult
    func run(posters: Int, window: Int, eventsPerPoster: UInt64, hostPolling: Bool = true) throws -> (kicks: UInt64, wakes: UInt64) {
        let h = Harness(posters: posters, window: window)
        // The vCPU.
        let vcpu = try OSThread(name: "vcpu") {
            var rng = SystemRandomNumberGenerator()
            func consume() {
                let work = h.descriptor.takePosted()
                for vector in 32...255 where work.vectors.contains(UInt8(vector)) {
                    h.received[vector - 32].add()
                }
            }
            while !h.done.load(ordering: .sequentiallyConsistent) {
                consume()
                switch Int.random(in: 0..<(hostPolling ? 3 : 2), using: &rng) {
                case 0:
                    // Guest: stay until kicked, like KVM_RUN without exits.
                    guard h.descriptor.enterGuest() else { continue }
                    while !h.kicked.exchange(false, ordering: .sequentiallyConsistent) {
                        if h.done.load(ordering: .relaxed) { break }
                    }
                    h.descriptor.leaveGuest()
                case 1:
                    // HLT.
                    h.descriptor.block()
                    h.descriptor.takeRequest()
                default:
                    // Host work between exits.
                    for _ in 0..<Int.random(in: 0..<50, using: &rng) { _ = h.descriptor.mode }
                }
            }
        }
        var threads: [OSThread] = []
        for p in 0..<posters {
            threads.append(try OSThread(name: "poster\(p)") {
                for n in 0..<eventsPerPoster {
                    let slot = p * window + Int(n % UInt64(window))
                    let round = n / UInt64(window)
                    // The previous event on this vector must have arrived,
                    // so that no two events coalesce in PIR.
                    while h.received[slot].count < round { sched_yield() }
                    if !hostPolling {
                        // Post only once the vCPU has gone back into the
                        // guest or to sleep (it does at once, and stays until
                        // notified), so that this post must notify it.
                        var spins = 0
                        while h.descriptor.mode == .host && spins < 1_000_000 { spins += 1 }
                    }
                    let vector = UInt8(32 + slot)
                    h.sent[slot].add()
                    switch h.descriptor.post(vector) {
                    case .kick:
                        h.kicks.add(1, ordering: .relaxed)
                        h.kicked.store(true, ordering: .sequentiallyConsistent)
                    case .woken: h.wakes.add(1, ordering: .relaxed)
                    case .none: h.silentPosts.add(1, ordering: .relaxed)
                    }
                }
            })
        }
        let finished = Latch()
        let posterThreads = threads
        let watchdog = try OSThread(name: "watchdog") {
            for t in posterThreads { t.join() }
            finished.signal()
        }
        var completed = finished.wait(timeoutNanoseconds: 600_000_000_000)
        // The posters are done once their last event is *posted*; the vCPU
        // must still take the last ones (their notifications are already
        // out) before it is told to finish.
        let total = UInt64(posters) * eventsPerPoster
        let deadline = MonotonicClock.nanoseconds() + 60_000_000_000
        while completed && h.received.reduce(0, { $0 + $1.count }) < total {
            if MonotonicClock.nanoseconds() > deadline { completed = false }
            sched_yield()
        }
        h.done.store(true, ordering: .sequentiallyConsistent)
        _ = h.descriptor.signalRequest()
        h.kicked.store(true, ordering: .sequentiallyConsistent)
        #expect(completed, "a wakeup was lost: the vCPU never saw an event")
        guard completed else { return (0, 0) }
        watchdog.join()
        vcpu.join()
        let sent = h.sent.reduce(0) { $0 + $1.count }
        let received = h.received.reduce(0) { $0 + $1.count }
        #expect(sent == UInt64(posters) * eventsPerPoster)
        #expect(received == sent)
        print("posted \(sent): \(h.kicks.load(ordering: .relaxed)) kicks, \(h.wakes.load(ordering: .relaxed)) wakes, \(h.silentPosts.load(ordering: .relaxed)) without notification")
        return (h.kicks.load(ordering: .relaxed), h.wakes.load(ordering: .relaxed))
    }

    /// 10^6 events from four posters, each keeping a few in flight.
    @Test func noLostWakeupsUnderLoad() throws {
        try run(posters: 4, window: 4, eventsPerPoster: 250_000)
    }

    /// One poster, one event in flight, and a vCPU that never polls: after
    /// consuming it goes straight back into the guest or to sleep, and the
    /// poster posts only once it is there, so each post must notify it and
    /// every notification is on the critical path.
    @Test func noLostWakeupsWhenEveryPostMustNotify() throws {
        let events: UInt64 = 20_000
        let notified = try run(posters: 1, window: 1, eventsPerPoster: events, hostPolling: false)
        // Each post waits until the vCPU is in the guest or asleep, where
        // only a notification gets it out; a few may still find it in VMM
        // code (the wait is bounded). Both paths must have run.
        #expect(notified.kicks + notified.wakes > events * 9 / 10, "posts that should have notified did not")
        #expect(notified.kicks > 0, "no post had to kick the vCPU out of the guest")
        #expect(notified.wakes > 0, "no post had to wake the blocked vCPU")
    }
}

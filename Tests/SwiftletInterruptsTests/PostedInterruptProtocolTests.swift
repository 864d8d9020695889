import Glibc
import Testing
@testable import SwiftletInterrupts
import SwiftletSystem

/// The interleavings the protocol rules out, one by one.
@Suite struct PostedInterruptProtocolTests {
    func vectors(_ d: PostedInterruptDescriptor) -> [Int] {
        let work = d.takePosted()
        return (0...255).filter { work.vectors.contains(UInt8($0)) }
    }

    @Test func onlyThePosterThatSetsONNotifies() {
        let d = PostedInterruptDescriptor()
        #expect(d.enterGuest())
        #expect(d.post(0x30) == .kick)
        #expect(d.post(0x31) == .none, "ON already set: the first notification covers it")
        #expect(d.post(0xff) == .none)
        d.leaveGuest()
        #expect(vectors(d) == [0x30, 0x31, 0xff])
        #expect(!d.hasPendingWork)
    }

    @Test func postsWhileInTheVMMNeedNoNotification() {
        let d = PostedInterruptDescriptor()
        #expect(d.post(0x40) == .none)
        #expect(d.hasPendingWork)
        // ... and the vCPU cannot enter the guest without seeing them.
        #expect(!d.enterGuest())
        #expect(vectors(d) == [0x40])
        #expect(d.enterGuest())
    }

    @Test func aPostBeforeBlockingPreventsTheSleep() {
        let d = PostedInterruptDescriptor()
        _ = d.post(0x50)
        let start = MonotonicClock.nanoseconds()
        d.block(timeoutNanoseconds: 5_000_000_000)
        #expect(MonotonicClock.nanoseconds() - start < 1_000_000_000, "slept although a vector was pending")
        #expect(d.mode == .host)
        #expect(vectors(d) == [0x50])
    }

    @Test func aPostWakesABlockedVCPU() throws {
        let d = PostedInterruptDescriptor()
        let woke = Latch()
        let vcpu = try OSThread(name: "blocked") {
            d.block()
            woke.signal()
        }
        while d.mode != .blocked { sched_yield() }
        #expect(d.post(0x60) == .woken)
        #expect(woke.wait(timeoutNanoseconds: 5_000_000_000))
        vcpu.join()
        #expect(vectors(d) == [0x60])
    }

    @Test func requestsWakeABlockedVCPUEvenWhenSuppressed() throws {
        let d = PostedInterruptDescriptor()
        d.suppressNotifications()
        let woke = Latch()
        let vcpu = try OSThread(name: "blocked") {
            d.block()
            woke.signal()
        }
        while d.mode != .blocked { sched_yield() }
        #expect(d.post(0x70) == .none, "suppressed: the vector waits in PIR")
        #expect(!woke.wait(timeoutNanoseconds: 100_000_000))
        #expect(d.signalRequest() == .woken)
        #expect(woke.wait(timeoutNanoseconds: 5_000_000_000))
        vcpu.join()
        d.takeRequest()
        #expect(d.hasPostedVectors)
        d.resumeNotifications()
        #expect(vectors(d) == [0x70])
    }

    @Test func blockingTimesOut() {
        let d = PostedInterruptDescriptor()
        let start = MonotonicClock.nanoseconds()
        d.block(timeoutNanoseconds: 20_000_000)
        let elapsed = MonotonicClock.nanoseconds() - start
        #expect(elapsed >= 20_000_000 && elapsed < 2_000_000_000)
        #expect(d.mode == .host)
    }

    @Test func aVectorPostedAfterItsWordWasReadIsSeenNextTime() {
        // Consumer clears ON, then reads PIR; a post in between sets ON again.
        let d = PostedInterruptDescriptor()
        _ = d.post(1)
        _ = d.takePosted()
        _ = d.post(2)
        #expect(d.hasPendingWork)
        #expect(vectors(d) == [2])
    }

    @Test func levelTriggeredVectorsKeepTheirTriggerMode() {
        let d = PostedInterruptDescriptor()
        _ = d.post(0x41, levelTriggered: true)
        _ = d.post(0x42)
        let work = d.takePosted()
        #expect(work.vectors == VectorSet([0x41, 0x42]))
        #expect(work.levelTriggered == VectorSet([0x41]))
        #expect(d.takePosted().isEmpty)
    }

    @Test func eventsArriveInTheOrderTheyApply() {
        let d = PostedInterruptDescriptor()
        #expect(d.enterGuest())
        #expect(d.post(.startup(vector: 0x08)) == .kick)
        #expect(d.post(.nmi) == .none)
        #expect(d.post(.initialize) == .none)
        d.leaveGuest()
        #expect(d.takePosted().events == [.initialize, .startup(vector: 0x08), .nmi])
        _ = d.post(.startup(vector: 0x10))
        _ = d.post(.startup(vector: 0x20))
        #expect(d.takePosted().events == [.startup(vector: 0x20)], "the last SIPI's vector, not a mix")
    }
}

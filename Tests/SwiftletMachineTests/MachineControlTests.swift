import Glibc
import Synchronization
import Testing
import Swiftlet
import SwiftletSystem
import SwiftletTestSupport
import SwiftletVCPU

/// Pausing, resuming and stopping a running VM, with the `spin` guest
/// keeping every vCPU busy exiting (each write to port 0x80 is an exit).
@Suite(.enabled(if: KVMTestSupport.isAvailable, KVMTestSupport.reason))
struct MachineControlTests {
    @Test(arguments: InterruptControllerMode.allCases, [1, 3])
    func pauseHoldsEveryVCPUAndResumeLetsThemRun(irqchip: InterruptControllerMode, cpus: Int) throws {
        let run = try runGuest("spin", cpus: cpus, irqchip: irqchip) { machine, console in
            try waitForOutput(console, containing: "spin: \(cpus) CPUs spinning")
            machine.pause()
            #expect(machine.vcpus.allSatisfy { $0.state == .paused })
            let before = machine.postCode.writeCount
            usleep(100_000)
            #expect(machine.postCode.writeCount == before, "a paused VM made progress")

            machine.resume()
            let deadline = MonotonicClock.nanoseconds() + 10_000_000_000
            while machine.postCode.writeCount < before + 100 && MonotonicClock.nanoseconds() < deadline { usleep(1_000) }
            #expect(machine.postCode.writeCount >= before + 100, "the VM did not run again after resume")
            #expect(machine.vcpus.allSatisfy { $0.state == .running })
            machine.stop(reason: "test done")
        }
        #expect(run.exit == .stopped(reason: "test done"))
        #expect(run.machine.vcpus.allSatisfy { $0.state == .parked })
        // Every vCPU ran. (Kicks are not counted on: a request that finds
        // the vCPU outside KVM_RUN needs none.)
        for vcpu in run.machine.vcpus {
            #expect(vcpu.statistics.portIOExits > 0)
        }
    }

    @Test(arguments: InterruptControllerMode.allCases)
    func stopWhilePaused(irqchip: InterruptControllerMode) throws {
        let run = try runGuest("spin", cpus: 2, irqchip: irqchip) { machine, console in
            try waitForOutput(console, containing: "spin: 2 CPUs spinning")
            machine.pause()
            machine.stop(reason: "stopped while paused")
        }
        #expect(run.exit == .stopped(reason: "stopped while paused"))
        #expect(run.machine.vcpus.allSatisfy { $0.state == .parked })
    }

    @Test func theFirstEndingWins() throws {
        let run = try runGuest("spin") { machine, console in
            try waitForOutput(console, containing: "spin: 1 CPUs spinning")
            machine.stop(reason: "first")
            machine.stop(reason: "second")
        }
        #expect(run.exit == .stopped(reason: "first"))
    }

    /// Controllers racing each other and the end of the VM: no hang, no
    /// crash, and every vCPU ends parked.
    @Test(arguments: InterruptControllerMode.allCases)
    func racingPauseResumeAndStop(irqchip: InterruptControllerMode) throws {
        let run = try runGuest("spin", cpus: 3, irqchip: irqchip, timeout: 120) { machine, console in
            try waitForOutput(console, containing: "spin: 3 CPUs spinning")
            let done = Atomic<Bool>(false)
            var threads: [OSThread] = []
            for i in 0..<4 {
                threads.append(try OSThread(name: "racer\(i)") {
                    while !done.load(ordering: .relaxed) {
                        if i % 2 == 0 { machine.pause() } else { machine.resume() }
                    }
                })
            }
            usleep(300_000)
            machine.stop(reason: "stopped mid-race")
            done.store(true, ordering: .relaxed)
            for t in threads { t.join() }
        }
        #expect(run.exit == .stopped(reason: "stopped mid-race"))
        #expect(run.machine.vcpus.allSatisfy { $0.state == .parked })
    }

    /// A library user runs many VMs one after another: once a machine has
    /// ended and its owner lets go of it, the machine, its vCPUs and the
    /// KVM objects behind them are freed (fds closed, kvm_run unmapped),
    /// in both irqchip modes and with hot-pluggable CPUs parked.
    @Test(arguments: InterruptControllerMode.allCases)
    func anEndedMachineIsFreed(irqchip: InterruptControllerMode) throws {
        weak var machine: Machine?
        weak var vcpu: VCPU?
        try {
            let run = try runSpinGuestAndStop(cpus: 2, maxCPUs: 3, irqchip: irqchip, reason: "test done")
            #expect(run.exit == .stopped(reason: "test done"))
            machine = run.machine
            vcpu = run.machine.vcpus.last
        }()
        #expect(machine == nil, "the ended machine is still referenced")
        #expect(vcpu == nil, "a vCPU of the ended machine is still referenced")
    }

    /// Letting go of a running machine stops it: the vCPU threads are
    /// joined and everything is freed, rather than the guest running on
    /// with no owner.
    @Test func aMachineReleasedWhileRunningIsStoppedAndFreed() throws {
        weak var vcpu: VCPU?
        try {
            let configuration = try guestConfiguration("spin", cpus: 2)
            guard case .capture(let console) = configuration.serial else {
                throw TestSetupError("guestConfiguration did not capture the console")
            }
            let machine = try Machine(configuration)
            try machine.start()
            try waitForOutput(console, containing: "spin: 2 CPUs spinning")
            vcpu = machine.vcpus.last
        }()
        #expect(vcpu == nil, "a vCPU of the released machine is still referenced (its thread still runs?)")
    }
}

import Glibc
import Synchronization
import Testing
import Swiftlet
import SwiftletSystem
import SwiftletTestSupport
import SwiftletVCPU

/// Long runs that count the process's threads and file descriptors, so
/// they run in a test process of their own (`scripts/test` runs this
/// target separately): concurrent tests would change the counts.
@Suite(.enabled(if: KVMTestSupport.isAvailable, KVMTestSupport.reason), .serialized)
struct VCPUSoakTests {
    /// 10,000 forced add/remove cycles of CPUs the guest is not told
    /// about, while two threads send interrupts to every present vCPU. CPU 0
    /// stays and counts what it gets; the others come and go. Afterwards:
    /// the vCPU threads and kvm_run mappings are gone, no file descriptor more
    /// (the parked vCPUs' were there from the start), every removed VCPU object was freed,
    /// and CPU 0 got every interrupt sent to it.
    @Test(arguments: InterruptControllerMode.allCases)
    func soakAddRemoveWhileInterruptsArePosted(irqchip: InterruptControllerMode) throws {
        let cycles = getenv("SWIFTLET_SOAK_CYCLES").flatMap { Int(String(cString: $0)) } ?? 10_000
        var configuration = try guestConfiguration("hotplug", irqchip: irqchip)
        configuration.maxCPUs = 4
        let sentToCPU0 = Atomic<UInt64>(0)
        let freed = Atomic<Int>(0)
        let resources = Locked<(before: ProcessResources, after: ProcessResources)?>(nil)
        let run = try runGuest(configuration: configuration, timeout: 1500) { machine, console in
            try waitForOutput(console, containing: "hotplug: ready")
            let before = ProcessResources.current()
            let done = Atomic<Bool>(false)
            // CPU 0's interrupts rotate over 64 vectors, 5 ms apart: well
            // below what its handler (emulated kernel code on a PVM host)
            // keeps up with, and two of the same vector are 320 ms apart, so
            // none can coalesce in its IRR unless CPU 0 stalls that long.
            let toCPU0 = try OSThread(name: "poster0") {
                var n: UInt64 = 0
                while !done.load(ordering: .relaxed) {
                    if (try? machine.sendInterrupt(vector: UInt8(0x50 + n % 64), toAPICID: 0)) != nil {
                        sentToCPU0.add(1, ordering: .relaxed)
                    }
                    n += 1
                    usleep(5_000)
                }
            }
            // The others get interrupts the guest never handles (they never
            // run guest code): the point is delivery racing removal.
            let toOthers = try OSThread(name: "poster1") {
                while !done.load(ordering: .relaxed) {
                    machine.vcpuRegistry.forEach { vcpu in
                        if vcpu.index != 0 { _ = try? machine.sendInterrupt(vector: 0x44, toAPICID: vcpu.index) }
                    }
                    usleep(100)
                }
            }
            for cycle in 0..<cycles {
                let index = 1 + cycle % 3
                try machine.hotAddVCPU(index, notifyGuest: false)
                weak var removed = machine.vcpuRegistry.read { $0[index] }
                try machine.hotRemoveVCPU(index)
                if removed == nil { freed.add(1, ordering: .relaxed) }
            }
            done.store(true, ordering: .relaxed)
            toCPU0.join()
            toOthers.join()
            resources.withLock { $0 = (before, ProcessResources.current()) }
            usleep(100_000)  // the last interrupts reach CPU 0
            typeIntoSerial("done\n", of: machine)
        }
        #expect(run.exit == .debugExit(code: 0x10), "\(run.output)")
        let (before, after) = try #require(resources.withLock { $0 })
        print("soak (\(irqchip)): \(cycles) cycles, \(sentToCPU0.load(ordering: .relaxed)) interrupts to CPU 0; \(before) → \(after)")
        #expect(freed.load(ordering: .relaxed) == cycles, "a removed vCPU object outlived its removal")
        #expect(after.vcpuThreads == before.vcpuThreads, "vCPU threads left behind")
        #expect(after.vcpuMappings == before.vcpuMappings, "kvm_run areas left mapped")
        // The 3 hot-pluggable vCPUs were created (and parked) at start.
        #expect(after.fileDescriptors == before.fileDescriptors, "file descriptors leaked")
        let line = run.lines.first { $0.hasPrefix("hotplug: done:") } ?? ""
        #expect(line.hasSuffix(", \(sentToCPU0.load(ordering: .relaxed)) host"), "\(line): CPU 0 lost interrupts")
    }

    /// A library user runs VMs one after another: 25 machines per irqchip
    /// mode (2 vCPUs and a parked spare each), every one released once it
    /// ended, leave the process with no more threads, file descriptors or
    /// memory mappings than it had.
    @Test(arguments: InterruptControllerMode.allCases)
    func machinesRunOneAfterAnotherReleaseEverything(irqchip: InterruptControllerMode) throws {
        func runOne() throws {
            let run = try runSpinGuestAndStop(cpus: 2, maxCPUs: 3, irqchip: irqchip, reason: "next")
            #expect(run.exit == .stopped(reason: "next"))
        }
        // The first run creates what the process keeps for good (the
        // runtime's own threads, /dev/kvm's first use).
        try runOne()
        let before = ProcessResources.current()
        let mappingsBefore = ProcessResources.mappingCount()
        for _ in 0..<25 { try runOne() }
        let after = ProcessResources.current()
        #expect(after.vcpuThreads == before.vcpuThreads, "vCPU threads left behind: \(before) -> \(after)")
        #expect(after.vcpuMappings == before.vcpuMappings, "kvm_run areas left mapped: \(before) -> \(after)")
        #expect(after.fileDescriptors == before.fileDescriptors, "file descriptors leaked: \(before) -> \(after)")
        #expect(ProcessResources.mappingCount() <= mappingsBefore + 4,
                "guest memory left mapped: \(mappingsBefore) -> \(ProcessResources.mappingCount()) mappings")
    }
}

import Glibc
import Synchronization
import Testing
import Swiftlet
import SwiftletDevices
import SwiftletSystem
import SwiftletTestSupport
import SwiftletVCPU

/// Hot-add and hot-remove with a running guest (`Guests/hotplug.c`), which
/// learns about changes through the ACPI CPU hot-plug registers, starts
/// added CPUs with INIT/SIPI, runs work on them, and ejects CPUs the host
/// asks it to give up.
@Suite(.enabled(if: KVMTestSupport.isAvailable, KVMTestSupport.reason))
struct VCPUHotplugTests {
    static let success = MachineExit.debugExit(code: 0x10)

    static func configuration(irqchip: InterruptControllerMode, cpus: Int = 1, maxCPUs: Int = 4) throws -> MachineConfiguration {
        var configuration = try guestConfiguration("hotplug", cpus: cpus, irqchip: irqchip)
        configuration.maxCPUs = maxCPUs
        return configuration
    }

    static func state(of index: Int, in machine: Machine) -> VCPUState? {
        machine.vcpuSlots.first { $0.index == index }?.state
    }

    @Test(arguments: InterruptControllerMode.allCases)
    func guestRunsWorkOnAddedCPUsAndEjectsRemovedOnes(irqchip: InterruptControllerMode) throws {
        let run = try runGuest(configuration: Self.configuration(irqchip: irqchip), timeout: 120) { machine, console in
            try waitForOutput(console, containing: "hotplug: ready")
            // Reserved at start: created, configured and parked.
            #expect(Self.state(of: 2, in: machine) == .parked)
            try machine.hotAddVCPU(2)
            try machine.hotAddVCPU(3)
            try waitForOutput(console, containing: "hotplug: cpu 2 online work=1000")
            try waitForOutput(console, containing: "hotplug: cpu 3 online work=1000")
            #expect(machine.vcpus.map(\.index) == [0, 2, 3])
            #expect(Self.state(of: 2, in: machine) == .running)

            try machine.requestVCPUEject(2)
            try waitForOutput(console, containing: "hotplug: cpu 2 ejected")
            // The eject completed inside the guest's register write.
            #expect(Self.state(of: 2, in: machine) == .parked)
            #expect(machine.vcpus.map(\.index) == [0, 3])

            // Back again, on the parked KVM vCPU.
            try machine.hotAddVCPU(2)
            try waitForOutput(console, of: machine, timeout: 30) { $0.components(separatedBy: "hotplug: cpu 2 online work=1000").count == 3 }
            #expect(machine.vcpus.map(\.index) == [0, 2, 3])
            typeIntoSerial("done\n", of: machine)
        }
        #expect(run.exit == Self.success, "\(run.output)")
        #expect(run.lines.contains { $0.hasPrefix("hotplug: done: 3 online, 1 ejected") }, "\(run.output)")
        #expect(run.machine.vcpus.allSatisfy { $0.state == .parked })
    }

    @Test func requestsThatCannotBeHonouredAreRefused() throws {
        let run = try runGuest(configuration: Self.configuration(irqchip: .kernel), timeout: 60) { machine, console in
            try waitForOutput(console, containing: "hotplug: ready")
            #expect(throws: VCPUHotplugError.bootCPU) { try machine.hotRemoveVCPU(0) }
            #expect(throws: VCPUHotplugError.bootCPU) { try machine.requestVCPUEject(0) }
            #expect(throws: VCPUHotplugError.outOfRange(index: 4, maxCPUs: 4)) { try machine.hotAddVCPU(4) }
            #expect(throws: VCPUHotplugError.outOfRange(index: -1, maxCPUs: 4)) { try machine.hotAddVCPU(-1) }
            #expect(throws: VCPUHotplugError.alreadyPresent(index: 0)) { try machine.hotAddVCPU(0) }
            #expect(throws: VCPUHotplugError.notPresent(index: 3)) { try machine.hotRemoveVCPU(3) }
            machine.pause()
            #expect(throws: VCPUHotplugError.notRunning("paused")) { try machine.hotAddVCPU(1) }
            machine.resume()
            typeIntoSerial("done\n", of: machine)
        }
        #expect(run.exit == Self.success, "\(run.output)")
        #expect(throws: VCPUHotplugError.notRunning("ending")) { try run.machine.hotAddVCPU(1) }
    }

    @Test func aVMWithoutSpareCPUsHasNoHotplugInterface() throws {
        let run = try runGuest("spin", cpus: 2) { machine, console in
            try waitForOutput(console, containing: "spin: 2 CPUs spinning")
            #expect(throws: VCPUHotplugError.noHotplugInterface) { try machine.requestVCPUEject(1) }
            // A forced removal needs no guest cooperation.
            try machine.hotRemoveVCPU(1)
            #expect(machine.vcpus.map(\.index) == [0])
            machine.stop(reason: "test done")
        }
        #expect(run.exit == .stopped(reason: "test done"))
    }
}

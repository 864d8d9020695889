import Glibc
import Testing
import Swiftlet
import SwiftletDevices
import SwiftletKVM
import SwiftletMemory
import SwiftletVCPU
import SwiftletTestSupport

/// Each test guest in Guests/ run in-process; assertions are on what the
/// guest printed and how the VM ended.
@Suite(.enabled(if: KVMTestSupport.isAvailable, KVMTestSupport.reason))
struct GuestTests {
    /// Test guests report success by writing 0x10 to debug exit.
    static let success = MachineExit.debugExit(code: 0x10)

    @Test func hello() throws {
        let run = try runGuest("hello")
        #expect(run.exit == Self.success)
        #expect(run.lines == ["hello from the Swiftlet test guest"])
        #expect(run.exit.exitStatus == 33)
    }

    @Test func firmwareConfigReportsTheMachine() throws {
        let run = try runGuest("fwcfg", cpus: 3, memoryMiB: 64, commandLine: "console=ttyS0 answer=42")
        #expect(run.exit == Self.success)
        #expect(run.lines.contains("fwcfg: signature \"QEMU\", features 0x1"))
        #expect(run.lines.contains("fwcfg: ram 64 MiB"))
        #expect(run.lines.contains("fwcfg: cpus 3, max cpus 3"))
        #expect(run.lines.contains("fwcfg: cmdline \"console=ttyS0 answer=42\""))
        #expect(run.lines.contains("fwcfg: initrd 0 bytes, sum 0x00000000, head \"\""))
        // Five e820 entries: low RAM, the legacy hole split by the ACPI
        // tables, and RAM from 1 MiB.
        #expect(run.lines.contains("fwcfg: file \"etc/e820\" size 100 select 0x20"))
    }

    @Test(arguments: InterruptControllerMode.allCases, [1, 2, 4])
    func smpBringsUpEveryApplicationProcessor(irqchip: InterruptControllerMode, cpus: Int) throws {
        let run = try runGuest("smp", cpus: cpus, irqchip: irqchip)
        #expect(run.exit == Self.success, "\(run.output)")
        #expect(run.lines.contains("smp: \(cpus) of \(cpus) CPUs online"))
        for apic in 1..<cpus {
            #expect(run.lines.contains("smp: AP with APIC ID \(apic) online"))
        }
    }

    /// APIC IDs beyond 8 bits: 300 vCPUs, the guest starts only APIC ID
    /// 299 (x2APIC mode, INIT/SIPI by 32-bit ID), and the host's interrupt
    /// to APIC ID 299 reaches it. With the in-kernel irqchip that MSI needs
    /// KVM_CAP_X2APIC_API (destination bits 8-31 in address_hi); without it
    /// KVM would deliver to APIC ID 299 & 0xff.
    @Test(arguments: InterruptControllerMode.allCases)
    func hostInterruptReachesAPICID299(irqchip: InterruptControllerMode) throws {
        let run = try runGuest("x2apic", cpus: 300, irqchip: irqchip, timeout: 120) { machine, console in
            try waitForOutput(console, containing: "x2apic: CPU 299 ready", timeout: 60)
            try machine.sendInterrupt(vector: 0x40, toAPICID: 299)
        }
        #expect(run.exit == Self.success, "\(run.output)")
        #expect(run.lines.contains("x2apic: CPU 299 got vector 0x40 from the host"), "\(run.output)")
    }

    @Test(arguments: InterruptControllerMode.allCases)
    func timersInterrupt(irqchip: InterruptControllerMode) throws {
        let run = try runGuest("timer", irqchip: irqchip)
        #expect(run.exit == Self.success, "\(run.output)")
        #expect(run.lines.contains("timer: lapic periodic: 10 ticks"))
        #expect(run.lines.contains { $0.hasPrefix("timer: lapic one-shot: 1 tick") })
        #expect(run.lines.contains("timer: pit: 5 ticks on IOAPIC pin 0"))
    }

    @Test(arguments: InterruptControllerMode.allCases)
    func userModeRunsAndTakesInterrupts(irqchip: InterruptControllerMode) throws {
        let run = try runGuest("usermode", irqchip: irqchip)
        #expect(run.exit == Self.success, "\(run.output)")
        #expect(run.lines.contains { $0.hasPrefix("usermode: hello from CPL 3") })
        #expect(run.lines.contains { $0.hasPrefix("usermode: back at CPL 0, result ok") })
    }

    @Test func unclaimedAccessesReadAllOnesAndAreCounted() throws {
        let run = try runGuest("unclaimed")
        #expect(run.exit == Self.success, "\(run.output)")
        #expect(run.lines.contains("unclaimed: port 0x2f8 inb 0xff inw 0xffff inl 0xffffffff"))
        #expect(run.lines.contains("unclaimed: mmio 0xd0001000 read32 0xffffffff"))
        #expect(run.machine.portBus.unclaimedReads >= 5)
        #expect(run.machine.portBus.unclaimedWrites >= 1)
        #expect(run.machine.mmioBus.unclaimedReads >= 2)
        #expect(run.machine.mmioBus.unclaimedWrites >= 1)
    }

    /// Interrupt-driven receive: IRQ 4 through the IOAPIC (pin 4) to the
    /// guest's handler, in both interrupt-controller modes.
    @Test(arguments: InterruptControllerMode.allCases)
    func serialReceiveInterrupts(irqchip: InterruptControllerMode) throws {
        let run = try runGuest("serial", irqchip: irqchip) { machine, console in
            try waitForOutput(console, containing: "serial: waiting for input")
            typeIntoSerial("ping\n", of: machine)
        }
        #expect(run.exit == Self.success, "\(run.output)")
        #expect(run.lines.contains("got: ping"))
        #expect(run.lines.contains { $0.hasPrefix("serial: ") && $0.hasSuffix("receive interrupts") && !$0.contains(" 0 receive") })
        #expect(run.lines.filter { $0.hasSuffix(": ok") }.count == 6)
    }

    @Test func powerOffEndsWithStatusZero() throws {
        let run = try runGuest("poweroff")
        #expect(run.exit == .poweredOff)
        #expect(run.exit.exitStatus == 0)
    }

    @Test(arguments: ["i8042", "reset"])
    func resetRequestsEndTheVM(guest: String) throws {
        let run = try runGuest(guest)
        #expect(run.exit == .resetRequested, "\(run.output)")
        #expect(run.exit.exitStatus == 4)
    }

    @Test func i8042SelfTest() throws {
        let run = try runGuest("i8042")
        #expect(run.lines.contains("i8042: self-test 0x55"))
    }

    @Test func tripleFaultIsDiagnosed() throws {
        let run = try runGuest("triple-fault")
        guard case .crashed(let d) = run.exit else {
            Issue.record("expected a crash, got \(run.exit)")
            return
        }
        #expect(d.kind == .tripleFault)
        #expect(d.cpl == 0)
        #expect(d.cr0 & 0x8000_0001 == 0x8000_0001, "paging and protection on")
        #expect(d.efer & 0x500 == 0x500, "long mode")
        #expect(d.instructionBytes?.prefix(2) == [0x0f, 0x0b], "stopped at ud2")
        #expect(run.exit.exitStatus == 8)
    }

    @Test func executingFromTheMMIOHoleIsAnEmulationFailure() throws {
        let run = try runGuest("emulation-failure")
        guard case .crashed(let d) = run.exit else {
            Issue.record("expected a crash, got \(run.exit)")
            return
        }
        #expect(d.kind == .internalError)
        #expect(d.rip == 0xd000_0000)
        #expect(d.instructionBytes == nil, "nothing to read where there is no memory")
        #expect(run.exit.exitStatus == 10)
    }

    /// An initrd reaches the guest through fw_cfg (ELF64 entry) and as
    /// Multiboot module 0, with the same bytes.
    @Test func initrdThroughFirmwareConfigAndMultiboot() throws {
        let contents = Array("swiftlet initrd!".utf8) + (0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let path = "/tmp/swiftlet-test-initrd-\(getpid()).img"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        #expect(fd >= 0)
        _ = contents.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        defer { unlink(path) }
        let sum = contents.reduce(UInt32(0)) { $0 &+ UInt32($1) }
        let hex = String(sum, radix: 16)
        let sumText = String(repeating: "0", count: 8 - hex.count) + hex

        let viaFirmware = try runGuest("fwcfg", initrdPath: path)
        #expect(viaFirmware.exit == Self.success, "\(viaFirmware.output)")
        #expect(viaFirmware.lines.contains("fwcfg: initrd \(contents.count) bytes, sum 0x\(sumText), head \"swiftlet initrd!\""))

        let viaMultiboot = try runGuest("multiboot-info", initrdPath: path)
        #expect(viaMultiboot.exit == Self.success, "\(viaMultiboot.output)")
        #expect(viaMultiboot.lines.contains("multiboot-info: 1 modules"))
        #expect(viaMultiboot.lines.contains { $0.hasPrefix("multiboot-info: module 0: ") && $0.contains("(\(contents.count) bytes) \"\(path)\" head \"swiftlet initrd!\"") },
                "\(viaMultiboot.output)")
    }

    @Test func cpuidDescribesEachVCPU() throws {
        let run = try runGuest("cpuid", cpus: 3)
        #expect(run.exit == Self.success, "\(run.output)")
        #expect(run.lines.contains("cpuid: leaf 1 apic id 0, logical cpus 3, hypervisor 1"))
        #expect(run.lines.contains("cpuid: leaf 0xb apic id 0, smt 1, cores 3"))
        #expect(run.lines.contains("cpuid: hypervisor \"KVMKVMKVM\", max leaf 0x40000001"))
        #expect(run.lines.contains { $0.hasPrefix("cpuid: cx16 1") })
    }

    @Test func hiddenCPUFeatures() throws {
        var config = try guestConfiguration("cpuid")
        config.cpuFeatures = try CPUFeatureSelection.parse("-cx16,-xsave")
        let run = try runGuest(configuration: config)
        #expect(run.exit == Self.success, "\(run.output)")
        // Hiding CX16 takes effect everywhere, PVM included. PVM shows the
        // guest the host's XSAVE bit whatever the VMM sets (PLATFORM.md).
        #expect(run.lines.contains { $0.hasPrefix("cpuid: cx16 0") })
        if KVMHostKind.detect().isHardwareVirtualization {
            #expect(run.lines.contains { $0.hasPrefix("cpuid: cx16 0, xsave 0") })
        }
    }

    @Test func maxCPUsReachFirmwareConfigAndACPI() throws {
        var config = try guestConfiguration("fwcfg", cpus: 2)
        config.maxCPUs = 6
        let run = try runGuest(configuration: config)
        #expect(run.lines.contains("fwcfg: cpus 2, max cpus 6"))
        #expect(run.machine.vcpus.count == 2)
        #expect(run.machine.acpi.table("APIC")!.length == 44 + 6 * 8 + 12 + 6, "six LAPIC entries, the IOAPIC and LINT1 NMI")
    }

    @Test func acpiTablesAreInGuestMemoryAndTheMap() throws {
        let run = try runGuest("multiboot-info", cpus: 2)
        let acpi = run.machine.acpi
        #expect(try run.machine.memory.readBytes(at: GuestAddress(acpi.rsdpAddress), count: 8) == Array("RSD PTR ".utf8))
        #expect(acpi.table("APIC") != nil && acpi.table("FACP") != nil && acpi.table("DSDT") != nil)
        let hex = String(acpi.range.start, radix: 16)
        #expect(run.lines.contains { $0.contains("mmap base 0x00000000000\(hex)") && $0.hasSuffix("type 3") }, "\(run.output)")
    }

    @Test func multibootInformationIsComplete() throws {
        let run = try runGuest("multiboot-info", commandLine: "mb test")
        #expect(run.exit == Self.success, "\(run.output)")
        #expect(run.lines.contains("multiboot-info: magic 0x2badb002, info at 0x6000, flags 0x24d"))
        #expect(run.lines.contains("multiboot-info: mem_lower 639 KiB, mem_upper 130048 KiB"))
        #expect(run.lines.contains("multiboot-info: cmdline \"mb test\""))
        #expect(run.lines.contains("multiboot-info: mmap base 0x0000000000100000 length 0x0000000007f00000 type 1"))
        #expect(run.lines.contains("multiboot-info: boot loader \"Swiftlet\""))
    }
}

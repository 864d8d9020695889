import Glibc
import Synchronization
import SwiftletACPI
import SwiftletBoot
import SwiftletDevices
import SwiftletInterrupts
import SwiftletKVM
import SwiftletMemory
import SwiftletSystem
import SwiftletVCPU

/// A virtual machine built from one `MachineConfiguration`.
///
/// `init` creates everything — the KVM VM, guest memory, the loaded kernel,
/// devices and vCPUs — or nothing: any failure throws before a vCPU runs.
/// `start()` launches the vCPU threads and the control thread (console input
/// and, later, the API socket); `waitForExit()` returns how the VM ended.
///
///     let machine = try Machine(MachineConfiguration(kernel: .file(path: "guest.elf")))
///     try machine.start()
///     let exit = machine.waitForExit()
public final class Machine: Sendable {
    public let configuration: MachineConfiguration
    public let hostKind: KVMHostKind
    public let memory: GuestMemory
    public let boot: BootResult
    /// The ACPI tables the guest was given.
    public let acpi: ACPIBlob
    /// The vCPUs present now, read without locks (see `VCPURegistry`).
    public let vcpuRegistry: VCPURegistry<VCPU>
    /// A copy of the present vCPUs, in index order.
    public var vcpus: [VCPU] { vcpuRegistry.present }
    public let portBus: IOBus
    public let mmioBus: IOBus
    public let serial: SerialPort
    public let postCode: PostCodePort
    /// Instructions the PVM assist completed (all zero when it is off).
    public let instructionAssistStatistics: InstructionAssistStatistics

    let vm: VirtualMachine
    /// The emulated interrupt controllers with `--irqchip userspace`.
    let userspaceIRQChip: UserspaceIRQChip?
    /// The emulated i8254 and the thread that raises its interrupts, with
    /// `--irqchip userspace` (KVM's in-kernel PIT otherwise).
    private let pitDriver: PITTimerDriver?
    let vcpuFactory: VCPUFactory
    /// The ACPI CPU hot-plug registers, when CPUs can be added
    /// (`possibleCPUs > cpus`).
    let cpuHotplug: CPUHotplugController?
    let lifecycle: MachineLifecycle
    private let controlLoop: EventLoop
    private let console: ConsoleConnection?
    private let serialOutput: any SerialOutput
    let state = Locked<RunState>(.created)
    /// Serializes pause and resume, which wait for the vCPUs: without it a
    /// resume could wait forever for a vCPU another thread paused again.
    /// `stop()` never takes it, since guests end VMs from vCPU threads.
    let control = Lock()
    private let paused = Locked(false)
    private let controlThread = Locked<OSThread?>(nil)

    enum RunState { case created, started, finished }

    public init(_ configuration: MachineConfiguration, kvm: KVMSystem? = nil) throws(MachineError) {
        do {
            try configuration.validate()
        } catch {
            throw .configuration(error)
        }
        self.configuration = configuration
        self.hostKind = KVMHostKind.detect()

        let system: KVMSystem
        do {
            if let kvm { system = kvm } else { system = try KVMSystem() }
            try system.require(KVMCapability.required + [.irqchip, .pit2] + (configuration.needsX2APICAPI ? [.x2apicAPI] : []))
        } catch {
            throw .kvmUnavailable(error)
        }

        do {
            vm = try system.createVirtualMachine()
            try vm.setTSSAddress(X86Layout.kvmTSSAddress.rawValue)
            try vm.setIdentityMapAddress(X86Layout.kvmIdentityMapAddress.rawValue)
        } catch {
            throw .kvm(error)
        }

        do {
            memory = try GuestMemory(ranges: X86Layout.ramRanges(size: configuration.memoryBytes))
        } catch {
            throw .host("cannot allocate \(configuration.memoryMiB) MiB of guest memory: \(error)")
        }
        // Memory slots before the in-kernel irqchip: on PVM hosts a slot
        // added after the irqchip exists costs about 7 ms instead of 0.1 ms.
        // The irqchip must exist before any vCPU.
        do {
            for (slot, region) in memory.regions.enumerated() {
                try vm.setMemoryRegion(slot: UInt32(slot), guestAddress: region.start.rawValue, size: region.size,
                                       hostAddress: region.hostAddress)
            }
            switch configuration.irqchip {
            case .kernel:
                try vm.createInterruptController()
                try vm.createPIT()
                if configuration.needsX2APICAPI { try vm.enableX2APICAPI() }
            case .userspace:
                // x2APIC registers come to us as MSR exits.
                try vm.enableUserSpaceMSRExits()
            }
        } catch {
            throw .kvm(error)
        }

        // ACPI tables in the legacy BIOS area, where Linux also looks for the
        // RSDP; the boot protocols pass its address too. The memory map the
        // guest gets (e820, Multiboot, PVH, fw_cfg etc/e820) marks them.
        let acpiConfiguration = ACPIConfiguration(cpus: configuration.cpus, maxCPUs: configuration.possibleCPUs)
        do {
            acpi = try ACPITables.build(acpiConfiguration)
            try memory.write(acpi.bytes, to: GuestAddress(acpi.address))
        } catch {
            throw .host("cannot build the ACPI tables: \(error)")
        }
        var memoryMap = MemoryMap(ram: memory.regions.map(\.range))
        memoryMap.mark(GuestRange(start: GuestAddress(acpi.range.start), length: acpi.range.length), as: .acpiReclaimable)
        boot = try Machine.loadKernel(configuration, into: memory, memoryMap: memoryMap, rsdp: GuestAddress(acpi.rsdpAddress))
        for warning in boot.warnings { Log.warning(warning) }

        let loop: EventLoop
        do {
            loop = try EventLoop()
        } catch {
            throw .host("cannot create the control event loop: \(error)")
        }
        controlLoop = loop
        let assistStatistics = InstructionAssistStatistics()
        instructionAssistStatistics = assistStatistics
        let assist = configuration.pvmAssist.isEnabled(onPVMHost: hostKind == .pvm)
            ? InstructionAssist(statistics: assistStatistics, completesBreakpoints: hostKind == .pvm) : nil
        lifecycle = MachineLifecycle(memory: memory, instructionAssist: assist, onEnd: { loop.stop() })

        // Devices.
        let output: any SerialOutput
        switch configuration.serial {
        case .stdio: output = FileDescriptorOutput.standardOutput()
        case .file(let path):
            do {
                output = FileDescriptorOutput(try FileDescriptor.open(path, flags: O_WRONLY | O_CREAT | O_APPEND))
            } catch {
                throw .input("--serial file:\(path): cannot open: \(error.errno)")
            }
        case .capture(let capture): output = capture
        case .none: output = DiscardingOutput()
        }
        serialOutput = output
        let chip: UserspaceIRQChip?
        if configuration.irqchip == .userspace {
            let router = InterruptRouter()
            // The 8259s' INTR output reaches the BSP's LINT0 (virtual wire).
            let pic = PIC8259Pair(output: ExternalInterruptLine(router: router))
            chip = UserspaceIRQChip(router: router, ioapic: IOAPIC(sink: router), pic: pic,
                                    haltPollLimit: Int64(configuration.haltPollMicroseconds) * 1000)
        } else {
            chip = nil
        }
        userspaceIRQChip = chip
        let serialIRQ: any InterruptLine = if let chip {
            ISAInterruptLine(irq: 4, ioapic: chip.ioapic, pic: chip.pic)
        } else {
            KernelInterruptLine(vm: vm, gsi: 4)
        }
        serial = SerialPort(interrupt: serialIRQ, output: output)
        postCode = PostCodePort()
        let firmwareConfig = try Machine.firmwareConfig(configuration, boot: boot, memory: memory)

        var ports = IOBusBuilder(kind: .portIO)
        do {
            try ports.register(serial, name: "COM1", base: 0x3f8, length: SerialPort.registerCount)
            try ports.register(postCode, name: "POST code", base: 0x80, length: 1)
            try ports.register(DebugExitDevice(requests: lifecycle), name: "debug exit", base: 0xf4, length: 4)
            try ports.register(firmwareConfig, name: "fw_cfg", base: 0x510, length: FirmwareConfig.portCount)
            try ports.register(PowerControlDevice(requests: lifecycle), name: "power control", base: 0x600, length: 3)
            try I8042Controller(requests: lifecycle).register(on: &ports)
        } catch {
            preconditionFailure("Swiftlet's own port map overlaps: \(error)")
        }
        var mmio = IOBusBuilder(kind: .mmio)
        if let chip {
            do {
                try ports.register(chip.pic.master, name: "8259 master", base: 0x20, length: 2)
                try ports.register(chip.pic.slave, name: "8259 slave", base: 0xa0, length: 2)
                try ports.register(chip.pic.edgeLevelControl, name: "ELCR", base: 0x4d0, length: 2)
                try mmio.register(chip.ioapic, name: "IOAPIC", base: X86Layout.ioapicAddress.rawValue, length: 0x1000)
            } catch {
                preconditionFailure("Swiftlet's own device map overlaps: \(error)")
            }
        }
        if let chip {
            // IRQ 0 on IOAPIC pin 0, as KVM's default routing has it (the
            // MADT has no override to pin 2).
            let pit = PIT8254(interrupt: ISAInterruptLine(irq: 0, ioapic: chip.ioapic, pic: chip.pic))
            do {
                try pit.register(on: &ports)
            } catch {
                preconditionFailure("Swiftlet's own port map overlaps: \(error)")
            }
            pitDriver = PITTimerDriver(pit: pit)
        } else {
            pitDriver = nil
        }
        if configuration.possibleCPUs > configuration.cpus {
            // The DSDT describes these registers whenever CPUs can be added
            // (docs/acpi-cpu-hotplug.md); their event is an edge on GSI 23.
            let gsi = acpiConfiguration.hotplugGSI
            let line: any InterruptLine = if let chip { IOAPICPinLine(pin: Int(gsi), ioapic: chip.ioapic) }
                                          else { KernelInterruptLine(vm: vm, gsi: gsi) }
            let hotplug = CPUHotplugController(maxCPUs: configuration.possibleCPUs, bootCPUs: configuration.cpus, interrupt: line)
            do {
                try mmio.register(hotplug, name: "CPU hot-plug", base: acpiConfiguration.hotplugRegisterBase,
                                  length: CPUHotplugRegisters.reservedLength)
            } catch {
                preconditionFailure("Swiftlet's own device map overlaps: \(error)")
            }
            cpuHotplug = hotplug
        } else {
            cpuHotplug = nil
        }
        portBus = ports.build()
        mmioBus = mmio.build()

        // vCPUs: the boot CPUs now, the bootstrap processor with the
        // loader's state; application processors wait for INIT/SIPI. The
        // rest of `possibleCPUs` can be added while the VM runs.
        let supportedCPUID: CPUIDTable
        do {
            supportedCPUID = try system.supportedCPUID()
        } catch {
            throw .kvm(error)
        }
        vcpuFactory = VCPUFactory(vm: vm, supportedCPUID: supportedCPUID, configuration: configuration,
                                  portBus: portBus, mmioBus: mmioBus, exitHandler: lifecycle, chip: chip)
        vcpuRegistry = VCPURegistry(capacity: configuration.possibleCPUs)
        for index in 0..<configuration.cpus {
            do {
                let vcpu = try vcpuFactory.make(index: UInt32(index), boot: index == 0 ? boot.cpu : nil)
                try vcpuRegistry.insert(vcpu, at: index)
            } catch let error as SystemError {
                throw .kvm(error)
            } catch {
                preconditionFailure("boot vCPU \(index) cannot be registered: \(error)")
            }
        }
        do {
            try vcpuFactory.reserve(configuration.cpus..<configuration.possibleCPUs)
        } catch {
            throw .kvm(error)
        }
        lifecycle.attach(vcpuRegistry)

        console = if case .stdio = configuration.serial {
            ConsoleConnection(serial: serial, loop: loop, onEscape: { [lifecycle] in lifecycle.end(.stopped(reason: "Ctrl-A x on the console")) })
        } else {
            nil
        }
        cpuHotplug?.setEjectHandler { [weak self] index in self?.guestEjected(index) ?? false }
    }

    /// A machine released while it still runs is stopped first, so its
    /// threads are joined before the KVM objects they use go away. Then the
    /// two cycles through the vCPUs are cut: each vCPU holds the lifecycle
    /// (its exit handler) and, with the userspace irqchip, the router that
    /// lists it as a target. Either would keep every vCPU, its KVM fd and
    /// its kvm_run mapping alive after the machine.
    deinit {
        if state.withLock({ $0 }) == .started {
            stop(reason: "the machine was released while running")
            _ = waitForExit()
        }
        lifecycle.detachVCPUs()
        for vcpu in vcpuRegistry.present { vcpu.detachFromRouter() }
    }

    // MARK: Running

    /// Starts the control thread and every vCPU thread.
    public func start() throws(MachineError) {
        try state.withLock { (s) throws(MachineError) in
            guard s == .created else { throw .host("the machine was already started") }
            s = .started
        }
        do {
            try console?.attach()
            let loop = controlLoop
            let thread = try OSThread(name: "swiftlet-ctl") { loop.run() }
            controlThread.withLock { $0 = thread }
            try pitDriver?.start()
            for vcpu in vcpus { try vcpu.start() }
        } catch {
            lifecycle.end(.hostFailure("cannot start: \(error)"))
            throw .host("cannot start the machine: \(error)")
        }
    }

    /// Waits until the VM ends, then joins its threads and returns how it ended.
    public func waitForExit() -> MachineExit {
        lifecycle.waitUntilEnded()
        // Under `control`, so no vCPU is being added meanwhile; one added
        // after the end's own stop requests is stopped here.
        control.withLock {
            let all = vcpus
            for vcpu in all { vcpu.requestStop() }
            for vcpu in all { vcpu.join() }
        }
        pitDriver?.stop()
        controlLoop.stop()
        controlThread.withLock { t in
            t?.join()
            t = nil
        }
        console?.detach()
        state.withLock { $0 = .finished }
        return lifecycle.result ?? .hostFailure("the machine ended without an outcome")
    }

    /// `start()` then `waitForExit()`.
    public func run() throws(MachineError) -> MachineExit {
        try start()
        return waitForExit()
    }

    /// Ends the VM from the host side; `waitForExit()` then returns `.stopped`.
    public func stop(reason: String = "stopped by the host") {
        lifecycle.end(.stopped(reason: reason))
    }

    /// Takes every vCPU out of KVM_RUN and holds it there; returns when all
    /// are out (or the VM ended meanwhile).
    public func pause() {
        control.withLock {
            paused.withLock { $0 = true }
            let all = vcpus
            for vcpu in all { vcpu.requestPause() }
            for vcpu in all { vcpu.waitUntilQuiescent() }
        }
    }

    /// Lets paused vCPUs run again; returns when none is paused any more.
    public func resume() {
        control.withLock {
            let all = vcpus
            for vcpu in all { vcpu.resume() }
            for vcpu in all { vcpu.waitUntilResumed() }
            paused.withLock { $0 = false }
        }
    }

    /// Between `pause()` and `resume()`.
    public var isPaused: Bool { paused.withLock { $0 } }

    public var hasEnded: Bool { lifecycle.hasEnded }

    /// Sends a fixed, edge-triggered interrupt with `vector` to the local
    /// APIC with physical ID `apicID`, as a device's MSI would: through
    /// KVM_SIGNAL_MSI with the in-kernel irqchip, through the router (and
    /// the target's posted-interrupt descriptor) in userspace mode.
    public func sendInterrupt(vector: UInt8, toAPICID apicID: UInt32) throws(SystemError) {
        if let chip = userspaceIRQChip {
            chip.router.deliver(InterruptMessage(vector: vector, deliveryMode: .fixed, destinationMode: .physical,
                                                 destination: apicID, destinationFormat: .x2APIC, shorthand: .none,
                                                 triggerMode: .edge, level: true, sourceAPICID: nil))
        } else {
            // MSI address 0xFEE0_0000 | destination << 12; data = vector, fixed, edge.
            try vm.signalMSI(addressLow: 0xFEE0_0000 | ((apicID & 0xff) << 12), addressHigh: apicID & 0xffff_ff00, data: UInt32(vector))
        }
    }

    // MARK: Assembly helpers

    private static func loadKernel(_ configuration: MachineConfiguration, into memory: GuestMemory,
                                   memoryMap: MemoryMap, rsdp: GuestAddress) throws(MachineError) -> BootResult {
        do {
            let kernel: any ImageSource = switch configuration.kernel {
            case .file(let path): try FileImage(path: path)
            case .image(let name, let bytes): ByteImage(name: name, bytes: bytes)
            }
            let initrd = try configuration.initrdPath.map { (path) throws(BootError) in try FileImage(path: path) }
            return try BootLoader.load(kernel: kernel, initrd: initrd, commandLine: configuration.commandLine,
                                       protocol: configuration.bootProtocol, memory: memory,
                                       memoryMap: memoryMap, acpiRSDP: rsdp)
        } catch {
            throw .image(error)
        }
    }

    private static func firmwareConfig(_ configuration: MachineConfiguration, boot: BootResult,
                                       memory: GuestMemory) throws(MachineError) -> FirmwareConfig {
        var builder = FirmwareConfigBuilder(ramSize: memory.size, bootCPUs: UInt16(configuration.cpus),
                                            maxCPUs: UInt16(configuration.possibleCPUs))
        builder.setCommandLine(configuration.commandLine)
        do {
            if let path = configuration.initrdPath {
                // Served lazily from the file, so the VMM holds no copy.
                let fd = try FileDescriptor.open(path, flags: O_RDONLY)
                try builder.setInitrd(try FileContent(fd))
            }
            if let initrd = boot.initrd {
                // Where the loader put it, so a guest can use it in place.
                try builder.setItem(FirmwareConfig.Key.initrdAddress, UInt32(truncatingIfNeeded: initrd.start.rawValue).littleEndianBytes)
            }
            try builder.addFile(named: "etc/e820", boot.memoryMap.e820Bytes)
        } catch {
            throw .input("cannot serve the initrd through fw_cfg: \(error)")
        }
        return builder.build()
    }

    /// Local APIC LINT0 as ExtINT and LINT1 as NMI, the virtual-wire setup
    /// firmware leaves for an OS that starts on the legacy PIC.
    static func wireLocalInterruptPins(_ vcpu: VCPUDescriptor) throws(SystemError) {
        var lapic = try vcpu.localAPIC()
        withUnsafeMutableBytes(of: &lapic.regs) { regs in
            func setDeliveryMode(_ offset: Int, _ mode: UInt32) {
                var value = regs.loadUnaligned(fromByteOffset: offset, as: UInt32.self)
                value = (value & ~0x700) | (mode << 8)
                regs.storeBytes(of: value, toByteOffset: offset, as: UInt32.self)
            }
            setDeliveryMode(0x350, 7)  // LVT LINT0: ExtINT
            setDeliveryMode(0x360, 4)  // LVT LINT1: NMI
        }
        try vcpu.setLocalAPIC(lapic)
    }

    /// Programs the boot CPU with the loader's state; segment registers come
    /// from the same GDT the loader wrote into guest memory.
    static func apply(_ state: CPUBootState, to vcpu: VCPUDescriptor) throws(SystemError) {
        var sregs = try vcpu.specialRegisters()
        func segment(_ selector: UInt16) -> Segment {
            let descriptor = BootGDT.descriptor(for: selector) ?? .null
            return CPUSetup.segment(selector: selector, descriptor: descriptor.encoded)
        }
        sregs.cs = segment(state.codeSelector)
        let data = segment(state.dataSelector)
        sregs.ds = data; sregs.es = data; sregs.fs = data; sregs.gs = data; sregs.ss = data
        sregs.gdt.base = state.gdt.base
        sregs.gdt.limit = state.gdt.limit
        sregs.idt.base = state.idt.base
        sregs.idt.limit = state.idt.limit
        sregs.cr0 = state.cr0
        sregs.cr3 = state.cr3
        sregs.cr4 = state.cr4
        sregs.efer = state.efer
        try vcpu.setSpecialRegisters(sregs)

        var regs = Registers()
        regs.rip = state.rip
        regs.rsp = state.rsp
        regs.rflags = state.rflags
        regs.rax = state.rax
        regs.rbx = state.rbx
        regs.rsi = state.rsi
        regs.rdi = state.rdi
        try vcpu.setRegisters(regs)
    }
}

extension FixedWidthInteger {
    var littleEndianBytes: [UInt8] { withUnsafeBytes(of: littleEndian) { Array($0) } }
}

/// Why a machine could not be built or started; each has an exit status.
public enum MachineError: Error, Sendable, CustomStringConvertible {
    case configuration(ConfigurationError)
    case image(BootError)
    /// A user-supplied path or value that cannot be used.
    case input(String)
    case kvmUnavailable(KVMUnavailable)
    /// KVM refused a setup ioctl: this host's KVM is unusable for us.
    case kvm(SystemError)
    case host(String)

    public var exitStatus: Int32 {
        switch self {
        case .configuration, .image, .input: ExitStatus.usage
        case .kvmUnavailable, .kvm: ExitStatus.kvmUnavailable
        case .host: ExitStatus.hostFailure
        }
    }

    public var description: String {
        switch self {
        case .configuration(let e): e.description
        case .image(let e): e.description
        case .input(let message): message
        case .kvmUnavailable(let e): e.description
        case .kvm(let e): "KVM refused to set up the VM: \(e)"
        case .host(let message): message
        }
    }
}

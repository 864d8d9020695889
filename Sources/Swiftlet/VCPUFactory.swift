import Glibc
import CSwiftlet
import SwiftletBoot
import SwiftletDevices
import SwiftletKVM
import SwiftletSystem
import SwiftletVCPU

/// Makes the machine's vCPUs, at boot and on hot-add, and keeps the KVM
/// descriptors of removed ones.
///
/// KVM cannot destroy a vCPU short of destroying its VM (MISSION.md §3), so
/// a removed vCPU's descriptor is *parked* here under its index — which is
/// also its APIC ID — and reused when that CPU is added again, as QEMU does.
/// A parked vCPU keeps only its file descriptor: its thread is joined, its
/// kvm_run mapping and per-vCPU device state went with its `VCPU` object.
final class VCPUFactory: Sendable {
    private let vm: VirtualMachine
    private let supportedCPUID: CPUIDTable
    private let hiddenFeatures: CPUFeatureSelection
    private let topologyCPUs: UInt32
    private let portBus: IOBus
    private let mmioBus: IOBus
    private let exitHandler: any VCPUExitHandler
    private let chip: UserspaceIRQChip?
    /// Architectural reset state, from the first descriptor made (userspace
    /// irqchip only: the emulated STARTUP IPI starts from it).
    private let resetState = Locked<VCPUResetState?>(nil)
    private let parked = Locked<[UInt32: FileDescriptor]>([:])

    init(vm: VirtualMachine, supportedCPUID: CPUIDTable, configuration: MachineConfiguration,
         portBus: IOBus, mmioBus: IOBus, exitHandler: any VCPUExitHandler, chip: UserspaceIRQChip?) {
        self.vm = vm
        self.supportedCPUID = supportedCPUID
        var hidden = configuration.cpuFeatures
        if chip != nil { hidden.hidden += CPUSetup.needingInKernelAPIC }
        self.hiddenFeatures = hidden
        self.topologyCPUs = UInt32(configuration.possibleCPUs)
        self.portBus = portBus
        self.mmioBus = mmioBus
        self.exitHandler = exitHandler
        self.chip = chip
    }

    /// Indices whose descriptors are parked.
    var parkedIndices: Set<UInt32> { parked.withLock { Set($0.keys) } }

    /// A vCPU for `index` (its APIC ID), in the parked state: a boot CPU is
    /// started by the machine, the others wait for INIT/SIPI from the guest.
    /// `boot` is applied to the bootstrap processor.
    func make(index: UInt32, boot: CPUBootState?) throws(SystemError) -> VCPU {
        let reused = parked.withLock { $0.removeValue(forKey: index) }
        let descriptor: VCPUDescriptor
        do {
            descriptor = if let reused {
                try vm.attachVCPU(id: index, descriptor: reused)
            } else {
                try vm.createVCPU(id: index)
            }
        } catch {
            if let reused { parked.withLock { $0[index] = reused } }
            throw error
        }
        do {
            let reset = try resetState.withLock { (state) throws(SystemError) -> VCPUResetState? in
                guard chip != nil else { return nil }
                if state == nil {
                    precondition(reused == nil, "the first vCPU is never a parked one")
                    state = try VCPUResetState(capturingFrom: descriptor)
                }
                return state
            }
            if reused == nil {
                // A parked descriptor keeps its CPUID; this host refuses
                // KVM_SET_CPUID2 on a vCPU created after others ran, and
                // KVM refuses a different one on a vCPU that ran.
                try descriptor.setCPUID(CPUSetup.cpuid(from: supportedCPUID, apicID: index, cpuCount: topologyCPUs,
                                                       hiding: hiddenFeatures))
            }
            try descriptor.setMSRs(CPUSetup.bootMSRs())
            try descriptor.setFPU(CPUSetup.initialFPU())
            if let boot { try Machine.apply(boot, to: descriptor) }
            if let chip, let reset {
                return VCPU(descriptor: descriptor, portBus: portBus, mmioBus: mmioBus, exitHandler: exitHandler,
                            chip: chip, resetState: reset)
            }
            try Machine.wireLocalInterruptPins(descriptor)
            if reused != nil && boot == nil {
                // The guest brings a re-added CPU up with INIT/SIPI, as a
                // new one; whatever its last life left must not run first.
                try descriptor.setMPState(UInt32(KVM_MP_STATE_INIT_RECEIVED))
            }
            return VCPU(descriptor: descriptor, portBus: portBus, mmioBus: mmioBus, exitHandler: exitHandler)
        } catch {
            park(descriptor)
            throw error
        }
    }

    /// Creates and configures the vCPUs for `indices` now and parks them,
    /// so that hot-adding them later needs no KVM_CREATE_VCPU or
    /// KVM_SET_CPUID2: some hosts (the PVM hosts among them) refuse
    /// KVM_SET_CPUID2 on a vCPU created after the VM ran.
    func reserve(_ indices: Range<Int>) throws(SystemError) {
        for index in indices {
            let vcpu = try make(index: UInt32(index), boot: nil)
            vcpu.detachFromRouter()
            park(vcpu.descriptor)
        }
    }

    /// Keeps `descriptor`'s file descriptor for when its CPU comes back.
    /// The caller drops its `VCPUDescriptor` (and with it the kvm_run
    /// mapping) afterwards.
    func park(_ descriptor: VCPUDescriptor) {
        parked.withLock { $0[descriptor.id] = descriptor.descriptor }
    }
}

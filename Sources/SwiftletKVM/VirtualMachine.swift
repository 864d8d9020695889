import CSwiftlet
import Glibc
import SwiftletSystem

/// A KVM virtual machine descriptor (the VM ioctls).
public final class VirtualMachine: Sendable {
    public let descriptor: FileDescriptor
    public let system: KVMSystem

    init(descriptor: FileDescriptor, system: KVMSystem) {
        self.descriptor = descriptor
        self.system = system
    }

    private var fd: Int32 { descriptor.rawValue }

    /// KVM_CHECK_EXTENSION on the VM: some answers depend on the VM's type.
    public func check(_ capability: KVMCapability) -> Int32 {
        max(0, swl_ioctl_val(fd, SWL_KVM_CHECK_EXTENSION, UInt(capability.rawValue)))
    }

    /// KVM_SET_USER_MEMORY_REGION: maps `size` bytes of host memory at
    /// `hostAddress` into the guest at `guestAddress` as memory slot `slot`.
    /// The host memory must stay mapped until the slot is removed (size 0).
    public func setMemoryRegion(slot: UInt32, guestAddress: UInt64, size: UInt64,
                                hostAddress: UnsafeMutableRawPointer?, flags: UInt32 = 0) throws(SystemError) {
        var region = kvm_userspace_memory_region(
            slot: slot, flags: flags, guest_phys_addr: guestAddress, memory_size: size,
            userspace_addr: UInt64(UInt(bitPattern: hostAddress)))
        _ = try systemCall("KVM_SET_USER_MEMORY_REGION(slot \(slot))") { swl_ioctl_ptr(fd, SWL_KVM_SET_USER_MEMORY_REGION, &region) }
    }

    /// KVM_SET_TSS_ADDR: three pages of guest-physical space, outside RAM,
    /// that Intel hosts need to run real mode; harmless elsewhere.
    public func setTSSAddress(_ address: UInt64) throws(SystemError) {
        _ = try systemCall("KVM_SET_TSS_ADDR") { swl_ioctl_val(fd, SWL_KVM_SET_TSS_ADDR, UInt(address)) }
    }

    /// KVM_SET_IDENTITY_MAP_ADDR: one page for Intel's unrestricted-guest-less real mode.
    public func setIdentityMapAddress(_ address: UInt64) throws(SystemError) {
        var value = address
        _ = try systemCall("KVM_SET_IDENTITY_MAP_ADDR") { swl_ioctl_ptr(fd, SWL_KVM_SET_IDENTITY_MAP_ADDR, &value) }
    }

    /// KVM_CREATE_IRQCHIP: in-kernel PIC pair, IOAPIC and per-vCPU LAPICs.
    /// Must precede vCPU creation.
    public func createInterruptController() throws(SystemError) {
        _ = try systemCall("KVM_CREATE_IRQCHIP") { swl_ioctl_val(fd, SWL_KVM_CREATE_IRQCHIP, 0) }
    }

    /// KVM_CREATE_PIT2: the in-kernel i8254, with port 0x61 handled in the
    /// kernel too (KVM_PIT_SPEAKER_DUMMY) so PIT calibration loops work.
    public func createPIT() throws(SystemError) {
        var config = kvm_pit_config()
        config.flags = UInt32(KVM_PIT_SPEAKER_DUMMY)
        _ = try systemCall("KVM_CREATE_PIT2") { swl_ioctl_ptr(fd, SWL_KVM_CREATE_PIT2, &config) }
    }

    /// KVM_IRQ_LINE: drives GSI `line` of the in-kernel irqchip.
    public func setInterruptLine(_ line: UInt32, level: Bool) throws(SystemError) {
        var irq = kvm_irq_level()
        irq.irq = line
        irq.level = level ? 1 : 0
        _ = try systemCall("KVM_IRQ_LINE(\(line))") { swl_ioctl_ptr(fd, SWL_KVM_IRQ_LINE, &irq) }
    }

    /// KVM_SIGNAL_MSI: delivers a message-signalled interrupt.
    public func signalMSI(addressLow: UInt32, addressHigh: UInt32 = 0, data: UInt32) throws(SystemError) {
        var msi = kvm_msi()
        msi.address_lo = addressLow
        msi.address_hi = addressHigh
        msi.data = data
        _ = try systemCall("KVM_SIGNAL_MSI") { swl_ioctl_ptr(fd, SWL_KVM_SIGNAL_MSI, &msi) }
    }

    /// KVM_CREATE_VCPU with `id` (its initial APIC ID), and maps its kvm_run.
    public func createVCPU(id: UInt32) throws(SystemError) -> VCPUDescriptor {
        let vcpuFD = FileDescriptor(owning: try systemCall("KVM_CREATE_VCPU(\(id))") { swl_ioctl_val(fd, SWL_KVM_CREATE_VCPU, UInt(id)) })
        let size = try system.vcpuMmapSize()
        let run = try MappedMemory(length: size, flags: MAP_SHARED, fd: vcpuFD, what: "mmap(kvm_run of vCPU \(id))")
        return VCPUDescriptor(id: id, descriptor: vcpuFD, runArea: run)
    }

    /// A descriptor for vCPU `id` around an existing vCPU file descriptor
    /// (one that was parked when its CPU was removed): maps a fresh kvm_run
    /// area for it. KVM has no way to destroy a vCPU, so a VMM reuses it.
    public func attachVCPU(id: UInt32, descriptor vcpuFD: FileDescriptor) throws(SystemError) -> VCPUDescriptor {
        let size = try system.vcpuMmapSize()
        let run = try MappedMemory(length: size, flags: MAP_SHARED, fd: vcpuFD, what: "mmap(kvm_run of vCPU \(id))")
        return VCPUDescriptor(id: id, descriptor: vcpuFD, runArea: run)
    }
}

import CSwiftlet
import SwiftletSystem

public typealias VCPUEvents = kvm_vcpu_events

/// The vCPU state ioctls the PVM instruction assist needs beyond registers:
/// pending events (to inject an exception), and the x87/SSE state.
extension VCPUDescriptor {
    private var vcpuFD: Int32 { descriptor.rawValue }

    /// KVM_GET_VCPU_EVENTS: exceptions, interrupts and NMIs being delivered,
    /// and the interrupt shadow.
    public func events() throws(SystemError) -> VCPUEvents {
        var events = VCPUEvents()
        _ = try systemCall("KVM_GET_VCPU_EVENTS") { swl_ioctl_ptr(vcpuFD, SWL_KVM_GET_VCPU_EVENTS, &events) }
        return events
    }

    /// KVM_SET_VCPU_EVENTS. Without `KVM_VCPUEVENT_VALID_*` bits in `flags`,
    /// KVM leaves the NMI-pending state, the SIPI vector, the interrupt
    /// shadow and SMM as they are.
    public func setEvents(_ events: VCPUEvents) throws(SystemError) {
        var events = events
        _ = try systemCall("KVM_SET_VCPU_EVENTS") { swl_ioctl_ptr(vcpuFD, SWL_KVM_SET_VCPU_EVENTS, &events) }
    }

    /// KVM_GET_FPU. On x86 KVM leaves `mxcsr` zero (kvm_arch_vcpu_ioctl_get_fpu
    /// never copies it, and KVM_SET_FPU never applies it; checked on this
    /// project's hosts): use `xsaveArea()` for MXCSR.
    public func fpu() throws(SystemError) -> FPUState {
        var fpu = FPUState()
        _ = try systemCall("KVM_GET_FPU") { swl_ioctl_ptr(vcpuFD, SWL_KVM_GET_FPU, &fpu) }
        return fpu
    }

    /// The size of `struct kvm_xsave` without its flexible tail: what
    /// KVM_GET_XSAVE and KVM_SET_XSAVE transfer.
    public static let xsaveAreaSize = 4096

    /// KVM_GET_XSAVE: the vCPU's x87/SSE/AVX/... state in the standard
    /// (non-compacted) XSAVE layout: the 512-byte FXSAVE region, the XSAVE
    /// header at 512 (XSTATE_BV first), then the extended components.
    public func xsaveArea() throws(SystemError) -> [UInt8] {
        var area = [UInt8](repeating: 0, count: Self.xsaveAreaSize)
        let request = Self.kvmGetXSave
        let fd = vcpuFD
        let rc = area.withUnsafeMutableBytes { swl_ioctl_ptr(fd, request, $0.baseAddress) }
        if rc < 0 { throw SystemError("KVM_GET_XSAVE") }
        return area
    }

    /// KVM_SET_XSAVE with an area in `xsaveArea()`'s layout. KVM rejects
    /// (EINVAL) an MXCSR with bits outside the host's MXCSR_MASK and
    /// XSTATE_BV bits the guest may not use.
    public func setXSaveArea(_ area: [UInt8]) throws(SystemError) {
        precondition(area.count == Self.xsaveAreaSize, "an XSAVE area is \(Self.xsaveAreaSize) bytes")
        var area = area
        let request = Self.kvmSetXSave
        let fd = vcpuFD
        let rc = area.withUnsafeMutableBytes { swl_ioctl_ptr(fd, request, $0.baseAddress) }
        if rc < 0 { throw SystemError("KVM_SET_XSAVE") }
    }

    // KVM_GET_XSAVE = _IOR(KVMIO, 0xa4, struct kvm_xsave) and KVM_SET_XSAVE =
    // _IOW(KVMIO, 0xa5, struct kvm_xsave): the C shim does not export them,
    // so they are composed here as <asm-generic/ioctl.h> does.
    static let kvmGetXSave = ioctlRequest(direction: 2, type: 0xae, number: 0xa4, size: xsaveAreaSize)
    static let kvmSetXSave = ioctlRequest(direction: 1, type: 0xae, number: 0xa5, size: xsaveAreaSize)

    /// `_IOC(dir, type, nr, size)`: direction 1 = write (to the kernel), 2 = read.
    static func ioctlRequest(direction: UInt, type: UInt, number: UInt, size: Int) -> UInt {
        direction << 30 | UInt(size) << 16 | type << 8 | number
    }
}

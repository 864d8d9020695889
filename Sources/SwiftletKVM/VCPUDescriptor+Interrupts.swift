import CSwiftlet
import SwiftletSystem

/// What a VMM that emulates the interrupt controllers itself (no in-kernel
/// irqchip) exchanges with KVM: the injection state KVM reports after
/// every exit in kvm_run, the interrupt-window request, CR8 (the task
/// priority the guest sets with `mov %cr8`) and the APIC base MSR, which KVM
/// keeps and mirrors into kvm_run. All of it belongs to the vCPU's own
/// thread, like the rest of kvm_run.
extension VCPUDescriptor {
    /// KVM can inject an interrupt at the next entry (IF set, no interrupt
    /// shadow, nothing already being injected).
    public var readyForInterruptInjection: Bool { kvmRun.pointee.ready_for_interrupt_injection != 0 }

    /// RFLAGS.IF at the last exit.
    public var interruptFlag: Bool { kvmRun.pointee.if_flag != 0 }

    /// Asks KVM to exit (KVM_EXIT_IRQ_WINDOW_OPEN) as soon as the guest can
    /// take an interrupt.
    public var requestInterruptWindow: Bool {
        get { kvmRun.pointee.request_interrupt_window != 0 }
        set { kvmRun.pointee.request_interrupt_window = newValue ? 1 : 0 }
    }

    /// CR8, synchronized by KVM at every exit and read back at every entry.
    public var cr8: UInt64 {
        get { kvmRun.pointee.cr8 }
        set { kvmRun.pointee.cr8 = newValue }
    }

    /// IA32_APIC_BASE as the guest last set it (KVM handles the MSR itself).
    public var apicBase: UInt64 { kvmRun.pointee.apic_base }

    /// KVM_INTERRUPT: injects external interrupt `vector` at the next entry.
    /// Only valid without an in-kernel irqchip and when
    /// `readyForInterruptInjection` said so.
    public func injectInterrupt(_ vector: UInt8) throws(SystemError) {
        var irq = kvm_interrupt(irq: UInt32(vector))
        _ = try systemCall("KVM_INTERRUPT(\(vector))") { swl_ioctl_ptr(descriptor.rawValue, SWL_KVM_INTERRUPT, &irq) }
    }

    /// KVM_NMI: queues an NMI; KVM delivers it when NMIs are unblocked.
    public func injectNMI() throws(SystemError) {
        _ = try systemCall("KVM_NMI") { swl_ioctl_val(descriptor.rawValue, SWL_KVM_NMI, 0) }
    }
}

/// An MSR access KVM hands to userspace (KVM_CAP_X86_USER_SPACE_MSR).
public struct MSRAccess {
    public let isWrite: Bool
    public let index: UInt32
    /// The value written (for writes).
    public let value: UInt64
    // The vCPU's kvm_run, valid until its next KVM_RUN.
    private let run: UnsafeMutablePointer<kvm_run>

    init(run: UnsafeMutablePointer<kvm_run>, isWrite: Bool) {
        self.run = run
        self.isWrite = isWrite
        self.index = run.pointee.msr.index
        self.value = run.pointee.msr.data
    }

    /// Completes a read with `value`, or any access successfully.
    public func complete(with value: UInt64 = 0) {
        run.pointee.msr.error = 0
        if !isWrite { run.pointee.msr.data = value }
    }

    /// Fails the access: KVM injects #GP(0).
    public func fail() {
        run.pointee.msr.error = 1
    }
}

extension VirtualMachine {
    /// KVM_ENABLE_CAP on the VM.
    public func enable(_ capability: KVMCapability, arguments: [UInt64] = []) throws(SystemError) {
        var cap = kvm_enable_cap()
        cap.cap = UInt32(capability.rawValue)
        withUnsafeMutableBytes(of: &cap.args) { raw in
            for (i, a) in arguments.prefix(4).enumerated() { raw.storeBytes(of: a, toByteOffset: i * 8, as: UInt64.self) }
        }
        _ = try systemCall("KVM_ENABLE_CAP(\(capability))") { swl_ioctl_ptr(descriptor.rawValue, SWL_KVM_ENABLE_CAP, &cap) }
    }

    /// KVM_CAP_X2APIC_API: the in-kernel LAPICs keep 32-bit x2APIC IDs and
    /// MSIs carry destination bits 8–31 in address_hi, so APIC IDs above
    /// 254 work; 0xff is no longer a broadcast in x2APIC mode. Before any
    /// vCPU exists.
    public func enableX2APICAPI() throws(SystemError) {
        try enable(.x2apicAPI, arguments: [UInt64(KVM_X2APIC_API_USE_32BIT_IDS | KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK)])
    }

    /// Routes MSR accesses KVM cannot complete (unknown or invalid MSRs, such
    /// as x2APIC registers without an in-kernel APIC) to userspace exits.
    public func enableUserSpaceMSRExits() throws(SystemError) {
        try enable(.userSpaceMSR, arguments: [UInt64(KVM_MSR_EXIT_REASON_INVAL | KVM_MSR_EXIT_REASON_UNKNOWN)])
    }
}

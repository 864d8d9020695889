import CSwiftlet
import Glibc
import SwiftletSystem

public typealias Registers = kvm_regs
public typealias SpecialRegisters = kvm_sregs
public typealias Segment = kvm_segment
public typealias FPUState = kvm_fpu

/// A KVM vCPU descriptor and its shared `kvm_run` area (the vCPU ioctls).
///
/// `run()` and the exit accessors belong to the one thread that runs this
/// vCPU; the kvm_run area is written by the kernel during KVM_RUN and read by
/// that thread afterwards. Other threads only ever set `immediate_exit`
/// through the kick signal handler, which runs on the vCPU thread itself.
/// Register ioctls may come from any thread: the kernel serializes vCPU
/// ioctls on the vCPU's mutex. Hence `@unchecked Sendable`.
public final class VCPUDescriptor: @unchecked Sendable {
    public let id: UInt32
    public let descriptor: FileDescriptor
    private let runArea: MappedMemory
    /// The mapping was made for, and is only used as, a `struct kvm_run`.
    let kvmRun: UnsafeMutablePointer<kvm_run>

    init(id: UInt32, descriptor: FileDescriptor, runArea: MappedMemory) {
        self.id = id
        self.descriptor = descriptor
        self.runArea = runArea
        self.kvmRun = runArea.pointer.bindMemory(to: kvm_run.self, capacity: 1)
    }

    private var fd: Int32 { descriptor.rawValue }

    // MARK: Running

    /// Makes the calling thread the one the kick signal handler reaches:
    /// a kick sets this vCPU's `immediate_exit`. Call on the vCPU thread
    /// before its first `run()`.
    public func bindKickToCurrentThread() {
        swl_kick_set_thread_run(kvmRun)
    }

    /// Clears `immediate_exit` after a kick was taken.
    public func clearImmediateExit() {
        kvmRun.pointee.immediate_exit = 0
    }

    /// KVM_RUN. Returns why the vCPU stopped; `.interrupted` when a kick (or
    /// any signal) got it out — EINTR is deliberately not retried here.
    public func run() throws(SystemError) -> VCPUExit {
        while true {
            let rc = swl_kvm_run(fd)
            if rc == 0 { break }
            switch Errno.current {
            case .interrupted:
                return .interrupted
            case .tryAgain:
                // An application processor left wait-for-SIPI (INIT arrived):
                // KVM reports the state change with EAGAIN; simply re-enter.
                continue
            case let error:
                throw SystemError("KVM_RUN(vCPU \(id))", error)
            }
        }
        return decodeExit()
    }

    private func decodeExit() -> VCPUExit {
        // Fields are read through the pointer: copying `pointee` would copy
        // the whole kvm_run (2 KiB and more) on every exit.
        let r = kvmRun
        switch Int32(bitPattern: r.pointee.exit_reason) {
        case KVM_EXIT_IO:
            let size = Int(r.pointee.io.size), count = Int(r.pointee.io.count)
            let offset = Int(r.pointee.io.data_offset)
            // The kernel sets data_offset inside the mapping; check anyway so
            // that a surprise can never make us touch memory beyond it.
            guard size == 1 || size == 2 || size == 4, count >= 1, offset + size * count <= runArea.length else {
                return .unknown(reason: r.pointee.exit_reason)
            }
            let data = UnsafeMutableRawBufferPointer(start: runArea.pointer + offset, count: size * count)
            return .portIO(PortIOAccess(isWrite: r.pointee.io.direction == UInt8(KVM_EXIT_IO_OUT), port: r.pointee.io.port,
                                        size: size, count: count, data: data))
        case KVM_EXIT_MMIO:
            let length = r.pointee.mmio.len
            guard length >= 1 && length <= 8 else { return .unknown(reason: r.pointee.exit_reason) }
            return .mmio(MMIOAccess(run: r, address: r.pointee.mmio.phys_addr, size: Int(length), isWrite: r.pointee.mmio.is_write != 0))
        case KVM_EXIT_HLT:
            return .halt
        case KVM_EXIT_SHUTDOWN:
            return .shutdown
        case KVM_EXIT_FAIL_ENTRY:
            return .failedEntry(hardwareReason: r.pointee.fail_entry.hardware_entry_failure_reason, cpu: r.pointee.fail_entry.cpu)
        case KVM_EXIT_INTERNAL_ERROR:
            return .internalError(suberror: r.pointee.internal.suberror)
        case KVM_EXIT_SYSTEM_EVENT:
            return .systemEvent(type: r.pointee.system_event.type)
        case KVM_EXIT_IRQ_WINDOW_OPEN:
            return .interruptWindowOpen
        case KVM_EXIT_X86_RDMSR:
            return .msr(MSRAccess(run: r, isWrite: false))
        case KVM_EXIT_X86_WRMSR:
            return .msr(MSRAccess(run: r, isWrite: true))
        case KVM_EXIT_INTR:
            return .interrupted
        default:
            return .unknown(reason: r.pointee.exit_reason)
        }
    }

    /// The details of the last exit when it was an internal error; valid
    /// until the next `run()`.
    public func internalError() -> InternalError {
        let e = kvmRun.pointee.internal
        let words = withUnsafeBytes(of: e.data) { Array($0.bindMemory(to: UInt64.self).prefix(Int(min(e.ndata, 16)))) }
        return InternalError(suberror: e.suberror, data: words)
    }

    // MARK: State

    public func registers() throws(SystemError) -> Registers {
        var regs = Registers()
        _ = try systemCall("KVM_GET_REGS") { swl_ioctl_ptr(fd, SWL_KVM_GET_REGS, &regs) }
        return regs
    }

    public func setRegisters(_ regs: Registers) throws(SystemError) {
        var regs = regs
        _ = try systemCall("KVM_SET_REGS") { swl_ioctl_ptr(fd, SWL_KVM_SET_REGS, &regs) }
    }

    public func specialRegisters() throws(SystemError) -> SpecialRegisters {
        var sregs = SpecialRegisters()
        _ = try systemCall("KVM_GET_SREGS") { swl_ioctl_ptr(fd, SWL_KVM_GET_SREGS, &sregs) }
        return sregs
    }

    public func setSpecialRegisters(_ sregs: SpecialRegisters) throws(SystemError) {
        var sregs = sregs
        _ = try systemCall("KVM_SET_SREGS") { swl_ioctl_ptr(fd, SWL_KVM_SET_SREGS, &sregs) }
    }

    public func setFPU(_ fpu: FPUState) throws(SystemError) {
        var fpu = fpu
        _ = try systemCall("KVM_SET_FPU") { swl_ioctl_ptr(fd, SWL_KVM_SET_FPU, &fpu) }
    }

    /// KVM_SET_CPUID2: what CPUID reports to the guest on this vCPU.
    public func setCPUID(_ table: CPUIDTable) throws(SystemError) {
        let buffer = CPUIDBuffer(table)
        _ = try systemCall("KVM_SET_CPUID2") { swl_ioctl_ptr(fd, SWL_KVM_SET_CPUID2, buffer.raw) }
    }

    /// KVM_SET_MSRS; throws unless every MSR was accepted.
    public func setMSRs(_ msrs: [(index: UInt32, value: UInt64)]) throws(SystemError) {
        let count = UInt32(msrs.count)
        let size = swl_kvm_msrs_size(count)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 8)
        defer { raw.deallocate() }
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        // Allocated above for, and used only as, a kvm_msrs with `count` entries.
        let header = raw.assumingMemoryBound(to: kvm_msrs.self)
        header.pointee.nmsrs = count
        let entries = swl_kvm_msrs_entries(header)!
        for (i, msr) in msrs.enumerated() {
            entries[i].index = msr.index
            entries[i].data = msr.value
        }
        let set = try systemCall("KVM_SET_MSRS") { swl_ioctl_ptr(fd, SWL_KVM_SET_MSRS, raw) }
        // KVM_SET_MSRS returns how many it set, stopping at the first refusal.
        if set < count {
            throw SystemError("KVM_SET_MSRS(0x\(String(msrs[Int(set)].index, radix: 16)))", .invalidArgument)
        }
    }

    /// The multiprocessing state (`KVM_MP_STATE_*`).
    public func mpState() throws(SystemError) -> UInt32 {
        var state = kvm_mp_state()
        _ = try systemCall("KVM_GET_MP_STATE") { swl_ioctl_ptr(fd, SWL_KVM_GET_MP_STATE, &state) }
        return state.mp_state
    }

    public func setMPState(_ value: UInt32) throws(SystemError) {
        var state = kvm_mp_state(mp_state: value)
        _ = try systemCall("KVM_SET_MP_STATE") { swl_ioctl_ptr(fd, SWL_KVM_SET_MP_STATE, &state) }
    }

    /// KVM_TRANSLATE: the guest-physical address for a linear address under
    /// the vCPU's current paging mode, or nil when it is not mapped.
    public func translate(_ linearAddress: UInt64) throws(SystemError) -> UInt64? {
        var t = kvm_translation()
        t.linear_address = linearAddress
        _ = try systemCall("KVM_TRANSLATE") { swl_ioctl_ptr(fd, SWL_KVM_TRANSLATE, &t) }
        return t.valid != 0 ? t.physical_address : nil
    }

    /// KVM_GET_LAPIC: the 1 KiB in-kernel local APIC register page.
    public func localAPIC() throws(SystemError) -> kvm_lapic_state {
        var state = kvm_lapic_state()
        _ = try systemCall("KVM_GET_LAPIC") { swl_ioctl_ptr(fd, SWL_KVM_GET_LAPIC, &state) }
        return state
    }

    public func setLocalAPIC(_ state: kvm_lapic_state) throws(SystemError) {
        var state = state
        _ = try systemCall("KVM_SET_LAPIC") { swl_ioctl_ptr(fd, SWL_KVM_SET_LAPIC, &state) }
    }
}

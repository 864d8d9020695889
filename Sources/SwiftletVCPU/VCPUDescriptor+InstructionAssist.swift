import CSwiftlet
import Synchronization
import SwiftletKVM
import SwiftletMemory

/// The PVM instruction assist over KVM: a vCPU descriptor and guest memory.
extension InstructionAssist {
    /// Completes the instruction behind `error` (the details of a
    /// KVM_EXIT_INTERNAL_ERROR exit on `vcpu`, read before its next run);
    /// only emulation failures are candidates. Call on the vCPU's thread.
    public func complete(_ error: InternalError, on vcpu: VCPUDescriptor, memory: GuestMemory) -> InstructionAssistOutcome {
        guard error.suberror == UInt32(KVM_INTERNAL_ERROR_EMULATION) else {
            return .refused(InstructionAssistRefusal(nil, "\(error.kind), not an emulation failure"))
        }
        return complete(reportedBytes: error.instructionBytes, cpu: vcpu, memory: memory, logContext: "vCPU \(vcpu.id): ")
    }
}

extension VCPUDescriptor: InstructionAssistCPU {
    public func assistRegisters() throws -> X86GeneralRegisters {
        let r = try registers()
        return X86GeneralRegisters(gpr: [r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi,
                                         r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15],
                                   rip: r.rip, rflags: r.rflags)
    }

    public func setAssistRegisters(_ x: X86GeneralRegisters) throws {
        var r = Registers()
        r.rax = x.gpr[0]; r.rcx = x.gpr[1]; r.rdx = x.gpr[2]; r.rbx = x.gpr[3]
        r.rsp = x.gpr[4]; r.rbp = x.gpr[5]; r.rsi = x.gpr[6]; r.rdi = x.gpr[7]
        r.r8 = x.gpr[8]; r.r9 = x.gpr[9]; r.r10 = x.gpr[10]; r.r11 = x.gpr[11]
        r.r12 = x.gpr[12]; r.r13 = x.gpr[13]; r.r14 = x.gpr[14]; r.r15 = x.gpr[15]
        r.rip = x.rip
        r.rflags = x.rflags
        try setRegisters(r)
    }

    public func assistSystemRegisters() throws -> X86SystemRegisters {
        let s = try specialRegisters()
        // KVM (like VMX) takes the CPL from SS.DPL; in real mode it is 0.
        return X86SystemRegisters(cr0: s.cr0, cr3: s.cr3, cr4: s.cr4, efer: s.efer,
                                  cpl: s.cr0 & 1 == 0 ? 0 : s.ss.dpl, codeIs64Bit: s.cs.l == 1,
                                  fsBase: s.fs.base, gsBase: s.gs.base)
    }

    /// From KVM_GET_XSAVE, not KVM_GET_FPU: KVM's `struct kvm_fpu` never
    /// carries MXCSR on x86, and KVM_SET_FPU leaves XSTATE_BV alone, so
    /// registers in their initial state would not take a value set there.
    public func fxsaveImage() throws -> FXSaveImage {
        FXSaveImage(bytes: Array(try xsaveArea().prefix(FXSaveImage.size)))
    }

    public func setFXSaveImage(_ image: FXSaveImage) throws {
        var area = try xsaveArea()
        area.replaceSubrange(0..<FXSaveImage.storedByteCount, with: image.bytes[0..<FXSaveImage.storedByteCount])
        // XSTATE_BV (bytes 512..519): mark x87 and SSE state as in use, so
        // that the values above are loaded rather than the initial state.
        area[512] |= 0b11
        try setXSaveArea(area)
    }

    public func assistEventState() throws -> X86EventState {
        let e = try events()
        return X86EventState(exceptionInFlight: e.exception.injected != 0 || e.exception.pending != 0,
                             nmiInFlight: e.nmi.injected != 0,
                             interruptInFlight: e.interrupt.injected != 0,
                             interruptShadow: e.interrupt.shadow != 0)
    }

    public func clearInterruptShadow() throws {
        var e = try events()
        e.interrupt.shadow = 0
        e.flags = UInt32(KVM_VCPUEVENT_VALID_SHADOW)
        try setEvents(e)
    }

    /// KVM_SET_VCPU_EVENTS with `exception.injected`: KVM delivers it on
    /// the next entry without re-checking it (no payload: CR2 is set here).
    public func injectException(_ exception: X86Exception) throws {
        if case .pageFault(let address, _) = exception {
            var s = try specialRegisters()
            s.cr2 = address
            try setSpecialRegisters(s)
        }
        var e = try events()
        e.exception.injected = 1
        e.exception.pending = 0
        e.exception.nr = exception.vector
        e.exception.has_error_code = exception.errorCode == nil ? 0 : 1
        e.exception.error_code = exception.errorCode ?? 0
        e.exception_has_payload = 0
        e.exception_payload = 0
        // No KVM_VCPUEVENT_VALID_* bits: NMI-pending, SIPI, shadow and SMM stay as KVM has them.
        e.flags = 0
        try setEvents(e)
    }
}

extension GuestMemory: InstructionAssistMemory {
    public func isRAM(physical address: UInt64, count: Int) -> Bool {
        contains(GuestAddress(address), count: UInt64(count))
    }

    public func read(physical address: UInt64, count: Int) -> [UInt8]? {
        try? readBytes(at: GuestAddress(address), count: count)
    }

    public func write(_ bytes: [UInt8], physical address: UInt64) -> Bool {
        (try? write(bytes, to: GuestAddress(address))) != nil
    }

    public func compareExchange64(physical address: UInt64, expected: UInt64, desired: UInt64) -> Bool {
        guard address % 8 == 0, let buffer = try? hostBuffer(at: GuestAddress(address), count: 8),
              let raw = buffer.baseAddress else { return false }
        // Guest RAM is shared with the guest's vCPUs, which update the same
        // entries with locked instructions: an 8-byte atomic on the host
        // mapping is the same operation. The mapping stays valid while this
        // GuestMemory exists; the entry is 8-byte aligned.
        let word = raw.assumingMemoryBound(to: Atomic<UInt64>.self)
        return word.pointee.compareExchange(expected: expected.littleEndian, desired: desired.littleEndian,
                                            ordering: .sequentiallyConsistent).exchanged
    }
}

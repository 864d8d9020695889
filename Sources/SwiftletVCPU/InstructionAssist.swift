import SwiftletSystem

/// Completes, from userspace, instructions that a PVM host's instruction
/// emulator cannot (KVM_EXIT_INTERNAL_ERROR, emulation failure), so the
/// guest can go on.
///
/// On PVM hosts guest kernel-mode code is instruction-emulated, and the
/// emulator lacks `int3`, `clac`/`stac`, `fwait`, `popcnt`,
/// `ldmxcsr`/`stmxcsr`, and `fxsave`/`fxrstor` with some operand encodings.
/// The assist completes exactly those, in 64-bit mode at CPL 0, with the
/// processor's semantics: results, flags, the exceptions the instruction
/// would raise (injected so the guest's IDT handles them), accessed and
/// dirty bits. Anything it cannot do exactly it refuses, and the VM stops
/// with the usual diagnosis.
///
/// The core is KVM-free: it works on `InstructionAssistCPU` and
/// `InstructionAssistMemory`. Every check comes before any change, so a
/// refusal leaves the vCPU and memory as they were (apart from accessed
/// bits a page walk may have set, as the processor would); only a failing
/// ioctl while writing results back can leave an instruction half done,
/// and the VM stops then anyway.
///
/// Refused, on purpose: other modes than 64-bit, CPL ≠ 0, RFLAGS.TF, VEX
/// forms, LOCK and conflicting or misplaced prefixes, operands outside RAM
/// (MMIO), protection keys, CR4.OSFXSR clear for fxsave/fxrstor, fwait with
/// CR0.NE clear and an x87 exception pending, and `int3` where the host's
/// soft-exception injection would put the wrong return address (not PVM).
/// Not modelled: data breakpoints (DR7) on the operand.
public final class InstructionAssist: Sendable {
    /// Whether the assist runs: `automatic` turns it on on PVM hosts only.
    public enum Mode: String, Sendable, Equatable, CaseIterable {
        case automatic = "auto"
        case on
        case off

        public func isEnabled(onPVMHost: Bool) -> Bool {
            switch self {
            case .automatic: onPVMHost
            case .on: true
            case .off: false
            }
        }
    }

    public let statistics: InstructionAssistStatistics
    /// Whether `int3` may be completed by advancing RIP past it and
    /// injecting #BP as an exception. Verified on PVM, which delivers it
    /// through the guest's IDT with the advanced RIP as the return address.
    /// VMX and SVM KVM treat an injected #BP as a soft exception and derive
    /// the return address from instruction-length state of their own, so
    /// there `int3` is refused (hardware executes it; it never needs this).
    public let completesBreakpoints: Bool

    public init(statistics: InstructionAssistStatistics = InstructionAssistStatistics(), completesBreakpoints: Bool) {
        self.statistics = statistics
        self.completesBreakpoints = completesBreakpoints
    }

    /// Completes the instruction at RIP, whose emulation failed. Uses
    /// `reportedBytes` (what KVM fetched) when given, else reads RIP's
    /// bytes through the vCPU's translation. Counts what it completes.
    public func complete(reportedBytes: [UInt8]?, cpu: some InstructionAssistCPU, memory: some InstructionAssistMemory,
                         logContext: @autoclosure () -> String = "") -> InstructionAssistOutcome {
        var run = Execution(cpu: cpu, memory: memory, completesBreakpoints: completesBreakpoints)
        let outcome: InstructionAssistOutcome
        do {
            outcome = try run.execute(reportedBytes: reportedBytes)
        } catch {
            if let kind = error.instruction {
                Log.warning("\(logContext())PVM assist refused \(kind) at RIP 0x\(String(run.rip, radix: 16)): \(error.reason)")
            } else {
                Log.debug("\(logContext())PVM assist: nothing to complete at RIP 0x\(String(run.rip, radix: 16)): \(error.reason)")
            }
            return .refused(error)
        }
        switch outcome {
        case .completed(let kind):
            statistics.record(kind, raisedException: false)
            Log.debug("\(logContext())PVM assist completed \(kind) at RIP 0x\(String(run.rip, radix: 16))")
        case .raisedException(let kind, let exception):
            statistics.record(kind, raisedException: true)
            Log.debug("\(logContext())PVM assist: \(kind) at RIP 0x\(String(run.rip, radix: 16)) raised \(exception)")
        case .deferred(let kind):
            Log.debug("\(logContext())PVM assist: \(kind) at RIP 0x\(String(run.rip, radix: 16)) deferred: an interrupt is being delivered")
        case .refused:
            break
        }
        return outcome
    }
}

/// What the assist did with one emulation failure.
public enum InstructionAssistOutcome: Sendable, Equatable {
    /// The instruction completed; RIP is past it (for int3, #BP is injected).
    case completed(AssistedInstruction)
    /// The instruction raised an exception instead, injected into the guest
    /// with RIP still at the instruction (a fault).
    case raisedException(AssistedInstruction, X86Exception)
    /// Left for later: an external interrupt is already being delivered at
    /// this instruction boundary and one exception cannot be injected on
    /// top of it. The vCPU is as it was; the guest takes the interrupt,
    /// returns to the instruction, and its emulation fails again.
    case deferred(AssistedInstruction)
    /// Not completed; the vCPU is as it was.
    case refused(InstructionAssistRefusal)

    /// Whether the vCPU can run again.
    public var resumesGuest: Bool {
        if case .refused = self { return false }
        return true
    }
}

/// One instruction's completion: reads state, decodes, checks, then commits.
private struct Execution<CPU: InstructionAssistCPU, Memory: InstructionAssistMemory> {
    let cpu: CPU
    let memory: Memory
    let completesBreakpoints: Bool
    var rip: UInt64 = 0
    private var kind: AssistedInstruction?

    init(cpu: CPU, memory: Memory, completesBreakpoints: Bool) {
        self.cpu = cpu
        self.memory = memory
        self.completesBreakpoints = completesBreakpoints
    }

    /// What executing the instruction comes to.
    private enum Effect {
        /// New register values, RIP past the instruction.
        case retire(X86GeneralRegisters)
        /// Retire, then deliver a trap (int3's #BP).
        case retireAndTrap(X86GeneralRegisters, X86Exception)
        /// A fault: RIP stays, the exception is delivered.
        case fault(X86Exception)
    }

    private func refuse(_ reason: String) -> InstructionAssistRefusal { InstructionAssistRefusal(kind, reason) }

    /// Runs a vCPU-state accessor, turning its failure into a refusal.
    private func state<T>(_ what: String, _ body: () throws -> T) throws(InstructionAssistRefusal) -> T {
        do {
            return try body()
        } catch {
            throw refuse("\(what): \(error)")
        }
    }

    mutating func execute(reportedBytes: [UInt8]?) throws(InstructionAssistRefusal) -> InstructionAssistOutcome {
        let regs = try state("reading registers") { try cpu.assistRegisters() }
        rip = regs.rip
        let system = try state("reading control registers") { try cpu.assistSystemRegisters() }
        guard system.is64BitMode else {
            throw refuse("not in 64-bit mode (EFER 0x\(String(system.efer, radix: 16)), CS.L \(system.codeIs64Bit ? 1 : 0))")
        }
        guard system.cpl == 0 else { throw refuse("CPL \(system.cpl); the assist completes kernel-mode instructions only") }

        let bytes: [UInt8]
        if let reportedBytes, !reportedBytes.isEmpty {
            bytes = reportedBytes
        } else {
            bytes = try fetch(at: regs.rip)
        }
        let decoded: DecodedInstruction
        switch X86Decoder.decode(bytes) {
        case .success(let d): decoded = d
        case .failure(let refusal): throw refusal
        }
        kind = decoded.kind
        guard regs.rflags & X86GeneralRegisters.trap == 0 else {
            throw refuse("single-stepping (RFLAGS.TF) is not supported")
        }
        let events = try state("reading pending events") { try cpu.assistEventState() }
        guard !events.exceptionInFlight && !events.nmiInFlight else {
            throw refuse("an exception or NMI is already being delivered")
        }

        let next = regs.rip &+ UInt64(decoded.length)
        let effect = try perform(decoded, regs: regs, next: next, system: system)

        // Commit.
        switch effect {
        case .retire(var new):
            new.rip = next
            try state("writing registers") { try cpu.setAssistRegisters(new) }
            if events.interruptShadow {
                try state("ending the interrupt shadow") { try cpu.clearInterruptShadow() }
            }
            return .completed(decoded.kind)
        case .retireAndTrap(var new, let exception):
            if events.interruptInFlight { return .deferred(decoded.kind) }
            new.rip = next
            try state("writing registers") { try cpu.setAssistRegisters(new) }
            try state("injecting \(exception)") { try cpu.injectException(exception) }
            return .completed(decoded.kind)
        case .fault(let exception):
            if events.interruptInFlight { return .deferred(decoded.kind) }
            try state("injecting \(exception)") { try cpu.injectException(exception) }
            return .raisedException(decoded.kind, exception)
        }
    }

    // MARK: The instructions

    private func perform(_ d: DecodedInstruction, regs: X86GeneralRegisters, next: UInt64,
                         system: X86SystemRegisters) throws(InstructionAssistRefusal) -> Effect {
        var regs = regs
        let cr0 = system.cr0
        switch d.kind {
        case .int3:
            guard completesBreakpoints else {
                throw refuse("completing int3 needs a host that delivers an injected #BP at the advanced RIP (PVM)")
            }
            return .retireAndTrap(regs, .breakpoint)

        case .clac:
            regs.rflags &= ~X86GeneralRegisters.alignmentCheck
            return .retire(regs)

        case .stac:
            regs.rflags |= X86GeneralRegisters.alignmentCheck
            return .retire(regs)

        case .fwait:
            if cr0 & X86SystemRegisters.cr0TS != 0 && cr0 & X86SystemRegisters.cr0MP != 0 {
                return .fault(.deviceNotAvailable)
            }
            let fpu = try state("reading the FPU state") { try cpu.fxsaveImage() }
            if fpu.fsw & 0x80 != 0 {  // ES: an unmasked x87 exception is pending
                guard cr0 & X86SystemRegisters.cr0NE != 0 else {
                    throw refuse("a pending x87 exception with CR0.NE clear (external FERR# reporting)")
                }
                return .fault(.floatingPointError)
            }
            return .retire(regs)

        case .popcnt:
            let size = d.operandSize
            let source: UInt64
            switch d.operand {
            case .register(let r):
                source = regs.gpr[r]
            case .memory(let m):
                switch try read(m, count: size, regs: regs, next: next, system: system) {
                case .success(let bytes): source = littleEndian(bytes)
                case .failure(let exception): return .fault(exception)
                }
            case nil:
                throw refuse("no source operand")
            }
            let value = size == 8 ? source : source & ((1 << UInt64(8 * size)) - 1)
            let count = UInt64(value.nonzeroBitCount)
            let destination = d.destination!
            switch size {
            case 2: regs.gpr[destination] = (regs.gpr[destination] & ~0xffff) | count
            default: regs.gpr[destination] = count  // 32-bit results zero-extend
            }
            let cleared = X86GeneralRegisters.carry | X86GeneralRegisters.parity | X86GeneralRegisters.auxiliaryCarry |
                X86GeneralRegisters.zero | X86GeneralRegisters.sign | X86GeneralRegisters.overflow
            regs.rflags &= ~cleared
            if value == 0 { regs.rflags |= X86GeneralRegisters.zero }
            return .retire(regs)

        case .ldmxcsr, .stmxcsr:
            guard case .memory(let m) = d.operand else { throw refuse("no memory operand") }
            if cr0 & X86SystemRegisters.cr0EM != 0 || system.cr4 & X86SystemRegisters.cr4OSFXSR == 0 {
                return .fault(.invalidOpcode)
            }
            if cr0 & X86SystemRegisters.cr0TS != 0 { return .fault(.deviceNotAvailable) }
            var fpu = try state("reading the SSE state") { try cpu.fxsaveImage() }
            if d.kind == .stmxcsr {
                let bytes = (0..<4).map { UInt8(truncatingIfNeeded: fpu.mxcsr >> (8 * UInt32($0))) }
                if let exception = try write(bytes, to: m, operandSize: 4, regs: regs, next: next, system: system) {
                    return .fault(exception)
                }
                return .retire(regs)
            }
            let value: UInt32
            switch try read(m, count: 4, regs: regs, next: next, system: system) {
            case .success(let bytes): value = UInt32(truncatingIfNeeded: littleEndian(bytes))
            case .failure(let exception): return .fault(exception)
            }
            if value & ~fpu.writableMXCSRBits != 0 { return .fault(.generalProtection(errorCode: 0)) }
            fpu.mxcsr = value
            let updated = fpu
            try state("writing the SSE state") { try cpu.setFXSaveImage(updated) }
            return .retire(regs)

        case .fxsave, .fxrstor:
            guard case .memory(let m) = d.operand else { throw refuse("no memory operand") }
            if cr0 & (X86SystemRegisters.cr0TS | X86SystemRegisters.cr0EM) != 0 { return .fault(.deviceNotAvailable) }
            guard system.cr4 & X86SystemRegisters.cr4OSFXSR != 0 else {
                throw refuse("CR4.OSFXSR is clear (whether XMM state is included is implementation-specific)")
            }
            let format: FXSaveImage.PointerFormat = d.operandSize == 8 ? .bits64 : .bits32
            let fpu = try state("reading the FPU state") { try cpu.fxsaveImage() }
            let linear = try linearAddress(m, regs: regs, next: next, system: system)
            // The operand is the whole 512-byte area, though only its first
            // 416 bytes are stored or loaded.
            if let exception = canonicalFault(linear, count: FXSaveImage.size, operand: m, system: system) {
                return .fault(exception)
            }
            if linear % 16 != 0 { return .fault(.generalProtection(errorCode: 0)) }
            if d.kind == .fxsave {
                if let exception = try write(fpu.memoryImage(format), to: m, operandSize: FXSaveImage.size,
                                             regs: regs, next: next, system: system) {
                    return .fault(exception)
                }
                return .retire(regs)
            }
            let image: [UInt8]
            switch try read(m, count: FXSaveImage.size, regs: regs, next: next, system: system) {
            case .success(let bytes): image = Array(bytes.prefix(FXSaveImage.storedByteCount))
            case .failure(let exception): return .fault(exception)
            }
            if FXSaveImage.mxcsr(inImage: image) & ~fpu.writableMXCSRBits != 0 {
                return .fault(.generalProtection(errorCode: 0))
            }
            let restored = fpu.restoring(image, format)
            try state("writing the FPU state") { try cpu.setFXSaveImage(restored) }
            return .retire(regs)
        }
    }

    // MARK: Memory operands

    /// The operand's linear address: base + index × scale + displacement
    /// (RIP-relative: from the next instruction), truncated to 32 bits under
    /// an address-size prefix, plus the FS or GS base.
    private func linearAddress(_ m: X86MemoryOperand, regs: X86GeneralRegisters, next: UInt64,
                               system: X86SystemRegisters) throws(InstructionAssistRefusal) -> UInt64 {
        var address: UInt64
        if m.ripRelative {
            address = next &+ UInt64(bitPattern: m.displacement)
        } else {
            address = UInt64(bitPattern: m.displacement)
            if let base = m.base { address &+= regs.gpr[base] }
            if let index = m.index { address &+= regs.gpr[index] &* m.scale }
        }
        if m.addressSize32 { address &= 0xffff_ffff }
        switch m.segment {
        case .fs: address &+= system.fsBase
        case .gs: address &+= system.gsBase
        default: break
        }
        return address
    }

    /// #GP(0), or #SS(0) for a stack-segment access, when any byte of the
    /// access is non-canonical.
    private func canonicalFault(_ linear: UInt64, count: Int, operand m: X86MemoryOperand,
                                system: X86SystemRegisters) -> X86Exception? {
        let bits: UInt64 = system.cr4 & X86SystemRegisters.cr4LA57 != 0 ? 57 : 48
        func canonical(_ a: UInt64) -> Bool {
            let upper = a >> (bits - 1)
            return upper == 0 || upper == (UInt64.max >> (bits - 1))
        }
        let (last, wrapped) = linear.addingReportingOverflow(UInt64(count - 1))
        if wrapped || !canonical(linear) || !canonical(last) {
            return m.usesStackSegment ? .stackFault(errorCode: 0) : .generalProtection(errorCode: 0)
        }
        return nil
    }

    /// One page's part of an access.
    private struct Piece {
        var physical: UInt64
        var count: Int
    }

    /// Translates every page the access touches and checks it, before any
    /// byte moves: either all pieces (RAM, accessed/dirty bits set) or the
    /// exception the first failing page raises.
    private func resolve(_ m: X86MemoryOperand, count: Int, write: Bool, regs: X86GeneralRegisters, next: UInt64,
                         system: X86SystemRegisters) throws(InstructionAssistRefusal) -> Result<[Piece], X86Exception> {
        let linear = try linearAddress(m, regs: regs, next: next, system: system)
        if let exception = canonicalFault(linear, count: count, operand: m, system: system) { return .failure(exception) }
        let walker = GuestPageWalk(system: system, alignmentCheckFlag: regs.rflags & X86GeneralRegisters.alignmentCheck != 0)
        // An entry that changes between the walk and its accessed-bit update
        // (another vCPU at work) makes the walk start over, a few times.
        for _ in 0..<4 {
            var pieces: [Piece] = []
            var walked: [GuestPageWalk.Entry] = []
            var offset = 0
            while offset < count {
                let address = linear &+ UInt64(offset)
                let inPage = min(count - offset, Int(4096 - (address & 0xfff)))
                let translated = try state("KVM_TRANSLATE(0x\(String(address, radix: 16)))") { try cpu.translate(address) }
                switch walker.walk(address, write: write, memory: memory) {
                case .refused(let reason):
                    throw refuse(reason)
                case .fault(let code):
                    if translated != nil && code & X86Exception.pageFaultPresent == 0 {
                        throw refuse("KVM_TRANSLATE maps 0x\(String(address, radix: 16)) but the guest's page tables do not")
                    }
                    return .failure(.pageFault(address: address, errorCode: code))
                case .mapped(let physical, let entries):
                    guard let translated else {
                        throw refuse("the guest's page tables map 0x\(String(address, radix: 16)) but KVM_TRANSLATE does not (reserved bits?)")
                    }
                    guard translated == physical else {
                        throw refuse("KVM_TRANSLATE (0x\(String(translated, radix: 16))) and the guest's page tables (0x\(String(physical, radix: 16))) disagree for 0x\(String(address, radix: 16))")
                    }
                    guard memory.isRAM(physical: physical, count: inPage) else {
                        throw refuse("the operand at 0x\(String(address, radix: 16)) is at guest-physical 0x\(String(physical, radix: 16)), which is not RAM")
                    }
                    pieces.append(Piece(physical: physical, count: inPage))
                    walked.append(contentsOf: entries)
                }
                offset += inPage
            }
            if GuestPageWalk.markAccessed(walked, write: write, memory: memory) { return .success(pieces) }
        }
        throw refuse("the guest's page tables kept changing during the access")
    }

    private func read(_ m: X86MemoryOperand, count: Int, regs: X86GeneralRegisters, next: UInt64,
                      system: X86SystemRegisters) throws(InstructionAssistRefusal) -> Result<[UInt8], X86Exception> {
        switch try resolve(m, count: count, write: false, regs: regs, next: next, system: system) {
        case .failure(let exception):
            return .failure(exception)
        case .success(let pieces):
            var bytes: [UInt8] = []
            bytes.reserveCapacity(count)
            for piece in pieces {
                guard let part = memory.read(physical: piece.physical, count: piece.count) else {
                    throw refuse("guest-physical 0x\(String(piece.physical, radix: 16)) is not RAM")
                }
                bytes += part
            }
            return .success(bytes)
        }
    }

    /// Writes `bytes` at the start of an operand of `operandSize` bytes (all
    /// of which must be writable), or returns the exception it raises.
    private func write(_ bytes: [UInt8], to m: X86MemoryOperand, operandSize: Int, regs: X86GeneralRegisters, next: UInt64,
                       system: X86SystemRegisters) throws(InstructionAssistRefusal) -> X86Exception? {
        precondition(bytes.count <= operandSize)
        switch try resolve(m, count: operandSize, write: true, regs: regs, next: next, system: system) {
        case .failure(let exception):
            return exception
        case .success(let pieces):
            var offset = 0
            for piece in pieces where offset < bytes.count {
                let count = min(piece.count, bytes.count - offset)
                guard memory.write(Array(bytes[offset..<offset + count]), physical: piece.physical) else {
                    throw refuse("guest-physical 0x\(String(piece.physical, radix: 16)) is not RAM")
                }
                offset += count
            }
            return nil
        }
    }

    /// Up to 15 bytes at `rip`, through the vCPU's translation, stopping at
    /// the first page that is not mapped or not RAM.
    private func fetch(at rip: UInt64) throws(InstructionAssistRefusal) -> [UInt8] {
        var bytes: [UInt8] = []
        while bytes.count < X86Decoder.maximumLength {
            let address = rip &+ UInt64(bytes.count)
            let inPage = min(X86Decoder.maximumLength - bytes.count, Int(4096 - (address & 0xfff)))
            guard let physical = try state("KVM_TRANSLATE(RIP)", { try cpu.translate(address) }),
                  let part = memory.read(physical: physical, count: inPage) else { break }
            bytes += part
        }
        guard !bytes.isEmpty else { throw refuse("the bytes at RIP cannot be read (not mapped, or not RAM)") }
        return bytes
    }

    private func littleEndian(_ bytes: [UInt8]) -> UInt64 {
        bytes.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }
}

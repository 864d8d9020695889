import Testing
@testable import SwiftletVCPU

/// The assist against an in-memory vCPU: every instruction, operand size,
/// addressing mode, flag result, page-crossing operand, fault, and refusal.
@Suite struct InstructionAssistTests {
    typealias R = X86GeneralRegisters
    static let rax = 0, rcx = 1, rdx = 2, rbx = 3, rsp = 4, rbp = 5, rsi = 6, rdi = 7

    // MARK: int3, clac, stac, fwait

    @Test func int3AdvancesRIPAndInjectsBreakpoint() {
        let f = AssistFixture()
        let outcome = f.run([0xcc, 0x90])
        #expect(outcome == .completed(.int3))
        #expect(f.cpu.registers.rip == AssistFixture.code + 1)
        #expect(f.cpu.injected == [.breakpoint])
        #expect(f.counts[.int3] == 1 && f.counts.exceptionsRaised == 0)
    }

    @Test func int3IsRefusedWhereTheHostCannotDeliverItAfterTheInstruction() {
        let f = AssistFixture(completesBreakpoints: false)
        let outcome = f.run([0xcc])
        guard case .refused(let r) = outcome else {
            Issue.record("expected a refusal, got \(outcome)")
            return
        }
        #expect(r.instruction == .int3)
        #expect(f.cpu.registers.rip == AssistFixture.code)
        #expect(f.cpu.injected.isEmpty)
        #expect(f.counts.total == 0)
    }

    @Test func int3WaitsForAnInterruptBeingDelivered() {
        let f = AssistFixture()
        f.cpu.events.interruptInFlight = true
        #expect(f.run([0xcc]) == .deferred(.int3))
        #expect(f.cpu.registers.rip == AssistFixture.code)
        #expect(f.cpu.injected.isEmpty)
        #expect(f.counts.total == 0)
    }

    @Test func stacAndClacSetAndClearOnlyAC() {
        let f = AssistFixture()
        f.cpu.registers.rflags = 0x2 | R.carry | R.zero
        #expect(f.run([0x0f, 0x01, 0xcb]) == .completed(.stac))
        #expect(f.cpu.registers.rflags == 0x2 | R.carry | R.zero | R.alignmentCheck)
        #expect(f.cpu.registers.rip == AssistFixture.code + 3)
        #expect(f.run([0x0f, 0x01, 0xca]) == .completed(.clac))
        #expect(f.cpu.registers.rflags == 0x2 | R.carry | R.zero)
        #expect(f.cpu.registers.rip == AssistFixture.code + 6)
        #expect(f.counts[.stac] == 1 && f.counts[.clac] == 1)
        #expect(f.cpu.injected.isEmpty)
    }

    @Test func completingAnInstructionEndsItsInterruptShadow() {
        let f = AssistFixture()
        f.cpu.events.interruptShadow = true
        #expect(f.run([0x0f, 0x01, 0xca]) == .completed(.clac))
        #expect(f.cpu.shadowCleared)
        let g = AssistFixture()
        #expect(g.run([0x0f, 0x01, 0xca]) == .completed(.clac))
        #expect(!g.cpu.shadowCleared, "no KVM_SET_VCPU_EVENTS without a shadow")
    }

    @Test func fwaitCompletes() {
        let f = AssistFixture()
        #expect(f.run([0x9b]) == .completed(.fwait))
        #expect(f.cpu.registers.rip == AssistFixture.code + 1)
    }

    @Test func fwaitRaisesDeviceNotAvailableWithTSAndMP() {
        let f = AssistFixture()
        f.cpu.system.cr0 |= X86SystemRegisters.cr0TS | X86SystemRegisters.cr0MP
        #expect(f.run([0x9b]) == .raisedException(.fwait, .deviceNotAvailable))
        #expect(f.cpu.registers.rip == AssistFixture.code, "a fault leaves RIP at the instruction")
        #expect(f.cpu.injected == [.deviceNotAvailable])
        #expect(f.counts[.fwait] == 1 && f.counts.exceptionsRaised == 1)

        let g = AssistFixture()
        g.cpu.system.cr0 = (g.cpu.system.cr0 | X86SystemRegisters.cr0TS) & ~X86SystemRegisters.cr0MP
        #expect(g.run([0x9b]) == .completed(.fwait), "TS without MP does not affect fwait")
    }

    @Test func fwaitReportsAPendingX87Exception() {
        let f = AssistFixture()
        f.cpu.fpu.fsw = 0x8081  // B, ES, IE
        #expect(f.run([0x9b]) == .raisedException(.fwait, .floatingPointError))
        #expect(f.cpu.registers.rip == AssistFixture.code)

        let g = AssistFixture()
        g.cpu.fpu.fsw = 0x8081
        g.cpu.system.cr0 &= ~X86SystemRegisters.cr0NE
        guard case .refused(let r) = g.run([0x9b]) else {
            Issue.record("FERR# reporting should be refused")
            return
        }
        #expect(r.instruction == .fwait)
    }

    // MARK: popcnt

    @Test(arguments: [
        // bytes (popcnt rcx/ecx/cx, rax/eax/ax), source, old destination, expected destination
        ([0xf3, 0x48, 0x0f, 0xb8, 0xc8], 0xf0f0_0000_0000_0001 as UInt64, 0x1234 as UInt64, 9 as UInt64),
        ([0xf3, 0x48, 0x0f, 0xb8, 0xc8], UInt64.max, 0, 64),
        ([0xf3, 0x0f, 0xb8, 0xc8], 0x1234_5678_ffff_fffe, 0xdead_beef_dead_beef, 31),         // 32-bit: zero-extends
        ([0x66, 0xf3, 0x0f, 0xb8, 0xc8], 0xffff_ffff_ffff_00f0, 0xaaaa_bbbb_cccc_dddd, 0xaaaa_bbbb_cccc_0004),  // 16-bit: keeps 63:16
        ([0x66, 0xf3, 0x48, 0x0f, 0xb8, 0xc8], 0xffff_ffff_ffff_00f0, 0, 52),               // REX.W wins over 66
    ] as [([UInt8], UInt64, UInt64, UInt64)])
    func popcntRegisterSizes(bytes: [UInt8], source: UInt64, old: UInt64, expected: UInt64) {
        let f = AssistFixture()
        f.cpu.registers.gpr[Self.rax] = source
        f.cpu.registers.gpr[Self.rcx] = old
        f.cpu.registers.rflags = 0x2 | 0x8d5 | R.alignmentCheck
        #expect(f.run(bytes) == .completed(.popcnt))
        #expect(f.cpu.registers.gpr[Self.rcx] == expected)
        #expect(f.cpu.registers.gpr[Self.rax] == source)
        #expect(f.cpu.registers.rflags == 0x2 | R.alignmentCheck, "CF OF SF ZF AF PF clear, others kept")
        #expect(f.cpu.registers.rip == AssistFixture.code + UInt64(bytes.count))
    }

    @Test(arguments: [
        ([0xf3, 0x48, 0x0f, 0xb8, 0xc8], 0 as UInt64),
        ([0xf3, 0x0f, 0xb8, 0xc8], 0xffff_ffff_0000_0000),       // zero in the low 32 bits
        ([0x66, 0xf3, 0x0f, 0xb8, 0xc8], 0xffff_ffff_ffff_0000), // zero in the low 16 bits
    ] as [([UInt8], UInt64)])
    func popcntOfZeroSetsOnlyZF(bytes: [UInt8], source: UInt64) {
        let f = AssistFixture()
        f.cpu.registers.gpr[Self.rax] = source
        f.cpu.registers.gpr[Self.rcx] = 0xffff_ffff_ffff_ffff
        f.cpu.registers.rflags = 0x2 | 0x8d5
        #expect(f.run(bytes) == .completed(.popcnt))
        #expect(f.cpu.registers.rflags == 0x2 | R.zero)
        #expect(f.cpu.registers.gpr[Self.rcx] & 0xffff == 0)
    }

    @Test func popcntExtendedRegisters() {
        let f = AssistFixture()
        f.cpu.registers.gpr[15] = 0b1011
        f.cpu.registers.gpr[9] = 0xffff_ffff_ffff_ffff
        #expect(f.run([0xf3, 0x45, 0x0f, 0xb8, 0xcf]) == .completed(.popcnt))  // popcnt r9d, r15d
        #expect(f.cpu.registers.gpr[9] == 3)
    }

    @Test func popcntRIPRelativeCountsFromTheNextInstruction() {
        let f = AssistFixture()
        let bytes: [UInt8] = [0xf3, 0x48, 0x0f, 0xb8, 0x0d, 0x00, 0x01, 0x00, 0x00]  // popcnt rcx, [rip + 0x100]
        let operand = AssistFixture.code + UInt64(bytes.count) + 0x100
        f.memory.store(UInt64(0xff00_ff00_0000_0001).bytes, at: operand)
        #expect(f.run(bytes) == .completed(.popcnt))
        #expect(f.cpu.registers.gpr[Self.rcx] == 17)
    }

    @Test func popcntBaseIndexScaleDisplacement() {
        let f = AssistFixture()
        f.identityMap(0x50_0000)
        f.cpu.registers.gpr[Self.rsi] = 0x50_0000 - 0x40
        f.cpu.registers.gpr[Self.rdi] = 0x10
        f.memory.store(UInt32(0x0f0f_0f0f).bytes, at: 0x50_0000 + 0x40 + 0x10)
        // popcnt eax, [rsi + rdi*8 + 0x10]
        #expect(f.run([0xf3, 0x0f, 0xb8, 0x44, 0xfe, 0x10]) == .completed(.popcnt))
        #expect(f.cpu.registers.gpr[Self.rax] == 16)
    }

    @Test func popcntNegativeDisplacementAndNoBase() {
        let f = AssistFixture()
        f.identityMap(0x50_0000)
        f.memory.store(UInt16(0x7).bytes, at: 0x50_0ff0)
        f.cpu.registers.gpr[Self.rbp] = 0x50_1000
        #expect(f.run([0x66, 0xf3, 0x0f, 0xb8, 0x45, 0xf0]) == .completed(.popcnt))  // popcnt ax, [rbp - 16]
        #expect(f.cpu.registers.gpr[Self.rax] == 3)

        f.cpu.registers.rip = AssistFixture.code
        f.memory.store(UInt64(0xff).bytes, at: 0x50_0100)
        // popcnt rax, [0x500100] (SIB, no base, no index)
        #expect(f.run([0xf3, 0x48, 0x0f, 0xb8, 0x04, 0x25, 0x00, 0x01, 0x50, 0x00]) == .completed(.popcnt))
        #expect(f.cpu.registers.gpr[Self.rax] == 8)
    }

    @Test(arguments: [(0x64 as UInt8, true), (0x65, false)])
    func popcntWithFSOrGSBase(prefix: UInt8, fs: Bool) {
        let f = AssistFixture()
        f.identityMap(0x60_0000)
        if fs { f.cpu.system.fsBase = 0x60_0000 } else { f.cpu.system.gsBase = 0x60_0000 }
        f.memory.store(UInt64(0x0000_ffff_0000_ffff).bytes, at: 0x60_0010)
        #expect(f.run([prefix, 0xf3, 0x48, 0x0f, 0xb8, 0x04, 0x25, 0x10, 0x00, 0x00, 0x00]) == .completed(.popcnt))
        #expect(f.cpu.registers.gpr[Self.rax] == 32)
    }

    @Test func otherSegmentOverridesAddNoBase() {
        let f = AssistFixture()
        f.identityMap(0x50_0000)
        f.cpu.system.fsBase = 0x1000
        f.cpu.registers.gpr[Self.rbx] = 0x50_0000
        f.memory.store(UInt32(1).bytes, at: 0x50_0000)
        #expect(f.run([0x2e, 0xf3, 0x0f, 0xb8, 0x03]) == .completed(.popcnt))  // cs: popcnt eax, [rbx]
        #expect(f.cpu.registers.gpr[Self.rax] == 1)
    }

    @Test func addressSizePrefixTruncatesTheEffectiveAddress() {
        let f = AssistFixture()
        f.identityMap(0x50_0000)
        f.cpu.registers.gpr[Self.rbx] = 0xffff_ffff_0050_0000   // only EBX counts
        f.memory.store(UInt32(0xff).bytes, at: 0x50_0000)
        #expect(f.run([0x67, 0xf3, 0x0f, 0xb8, 0x03]) == .completed(.popcnt))
        #expect(f.cpu.registers.gpr[Self.rax] == 8)
    }

    @Test func popcntOperandAcrossTwoPagesUsesEachPagesTranslation() {
        let f = AssistFixture()
        // Adjacent linear pages on non-adjacent physical pages.
        f.cpu.tables.map(0x7000_0000, to: 0x80_0000)
        f.cpu.tables.map(0x7000_1000, to: 0x20_0000)
        f.memory.store([0xff, 0xff, 0xff, 0xff], at: 0x80_0ffc)
        f.memory.store([0x01, 0x00, 0x00, 0x00], at: 0x20_0000)
        f.memory.store([0xff, 0xff, 0xff, 0xff], at: 0x80_1000)   // what a wrong, physically contiguous read would see
        f.cpu.registers.gpr[Self.rbx] = 0x7000_0ffc
        #expect(f.run([0xf3, 0x48, 0x0f, 0xb8, 0x03]) == .completed(.popcnt))
        #expect(f.cpu.registers.gpr[Self.rax] == 33)
    }

    @Test func popcntFromAnUnmappedSecondPageRaisesPageFault() {
        let f = AssistFixture()
        f.cpu.tables.map(0x7000_0000, to: 0x80_0000)
        f.cpu.registers.gpr[Self.rbx] = 0x7000_0ffe
        f.cpu.registers.gpr[Self.rax] = 77
        let outcome = f.run([0xf3, 0x48, 0x0f, 0xb8, 0x03])
        #expect(outcome == .raisedException(.popcnt, .pageFault(address: 0x7000_1000, errorCode: 0)))
        #expect(f.cpu.injected == [.pageFault(address: 0x7000_1000, errorCode: 0)])
        #expect(f.cpu.registers.gpr[Self.rax] == 77 && f.cpu.registers.rip == AssistFixture.code)
        #expect(f.cpu.registerWrites == 0)
    }

    @Test func nonCanonicalOperandsRaiseGPOrSS() {
        let f = AssistFixture()
        f.cpu.registers.gpr[Self.rbx] = 0x0000_8000_0000_0000
        #expect(f.run([0xf3, 0x48, 0x0f, 0xb8, 0x03]) == .raisedException(.popcnt, .generalProtection(errorCode: 0)))
        let g = AssistFixture()
        g.cpu.registers.gpr[Self.rsp] = 0x0000_8000_0000_0000
        #expect(g.run([0xf3, 0x48, 0x0f, 0xb8, 0x04, 0x24]) == .raisedException(.popcnt, .stackFault(errorCode: 0)))
        let h = AssistFixture()
        h.cpu.registers.gpr[Self.rbx] = 0x0000_7fff_ffff_fffc   // the last bytes cross into non-canonical space
        #expect(h.run([0xf3, 0x48, 0x0f, 0xb8, 0x03]) == .raisedException(.popcnt, .generalProtection(errorCode: 0)))
        let k = AssistFixture()
        k.cpu.registers.gpr[Self.rbx] = 0xffff_8000_0000_0000   // canonical, upper half, not mapped
        #expect(k.run([0xf3, 0x48, 0x0f, 0xb8, 0x03]) == .raisedException(.popcnt, .pageFault(address: 0xffff_8000_0000_0000, errorCode: 0)))
    }

    @Test func fiveLevelPagingWidensCanonicalAddresses() {
        let f = AssistFixture(levels: 5)
        f.cpu.tables.map(0x0000_8000_0000_0000, to: 0x80_0000)
        f.memory.store(UInt64(0xf).bytes, at: 0x80_0000)
        f.cpu.registers.gpr[Self.rbx] = 0x0000_8000_0000_0000
        #expect(f.run([0xf3, 0x48, 0x0f, 0xb8, 0x03]) == .completed(.popcnt))
        #expect(f.cpu.registers.gpr[Self.rax] == 4)
    }

    @Test func largePagesTranslate() {
        let f = AssistFixture()
        f.cpu.tables.map(0x4000_0000, to: 0x0, size: 0x4000_0000)       // 1 GiB page
        f.cpu.tables.map(0x8000_0000, to: 0x20_0000, size: 0x20_0000)   // 2 MiB page
        f.memory.store(UInt32(0x3).bytes, at: 0x12_3450)
        f.memory.store(UInt32(0x7).bytes, at: 0x21_2340)
        f.cpu.registers.gpr[Self.rbx] = 0x4012_3450
        #expect(f.run([0xf3, 0x0f, 0xb8, 0x03]) == .completed(.popcnt))
        #expect(f.cpu.registers.gpr[Self.rax] == 2)
        f.cpu.registers.rip = AssistFixture.code
        f.cpu.registers.gpr[Self.rbx] = 0x8001_2340
        #expect(f.run([0xf3, 0x0f, 0xb8, 0x03]) == .completed(.popcnt))
        #expect(f.cpu.registers.gpr[Self.rax] == 3)
    }

    @Test func operandsOutsideRAMAreRefused() {
        let f = AssistFixture()
        f.cpu.tables.map(0x7000_0000, to: 0xd000_0000)   // the MMIO hole
        f.cpu.registers.gpr[Self.rbx] = 0x7000_0000
        guard case .refused(let r) = f.run([0xf3, 0x48, 0x0f, 0xb8, 0x03]) else {
            Issue.record("expected a refusal")
            return
        }
        #expect(r.instruction == .popcnt)
        #expect(r.reason.contains("not RAM"))
        #expect(f.cpu.registerWrites == 0 && f.cpu.injected.isEmpty)
    }

    @Test func disagreementWithKVMTranslateIsRefused() {
        let f = AssistFixture()
        f.identityMap(0x50_0000)
        f.cpu.registers.gpr[Self.rbx] = 0x50_0000
        f.cpu.translateOverride = { $0 == 0x50_0000 ? 0x90_0000 : f.cpu.tables.translate($0) }
        guard case .refused(let r) = f.run([0xf3, 0x48, 0x0f, 0xb8, 0x03]) else {
            Issue.record("expected a refusal")
            return
        }
        #expect(r.reason.contains("disagree"))

        let g = AssistFixture()
        g.identityMap(0x50_0000)
        g.cpu.registers.gpr[Self.rbx] = 0x50_0000
        g.cpu.translateOverride = { $0 == 0x50_0000 ? nil : g.cpu.tables.translate($0) }  // as with reserved bits set
        guard case .refused = g.run([0xf3, 0x48, 0x0f, 0xb8, 0x03]) else {
            Issue.record("expected a refusal")
            return
        }
        #expect(g.cpu.injected.isEmpty)
    }

    // MARK: ldmxcsr, stmxcsr

    @Test func ldmxcsrAndStmxcsrRoundTrip() {
        let f = AssistFixture()
        f.identityMap(0x50_0000)
        f.cpu.registers.gpr[Self.rbp] = 0x50_0010
        f.memory.store(UInt32(0x9fc0).bytes, at: 0x50_0000)
        #expect(f.run([0x0f, 0xae, 0x55, 0xf0]) == .completed(.ldmxcsr))  // ldmxcsr [rbp - 16]
        #expect(f.cpu.fpu.mxcsr == 0x9fc0)
        #expect(f.cpu.registers.rip == AssistFixture.code + 4)
        f.cpu.fpu.mxcsr = 0x1f80 | 0x3f   // as if SSE code raised every flag
        #expect(f.run([0x0f, 0xae, 0x5d, 0xf4]) == .completed(.stmxcsr))  // stmxcsr [rbp - 12]
        #expect(f.memory.bytes(at: 0x50_0004, count: 4) == UInt32(0x1fbf).bytes)
        #expect(f.counts[.ldmxcsr] == 1 && f.counts[.stmxcsr] == 1)
    }

    @Test func ldmxcsrOfReservedBitsRaisesGP() {
        let f = AssistFixture()
        f.identityMap(0x50_0000)
        f.cpu.registers.gpr[Self.rax] = 0x50_0000
        f.memory.store(UInt32(0x2_1f80).bytes, at: 0x50_0000)   // MM: allowed by mask 0x2ffff
        #expect(f.run([0x0f, 0xae, 0x10]) == .completed(.ldmxcsr))
        f.cpu.registers.rip = AssistFixture.code
        f.memory.store(UInt32(0x8000_1f80).bytes, at: 0x50_0000)
        #expect(f.run([0x0f, 0xae, 0x10]) == .raisedException(.ldmxcsr, .generalProtection(errorCode: 0)))
        #expect(f.cpu.fpu.mxcsr == 0x2_1f80)
        #expect(f.cpu.fpuWrites == 1)

        let g = AssistFixture()
        g.identityMap(0x50_0000)
        g.cpu.fpu.mxcsrMask = 0   // a processor that reports no mask: the default 0xffbf applies
        g.cpu.registers.gpr[Self.rax] = 0x50_0000
        g.memory.store(UInt32(0x1fc0).bytes, at: 0x50_0000)    // DAZ, not in 0xffbf
        #expect(g.run([0x0f, 0xae, 0x10]) == .raisedException(.ldmxcsr, .generalProtection(errorCode: 0)))
    }

    @Test(arguments: [
        (X86SystemRegisters.cr0EM, UInt64(0), X86Exception.invalidOpcode),
        (0, X86SystemRegisters.cr4OSFXSR, .invalidOpcode),   // OSFXSR cleared
        (X86SystemRegisters.cr0TS, 0, .deviceNotAvailable),
    ] as [(UInt64, UInt64, X86Exception)])
    func mxcsrInstructionsCheckCR0AndCR4(setCR0: UInt64, clearCR4: UInt64, exception: X86Exception) {
        for bytes: [UInt8] in [[0x0f, 0xae, 0x10], [0x0f, 0xae, 0x18]] {
            let f = AssistFixture()
            f.cpu.system.cr0 |= setCR0
            f.cpu.system.cr4 &= ~clearCR4
            f.cpu.registers.gpr[Self.rax] = 0x7fff_0000   // unmapped: the exception above comes first
            let kind: AssistedInstruction = bytes[2] == 0x10 ? .ldmxcsr : .stmxcsr
            #expect(f.run(bytes) == .raisedException(kind, exception))
        }
    }

    // MARK: Writes: permissions, accessed and dirty bits

    @Test func writesToReadOnlyPagesRaisePageFaultUnderWP() {
        let f = AssistFixture()
        f.identityMap(0x50_0000, flags: 0)   // read-only
        f.cpu.registers.gpr[Self.rax] = 0x50_0000
        #expect(f.run([0x0f, 0xae, 0x18]) == .raisedException(.stmxcsr, .pageFault(address: 0x50_0000, errorCode: 3)))
        #expect(f.memory.bytes(at: 0x50_0000, count: 4) == [0, 0, 0, 0])

        let g = AssistFixture()
        g.identityMap(0x50_0000, flags: 0)
        g.cpu.system.cr0 &= ~X86SystemRegisters.cr0WP   // supervisor writes ignore R/W
        g.cpu.registers.gpr[Self.rax] = 0x50_0000
        #expect(g.run([0x0f, 0xae, 0x18]) == .completed(.stmxcsr))
        #expect(g.memory.bytes(at: 0x50_0000, count: 4) == UInt32(0x1f80).bytes)

        let h = AssistFixture()
        h.identityMap(0x50_0000, flags: 0)
        h.memory.store(UInt32(0x1f80).bytes, at: 0x50_0000)
        h.cpu.registers.gpr[Self.rax] = 0x50_0000
        #expect(h.run([0x0f, 0xae, 0x10]) == .completed(.ldmxcsr), "reads of read-only pages are fine")
    }

    @Test func smapForbidsUserPagesUnlessAC() {
        let f = AssistFixture()
        f.identityMap(0x50_0000, flags: TestPageTables.writable | TestPageTables.user)
        f.cpu.system.cr4 |= X86SystemRegisters.cr4SMAP
        f.cpu.registers.gpr[Self.rax] = 0x50_0000
        #expect(f.run([0x0f, 0xae, 0x18]) == .raisedException(.stmxcsr, .pageFault(address: 0x50_0000, errorCode: 3)))
        #expect(f.run([0x0f, 0xae, 0x10]) == .raisedException(.ldmxcsr, .pageFault(address: 0x50_0000, errorCode: 1)))
        f.cpu.registers.rflags |= R.alignmentCheck   // stac
        #expect(f.run([0x0f, 0xae, 0x18]) == .completed(.stmxcsr))

        let g = AssistFixture()
        g.identityMap(0x50_0000)   // supervisor page
        g.cpu.system.cr4 |= X86SystemRegisters.cr4SMAP
        g.cpu.registers.gpr[Self.rax] = 0x50_0000
        #expect(g.run([0x0f, 0xae, 0x18]) == .completed(.stmxcsr))
    }

    @Test func protectionKeysAreRefused() {
        let f = AssistFixture()
        f.identityMap(0x50_0000, flags: TestPageTables.writable | TestPageTables.user)
        f.cpu.system.cr4 |= X86SystemRegisters.cr4PKE
        f.cpu.registers.gpr[Self.rax] = 0x50_0000
        guard case .refused(let r) = f.run([0x0f, 0xae, 0x18]) else {
            Issue.record("expected a refusal")
            return
        }
        #expect(r.reason.contains("protection keys"))
        #expect(f.memory.writes.isEmpty)
    }

    @Test func accessesSetAccessedAndWritesSetDirty() {
        let f = AssistFixture()
        f.identityMap(0x50_0000)
        f.identityMap(0x60_0000)
        f.cpu.registers.gpr[Self.rax] = 0x50_0000
        f.cpu.registers.gpr[Self.rbx] = 0x60_0000
        #expect(f.run([0x0f, 0xae, 0x18]) == .completed(.stmxcsr))
        let pte = f.memory.load64(f.cpu.tables.entryAddress(0x50_0000, level: 1))
        #expect(pte & (TestPageTables.accessed | TestPageTables.dirty) == TestPageTables.accessed | TestPageTables.dirty)
        for level in 2...4 {
            let entry = f.memory.load64(f.cpu.tables.entryAddress(0x50_0000, level: level))
            #expect(entry & TestPageTables.accessed != 0 && entry & TestPageTables.dirty == 0, "level \(level)")
        }
        f.cpu.registers.rip = AssistFixture.code
        f.memory.store(UInt32(0x1f80).bytes, at: 0x60_0000)
        #expect(f.run([0x0f, 0xae, 0x13]) == .completed(.ldmxcsr))  // ldmxcsr [rbx]
        let readPTE = f.memory.load64(f.cpu.tables.entryAddress(0x60_0000, level: 1))
        #expect(readPTE & TestPageTables.accessed != 0 && readPTE & TestPageTables.dirty == 0)
    }

    @Test func aChangedEntryMakesTheWalkStartOver() {
        let f = AssistFixture()
        f.identityMap(0x50_0000)
        f.cpu.registers.gpr[Self.rax] = 0x50_0000
        f.memory.failNextCompareExchange = true
        #expect(f.run([0x0f, 0xae, 0x18]) == .completed(.stmxcsr))
        let pte = f.memory.load64(f.cpu.tables.entryAddress(0x50_0000, level: 1))
        #expect(pte & TestPageTables.dirty != 0)
    }

    // MARK: fxsave, fxrstor

    func fixtureWithFPUState() -> AssistFixture {
        let f = AssistFixture()
        f.identityMap(0x50_0000, size: 0x2000)
        var fpu = FXSaveImage.initial(mxcsrMask: 0x2ffff)
        fpu.fcw = 0x27f
        fpu.fsw = 0x3800
        fpu.abridgedTagWord = 0x80
        fpu.lastOpcode = 0x7ab
        fpu.lastInstructionPointer = 0xffff_8000_1234_5678
        fpu.lastDataPointer = 0x0000_7fff_8765_4320
        fpu.mxcsr = 0x9fc0
        fpu.setST(7, (0..<10).map { UInt8(0xe0 + $0) })
        for i in 0..<16 { fpu.setXMM(i, (0..<16).map { UInt8(i * 16 + $0) }) }
        f.cpu.fpu = fpu
        return f
    }

    @Test func fxsave64StoresTheImage() {
        let f = fixtureWithFPUState()
        f.memory.store([UInt8](repeating: 0xee, count: 512), at: 0x50_0000)
        f.cpu.registers.gpr[Self.rax] = 0x50_0000
        #expect(f.run([0x48, 0x0f, 0xae, 0x00]) == .completed(.fxsave))
        let image = f.memory.bytes(at: 0x50_0000, count: 512)
        #expect(Array(image[0..<416]) == Array(f.cpu.fpu.bytes[0..<416]))
        #expect(Array(image[8..<16]) == UInt64(0xffff_8000_1234_5678).bytes)
        #expect(Array(image[28..<32]) == UInt32(0x2ffff).bytes)
        #expect(Array(image[160 + 16 * 15 ..< 176 + 16 * 15]) == (0..<16).map { UInt8(240 + $0) })
        #expect(image[416..<512].allSatisfy { $0 == 0xee }, "reserved and software bytes are left alone")
        #expect(f.cpu.registers.rip == AssistFixture.code + 4)
    }

    @Test func fxsaveWithoutRexWStores32BitPointers() {
        let f = fixtureWithFPUState()
        f.cpu.registers.gpr[Self.rax] = 0x50_0000
        f.cpu.registers.gpr[Self.rbx] = 0
        #expect(f.run([0x0f, 0xae, 0x04, 0x18]) == .completed(.fxsave))  // fxsave [rax + rbx]
        let image = f.memory.bytes(at: 0x50_0000, count: 416)
        #expect(Array(image[8..<16]) == [0x78, 0x56, 0x34, 0x12, 0, 0, 0, 0], "FIP[31:0], FCS 0")
        #expect(Array(image[16..<24]) == [0x20, 0x43, 0x65, 0x87, 0, 0, 0, 0], "FDP[31:0], FDS 0")
        #expect(Array(image[0..<8]) == Array(f.cpu.fpu.bytes[0..<8]))
        #expect(Array(image[24..<416]) == Array(f.cpu.fpu.bytes[24..<416]))
    }

    @Test func fxrstor64LoadsTheImageButKeepsTheMask() {
        let f = fixtureWithFPUState()
        var image = FXSaveImage.initial(mxcsrMask: 0x1234)   // FXRSTOR ignores the mask in memory
        image.fcw = 0x37a
        image.mxcsr = 0x1f80 | 0x20
        image.lastInstructionPointer = 0xffff_ffff_8100_0000
        for i in 0..<16 { image.setXMM(i, [UInt8](repeating: UInt8(0xa0 + i), count: 16)) }
        f.memory.store(image.bytes, at: 0x50_0000)
        let before = f.cpu.fpu
        f.cpu.registers.gpr[Self.rcx] = 0x50_0000
        #expect(f.run([0x48, 0x0f, 0xae, 0x09]) == .completed(.fxrstor))  // fxrstor64 [rcx]
        #expect(f.cpu.fpu.fcw == 0x37a)
        #expect(f.cpu.fpu.mxcsr == 0x1fa0)
        #expect(f.cpu.fpu.mxcsrMask == 0x2ffff)
        #expect(f.cpu.fpu.lastInstructionPointer == 0xffff_ffff_8100_0000)
        #expect(f.cpu.fpu.xmm(12) == [UInt8](repeating: 0xac, count: 16))
        #expect(Array(f.cpu.fpu.bytes[416..<512]) == Array(before.bytes[416..<512]))
    }

    @Test func fxrstorWithoutRexWZeroExtendsThePointers() {
        let f = fixtureWithFPUState()
        var image = f.cpu.fpu.memoryImage(.bits64)
        image.replaceSubrange(8..<16, with: [0x11, 0x22, 0x33, 0x44, 0x08, 0x00, 0x00, 0x00])   // FIP, FCS 8
        image.replaceSubrange(16..<24, with: [0x55, 0x66, 0x77, 0x88, 0x10, 0x00, 0x00, 0x00])  // FDP, FDS 0x10
        f.memory.store(image, at: 0x50_0000)
        f.cpu.registers.gpr[Self.rcx] = 0x50_0000
        #expect(f.run([0x0f, 0xae, 0x09]) == .completed(.fxrstor))
        #expect(f.cpu.fpu.lastInstructionPointer == 0x4433_2211)
        #expect(f.cpu.fpu.lastDataPointer == 0x8877_6655)
    }

    @Test func fxrstorOfReservedMXCSRBitsRaisesGP() {
        let f = fixtureWithFPUState()
        var image = f.cpu.fpu
        image.mxcsr = 0x4_1f80   // bit 18: reserved under mask 0x2ffff
        f.memory.store(image.bytes, at: 0x50_0000)
        let before = f.cpu.fpu
        f.cpu.registers.gpr[Self.rcx] = 0x50_0000
        #expect(f.run([0x48, 0x0f, 0xae, 0x09]) == .raisedException(.fxrstor, .generalProtection(errorCode: 0)))
        #expect(f.cpu.fpu == before)
    }

    @Test(arguments: [0x50_0008 as UInt64, 0x50_0001, 0x50_000f])
    func misalignedFxsaveRaisesGP(address: UInt64) {
        let f = fixtureWithFPUState()
        f.cpu.registers.gpr[Self.rax] = address
        #expect(f.run([0x48, 0x0f, 0xae, 0x00]) == .raisedException(.fxsave, .generalProtection(errorCode: 0)))
        #expect(f.cpu.registers.rip == AssistFixture.code)
        #expect(f.memory.writes.isEmpty)
    }

    @Test func misalignedStackBasedFxrstorStillRaisesGP() {
        let f = fixtureWithFPUState()
        f.cpu.registers.gpr[Self.rsp] = 0x50_0008
        #expect(f.run([0x48, 0x0f, 0xae, 0x0c, 0x24]) == .raisedException(.fxrstor, .generalProtection(errorCode: 0)))
    }

    @Test func fxsaveIntoAPartlyUnmappedAreaWritesNothing() {
        let f = fixtureWithFPUState()
        f.cpu.tables.map(0x7000_0000, to: 0x80_0000)   // 0x70001000 is not mapped
        f.cpu.registers.gpr[Self.rax] = 0x7000_0f00
        let outcome = f.run([0x48, 0x0f, 0xae, 0x00])
        #expect(outcome == .raisedException(.fxsave, .pageFault(address: 0x7000_1000, errorCode: 2)))
        #expect(f.memory.writes.isEmpty)
        #expect(f.memory.bytes(at: 0x80_0f00, count: 256).allSatisfy { $0 == 0 })
    }

    @Test func fxsaveAcrossPagesWritesEachPage() {
        let f = fixtureWithFPUState()
        f.cpu.tables.map(0x7000_0000, to: 0x80_0000)
        f.cpu.tables.map(0x7000_1000, to: 0x30_0000)
        f.cpu.registers.gpr[Self.rax] = 0x7000_0f00
        #expect(f.run([0x48, 0x0f, 0xae, 0x00]) == .completed(.fxsave))
        let image = f.memory.bytes(at: 0x80_0f00, count: 256) + f.memory.bytes(at: 0x30_0000, count: 160)
        #expect(image == Array(f.cpu.fpu.bytes[0..<416]))
    }

    @Test func theLast96BytesOfTheAreaMustBeMappedToo() {
        // Bytes 416..511 are not written, but belong to the 512-byte operand.
        let f = fixtureWithFPUState()
        f.cpu.tables.map(0x7000_0000, to: 0x80_0000)
        f.cpu.registers.gpr[Self.rax] = 0x7000_0e80   // bytes 384.. are on the next page
        #expect(f.run([0x48, 0x0f, 0xae, 0x00]) == .raisedException(.fxsave, .pageFault(address: 0x7000_1000, errorCode: 2)))
        f.cpu.registers.gpr[Self.rax] = 0x7000_0e00   // 512 bytes end at the page end
        #expect(f.run([0x48, 0x0f, 0xae, 0x00]) == .completed(.fxsave))
    }

    @Test(arguments: [X86SystemRegisters.cr0TS, X86SystemRegisters.cr0EM])
    func fxsaveAndFxrstorRaiseNMWithTSOrEM(bit: UInt64) {
        for bytes: [UInt8] in [[0x48, 0x0f, 0xae, 0x00], [0x48, 0x0f, 0xae, 0x08]] {
            let f = fixtureWithFPUState()
            f.cpu.system.cr0 |= bit
            f.cpu.registers.gpr[Self.rax] = 0x50_0008   // misaligned too: #NM comes first
            let kind: AssistedInstruction = bytes[3] == 0x00 ? .fxsave : .fxrstor
            #expect(f.run(bytes) == .raisedException(kind, .deviceNotAvailable))
        }
    }

    @Test func fxsaveWithoutOSFXSRIsRefused() {
        let f = fixtureWithFPUState()
        f.cpu.system.cr4 &= ~X86SystemRegisters.cr4OSFXSR
        f.cpu.registers.gpr[Self.rax] = 0x50_0000
        guard case .refused(let r) = f.run([0x48, 0x0f, 0xae, 0x00]) else {
            Issue.record("expected a refusal")
            return
        }
        #expect(r.instruction == .fxsave)
        #expect(f.memory.writes.isEmpty)
    }

    // MARK: When the assist refuses

    @Test func onlyIn64BitModeAtCPL0() {
        for change in [{ (s: inout X86SystemRegisters) in s.efer = 0 },
                       { (s: inout X86SystemRegisters) in s.codeIs64Bit = false },
                       { (s: inout X86SystemRegisters) in s.cpl = 3 }] {
            let f = AssistFixture()
            change(&f.cpu.system)
            guard case .refused = f.run([0x0f, 0x01, 0xca]) else {
                Issue.record("expected a refusal")
                continue
            }
            #expect(f.cpu.registerWrites == 0)
            #expect(f.counts.total == 0)
        }
    }

    @Test func singleSteppingIsRefused() {
        let f = AssistFixture()
        f.cpu.registers.rflags |= R.trap
        guard case .refused(let r) = f.run([0x0f, 0x01, 0xca]) else {
            Issue.record("expected a refusal")
            return
        }
        #expect(r.reason.contains("TF"))
    }

    @Test func anExceptionBeingDeliveredIsRefused() {
        let f = AssistFixture()
        f.cpu.events.exceptionInFlight = true
        guard case .refused = f.run([0x0f, 0x01, 0xca]) else {
            Issue.record("expected a refusal")
            return
        }
        let g = AssistFixture()
        g.cpu.events.nmiInFlight = true
        guard case .refused = g.run([0x9b]) else {
            Issue.record("expected a refusal")
            return
        }
    }

    @Test func aFaultWaitsForAnInterruptBeingDelivered() {
        let f = fixtureWithFPUState()
        f.cpu.events.interruptInFlight = true
        f.cpu.registers.gpr[Self.rax] = 0x50_0008
        #expect(f.run([0x48, 0x0f, 0xae, 0x00]) == .deferred(.fxsave))
        #expect(f.cpu.injected.isEmpty)
        // A completion does not: the interrupt is taken after the instruction.
        f.cpu.registers.gpr[Self.rax] = 0x50_0000
        #expect(f.run([0x48, 0x0f, 0xae, 0x00]) == .completed(.fxsave))
    }

    @Test func failingStateAccessIsARefusalWithoutSideEffects() {
        for name in ["registers", "systemRegisters", "events", "fpu", "translate"] {
            let f = AssistFixture()
            f.identityMap(0x50_0000)
            f.cpu.registers.gpr[Self.rax] = 0x50_0000
            f.cpu.failing = [name]
            guard case .refused(let r) = f.run([0x0f, 0xae, 0x18]) else {
                Issue.record("\(name): expected a refusal")
                continue
            }
            #expect(r.reason.contains("failed (test)"), "\(name): \(r)")
            #expect(f.memory.writes.isEmpty)
            #expect(f.cpu.registerWrites == 0)
        }
    }

    @Test func unknownInstructionsAreRefusedUntouched() {
        let f = AssistFixture()
        let outcome = f.run([0xf0, 0x48, 0x0f, 0xc7, 0x0e])   // lock cmpxchg16b
        guard case .refused(let r) = outcome else {
            Issue.record("expected a refusal")
            return
        }
        #expect(r.instruction == nil)
        #expect(!outcome.resumesGuest)
        #expect(f.cpu.registerWrites == 0 && f.cpu.injected.isEmpty && f.memory.writes.isEmpty)
    }

    // MARK: Instruction bytes

    @Test func withoutReportedBytesTheyAreFetchedAtRIP() {
        let f = AssistFixture()
        f.cpu.tables.map(0x7000_0000, to: 0x80_0000)
        f.cpu.tables.map(0x7000_1000, to: 0x20_0000)
        f.cpu.registers.rip = 0x7000_0ffe
        f.memory.store([0xf3, 0x48], at: 0x80_0ffe)            // the instruction crosses a page
        f.memory.store([0x0f, 0xb8, 0xc8], at: 0x20_0000)
        f.cpu.registers.gpr[Self.rax] = 0xff
        #expect(f.assist.complete(reportedBytes: nil, cpu: f.cpu, memory: f.memory) == .completed(.popcnt))
        #expect(f.cpu.registers.gpr[Self.rcx] == 8)
        #expect(f.cpu.registers.rip == 0x7000_1003)

        let g = AssistFixture()
        g.cpu.registers.rip = 0x7000_0000   // not mapped
        guard case .refused = g.assist.complete(reportedBytes: [], cpu: g.cpu, memory: g.memory) else {
            Issue.record("expected a refusal")
            return
        }
    }

    // MARK: Statistics

    @Test func statisticsCountPerKindAndSummarize() {
        let f = AssistFixture()
        f.run([0xcc])
        for _ in 0..<4 { f.run([0x0f, 0x01, 0xca]); f.run([0x0f, 0x01, 0xcb]) }
        f.run([0xf3, 0x0f, 0xb8, 0xc0])
        f.cpu.system.cr0 |= X86SystemRegisters.cr0TS | X86SystemRegisters.cr0MP
        f.run([0x9b])
        f.run([0x0f, 0x0b])   // ud2: refused, not counted
        let c = f.counts
        #expect(c[.int3] == 1 && c[.clac] == 4 && c[.stac] == 4 && c[.popcnt] == 1 && c[.fwait] == 1)
        #expect(c.total == 11)
        #expect(c.exceptionsRaised == 1)
        #expect(c.summary == "PVM assist completed 11 instructions: int3 1, clac 4, stac 4, fwait 1, popcnt 1, 1 raised an exception")
        #expect(InstructionAssistCounts().description == "none")
        #expect(InstructionAssistCounts(byKind: [.fxsave: 1]).summary == "PVM assist completed 1 instruction: fxsave 1")
    }

    @Test func modes() {
        #expect(InstructionAssist.Mode(rawValue: "auto") == .automatic)
        #expect(InstructionAssist.Mode.automatic.isEnabled(onPVMHost: true))
        #expect(!InstructionAssist.Mode.automatic.isEnabled(onPVMHost: false))
        #expect(InstructionAssist.Mode.on.isEnabled(onPVMHost: false))
        #expect(!InstructionAssist.Mode.off.isEnabled(onPVMHost: true))
    }
}

import Testing
@testable import SwiftletVCPU

@Suite struct X86DecoderTests {
    func decoded(_ bytes: [UInt8]) throws -> DecodedInstruction {
        try X86Decoder.decode(bytes).get()
    }

    func refusal(_ bytes: [UInt8]) -> InstructionAssistRefusal? {
        if case .failure(let r) = X86Decoder.decode(bytes) { return r }
        return nil
    }

    @Test func singleByteAndFixedInstructions() throws {
        #expect(try decoded([0xcc, 0x48, 0x8b]) == DecodedInstruction(kind: .int3, length: 1))
        #expect(try decoded([0x9b, 0xd9, 0x7d, 0xfc]) == DecodedInstruction(kind: .fwait, length: 1), "fstcw is fwait + fnstcw: only fwait")
        #expect(try decoded([0x0f, 0x01, 0xca, 0x9c]) == DecodedInstruction(kind: .clac, length: 3))
        #expect(try decoded([0x0f, 0x01, 0xcb]) == DecodedInstruction(kind: .stac, length: 3))
    }

    @Test(arguments: [
        // bytes, operand size, destination, source register
        ([0xf3, 0x48, 0x0f, 0xb8, 0xc8], 8, 1, 0),        // popcnt rcx, rax
        ([0xf3, 0x0f, 0xb8, 0xc8], 4, 1, 0),              // popcnt ecx, eax
        ([0x66, 0xf3, 0x0f, 0xb8, 0xc8], 2, 1, 0),        // popcnt cx, ax
        ([0xf3, 0x66, 0x0f, 0xb8, 0xc8], 2, 1, 0),        // prefixes in either order
        ([0x66, 0xf3, 0x48, 0x0f, 0xb8, 0xc8], 8, 1, 0),  // REX.W wins over 66
        ([0xf3, 0x45, 0x0f, 0xb8, 0xc8], 4, 9, 8),        // REX.R and REX.B: popcnt r9d, r8d
        ([0xf3, 0x4d, 0x0f, 0xb8, 0xc8], 8, 9, 8),        // and REX.W: popcnt r9, r8
        ([0xf3, 0x41, 0x0f, 0xb8, 0xc7], 4, 0, 15),       // popcnt eax, r15d
    ] as [([UInt8], Int, Int, Int)])
    func popcntRegisterForms(bytes: [UInt8], size: Int, destination: Int, source: Int) throws {
        let d = try decoded(bytes)
        #expect(d.kind == .popcnt)
        #expect(d.length == bytes.count)
        #expect(d.operandSize == size)
        #expect(d.destination == destination)
        #expect(d.operand == .register(source))
    }

    @Test(arguments: [
        // RIP-relative: popcnt rcx, [rip + 0x2d35]
        ([0xf3, 0x48, 0x0f, 0xb8, 0x0d, 0x35, 0x2d, 0x00, 0x00], X86MemoryOperand(displacement: 0x2d35, ripRelative: true)),
        // [rax + rbx]
        ([0xf3, 0x48, 0x0f, 0xb8, 0x04, 0x18], X86MemoryOperand(base: 0, index: 3)),
        // [rbx] (mod 00, rm 011)
        ([0xf3, 0x48, 0x0f, 0xb8, 0x03], X86MemoryOperand(base: 3)),
        // [rbp - 8]
        ([0xf3, 0x48, 0x0f, 0xb8, 0x45, 0xf8], X86MemoryOperand(base: 5, displacement: -8)),
        // [rsp] needs a SIB byte: index 100 = none
        ([0xf3, 0x48, 0x0f, 0xb8, 0x04, 0x24], X86MemoryOperand(base: 4)),
        // REX.X: index 100 is r12
        ([0xf3, 0x4a, 0x0f, 0xb8, 0x04, 0x20], X86MemoryOperand(base: 0, index: 12)),
        // REX.B: base 101 with mod 00 and a SIB is "no base"; with REX.B and mod 01 it is r13
        ([0xf3, 0x49, 0x0f, 0xb8, 0x44, 0x8d, 0x10], X86MemoryOperand(base: 13, index: 1, scale: 4, displacement: 0x10)),
        // gs:[disp32], no base, no index
        ([0x65, 0xf3, 0x48, 0x0f, 0xb8, 0x04, 0x25, 0x10, 0x00, 0x00, 0x00], X86MemoryOperand(displacement: 0x10, segment: .gs)),
        // fs:[rsi + rdi*8 + 0x12345678]
        ([0x64, 0xf3, 0x48, 0x0f, 0xb8, 0x84, 0xfe, 0x78, 0x56, 0x34, 0x12],
         X86MemoryOperand(base: 6, index: 7, scale: 8, displacement: 0x1234_5678, segment: .fs)),
        // negative disp32
        ([0xf3, 0x48, 0x0f, 0xb8, 0x81, 0x00, 0xff, 0xff, 0xff], X86MemoryOperand(base: 1, displacement: -256)),
        // address-size prefix: [eax]
        ([0x67, 0xf3, 0x0f, 0xb8, 0x00], X86MemoryOperand(base: 0, addressSize32: true)),
        // a repeated identical prefix is allowed
        ([0x3e, 0x3e, 0xf3, 0x0f, 0xb8, 0x00], X86MemoryOperand(base: 0, segment: .ds)),
    ] as [([UInt8], X86MemoryOperand)])
    func memoryOperands(bytes: [UInt8], operand: X86MemoryOperand) throws {
        let d = try decoded(bytes + [0x90, 0x90])   // trailing bytes of the next instruction
        #expect(d.kind == .popcnt)
        #expect(d.length == bytes.count)
        #expect(d.operand == .memory(operand))
    }

    @Test func stackSegmentDefault() {
        #expect(X86MemoryOperand(base: 4).usesStackSegment)
        #expect(X86MemoryOperand(base: 5, displacement: 8).usesStackSegment)
        #expect(!X86MemoryOperand(base: 12).usesStackSegment, "r12 is not RSP")
        #expect(!X86MemoryOperand(base: 4, segment: .ds).usesStackSegment)
        #expect(X86MemoryOperand(base: 0, segment: .ss).usesStackSegment)
        #expect(!X86MemoryOperand(displacement: 0, ripRelative: true).usesStackSegment)
    }

    @Test(arguments: [
        ([0x0f, 0xae, 0x55, 0xf0], AssistedInstruction.ldmxcsr, 4),
        ([0x0f, 0xae, 0x5d, 0xf4], .stmxcsr, 4),
        ([0x48, 0x0f, 0xae, 0x5d, 0xf4], .stmxcsr, 4),   // REX.W is ignored by ldmxcsr/stmxcsr
        ([0x48, 0x0f, 0xae, 0x04, 0x18], .fxsave, 8),
        ([0x0f, 0xae, 0x04, 0x18], .fxsave, 4),
        ([0x4b, 0x0f, 0xae, 0x0c, 0x37], .fxrstor, 8),
        ([0x0f, 0xae, 0x0d, 0x00, 0x10, 0x00, 0x00], .fxrstor, 4),
    ] as [([UInt8], AssistedInstruction, Int)])
    func group15(bytes: [UInt8], kind: AssistedInstruction, size: Int) throws {
        let d = try decoded(bytes)
        #expect(d.kind == kind)
        #expect(d.length == bytes.count)
        #expect(d.operandSize == size)
        guard case .memory = d.operand else {
            Issue.record("expected a memory operand")
            return
        }
    }

    @Test func fxrstorWithRex() throws {
        let d = try decoded([0x4b, 0x0f, 0xae, 0x0c, 0x37])
        #expect(d.operand == .memory(X86MemoryOperand(base: 15, index: 14)))
    }

    @Test(arguments: [
        ([], nil),
        ([0xf0, 0x48, 0x0f, 0xc7, 0x0e], nil),            // lock cmpxchg16b
        ([0x0f, 0x01, 0xf8], nil),                        // swapgs
        ([0x0f, 0xae, 0x38], nil),                        // clflush (0f ae /7)
        ([0x0f, 0xae, 0x28], nil),                        // xrstor (0f ae /5)
        ([0x0f, 0xae, 0xc0], AssistedInstruction.fxsave), // mod 11: not fxsave
        ([0x0f, 0xae, 0xd0], .ldmxcsr),                   // mod 11
        ([0x66, 0x0f, 0xae, 0x00], .fxsave),
        ([0xf3, 0x0f, 0xae, 0x10], .ldmxcsr),
        ([0xf0, 0x0f, 0xae, 0x00], .fxsave),              // LOCK: #UD
        ([0xc5, 0xf8, 0xae, 0x10], nil),                  // VEX vldmxcsr
        ([0xc4, 0xe1, 0x78, 0xae, 0x18], nil),            // VEX vstmxcsr
        ([0x0f, 0xb8, 0xc0], nil),                        // no F3: jmpe, not popcnt
        ([0xf2, 0x0f, 0xb8, 0xc0], nil),
        ([0xf2, 0xf3, 0x0f, 0xb8, 0xc0], nil),            // F2 and F3
        ([0xf0, 0xf3, 0x0f, 0xb8, 0xc0], .popcnt),        // LOCK popcnt: #UD
        ([0x64, 0x65, 0xf3, 0x0f, 0xb8, 0x00], nil),      // two segment overrides
        ([0xf3, 0x48, 0x66, 0x0f, 0xb8, 0xc0], nil),      // REX not last
        ([0x66, 0xcc], .int3),
        ([0x48, 0x9b], .fwait),
        ([0x66, 0x0f, 0x01, 0xca], .clac),
        ([0xf3, 0x48, 0x0f, 0xb8], .popcnt),              // no ModRM
        ([0xf3, 0x48, 0x0f, 0xb8, 0x05, 0x00, 0x10], .popcnt), // disp32 cut short
        ([0xf3, 0x48, 0x0f, 0xb8, 0x04], .popcnt),        // SIB missing
        ([0x0f, 0xae], nil),
        ([UInt8](repeating: 0x66, count: 14) + [0xf3, 0x0f, 0xb8, 0xc0], nil),  // longer than 15 bytes
    ] as [([UInt8], AssistedInstruction?)])
    func refusedEncodings(bytes: [UInt8], named: AssistedInstruction?) {
        guard let r = refusal(bytes) else {
            Issue.record("\(bytes) decoded as \(X86Decoder.decode(bytes))")
            return
        }
        #expect(r.instruction == named, "\(r)")
        #expect(!r.reason.isEmpty)
    }

    @Test func fifteenBytesIsTheLimit() throws {
        let bytes = [UInt8](repeating: 0x3e, count: 11) + [0xf3, 0x0f, 0xb8, 0xc0]
        #expect(bytes.count == 15)
        #expect(try decoded(bytes).length == 15)
    }
}

/// The instructions the PVM instruction assist completes.
public enum AssistedInstruction: String, CaseIterable, Sendable, Hashable, CustomStringConvertible {
    case int3, clac, stac, fwait, popcnt, ldmxcsr, stmxcsr, fxsave, fxrstor

    public var description: String { rawValue }
}

/// A segment-override prefix. In 64-bit mode only FS and GS add a base;
/// SS decides whether a bad address raises #SS rather than #GP.
public enum X86Segment: Sendable, Equatable {
    case es, cs, ss, ds, fs, gs
}

/// A decoded ModRM memory operand (64-bit mode).
public struct X86MemoryOperand: Sendable, Equatable {
    /// Register numbers 0–15 in encoding order (RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8–R15).
    public var base: Int?
    public var index: Int?
    public var scale: UInt64 = 1
    public var displacement: Int64 = 0
    /// RIP-relative: the displacement counts from the next instruction.
    public var ripRelative = false
    public var segment: X86Segment?
    /// Address-size prefix 0x67: the effective address is truncated to 32 bits.
    public var addressSize32 = false

    public init(base: Int? = nil, index: Int? = nil, scale: UInt64 = 1, displacement: Int64 = 0,
                ripRelative: Bool = false, segment: X86Segment? = nil, addressSize32: Bool = false) {
        self.base = base; self.index = index; self.scale = scale; self.displacement = displacement
        self.ripRelative = ripRelative; self.segment = segment; self.addressSize32 = addressSize32
    }

    /// Whether the access goes through SS: an SS override, or no override
    /// and RSP or RBP as the base register. A non-canonical SS access
    /// raises #SS(0) instead of #GP(0).
    public var usesStackSegment: Bool {
        if let segment { return segment == .ss }
        return base == 4 || base == 5
    }
}

public enum X86Operand: Sendable, Equatable {
    case register(Int)
    case memory(X86MemoryOperand)
}

/// One decoded instruction the assist can complete.
public struct DecodedInstruction: Sendable, Equatable {
    public var kind: AssistedInstruction
    /// Bytes, prefixes included: RIP advances by this much.
    public var length: Int
    /// popcnt: 2, 4 or 8. fxsave/fxrstor: 8 with REX.W (64-bit pointer
    /// format), else 4. Otherwise 0.
    public var operandSize: Int = 0
    /// popcnt's destination register.
    public var destination: Int?
    /// popcnt's source; the memory operand of ldmxcsr, stmxcsr, fxsave, fxrstor.
    public var operand: X86Operand?

    public init(kind: AssistedInstruction, length: Int, operandSize: Int = 0, destination: Int? = nil, operand: X86Operand? = nil) {
        self.kind = kind; self.length = length; self.operandSize = operandSize
        self.destination = destination; self.operand = operand
    }
}

/// Why the assist did not complete an instruction; the VM then stops with
/// the usual emulation-failure diagnosis.
public struct InstructionAssistRefusal: Error, Sendable, Equatable, CustomStringConvertible {
    /// The instruction, when it was recognized.
    public var instruction: AssistedInstruction?
    public var reason: String

    public init(_ instruction: AssistedInstruction?, _ reason: String) {
        self.instruction = instruction
        self.reason = reason
    }

    public var description: String {
        if let instruction { return "\(instruction): \(reason)" }
        return reason
    }
}

/// Decodes the few x86-64 instructions the assist completes, from the bytes
/// at RIP. Only 64-bit mode; everything it does not fully understand is
/// refused rather than guessed at.
public enum X86Decoder {
    /// The architectural limit; longer encodings raise #GP.
    public static let maximumLength = 15

    public static func decode(_ bytes: [UInt8]) -> Result<DecodedInstruction, InstructionAssistRefusal> {
        var cursor = Cursor(bytes: bytes)
        do {
            return .success(try decodeInstruction(&cursor))
        } catch {
            return .failure(error)
        }
    }

    private struct Cursor {
        let bytes: [UInt8]
        var position = 0
        var instruction: AssistedInstruction?

        mutating func next() throws(InstructionAssistRefusal) -> UInt8 {
            guard position < bytes.count else {
                throw InstructionAssistRefusal(instruction, "instruction bytes end after \(bytes.count) bytes (" + assistHexBytes(bytes) + ")")
            }
            guard position < X86Decoder.maximumLength else {
                throw InstructionAssistRefusal(instruction, "encoding longer than 15 bytes")
            }
            defer { position += 1 }
            return bytes[position]
        }

        mutating func signed8() throws(InstructionAssistRefusal) -> Int64 { Int64(Int8(bitPattern: try next())) }

        mutating func signed32() throws(InstructionAssistRefusal) -> Int64 {
            var v: UInt32 = 0
            for b in 0..<4 { v |= UInt32(try next()) << (8 * UInt32(b)) }
            return Int64(Int32(bitPattern: v))
        }
    }

    private struct Prefixes {
        var lock = false
        var repeatPrefix: UInt8?     // F2 or F3
        var segment: X86Segment?
        var operandSize16 = false    // 66
        var addressSize32 = false    // 67
        var rex: UInt8 = 0
        var any = false

        var rexW: Bool { rex & 8 != 0 }
        var rexR: Int { rex & 4 != 0 ? 8 : 0 }
        var rexX: Int { rex & 2 != 0 ? 8 : 0 }
        var rexB: Int { rex & 1 != 0 ? 8 : 0 }
    }

    private static func decodeInstruction(_ c: inout Cursor) throws(InstructionAssistRefusal) -> DecodedInstruction {
        var p = Prefixes()
        var byte = try c.next()
        // Legacy prefixes, in any order; two different ones of a group are
        // refused (which one counts is not architecturally defined).
        prefixLoop: while true {
            switch byte {
            case 0xf0:
                p.lock = true
            case 0xf2, 0xf3:
                if let r = p.repeatPrefix, r != byte { throw InstructionAssistRefusal(nil, "both F2 and F3 prefixes") }
                p.repeatPrefix = byte
            case 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65:
                let segment: X86Segment = switch byte {
                case 0x26: .es
                case 0x2e: .cs
                case 0x36: .ss
                case 0x3e: .ds
                case 0x64: .fs
                default: .gs
                }
                if let s = p.segment, s != segment { throw InstructionAssistRefusal(nil, "two different segment-override prefixes") }
                p.segment = segment
            case 0x66:
                p.operandSize16 = true
            case 0x67:
                p.addressSize32 = true
            default:
                break prefixLoop
            }
            p.any = true
            byte = try c.next()
        }
        if byte & 0xf0 == 0x40 {
            p.rex = byte
            p.any = true
            byte = try c.next()
            // A REX prefix counts only directly before the opcode.
            if [0xf0, 0xf2, 0xf3, 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67].contains(byte) || byte & 0xf0 == 0x40 {
                throw InstructionAssistRefusal(nil, "REX prefix followed by another prefix")
            }
        }

        switch byte {
        case 0xcc:
            c.instruction = .int3
            try requireNoPrefixes(p, .int3)
            return DecodedInstruction(kind: .int3, length: c.position)
        case 0x9b:
            c.instruction = .fwait
            try requireNoPrefixes(p, .fwait)
            return DecodedInstruction(kind: .fwait, length: c.position)
        case 0x0f:
            break
        default:
            throw InstructionAssistRefusal(nil, "not an instruction the assist completes (opcode \(assistHex(byte)))")
        }

        let second = try c.next()
        switch second {
        case 0x01:
            let third = try c.next()
            let kind: AssistedInstruction
            switch third {
            case 0xca: kind = .clac
            case 0xcb: kind = .stac
            default: throw InstructionAssistRefusal(nil, "not an instruction the assist completes (0f 01 \(assistHex(third)))")
            }
            c.instruction = kind
            try requireNoPrefixes(p, kind)
            return DecodedInstruction(kind: kind, length: c.position)

        case 0xb8:
            guard p.repeatPrefix == 0xf3 else {
                throw InstructionAssistRefusal(nil, "0f b8 without the F3 prefix is not popcnt")
            }
            c.instruction = .popcnt
            if p.lock { throw InstructionAssistRefusal(.popcnt, "LOCK prefix (#UD)") }
            let size = p.rexW ? 8 : p.operandSize16 ? 2 : 4
            let (reg, operand) = try decodeModRM(&c, p, modrm: try c.next())
            return DecodedInstruction(kind: .popcnt, length: c.position, operandSize: size, destination: reg, operand: operand)

        case 0xae:
            let modrm = try c.next()
            let kind: AssistedInstruction
            switch (modrm >> 3) & 7 {
            case 0: kind = .fxsave
            case 1: kind = .fxrstor
            case 2: kind = .ldmxcsr
            case 3: kind = .stmxcsr
            default: throw InstructionAssistRefusal(nil, "not an instruction the assist completes (0f ae /\((modrm >> 3) & 7))")
            }
            c.instruction = kind
            if modrm >> 6 == 3 { throw InstructionAssistRefusal(kind, "register operand (a different instruction)") }
            if p.repeatPrefix != nil || p.operandSize16 { throw InstructionAssistRefusal(kind, "66, F2 or F3 prefix (a different instruction)") }
            if p.lock { throw InstructionAssistRefusal(kind, "LOCK prefix (#UD)") }
            let (_, operand) = try decodeModRM(&c, p, modrm: modrm)
            let size = kind == .fxsave || kind == .fxrstor ? (p.rexW ? 8 : 4) : 4
            return DecodedInstruction(kind: kind, length: c.position, operandSize: size, operand: operand)

        default:
            throw InstructionAssistRefusal(nil, "not an instruction the assist completes (0f \(assistHex(second)))")
        }
    }

    private static func requireNoPrefixes(_ p: Prefixes, _ kind: AssistedInstruction) throws(InstructionAssistRefusal) {
        if p.any { throw InstructionAssistRefusal(kind, "prefixes are not supported on this instruction") }
    }

    /// ModRM (with SIB and displacement) in 64-bit mode: the reg field and
    /// the r/m operand.
    private static func decodeModRM(_ c: inout Cursor, _ p: Prefixes, modrm: UInt8) throws(InstructionAssistRefusal) -> (Int, X86Operand) {
        let mod = modrm >> 6
        let reg = Int((modrm >> 3) & 7) | p.rexR
        let rm = Int(modrm & 7)
        if mod == 3 { return (reg, .register(rm | p.rexB)) }

        var m = X86MemoryOperand(segment: p.segment, addressSize32: p.addressSize32)
        if rm == 4 {
            let sib = try c.next()
            m.scale = 1 << UInt64(sib >> 6)
            let index = Int((sib >> 3) & 7) | p.rexX
            m.index = index == 4 ? nil : index   // 100b without REX.X: no index
            let base = Int(sib & 7)
            if base == 5 && mod == 0 {
                m.displacement = try c.signed32()  // no base, disp32
            } else {
                m.base = base | p.rexB
            }
        } else if rm == 5 && mod == 0 {
            m.ripRelative = true
            m.displacement = try c.signed32()
        } else {
            m.base = rm | p.rexB
        }
        if mod == 1 {
            m.displacement = try c.signed8()
        } else if mod == 2 {
            m.displacement = try c.signed32()
        }
        return (reg, .memory(m))
    }
}

func assistHex(_ byte: UInt8) -> String {
    let s = String(byte, radix: 16)
    return s.count == 1 ? "0" + s : s
}

func assistHexBytes(_ bytes: [UInt8]) -> String { bytes.map(assistHex).joined(separator: " ") }

/// What the PVM instruction assist needs from a vCPU and from guest memory,
/// as two small protocols: `VCPUDescriptor` and `GuestMemory` implement
/// them over KVM (VCPUDescriptor+InstructionAssist.swift), and tests
/// implement them over plain in-memory state.

/// RIP, RFLAGS and the 16 general-purpose registers.
public struct X86GeneralRegisters: Sendable, Equatable {
    /// In encoding order: RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8–R15.
    public var gpr: [UInt64]
    public var rip: UInt64
    public var rflags: UInt64

    public init(gpr: [UInt64] = Array(repeating: 0, count: 16), rip: UInt64 = 0, rflags: UInt64 = 0x2) {
        precondition(gpr.count == 16)
        self.gpr = gpr
        self.rip = rip
        self.rflags = rflags
    }

    public static let carry: UInt64 = 1 << 0
    public static let parity: UInt64 = 1 << 2
    public static let auxiliaryCarry: UInt64 = 1 << 4
    public static let zero: UInt64 = 1 << 6
    public static let sign: UInt64 = 1 << 7
    public static let trap: UInt64 = 1 << 8
    public static let overflow: UInt64 = 1 << 11
    public static let alignmentCheck: UInt64 = 1 << 18
}

/// The control state that decides how an instruction executes.
public struct X86SystemRegisters: Sendable, Equatable {
    public var cr0: UInt64
    public var cr3: UInt64
    public var cr4: UInt64
    public var efer: UInt64
    /// The current privilege level.
    public var cpl: UInt8
    /// CS.L: 64-bit code (with EFER.LMA).
    public var codeIs64Bit: Bool
    public var fsBase: UInt64
    public var gsBase: UInt64

    public init(cr0: UInt64 = 0x8005_0033, cr3: UInt64 = 0, cr4: UInt64 = 0x620, efer: UInt64 = 0x500, cpl: UInt8 = 0,
                codeIs64Bit: Bool = true, fsBase: UInt64 = 0, gsBase: UInt64 = 0) {
        self.cr0 = cr0; self.cr3 = cr3; self.cr4 = cr4; self.efer = efer; self.cpl = cpl
        self.codeIs64Bit = codeIs64Bit; self.fsBase = fsBase; self.gsBase = gsBase
    }

    // CR0
    public static let cr0MP: UInt64 = 1 << 1
    public static let cr0EM: UInt64 = 1 << 2
    public static let cr0TS: UInt64 = 1 << 3
    public static let cr0NE: UInt64 = 1 << 5
    public static let cr0WP: UInt64 = 1 << 16
    public static let cr0PG: UInt64 = 1 << 31
    // CR4
    public static let cr4OSFXSR: UInt64 = 1 << 9
    public static let cr4LA57: UInt64 = 1 << 12
    public static let cr4SMAP: UInt64 = 1 << 21
    public static let cr4PKE: UInt64 = 1 << 22
    public static let cr4PKS: UInt64 = 1 << 24
    // EFER
    public static let eferLMA: UInt64 = 1 << 10

    /// 64-bit mode: long mode active and a 64-bit code segment.
    public var is64BitMode: Bool { efer & Self.eferLMA != 0 && codeIs64Bit }
}

/// Events KVM is delivering or holding back at this instruction boundary.
public struct X86EventState: Sendable, Equatable {
    /// An exception is pending or being injected.
    public var exceptionInFlight: Bool
    /// An NMI is being injected.
    public var nmiInFlight: Bool
    /// An external interrupt is being injected.
    public var interruptInFlight: Bool
    /// The instruction follows STI or MOV SS: interrupts are held off until it completes.
    public var interruptShadow: Bool

    public init(exceptionInFlight: Bool = false, nmiInFlight: Bool = false, interruptInFlight: Bool = false,
                interruptShadow: Bool = false) {
        self.exceptionInFlight = exceptionInFlight; self.nmiInFlight = nmiInFlight
        self.interruptInFlight = interruptInFlight; self.interruptShadow = interruptShadow
    }
}

/// An exception the assist raises in the guest, as the instruction would have.
public enum X86Exception: Error, Sendable, Equatable, CustomStringConvertible {
    /// #BP (int3's trap: the return address is the next instruction).
    case breakpoint
    /// #UD
    case invalidOpcode
    /// #NM
    case deviceNotAvailable
    /// #SS with its error code.
    case stackFault(errorCode: UInt32)
    /// #GP with its error code.
    case generalProtection(errorCode: UInt32)
    /// #PF: CR2 = `address`.
    case pageFault(address: UInt64, errorCode: UInt32)
    /// #MF
    case floatingPointError

    public var vector: UInt8 {
        switch self {
        case .breakpoint: 3
        case .invalidOpcode: 6
        case .deviceNotAvailable: 7
        case .stackFault: 12
        case .generalProtection: 13
        case .pageFault: 14
        case .floatingPointError: 16
        }
    }

    public var errorCode: UInt32? {
        switch self {
        case .stackFault(let code), .generalProtection(let code), .pageFault(_, let code): code
        default: nil
        }
    }

    public var description: String {
        switch self {
        case .breakpoint: "#BP"
        case .invalidOpcode: "#UD"
        case .deviceNotAvailable: "#NM"
        case .stackFault(let code): "#SS(\(code))"
        case .generalProtection(let code): "#GP(\(code))"
        case .pageFault(let address, let code): "#PF(0x\(String(code, radix: 16))) at 0x\(String(address, radix: 16))"
        case .floatingPointError: "#MF"
        }
    }

    /// #PF error-code bits.
    public static let pageFaultPresent: UInt32 = 1 << 0
    public static let pageFaultWrite: UInt32 = 1 << 1
}

/// A vCPU as the assist sees it. Errors thrown here make the assist refuse
/// the instruction (the VM then stops with its diagnosis).
public protocol InstructionAssistCPU {
    func assistRegisters() throws -> X86GeneralRegisters
    /// Writes back RIP, RFLAGS and the general-purpose registers.
    func setAssistRegisters(_ registers: X86GeneralRegisters) throws
    func assistSystemRegisters() throws -> X86SystemRegisters
    /// The x87/SSE state, in the FXSAVE layout with 64-bit pointers.
    func fxsaveImage() throws -> FXSaveImage
    func setFXSaveImage(_ image: FXSaveImage) throws
    /// The guest-physical address of a linear address under the vCPU's
    /// current paging (KVM_TRANSLATE), or nil when it is not mapped.
    func translate(_ linearAddress: UInt64) throws -> UInt64?
    func assistEventState() throws -> X86EventState
    /// Ends an interrupt shadow that covered the completed instruction.
    func clearInterruptShadow() throws
    /// Delivers `exception` through the guest's IDT when the vCPU next runs,
    /// with the RIP it has then as the return address; for #PF, sets CR2 too.
    func injectException(_ exception: X86Exception) throws
}

/// Guest-physical memory as the assist sees it: RAM only (a physical
/// address without RAM behind it is refused, not forwarded to devices).
public protocol InstructionAssistMemory {
    /// Whether `[address, address + count)` is all RAM.
    func isRAM(physical address: UInt64, count: Int) -> Bool
    func read(physical address: UInt64, count: Int) -> [UInt8]?
    /// Returns false, writing nothing, unless the whole range is RAM.
    func write(_ bytes: [UInt8], physical address: UInt64) -> Bool
    /// An atomic 8-byte compare-and-exchange (for accessed/dirty bits in
    /// page-table entries); false when the value was not `expected` or the
    /// address is not aligned RAM.
    func compareExchange64(physical address: UInt64, expected: UInt64, desired: UInt64) -> Bool
}

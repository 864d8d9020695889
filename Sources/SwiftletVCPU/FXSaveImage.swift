/// A vCPU's x87 and SSE state in the 512-byte FXSAVE layout (Intel SDM
/// Vol. 1, 10.5.1, table 10-2 and 10-3): the legacy region at the start of
/// every XSAVE area, which is how KVM_GET_XSAVE reports it.
///
///     0 FCW  2 FSW  4 FTW (abridged)  6 FOP  8 FPU IP (64)  16 FPU DP (64)
///     24 MXCSR  28 MXCSR_MASK  32 ST0..ST7 (16 bytes each)  160 XMM0..XMM15
///     416..463 reserved  464..511 available to software
///
/// FXSAVE stores bytes 0..<416 and FXRSTOR loads them; neither touches the
/// rest, which Linux uses for its own signal-frame markers.
public struct FXSaveImage: Equatable, Sendable {
    public static let size = 512
    /// The bytes FXSAVE writes and FXRSTOR reads.
    public static let storedByteCount = 416
    /// MXCSR_MASK's meaning when a CPU stores 0 there (SDM 11.6.6).
    public static let defaultMXCSRMask: UInt32 = 0xffbf

    /// Always `size` bytes.
    public private(set) var bytes: [UInt8]

    public init(bytes: [UInt8]) {
        precondition(bytes.count >= Self.size, "an FXSAVE image is \(Self.size) bytes")
        self.bytes = Array(bytes.prefix(Self.size))
    }

    /// The state after FNINIT and reset MXCSR, with `mxcsrMask` as the CPU reports it.
    public static func initial(mxcsrMask: UInt32 = 0xffff) -> FXSaveImage {
        var image = FXSaveImage(bytes: [UInt8](repeating: 0, count: size))
        image.fcw = 0x37f
        image.mxcsr = 0x1f80
        image.mxcsrMask = mxcsrMask
        return image
    }

    public var fcw: UInt16 { get { load(0) } set { store(newValue, 0) } }
    public var fsw: UInt16 { get { load(2) } set { store(newValue, 2) } }
    /// The abridged tag word: one bit per register, 1 = valid.
    public var abridgedTagWord: UInt8 { get { bytes[4] } set { bytes[4] = newValue } }
    public var lastOpcode: UInt16 { get { load(6) } set { store(newValue, 6) } }
    public var lastInstructionPointer: UInt64 { get { load(8) } set { store(newValue, 8) } }
    public var lastDataPointer: UInt64 { get { load(16) } set { store(newValue, 16) } }
    public var mxcsr: UInt32 { get { load(24) } set { store(newValue, 24) } }
    public var mxcsrMask: UInt32 { get { load(28) } set { store(newValue, 28) } }

    /// The MXCSR bits software may set: MXCSR_MASK, or the SDM's default when 0.
    public var writableMXCSRBits: UInt32 { mxcsrMask == 0 ? Self.defaultMXCSRMask : mxcsrMask }

    /// ST(i)/MM(i), 10 bytes (the 6 bytes after each are reserved).
    public func st(_ i: Int) -> [UInt8] {
        precondition((0..<8).contains(i))
        return Array(bytes[32 + 16 * i ..< 42 + 16 * i])
    }

    public func xmm(_ i: Int) -> [UInt8] {
        precondition((0..<16).contains(i))
        return Array(bytes[160 + 16 * i ..< 176 + 16 * i])
    }

    public mutating func setXMM(_ i: Int, _ value: [UInt8]) {
        precondition((0..<16).contains(i) && value.count == 16)
        bytes.replaceSubrange(160 + 16 * i ..< 176 + 16 * i, with: value)
    }

    public mutating func setST(_ i: Int, _ value: [UInt8]) {
        precondition((0..<8).contains(i) && value.count == 10)
        bytes.replaceSubrange(32 + 16 * i ..< 42 + 16 * i, with: value)
    }

    /// Which FXSAVE/FXRSTOR form: with REX.W (FXSAVE64) the x87 instruction
    /// and data pointers are 64-bit offsets; without it they are 32-bit
    /// offsets each followed by a 16-bit selector.
    public enum PointerFormat: Sendable, Equatable {
        case bits64
        case bits32
    }

    /// The `storedByteCount` bytes FXSAVE writes to memory.
    ///
    /// In the 32-bit form the selectors FCS and FDS are stored as 0: KVM
    /// keeps only the 64-bit pointers, and 0 is what processors that
    /// deprecate FCS/FDS (CPUID.(7,0):EBX[13]) store.
    public func memoryImage(_ format: PointerFormat) -> [UInt8] {
        var image = Array(bytes[0..<Self.storedByteCount])
        if format == .bits32 {
            let ip = UInt32(truncatingIfNeeded: lastInstructionPointer)
            let dp = UInt32(truncatingIfNeeded: lastDataPointer)
            for b in 0..<4 {
                image[8 + b] = UInt8(truncatingIfNeeded: ip >> (8 * UInt32(b)))
                image[16 + b] = UInt8(truncatingIfNeeded: dp >> (8 * UInt32(b)))
            }
            for offset in [12, 13, 14, 15, 20, 21, 22, 23] { image[offset] = 0 }
        }
        return image
    }

    /// The state after FXRSTOR loads `image` (at least `storedByteCount`
    /// bytes): MXCSR_MASK and bytes 416..<512 stay this state's own, since
    /// FXRSTOR does not load them. Check `mxcsr` of the image first: FXRSTOR
    /// raises #GP for bits outside `writableMXCSRBits`.
    public func restoring(_ image: [UInt8], _ format: PointerFormat) -> FXSaveImage {
        precondition(image.count >= Self.storedByteCount)
        var next = self
        let mask = mxcsrMask
        next.bytes.replaceSubrange(0..<Self.storedByteCount, with: image[0..<Self.storedByteCount])
        next.mxcsrMask = mask
        if format == .bits32 {
            // Pointers are zero-extended 32-bit offsets; the selectors are not kept.
            next.lastInstructionPointer = UInt64(FXSaveImage.load32(image, 8))
            next.lastDataPointer = UInt64(FXSaveImage.load32(image, 16))
        }
        return next
    }

    /// The MXCSR value in an FXSAVE memory image.
    public static func mxcsr(inImage image: [UInt8]) -> UInt32 { load32(image, 24) }

    private static func load32(_ b: [UInt8], _ offset: Int) -> UInt32 {
        (0..<4).reduce(UInt32(0)) { $0 | UInt32(b[offset + $1]) << (8 * UInt32($1)) }
    }

    private func load<T: FixedWidthInteger>(_ offset: Int) -> T {
        var v = T.zero
        for b in 0..<(T.bitWidth / 8) { v |= T(bytes[offset + b]) << (8 * b) }
        return v
    }

    private mutating func store<T: FixedWidthInteger>(_ value: T, _ offset: Int) {
        for b in 0..<(T.bitWidth / 8) { bytes[offset + b] = UInt8(truncatingIfNeeded: value >> (8 * b)) }
    }
}

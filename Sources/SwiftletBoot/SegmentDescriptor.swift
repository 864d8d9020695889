import SwiftletMemory

/// An 8-byte code or data segment descriptor (Intel SDM vol. 3A, 3.4.5):
///
///     bits  0–15 limit 15:0      bits 40–43 type   bit 47 P      bit 53 L
///     bits 16–39 base 23:0       bit  44    S      bits 48–51 limit 19:16
///     bits 56–63 base 31:24      bits 45–46 DPL    bit 52 AVL  54 D/B  55 G
public struct SegmentDescriptor: Hashable, Sendable {
    public var base: UInt32
    /// 20 bits, in bytes or (with `pageGranular`) 4 KiB units.
    public var limit: UInt32
    /// 4 bits: for code, 8 | conforming 4 | readable 2 | accessed 1; for
    /// data, expand-down 4 | writable 2 | accessed 1.
    public var type: UInt8
    /// S: a code or data segment rather than a system one (TSS, gate).
    public var isCodeOrData: Bool
    /// DPL, 0–3.
    public var privilegeLevel: UInt8
    public var isPresent: Bool
    public var available: Bool
    /// L: 64-bit code.
    public var isLongMode: Bool
    /// D/B: 32-bit default operand size (code) or upper bound (data).
    public var isDefault32Bit: Bool
    /// G: the limit counts 4 KiB pages.
    public var isPageGranular: Bool

    public init(base: UInt32, limit: UInt32, type: UInt8, isCodeOrData: Bool = true, privilegeLevel: UInt8,
                isPresent: Bool = true, available: Bool = false, isLongMode: Bool, isDefault32Bit: Bool,
                isPageGranular: Bool) {
        precondition(limit <= 0xF_FFFF && type <= 0xF && privilegeLevel <= 3, "field out of range")
        self.base = base
        self.limit = limit
        self.type = type
        self.isCodeOrData = isCodeOrData
        self.privilegeLevel = privilegeLevel
        self.isPresent = isPresent
        self.available = available
        self.isLongMode = isLongMode
        self.isDefault32Bit = isDefault32Bit
        self.isPageGranular = isPageGranular
    }

    public init(encoded value: UInt64) {
        func bits(_ shift: UInt64, _ count: UInt64) -> UInt64 { (value >> shift) & ((1 << count) - 1) }
        base = UInt32(bits(16, 24) | bits(56, 8) << 24)
        limit = UInt32(bits(0, 16) | bits(48, 4) << 16)
        type = UInt8(bits(40, 4))
        isCodeOrData = bits(44, 1) != 0
        privilegeLevel = UInt8(bits(45, 2))
        isPresent = bits(47, 1) != 0
        available = bits(52, 1) != 0
        isLongMode = bits(53, 1) != 0
        isDefault32Bit = bits(54, 1) != 0
        isPageGranular = bits(55, 1) != 0
    }

    public var encoded: UInt64 {
        func flag(_ on: Bool, _ shift: UInt64) -> UInt64 { on ? 1 << shift : 0 }
        let base = UInt64(self.base), limit = UInt64(self.limit)
        return (limit & 0xFFFF) | (base & 0xFF_FFFF) << 16 | UInt64(type & 0xF) << 40
            | flag(isCodeOrData, 44) | UInt64(privilegeLevel & 3) << 45 | flag(isPresent, 47)
            | (limit >> 16 & 0xF) << 48 | flag(available, 52) | flag(isLongMode, 53)
            | flag(isDefault32Bit, 54) | flag(isPageGranular, 55) | (base >> 24) << 56
    }

    /// The limit in bytes, as KVM's segment registers take it.
    public var byteLimit: UInt32 { isPageGranular ? limit << 12 | 0xFFF : limit }

    public var isCode: Bool { isCodeOrData && type & 0x8 != 0 }

    public static let null = SegmentDescriptor(encoded: 0)

    /// Execute/read code; accessed already set, as the CPU would on loading
    /// it (VMX also requires the accessed bit in the registers KVM loads).
    static func code64(privilegeLevel: UInt8) -> SegmentDescriptor {
        SegmentDescriptor(base: 0, limit: 0xF_FFFF, type: 0xB, privilegeLevel: privilegeLevel,
                          isLongMode: true, isDefault32Bit: false, isPageGranular: true)
    }

    static func code32(privilegeLevel: UInt8) -> SegmentDescriptor {
        SegmentDescriptor(base: 0, limit: 0xF_FFFF, type: 0xB, privilegeLevel: privilegeLevel,
                          isLongMode: false, isDefault32Bit: true, isPageGranular: true)
    }

    /// Read/write data over the flat 4 GiB, accessed.
    static func data(privilegeLevel: UInt8) -> SegmentDescriptor {
        SegmentDescriptor(base: 0, limit: 0xF_FFFF, type: 0x3, privilegeLevel: privilegeLevel,
                          isLongMode: false, isDefault32Bit: true, isPageGranular: true)
    }
}

/// The GDT Swiftlet puts at 0x500 for every boot protocol
/// (boot-protocol.md, "GDT at 0x500"). The vCPU layer builds the boot
/// CPU's segment registers from `descriptor(for:)`, so the hidden parts of
/// the registers and the table in guest memory cannot disagree.
public enum BootGDT {
    public static let kernelCode64: UInt16 = 0x08
    public static let kernelData: UInt16 = 0x10
    public static let kernelCode32: UInt16 = 0x18
    /// User selectors carry RPL 3: SS = 0x23, CS = 0x2b. They follow the
    /// 32-bit code descriptor because SYSRET with STAR[63:48] = 0x18 loads
    /// SS from +8 and 64-bit CS from +16 (SDM vol. 2B, SYSRET).
    public static let userData: UInt16 = 0x20 | 3
    public static let userCode64: UInt16 = 0x28 | 3

    public static let descriptors: [SegmentDescriptor] = [
        .null,
        .code64(privilegeLevel: 0),
        .data(privilegeLevel: 0),
        .code32(privilegeLevel: 0),
        .data(privilegeLevel: 3),
        .code64(privilegeLevel: 3),
    ]

    /// GDTR limit: the table's size minus one.
    public static var limit: UInt16 { UInt16(descriptors.count * 8 - 1) }

    /// The descriptor a GDT selector refers to; RPL is ignored. Nil for the
    /// null selector, LDT selectors (TI set) and selectors past the table.
    public static func descriptor(for selector: UInt16) -> SegmentDescriptor? {
        let index = Int(selector >> 3)
        guard selector & 0x4 == 0, index > 0, index < descriptors.count else { return nil }
        return descriptors[index]
    }

    public static var bytes: [UInt8] {
        var writer = LittleEndianWriter(size: descriptors.count * 8)
        for (index, descriptor) in descriptors.enumerated() { writer.put(descriptor.encoded, at: index * 8) }
        return writer.bytes
    }

    public static func write(to memory: GuestMemory) throws(GuestMemoryError) {
        try memory.write(bytes, to: X86Layout.gdtAddress)
    }
}

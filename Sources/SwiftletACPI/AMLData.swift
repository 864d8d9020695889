/// A constant AML data object (ACPI 6.5, 20.2.3: DataObject): what `Name`
/// binds to a name and what a package holds. Integers and strings can be
/// written as literals.
///
///     AML.Name("_UID", 1)
///     AML.Name("_HID", "ACPI0007")
///     AML.Name("_HID", .eisaID("PNP0501"))
///     AML.Name("_S5_", .package([5, 0, 0, 0]))
///     AML.Name("_CRS", .resourceTemplate([.io(min: 0x3f8, max: 0x3f8, alignment: 1, length: 8), .irqNoFlags([4])]))
public struct AMLData: Hashable, Sendable, ExpressibleByIntegerLiteral, ExpressibleByStringLiteral {
    /// The encoded object.
    public let bytes: [UInt8]

    private init(bytes: [UInt8]) { self.bytes = bytes }

    /// An integer in its shortest encoding (ZeroOp, OneOp, BytePrefix ...
    /// QWordPrefix; see `AMLEncoding.integer`).
    public static func integer(_ value: UInt64) -> AMLData { AMLData(bytes: AMLEncoding.integer(value)) }

    public init(integerLiteral value: UInt64) { self = .integer(value) }

    /// A string: StringPrefix, the ASCII characters (0x01–0x7F), NUL.
    public static func string(validating text: String) throws(ACPIError) -> AMLData {
        let characters = Array(text.utf8)
        guard characters.allSatisfy({ (0x01...0x7f).contains($0) }) else { throw .invalidString(text) }
        return AMLData(bytes: [AMLEncoding.Opcode.stringPrefix] + characters + [0])
    }

    /// A string written in the source; one AML cannot hold stops the program.
    public static func string(_ text: String) -> AMLData {
        do { return try string(validating: text) } catch { preconditionFailure(error.description) }
    }

    public init(stringLiteral text: String) { self = .string(text) }

    /// A buffer initialised with `contents`: BufferOp PkgLength BufferSize ByteList.
    public static func buffer(_ contents: [UInt8]) -> AMLData {
        AMLData(bytes: [AMLEncoding.Opcode.buffer]
            + AMLEncoding.package(AMLEncoding.integer(UInt64(contents.count)) + contents))
    }

    /// A package of at most 255 elements: PackageOp PkgLength NumElements
    /// PackageElementList.
    public static func package(_ elements: [AMLData]) -> AMLData {
        precondition(elements.count <= 255, "an AML Package holds at most 255 elements (use a VarPackage)")
        return AMLData(bytes: [AMLEncoding.Opcode.package]
            + AMLEncoding.package([UInt8(elements.count)] + elements.flatMap(\.bytes)))
    }

    /// A compressed EISA ID, always as a DWordConst (as ASL's `EisaId()`).
    public static func eisaID(_ id: EISAID) -> AMLData {
        AMLData(bytes: [AMLEncoding.Opcode.dwordPrefix] + AMLEncoding.littleEndian(UInt64(id.value), bytes: 4))
    }

    /// A resource template: a buffer holding the descriptors followed by an
    /// End Tag (ACPI 6.5, 6.4: Resource Data Types for ACPI).
    public static func resourceTemplate(_ descriptors: [AMLResource],
                                        checksum: AMLResource.EndTagChecksum = .zero) -> AMLData {
        .buffer(AMLResource.template(descriptors, checksum: checksum))
    }
}

/// A 7-character EISA (PNP) identifier such as `PNP0501`, in the 32-bit
/// compressed form of ASL's `EisaId()` (ACPI 6.5, 6.1.5 _HID, and 19.6.35
/// EISAID): three letters of 5 bits each (`'A'` = 1) and four hex digits of
/// 4 bits each make a big-endian 32-bit value, stored byte-swapped, so
/// `PNP0501` is 0x0105D041 (bytes 41 D0 05 01 in the table).
public struct EISAID: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let text: String
    /// The compressed value as AML stores it (an integer whose
    /// little-endian bytes are the big-endian compressed ID).
    public let value: UInt32

    public init(validating text: String) throws(ACPIError) {
        let characters = Array(text.utf8)
        guard characters.count == 7,
              characters[0..<3].allSatisfy({ (0x41...0x5a).contains($0) }),
              characters[3..<7].allSatisfy({ Self.hexValue($0) != nil }) else {
            throw .invalidEISAID(text)
        }
        var compressed: UInt32 = 0
        for letter in characters[0..<3] { compressed = compressed << 5 | UInt32(letter - 0x40) }
        for digit in characters[3..<7] { compressed = compressed << 4 | UInt32(Self.hexValue(digit)!) }
        self.text = text
        self.value = compressed.byteSwapped
    }

    public init(stringLiteral text: String) {
        do { try self.init(validating: text) } catch { preconditionFailure(error.description) }
    }

    private static func hexValue(_ character: UInt8) -> UInt8? {
        switch character {
        case 0x30...0x39: character - 0x30
        case 0x41...0x46: character - 0x41 + 10
        default: nil
        }
    }

    public var description: String { text }
}

/// One resource descriptor of a resource template (ACPI 6.5, 6.4). Small
/// descriptors start with a byte holding the type in bits 6–3 and the length
/// in bits 2–0; large ones with 1 in bit 7, the type in bits 6–0 and a 16-bit
/// length.
public struct AMLResource: Hashable, Sendable {
    /// The descriptor's bytes.
    public let bytes: [UInt8]

    public init(rawBytes: [UInt8]) { bytes = rawBytes }

    /// I/O Port Descriptor (6.4.2.5; small item 0x08, 7 bytes: 0x47):
    /// decode information (bit 0: 16-bit decode), minimum and maximum base
    /// address, alignment and length. ASL `IO (Decode16, min, max, alignment, length)`.
    public static func io(min: UInt16, max: UInt16, alignment: UInt8, length: UInt8,
                          decodes16Bit: Bool = true) -> AMLResource {
        AMLResource(rawBytes: [0x47, decodes16Bit ? 1 : 0]
            + AMLEncoding.littleEndian(UInt64(min), bytes: 2) + AMLEncoding.littleEndian(UInt64(max), bytes: 2)
            + [alignment, length])
    }

    /// Fixed Location I/O Port Descriptor (6.4.2.6; 0x4B): 10-bit base, length.
    public static func fixedIO(base: UInt16, length: UInt8) -> AMLResource {
        precondition(base <= 0x3ff, "a FixedIO base decodes 10 bits")
        return AMLResource(rawBytes: [0x4b] + AMLEncoding.littleEndian(UInt64(base), bytes: 2) + [length])
    }

    /// IRQ Descriptor without the information byte (6.4.2.1; 2 bytes of
    /// data: 0x22): edge-triggered, active-high, exclusive, as ISA
    /// interrupts are. ASL `IRQNoFlags () {...}`.
    public static func irqNoFlags(_ irqs: [UInt8]) -> AMLResource {
        AMLResource(rawBytes: [0x22] + AMLEncoding.littleEndian(UInt64(irqMask(irqs)), bytes: 2))
    }

    /// IRQ Descriptor with the information byte (0x23): bit 0 edge-triggered,
    /// bit 3 active-low, bit 4 shared, bit 5 wake capable.
    /// ASL `IRQ (Edge|Level, ActiveHigh|ActiveLow, Exclusive|Shared) {...}`.
    public static func irq(_ irqs: [UInt8], edgeTriggered: Bool = true, activeLow: Bool = false,
                           shared: Bool = false, wakeCapable: Bool = false) -> AMLResource {
        var information: UInt8 = 0
        if edgeTriggered { information |= 0x01 }
        if activeLow { information |= 0x08 }
        if shared { information |= 0x10 }
        if wakeCapable { information |= 0x20 }
        return AMLResource(rawBytes: [0x23] + AMLEncoding.littleEndian(UInt64(irqMask(irqs)), bytes: 2) + [information])
    }

    private static func irqMask(_ irqs: [UInt8]) -> UInt16 {
        irqs.reduce(0) { mask, irq in
            precondition(irq < 16, "an IRQ descriptor names ISA IRQs 0-15; use .interrupt for GSIs")
            return mask | 1 << irq
        }
    }

    /// Extended Interrupt Descriptor (6.4.3.6; large item 0x09: 0x89), for
    /// global system interrupts. Flags: bit 0 consumer, bit 1 edge-triggered,
    /// bit 2 active-low, bit 3 shared, bit 4 wake capable.
    /// ASL `Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) {...}`.
    public static func interrupt(_ interrupts: [UInt32], consumer: Bool = true, edgeTriggered: Bool = true,
                                 activeLow: Bool = false, shared: Bool = false,
                                 wakeCapable: Bool = false) -> AMLResource {
        precondition((1...255).contains(interrupts.count), "an Interrupt descriptor lists 1 to 255 interrupts")
        var flags: UInt8 = 0
        if consumer { flags |= 0x01 }
        if edgeTriggered { flags |= 0x02 }
        if activeLow { flags |= 0x04 }
        if shared { flags |= 0x08 }
        if wakeCapable { flags |= 0x10 }
        let body = [flags, UInt8(interrupts.count)] + interrupts.flatMap { AMLEncoding.littleEndian(UInt64($0), bytes: 4) }
        return large(type: 0x09, body)
    }

    /// 32-Bit Fixed Memory Range Descriptor (6.4.3.4; large item 0x06: 0x86):
    /// bit 0 of the information byte is 1 for read/write. ASL
    /// `Memory32Fixed (ReadWrite, base, length)`.
    public static func memory32Fixed(base: UInt32, length: UInt32, writable: Bool = true) -> AMLResource {
        large(type: 0x06, [writable ? 1 : 0] + AMLEncoding.littleEndian(UInt64(base), bytes: 4)
            + AMLEncoding.littleEndian(UInt64(length), bytes: 4))
    }

    private static func large(type: UInt8, _ body: [UInt8]) -> AMLResource {
        AMLResource(rawBytes: [0x80 | type] + AMLEncoding.littleEndian(UInt64(body.count), bytes: 2) + body)
    }

    /// How the End Tag's checksum byte is filled (6.4.2.9).
    public enum EndTagChecksum: Hashable, Sendable {
        /// 0, which the specification defines as "treat the checksum as
        /// valid"; what iasl, QEMU and Cloud Hypervisor emit.
        case zero
        /// The byte that makes all the template's bytes sum to zero.
        case computed
    }

    /// The descriptors followed by the End Tag (small item 0x0F, 1 byte: 0x79
    /// and the checksum).
    public static func template(_ descriptors: [AMLResource], checksum: EndTagChecksum = .zero) -> [UInt8] {
        var bytes = descriptors.flatMap(\.bytes) + [0x79]
        switch checksum {
        case .zero: bytes.append(0)
        case .computed: bytes.append(ACPIChecksum.balancing(bytes))
        }
        return bytes
    }
}

/// ACPI's byte checksum: all bytes of a structure, checksum included, add
/// up to zero modulo 256 (ACPI 6.5, 5.2.5.3 and 5.2.6).
public enum ACPIChecksum {
    public static func sum(_ bytes: some Sequence<UInt8>) -> UInt8 {
        bytes.reduce(0, &+)
    }

    /// The byte that, added to `bytes`, makes the sum zero.
    public static func balancing(_ bytes: some Sequence<UInt8>) -> UInt8 {
        0 &- sum(bytes)
    }
}

/// Who made the tables: the OEM fields of every header and the RSDP.
public struct ACPIOEM: Hashable, Sendable {
    /// OEM ID, 6 characters (shorter ones are padded with spaces).
    public var oemID: String
    /// Prefix of every OEM table ID; the table's signature follows it (the
    /// FADT of "SWLT" is "SWLTFACP").
    public var tableIDPrefix: String
    public var oemRevision: UInt32
    /// Creator ID (for AML tables, the compiler's vendor ID), 4 characters.
    public var creatorID: String
    public var creatorRevision: UInt32

    public init(oemID: String = "SWIFTL", tableIDPrefix: String = "SWLT", oemRevision: UInt32 = 1,
                creatorID: String = "SWFT", creatorRevision: UInt32 = 1) {
        self.oemID = oemID
        self.tableIDPrefix = tableIDPrefix
        self.oemRevision = oemRevision
        self.creatorID = creatorID
        self.creatorRevision = creatorRevision
    }

    public static let swiftlet = ACPIOEM()

    func validate() throws(ACPIError) {
        _ = try ACPIIdentifier.bytes(oemID, length: 6, field: "OEM ID")
        _ = try ACPIIdentifier.bytes(tableIDPrefix, length: 4, field: "OEM table ID prefix")
        _ = try ACPIIdentifier.bytes(creatorID, length: 4, field: "creator ID")
    }
}

/// Fixed-width ASCII fields (signatures, OEM IDs), space-padded.
public enum ACPIIdentifier {
    public static func bytes(_ text: String, length: Int, field: String, padding: UInt8 = 0x20) throws(ACPIError) -> [UInt8] {
        let characters = Array(text.utf8)
        guard characters.count <= length, characters.allSatisfy({ (0x20...0x7e).contains($0) }) else {
            throw .invalidIdentifier(text, field: field, length: length)
        }
        return characters + Array(repeating: padding, count: length - characters.count)
    }

    static func checked(_ text: String, length: Int, field: String) -> [UInt8] {
        do { return try bytes(text, length: length, field: field) } catch { preconditionFailure(error.description) }
    }
}

/// A system description table: the 36-byte header (ACPI 6.5, 5.2.6) and a
/// body. `bytes` fills in the length and the checksum.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | signature |
/// | 4 | 4 | length of the whole table |
/// | 8 | 1 | revision |
/// | 9 | 1 | checksum |
/// | 10 | 6 | OEM ID |
/// | 16 | 8 | OEM table ID |
/// | 24 | 4 | OEM revision |
/// | 28 | 4 | creator ID |
/// | 32 | 4 | creator revision |
public struct ACPITable: Hashable, Sendable {
    public static let headerLength = 36

    public var signature: String
    public var revision: UInt8
    public var oem: ACPIOEM
    public var body: [UInt8]

    public init(signature: String, revision: UInt8, oem: ACPIOEM = .swiftlet, body: [UInt8]) {
        precondition(signature.utf8.count == 4, "table signatures have 4 characters")
        self.signature = signature
        self.revision = revision
        self.oem = oem
        self.body = body
    }

    public var length: Int { Self.headerLength + body.count }

    /// The table, ready to be placed in guest memory.
    public var bytes: [UInt8] {
        var bytes = Array(signature.utf8)
        bytes += AMLEncoding.littleEndian(UInt64(length), bytes: 4)
        bytes += [revision, 0]
        bytes += ACPIIdentifier.checked(oem.oemID, length: 6, field: "OEM ID")
        bytes += ACPIIdentifier.checked(oem.tableIDPrefix + signature, length: 8, field: "OEM table ID")
        bytes += AMLEncoding.littleEndian(UInt64(oem.oemRevision), bytes: 4)
        bytes += ACPIIdentifier.checked(oem.creatorID, length: 4, field: "creator ID")
        bytes += AMLEncoding.littleEndian(UInt64(oem.creatorRevision), bytes: 4)
        bytes += body
        bytes[9] = ACPIChecksum.balancing(bytes)
        return bytes
    }
}

/// Generic Address Structure (ACPI 6.5, 5.2.3.2), 12 bytes: address space
/// ID, register bit width, register bit offset, access size, 64-bit address.
public struct GenericAddress: Hashable, Sendable {
    public enum Space: UInt8, Hashable, Sendable {
        case systemMemory = 0, systemIO = 1, pciConfig = 2
    }

    /// Access size: 0 undefined (legacy), 1 byte, 2 word, 3 dword, 4 qword.
    public enum AccessSize: UInt8, Hashable, Sendable {
        case undefined = 0, byte = 1, word = 2, dword = 3, qword = 4
    }

    public var space: Space
    public var bitWidth: UInt8
    public var bitOffset: UInt8
    public var accessSize: AccessSize
    public var address: UInt64

    public init(space: Space, bitWidth: UInt8, bitOffset: UInt8 = 0, accessSize: AccessSize, address: UInt64) {
        self.space = space
        self.bitWidth = bitWidth
        self.bitOffset = bitOffset
        self.accessSize = accessSize
        self.address = address
    }

    /// A one-byte register in I/O space.
    public static func ioPort(_ port: UInt16) -> GenericAddress {
        GenericAddress(space: .systemIO, bitWidth: 8, accessSize: .byte, address: UInt64(port))
    }

    /// All zeros: "not present".
    public static let none = GenericAddress(space: .systemMemory, bitWidth: 0, accessSize: .undefined, address: 0)

    public var bytes: [UInt8] {
        [space.rawValue, bitWidth, bitOffset, accessSize.rawValue] + AMLEncoding.littleEndian(address, bytes: 8)
    }
}

/// Root System Description Pointer, ACPI 2.0+ form (ACPI 6.5, 5.2.5.3), 36 bytes:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | "RSD PTR " |
/// | 8 | 1 | checksum of bytes 0–19 |
/// | 9 | 6 | OEM ID |
/// | 15 | 1 | revision: 2 |
/// | 16 | 4 | RSDT address (0: Swiftlet has no RSDT) |
/// | 20 | 4 | length: 36 |
/// | 24 | 8 | XSDT address |
/// | 32 | 1 | extended checksum of all 36 bytes |
/// | 33 | 3 | reserved |
public struct RSDP: Hashable, Sendable {
    public static let length = 36
    public static let revision: UInt8 = 2

    public var oemID: String
    public var xsdtAddress: UInt64
    public var rsdtAddress: UInt32

    public init(xsdtAddress: UInt64, rsdtAddress: UInt32 = 0, oemID: String = ACPIOEM.swiftlet.oemID) {
        self.xsdtAddress = xsdtAddress
        self.rsdtAddress = rsdtAddress
        self.oemID = oemID
    }

    public var bytes: [UInt8] {
        var bytes = Array("RSD PTR ".utf8) + [0]
        bytes += ACPIIdentifier.checked(oemID, length: 6, field: "OEM ID")
        bytes += [Self.revision]
        bytes += AMLEncoding.littleEndian(UInt64(rsdtAddress), bytes: 4)
        bytes += AMLEncoding.littleEndian(UInt64(Self.length), bytes: 4)
        bytes += AMLEncoding.littleEndian(xsdtAddress, bytes: 8)
        bytes += [0, 0, 0, 0]
        bytes[8] = ACPIChecksum.balancing(bytes[0..<20])
        bytes[32] = ACPIChecksum.balancing(bytes)
        return bytes
    }
}

/// Extended System Description Table (ACPI 6.5, 5.2.8): signature "XSDT",
/// revision 1, a body of 64-bit table addresses.
public struct XSDT: Hashable, Sendable {
    public static let revision: UInt8 = 1
    public var entries: [UInt64]

    public init(entries: [UInt64]) { self.entries = entries }

    public func table(oem: ACPIOEM = .swiftlet) -> ACPITable {
        ACPITable(signature: "XSDT", revision: Self.revision, oem: oem,
                  body: entries.flatMap { AMLEncoding.littleEndian($0, bytes: 8) })
    }
}

/// A definition block: the DSDT or an SSDT (ACPI 6.5, 5.2.11). Revision 2
/// or more makes AML integers 64 bits wide.
public struct DefinitionBlock: Hashable, Sendable {
    public static let revision: UInt8 = 2
    public var signature: String
    public var aml: [UInt8]

    public init(signature: String = "DSDT", aml: [UInt8]) {
        self.signature = signature
        self.aml = aml
    }

    public init(signature: String = "DSDT", @AMLTermListBuilder _ terms: () -> [AMLTerm]) {
        self.init(signature: signature, aml: terms().flatMap(\.bytes))
    }

    public func table(oem: ACPIOEM = .swiftlet) -> ACPITable {
        ACPITable(signature: signature, revision: Self.revision, oem: oem, body: aml)
    }
}

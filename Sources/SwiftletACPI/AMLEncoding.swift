/// The byte-level rules of the ACPI Machine Language (ACPI 6.5, chapter 20,
/// "ACPI Machine Language (AML) Specification").
public enum AMLEncoding {
    /// The largest value a PkgLength can carry: 28 bits (20.2.4).
    public static let maximumPackageLength = (1 << 28) - 1

    /// The PkgLength that precedes a package whose contents (everything after
    /// the PkgLength up to the package's end) take `contentLength` bytes.
    ///
    /// The encoded length counts the PkgLength bytes themselves (20.2.4). The
    /// lead byte's bits 7–6 give the number of bytes that follow (0–3). With
    /// none, bits 5–0 hold the whole length (0–63); otherwise bits 3–0 hold
    /// its least significant nibble and each following byte the next 8 bits,
    /// and bits 5–4 are zero. So a package is encoded in 1 byte while the
    /// total is at most 63, 2 bytes up to 4095, 3 up to 2^20 − 1 and 4 up to
    /// 2^28 − 1.
    public static func packageLength(contentLength: Int) -> [UInt8] {
        precondition(contentLength >= 0, "negative AML package length")
        for size in 1...4 {
            let total = contentLength + size
            if total <= maximumLength(ofEncodingSize: size) {
                return rawPackageLength(total, size: size)
            }
        }
        preconditionFailure("AML package of \(contentLength) bytes exceeds the 2^28-byte PkgLength limit")
    }

    /// A PkgLength that encodes `value` as it is, without counting its own
    /// bytes: the form the bit widths of field elements take (20.2.5.2,
    /// NamedField := NameSeg PkgLength).
    public static func fieldLength(_ value: Int) -> [UInt8] {
        precondition(value >= 0 && value <= maximumPackageLength, "AML field length \(value) out of range")
        let size = (1...4).first { value <= maximumLength(ofEncodingSize: $0) }!
        return rawPackageLength(value, size: size)
    }

    static func maximumLength(ofEncodingSize size: Int) -> Int {
        size == 1 ? 0x3f : (1 << (4 + 8 * (size - 1))) - 1
    }

    private static func rawPackageLength(_ value: Int, size: Int) -> [UInt8] {
        if size == 1 { return [UInt8(value)] }
        var bytes = [UInt8((size - 1) << 6 | (value & 0x0f))]
        var rest = value >> 4
        for _ in 1..<size {
            bytes.append(UInt8(truncatingIfNeeded: rest))
            rest >>= 8
        }
        return bytes
    }

    /// `contents` wrapped in its PkgLength.
    static func package(_ contents: [UInt8]) -> [UInt8] {
        packageLength(contentLength: contents.count) + contents
    }

    /// The shortest encoding of an integer constant (20.2.3, ComputationalData):
    /// ZeroOp and OneOp for 0 and 1, then BytePrefix, WordPrefix, DWordPrefix or
    /// QWordPrefix with the value little-endian. OnesOp is never chosen: its
    /// value depends on the table revision (all ones in 32 or 64 bits).
    public static func integer(_ value: UInt64) -> [UInt8] {
        switch value {
        case 0: [Opcode.zero]
        case 1: [Opcode.one]
        case ...0xff: [Opcode.bytePrefix, UInt8(value)]
        case ...0xffff: [Opcode.wordPrefix] + littleEndian(value, bytes: 2)
        case ...0xffff_ffff: [Opcode.dwordPrefix] + littleEndian(value, bytes: 4)
        default: [Opcode.qwordPrefix] + littleEndian(value, bytes: 8)
        }
    }

    static func littleEndian(_ value: UInt64, bytes: Int) -> [UInt8] {
        (0..<bytes).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
    }

    /// AML opcodes (20.3, table "AML Byte Stream Byte Values").
    public enum Opcode {
        public static let zero: UInt8 = 0x00
        public static let one: UInt8 = 0x01
        public static let alias: UInt8 = 0x06
        public static let name: UInt8 = 0x08
        public static let bytePrefix: UInt8 = 0x0a
        public static let wordPrefix: UInt8 = 0x0b
        public static let dwordPrefix: UInt8 = 0x0c
        public static let stringPrefix: UInt8 = 0x0d
        public static let qwordPrefix: UInt8 = 0x0e
        public static let scope: UInt8 = 0x10
        public static let buffer: UInt8 = 0x11
        public static let package: UInt8 = 0x12
        public static let varPackage: UInt8 = 0x13
        public static let method: UInt8 = 0x14
        public static let dualNamePrefix: UInt8 = 0x2e
        public static let multiNamePrefix: UInt8 = 0x2f
        public static let extendedPrefix: UInt8 = 0x5b
        public static let rootChar: UInt8 = 0x5c
        public static let parentPrefixChar: UInt8 = 0x5e
        public static let local0: UInt8 = 0x60
        public static let arg0: UInt8 = 0x68
        public static let store: UInt8 = 0x70
        public static let add: UInt8 = 0x72
        public static let subtract: UInt8 = 0x74
        public static let increment: UInt8 = 0x75
        public static let decrement: UInt8 = 0x76
        public static let shiftLeft: UInt8 = 0x79
        public static let shiftRight: UInt8 = 0x7a
        public static let and: UInt8 = 0x7b
        public static let or: UInt8 = 0x7d
        public static let xor: UInt8 = 0x7f
        public static let not: UInt8 = 0x80
        public static let derefOf: UInt8 = 0x83
        public static let notify: UInt8 = 0x86
        public static let sizeOf: UInt8 = 0x87
        public static let index: UInt8 = 0x88
        public static let logicalAnd: UInt8 = 0x90
        public static let logicalOr: UInt8 = 0x91
        public static let logicalNot: UInt8 = 0x92
        public static let logicalEqual: UInt8 = 0x93
        public static let logicalGreater: UInt8 = 0x94
        public static let logicalLess: UInt8 = 0x95
        public static let toBuffer: UInt8 = 0x96
        public static let toInteger: UInt8 = 0x99
        public static let `if`: UInt8 = 0xa0
        public static let `else`: UInt8 = 0xa1
        public static let `while`: UInt8 = 0xa2
        public static let noop: UInt8 = 0xa3
        public static let `return`: UInt8 = 0xa4
        public static let `break`: UInt8 = 0xa5
        public static let ones: UInt8 = 0xff
    }

    /// Opcodes that follow ExtOpPrefix (0x5B).
    public enum ExtendedOpcode {
        public static let mutex: UInt8 = 0x01
        public static let event: UInt8 = 0x02
        public static let conditionalReferenceOf: UInt8 = 0x12
        public static let sleep: UInt8 = 0x22
        public static let acquire: UInt8 = 0x23
        public static let release: UInt8 = 0x27
        public static let debug: UInt8 = 0x31
        public static let operationRegion: UInt8 = 0x80
        public static let field: UInt8 = 0x81
        public static let device: UInt8 = 0x82
        public static let powerResource: UInt8 = 0x84
        public static let thermalZone: UInt8 = 0x85
    }
}

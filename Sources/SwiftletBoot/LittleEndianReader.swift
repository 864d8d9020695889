/// Little-endian fields of a byte buffer whose size the caller has checked
/// against the structure it is reading; indexing past the end is a bug in
/// the parser, not bad input, and traps.
struct LittleEndianReader {
    let bytes: [UInt8]
    let base: Int

    init(_ bytes: [UInt8], at base: Int = 0) {
        self.bytes = bytes
        self.base = base
    }

    func u8(_ offset: Int) -> UInt8 { bytes[base + offset] }

    func u16(_ offset: Int) -> UInt16 { UInt16(truncatingIfNeeded: value(offset, 2)) }
    func u32(_ offset: Int) -> UInt32 { UInt32(truncatingIfNeeded: value(offset, 4)) }
    func u64(_ offset: Int) -> UInt64 { value(offset, 8) }

    private func value(_ offset: Int, _ width: Int) -> UInt64 {
        var result: UInt64 = 0
        for i in (0..<width).reversed() {
            result = result << 8 | UInt64(bytes[base + offset + i])
        }
        return result
    }
}

/// Appends little-endian fields to a byte buffer (guest structures).
struct LittleEndianWriter {
    private(set) var bytes: [UInt8]

    init(size: Int) { bytes = [UInt8](repeating: 0, count: size) }

    mutating func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        withUnsafeBytes(of: value.littleEndian) { raw in
            for (i, byte) in raw.enumerated() { bytes[offset + i] = byte }
        }
    }

    mutating func put(_ data: [UInt8], at offset: Int) {
        bytes.replaceSubrange(offset..<offset + data.count, with: data)
    }
}

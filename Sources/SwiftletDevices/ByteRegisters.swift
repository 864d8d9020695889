/// Helpers for devices whose registers are one byte wide (the ISA devices).
///
/// An 8-bit ISA device on a wider bus sees a 16- or 32-bit access as
/// consecutive byte cycles at consecutive addresses, lowest first; these
/// helpers do the same, so a guest that uses `inw`/`outw` on a byte register
/// gets what a PC would give it instead of an error path. Sizes outside 1...8
/// never come from a CPU; they are clamped rather than trusted.

/// Reads `size` byte registers starting at `offset` and assembles them
/// little-endian. Offsets that would wrap past `UInt64.max` read as 0xff.
@inline(__always)
func readByteRegisters(at offset: UInt64, size: Int, _ readByte: (UInt64) -> UInt8) -> UInt64 {
    var value: UInt64 = 0
    for index in 0..<min(max(size, 0), 8) {
        let (address, wrapped) = offset.addingReportingOverflow(UInt64(index))
        let byte = wrapped ? 0xff : readByte(address)
        value |= UInt64(byte) << (UInt64(index) * 8)
    }
    return value
}

/// Writes the low `size` bytes of `value` to consecutive byte registers
/// starting at `offset`, lowest first. Offsets that would wrap are dropped.
@inline(__always)
func writeByteRegisters(at offset: UInt64, size: Int, value: UInt64, _ writeByte: (UInt64, UInt8) -> Void) {
    for index in 0..<min(max(size, 0), 8) {
        let (address, wrapped) = offset.addingReportingOverflow(UInt64(index))
        if wrapped { return }
        writeByte(address, UInt8(truncatingIfNeeded: value >> (UInt64(index) * 8)))
    }
}

/// `0x` followed by two hex digits, for log messages about register values.
func hexByte(_ value: UInt8) -> String {
    "0x" + hex(UInt64(value), 2)
}

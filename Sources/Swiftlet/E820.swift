import SwiftletBoot

extension MemoryMap {
    /// The map as packed e820 entries (u64 address, u64 length, u32 type,
    /// little-endian), the layout of QEMU's fw_cfg file "etc/e820" and of
    /// the Linux zero page's e820 table.
    public var e820Bytes: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(entries.count * 20)
        func append<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
        for entry in entries {
            append(entry.start.rawValue)
            append(entry.length)
            append(entry.type.rawValue)
        }
        return bytes
    }
}

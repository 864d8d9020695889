import SwiftletMemory

/// The kind of an address range in the firmware memory map. The values are
/// the e820 types (ACPI 6.5, table 15.1), which Multiboot 0.6.96 section 3.3
/// reuses for its `mmap` entries, so one map feeds both.
public struct MemoryType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let ram = MemoryType(rawValue: 1)
    public static let reserved = MemoryType(rawValue: 2)
    /// ACPI tables; the OS may reuse the memory once it has read them.
    public static let acpiReclaimable = MemoryType(rawValue: 3)
    /// ACPI non-volatile storage, preserved across sleep states.
    public static let acpiNVS = MemoryType(rawValue: 4)
    public static let unusable = MemoryType(rawValue: 5)

    public var description: String {
        switch self {
        case .ram: "RAM"
        case .reserved: "reserved"
        case .acpiReclaimable: "ACPI"
        case .acpiNVS: "ACPI NVS"
        case .unusable: "unusable"
        default: "type \(rawValue)"
        }
    }
}

/// One range of the memory map.
public struct MemoryMapEntry: Hashable, Sendable, CustomStringConvertible {
    public var range: GuestRange
    public var type: MemoryType

    public init(range: GuestRange, type: MemoryType) {
        self.range = range
        self.type = type
    }

    public init(start: UInt64, length: UInt64, type: MemoryType) {
        self.init(range: GuestRange(start: GuestAddress(start), length: length), type: type)
    }

    public var start: GuestAddress { range.start }
    public var length: UInt64 { range.length }

    public var description: String { "\(range) \(type)" }
}

/// The guest's memory map: sorted, non-overlapping entries, with neighbours
/// of the same type merged (a guest sees one RAM range, not the pieces it
/// was built from).
///
/// Starts as the PC map of the RAM ranges; later producers (ACPI tables,
/// Linux setup data) `mark` the ranges they occupy, which overrides whatever
/// the map said about those addresses before.
public struct MemoryMap: Hashable, Sendable {
    public private(set) var entries: [MemoryMapEntry] = []

    public init(ram: [GuestRange]) {
        for range in ram { mark(range, as: .ram) }
        // As on a PC (boot-protocol.md, "Physical address map"): the EBDA,
        // video memory and ROMs sit between 639 KiB and 1 MiB.
        mark(GuestRange(start: X86Layout.lowRAMEnd, length: X86Layout.highMemoryStart - X86Layout.lowRAMEnd),
             as: .reserved)
    }

    /// Gives `range` the type `type`, splitting the entries it cuts through.
    /// Empty ranges and ranges running past 2^64 are ignored.
    public mutating func mark(_ range: GuestRange, as type: MemoryType) {
        guard range.length > 0, let endAddress = range.start.adding(range.length) else { return }
        let start = range.start.rawValue, end = endAddress.rawValue
        var result: [MemoryMapEntry] = []
        for entry in entries {
            let entryStart = entry.start.rawValue, entryEnd = entry.start.rawValue + entry.length
            if entryEnd <= start || entryStart >= end {
                result.append(entry)
                continue
            }
            if entryStart < start { result.append(MemoryMapEntry(start: entryStart, length: start - entryStart, type: entry.type)) }
            if entryEnd > end { result.append(MemoryMapEntry(start: end, length: entryEnd - end, type: entry.type)) }
        }
        result.append(MemoryMapEntry(start: start, length: end - start, type: type))
        result.sort { $0.start < $1.start }

        var merged: [MemoryMapEntry] = []
        for entry in result {
            if let last = merged.last, last.type == entry.type, last.start.rawValue + last.length == entry.start.rawValue {
                merged[merged.count - 1].range.length += entry.length
            } else {
                merged.append(entry)
            }
        }
        entries = merged
    }

    /// Multiboot `mem_lower` (section 3.3): KiB of RAM from address 0.
    public var lowerMemoryKiB: UInt32 { kibibytesOfRAM(from: 0) }

    /// Multiboot `mem_upper` (section 3.3): KiB of RAM from 1 MiB up to the
    /// first hole, saturating at the field's 32 bits.
    public var upperMemoryKiB: UInt32 { kibibytesOfRAM(from: X86Layout.highMemoryStart.rawValue) }

    private func kibibytesOfRAM(from address: UInt64) -> UInt32 {
        guard let entry = entries.first(where: { $0.type == .ram && $0.range.contains(GuestAddress(address)) }) else {
            return 0
        }
        let bytes = entry.length - (address - entry.start.rawValue)
        return UInt32(clamping: bytes / 1024)
    }
}

/// A guest-physical address. A distinct type so that guest addresses, host
/// pointers and sizes cannot be mixed up.
public struct GuestAddress: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    public static func < (a: GuestAddress, b: GuestAddress) -> Bool { a.rawValue < b.rawValue }

    /// `self + offset`, or nil if that wraps past the end of the address space.
    public func adding(_ offset: UInt64) -> GuestAddress? {
        let (sum, overflow) = rawValue.addingReportingOverflow(offset)
        return overflow ? nil : GuestAddress(sum)
    }

    /// `self + offset`; traps on overflow, so only for offsets already validated.
    public static func + (address: GuestAddress, offset: UInt64) -> GuestAddress {
        GuestAddress(address.rawValue + offset)
    }

    /// The distance from `other` up to `self`.
    public static func - (address: GuestAddress, other: GuestAddress) -> UInt64 {
        address.rawValue - other.rawValue
    }

    /// Rounds up to a multiple of `alignment` (a power of two), or nil on overflow.
    public func alignedUp(to alignment: UInt64) -> GuestAddress? {
        precondition(alignment.nonzeroBitCount == 1, "alignment must be a power of two")
        guard let bumped = adding(alignment - 1) else { return nil }
        return GuestAddress(bumped.rawValue & ~(alignment - 1))
    }

    public var description: String { "0x" + String(rawValue, radix: 16) }
}

/// A half-open range of guest-physical addresses `[start, start + length)`.
public struct GuestRange: Hashable, Sendable, CustomStringConvertible {
    public var start: GuestAddress
    public var length: UInt64

    public init(start: GuestAddress, length: UInt64) {
        self.start = start
        self.length = length
    }

    /// The first address past the range, as a plain integer so that a range
    /// ending exactly at 2^64 is representable.
    public var end: UInt64 { start.rawValue &+ length }

    public var isValid: Bool { start.rawValue.addingReportingOverflow(length).overflow == false || end == 0 }

    public func contains(_ address: GuestAddress) -> Bool {
        address >= start && address.rawValue - start.rawValue < length
    }

    /// Whether `[address, address + count)` lies entirely inside this range.
    public func contains(_ address: GuestAddress, count: UInt64) -> Bool {
        guard contains(address) || count == 0 && address == start else { return false }
        return count <= length - (address.rawValue - start.rawValue)
    }

    public func overlaps(_ other: GuestRange) -> Bool {
        guard length > 0, other.length > 0 else { return false }
        return start.rawValue < other.start.rawValue &+ other.length && other.start.rawValue < start.rawValue &+ length
    }

    public var description: String {
        "[\(start), 0x\(String(start.rawValue &+ length, radix: 16)))"
    }
}

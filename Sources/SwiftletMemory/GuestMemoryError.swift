import SwiftletSystem

public enum GuestMemoryError: Error, Equatable, Sendable, CustomStringConvertible {
    /// An access or region that does not fit inside guest memory.
    case outOfBounds(GuestAddress, length: UInt64)
    /// Two regions claim the same guest addresses.
    case overlappingRegions(GuestRange, GuestRange)
    case misaligned(start: GuestAddress, size: UInt64, pageSize: UInt64)
    case hostMapping(SystemError)

    public var description: String {
        switch self {
        case .outOfBounds(let address, let length):
            "guest access [\(address), +0x\(String(length, radix: 16))) is outside guest memory"
        case .overlappingRegions(let a, let b):
            "guest memory regions \(a) and \(b) overlap"
        case .misaligned(let start, let size, let page):
            "guest memory region at \(start) of 0x\(String(size, radix: 16)) bytes is not aligned to the \(page)-byte page size"
        case .hostMapping(let error):
            "cannot map guest memory: \(error)"
        }
    }
}

import Synchronization
import SwiftletSystem

/// Dispatches guest accesses to the device that claims the address.
///
/// The device map is fixed once the bus is built, so lookups take no lock:
/// a binary search over an immutable sorted array. Accesses nobody claims
/// read as all ones (like an open ISA/PCI bus), are dropped when written,
/// counted, and logged at a limited rate — a guest probing ports is normal,
/// a guest flooding them must not flood the host's log.
public final class IOBus: Sendable {
    public enum Kind: String, Sendable {
        case portIO = "port"
        case mmio = "MMIO"
    }

    public struct Entry: Sendable {
        public let base: UInt64
        public let length: UInt64
        public let name: String
        public let device: any BusDevice
    }

    public let kind: Kind
    /// The registrations, sorted by base (for listing; dispatch uses the
    /// arrays below).
    public let entries: [Entry]
    // Dispatch looks at plain integers and reaches the device by index, so
    // the per-exit path copies no strings or existentials (no ARC traffic):
    // on PVM hosts every exit returns to cold caches and TLBs, and touching
    // less memory is what keeps an exit's cost near the floor's.
    private let bases: [UInt64]
    private let lengths: [UInt64]
    private let devices: ContiguousArray<any BusDevice>
    private let unclaimedReadCount = Atomic<UInt64>(0)
    private let unclaimedWriteCount = Atomic<UInt64>(0)
    private let logLimiter = RateLimiter(burst: 5)

    fileprivate init(kind: Kind, entries: [Entry]) {
        self.kind = kind
        self.entries = entries
        bases = entries.map(\.base)
        lengths = entries.map(\.length)
        devices = ContiguousArray(entries.map(\.device))
    }

    /// Guest accesses that no device claimed so far.
    public var unclaimedReads: UInt64 { unclaimedReadCount.load(ordering: .relaxed) }
    public var unclaimedWrites: UInt64 { unclaimedWriteCount.load(ordering: .relaxed) }

    /// The index of the entry whose range holds the whole access, if any.
    @inline(__always)
    private func index(for address: UInt64, size: Int) -> Int? {
        var low = 0, high = bases.count
        while low < high {
            let mid = (low + high) / 2
            let base = bases[mid]
            if address < base {
                high = mid
            } else if address - base >= lengths[mid] {
                low = mid + 1
            } else {
                return UInt64(size) <= lengths[mid] - (address - base) ? mid : nil
            }
        }
        return nil
    }

    /// The entry whose range holds the whole access, if any.
    public func entry(for address: UInt64, size: Int) -> Entry? {
        index(for: address, size: size).map { entries[$0] }
    }

    public func read(_ address: UInt64, size: Int) -> UInt64 {
        if let i = index(for: address, size: size) {
            return devices[i].read(at: address - bases[i], size: size) & accessMask(size: size)
        }
        unclaimedReadCount.add(1, ordering: .relaxed)
        logUnclaimed("read", address, size, nil)
        return accessMask(size: size)
    }

    public func write(_ address: UInt64, size: Int, value: UInt64) {
        if let i = index(for: address, size: size) {
            devices[i].write(at: address - bases[i], size: size, value: value & accessMask(size: size))
            return
        }
        unclaimedWriteCount.add(1, ordering: .relaxed)
        logUnclaimed("write", address, size, value)
    }

    private func logUnclaimed(_ what: String, _ address: UInt64, _ size: Int, _ value: UInt64?) {
        guard Log.enabled(.info), let dropped = logLimiter.admit() else { return }
        let width = kind == .portIO ? 4 : 8
        var message = "unclaimed \(kind.rawValue) \(what) at 0x\(hex(address, width)) size \(size)"
        if let value { message += " value 0x\(String(value, radix: 16))" }
        if dropped > 0 { message += " (\(dropped) similar messages suppressed)" }
        Log.info(message)
    }
}

/// Collects device registrations and refuses overlaps.
public struct IOBusBuilder {
    public let kind: IOBus.Kind
    private var entries: [IOBus.Entry] = []

    public init(kind: IOBus.Kind) { self.kind = kind }

    public enum Error: Swift.Error, Equatable, CustomStringConvertible {
        case emptyRange(name: String)
        case overlap(name: String, other: String, base: UInt64)

        public var description: String {
            switch self {
            case .emptyRange(let name): "device \(name) registered with an empty or wrapping range"
            case .overlap(let name, let other, let base):
                "device \(name) at 0x\(String(base, radix: 16)) overlaps device \(other)"
            }
        }
    }

    public mutating func register(_ device: any BusDevice, name: String, base: UInt64, length: UInt64) throws(Error) {
        guard length > 0, base.addingReportingOverflow(length - 1).overflow == false else {
            throw .emptyRange(name: name)
        }
        let entry = IOBus.Entry(base: base, length: length, name: name, device: device)
        for other in entries where base <= other.base + (other.length - 1) && other.base <= base + (length - 1) {
            throw .overlap(name: name, other: other.name, base: base)
        }
        entries.append(entry)
    }

    public func build() -> IOBus {
        IOBus(kind: kind, entries: entries.sorted { $0.base < $1.base })
    }
}

func hex(_ value: UInt64, _ width: Int) -> String {
    let digits = String(value, radix: 16)
    return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
}

/// The guest's physical memory: a fixed set of non-overlapping regions.
///
/// Every access is bounds-checked against the regions and may cross from one
/// region into the next where they are contiguous. Accessors copy bytes in
/// and out; the guest can change its memory concurrently from other vCPUs,
/// so callers validate what they read after copying it, never in place.
public final class GuestMemory: Sendable {
    /// Sorted by start address, non-overlapping.
    public let regions: [GuestMemoryRegion]

    public init(regions: [GuestMemoryRegion]) throws(GuestMemoryError) {
        let sorted = regions.sorted { $0.start < $1.start }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.range.overlaps(b.range) {
            throw .overlappingRegions(a.range, b.range)
        }
        self.regions = sorted
    }

    /// Maps anonymous memory for each range.
    public convenience init(ranges: [GuestRange], backing: MemoryBacking = .anonymous) throws(GuestMemoryError) {
        var regions: [GuestMemoryRegion] = []
        for range in ranges {
            regions.append(try GuestMemoryRegion(start: range.start, size: range.length, backing: backing))
        }
        try self.init(regions: regions)
    }

    /// Total bytes of guest RAM.
    public var size: UInt64 { regions.reduce(0) { $0 + $1.size } }

    /// The region holding `address`, if any.
    public func region(containing address: GuestAddress) -> GuestMemoryRegion? {
        // Regions are few (one or two around the PCI hole, more with hotplug):
        // a binary search keeps lookups logarithmic as that grows.
        var low = 0, high = regions.count
        while low < high {
            let mid = (low + high) / 2
            let region = regions[mid]
            if address < region.start {
                high = mid
            } else if region.range.contains(address) {
                return region
            } else {
                low = mid + 1
            }
        }
        return nil
    }

    /// Whether `[address, address + count)` is entirely guest memory.
    public func contains(_ address: GuestAddress, count: UInt64) -> Bool {
        (try? forEachPiece(at: address, count: count) { _, _ in }) != nil
    }

    /// Calls `body` for each contiguous host piece of `[address, address+count)`
    /// with the piece and its offset into the access; throws before calling
    /// `body` at all if any byte is outside guest memory.
    private func forEachPiece(at address: GuestAddress, count: UInt64,
                              _ body: (UnsafeMutableRawBufferPointer, Int) throws(GuestMemoryError) -> Void) throws(GuestMemoryError) {
        guard address.adding(count) != nil || address.rawValue &+ count == 0 else {
            throw .outOfBounds(address, length: count)
        }
        // The common case: the whole access is inside one region.
        if let region = region(containing: address), region.range.contains(address, count: count) {
            try body(try region.hostBuffer(at: address, count: count), 0)
            return
        }
        // Validate every piece first so that a failing access has no partial effect.
        var pieces: [(GuestMemoryRegion, GuestAddress, UInt64)] = []
        var cursor = address
        var left = count
        while left > 0 {
            guard let region = region(containing: cursor) else { throw .outOfBounds(address, length: count) }
            let available = region.size - (cursor - region.start)
            let take = min(available, left)
            pieces.append((region, cursor, take))
            left -= take
            if left > 0 { cursor = cursor + take }
        }
        var offset = 0
        for (region, start, length) in pieces {
            try body(try region.hostBuffer(at: start, count: length), offset)
            offset += Int(length)
        }
    }

    /// Copies guest bytes at `address` into `buffer`.
    public func read(into buffer: UnsafeMutableRawBufferPointer, from address: GuestAddress) throws(GuestMemoryError) {
        try forEachPiece(at: address, count: UInt64(buffer.count)) { piece, offset in
            UnsafeMutableRawBufferPointer(rebasing: buffer[offset..<offset + piece.count]).copyMemory(from: UnsafeRawBufferPointer(piece))
        }
    }

    /// Copies `bytes` into guest memory at `address`.
    public func write(_ bytes: UnsafeRawBufferPointer, to address: GuestAddress) throws(GuestMemoryError) {
        try forEachPiece(at: address, count: UInt64(bytes.count)) { piece, offset in
            piece.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + piece.count]))
        }
    }

    public func write(_ bytes: [UInt8], to address: GuestAddress) throws(GuestMemoryError) {
        // Array.withUnsafeBytes is rethrows, which erases the error type.
        try bytes.withUnsafeBytes { raw in Result { () throws(GuestMemoryError) in try write(raw, to: address) } }.get()
    }

    public func readBytes(at address: GuestAddress, count: Int) throws(GuestMemoryError) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: count)
        try result.withUnsafeMutableBytes { raw in Result { () throws(GuestMemoryError) in try read(into: raw, from: address) } }.get()
        return result
    }

    /// Sets `count` bytes at `address` to `byte`.
    public func fill(_ byte: UInt8, at address: GuestAddress, count: UInt64) throws(GuestMemoryError) {
        try forEachPiece(at: address, count: count) { piece, _ in
            piece.initializeMemory(as: UInt8.self, repeating: byte)
        }
    }

    /// Reads a little-endian integer.
    public func load<T: FixedWidthInteger>(_ type: T.Type = T.self, from address: GuestAddress) throws(GuestMemoryError) -> T {
        var value = T.zero
        try withUnsafeMutableBytes(of: &value) { (raw) throws(GuestMemoryError) in try read(into: raw, from: address) }
        return T(littleEndian: value)
    }

    /// Writes a little-endian integer.
    public func store<T: FixedWidthInteger>(_ value: T, to address: GuestAddress) throws(GuestMemoryError) {
        var le = value.littleEndian
        try withUnsafeBytes(of: &le) { (raw) throws(GuestMemoryError) in try write(raw, to: address) }
    }

    /// Host memory for `[address, address + count)` when it lies in a single
    /// region, for bulk transfers (file reads straight into guest memory).
    /// The buffer stays valid as long as this `GuestMemory` exists.
    public func hostBuffer(at address: GuestAddress, count: UInt64) throws(GuestMemoryError) -> UnsafeMutableRawBufferPointer {
        guard let region = region(containing: address) else { throw .outOfBounds(address, length: count) }
        return try region.hostBuffer(at: address, count: count)
    }
}

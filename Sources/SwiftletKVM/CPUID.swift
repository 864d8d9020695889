import CSwiftlet

/// One CPUID leaf as KVM describes it (`struct kvm_cpuid_entry2`).
public struct CPUIDEntry: Hashable, Sendable {
    public var function: UInt32
    public var index: UInt32
    public var flags: UInt32
    public var eax: UInt32
    public var ebx: UInt32
    public var ecx: UInt32
    public var edx: UInt32

    public init(function: UInt32, index: UInt32 = 0, flags: UInt32 = 0, eax: UInt32 = 0, ebx: UInt32 = 0, ecx: UInt32 = 0, edx: UInt32 = 0) {
        self.function = function; self.index = index; self.flags = flags
        self.eax = eax; self.ebx = ebx; self.ecx = ecx; self.edx = edx
    }

    /// KVM_CPUID_FLAG_SIGNIFCANT_INDEX: the leaf has sub-leaves selected by ECX.
    public var hasSubleaves: Bool { flags & UInt32(KVM_CPUID_FLAG_SIGNIFCANT_INDEX) != 0 }
}

/// A list of CPUID leaves.
public struct CPUIDTable: Sendable, Equatable {
    public var entries: [CPUIDEntry]
    public init(entries: [CPUIDEntry]) { self.entries = entries }

    public func entry(_ function: UInt32, index: UInt32 = 0) -> CPUIDEntry? {
        entries.first { $0.function == function && (!$0.hasSubleaves || $0.index == index) }
    }

    /// Applies `change` to every entry (all sub-leaves) of `function`.
    public mutating func update(_ function: UInt32, _ change: (inout CPUIDEntry) -> Void) {
        for i in entries.indices where entries[i].function == function { change(&entries[i]) }
    }
}

/// A heap `struct kvm_cpuid2` with room for `capacity` entries, the shape
/// the CPUID ioctls take.
final class CPUIDBuffer {
    let raw: UnsafeMutableRawPointer
    private let capacity: UInt32

    init(capacity: UInt32) {
        self.capacity = capacity
        let size = swl_kvm_cpuid2_size(capacity)
        raw = .allocate(byteCount: size, alignment: 8)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        header.pointee.nent = capacity
    }

    convenience init(_ table: CPUIDTable) {
        self.init(capacity: UInt32(table.entries.count))
        let out = swl_kvm_cpuid2_entries(header)!
        for (i, e) in table.entries.enumerated() {
            var k = kvm_cpuid_entry2()
            k.function = e.function; k.index = e.index; k.flags = e.flags
            k.eax = e.eax; k.ebx = e.ebx; k.ecx = e.ecx; k.edx = e.edx
            out[i] = k
        }
    }

    deinit { raw.deallocate() }

    // The buffer was allocated for, and is only used as, a kvm_cpuid2.
    var header: UnsafeMutablePointer<kvm_cpuid2> { raw.assumingMemoryBound(to: kvm_cpuid2.self) }

    func entries() -> CPUIDTable {
        let count = min(header.pointee.nent, capacity)  // KVM writes back nent ≤ capacity
        let base = swl_kvm_cpuid2_entries(header)!
        return CPUIDTable(entries: (0..<Int(count)).map { i in
            let k = base[i]
            return CPUIDEntry(function: k.function, index: k.index, flags: k.flags, eax: k.eax, ebx: k.ebx, ecx: k.ecx, edx: k.edx)
        })
    }
}

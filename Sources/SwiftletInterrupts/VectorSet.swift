/// A set of interrupt vectors: the 256-bit IRR, ISR and TMR of a local APIC
/// (Intel SDM Vol. 3A §10.8.4), and the pending-request bitmap a poster hands
/// to the vCPU that owns the APIC.
///
/// Four 64-bit words, stored inline: copying one allocates nothing.
public struct VectorSet: Hashable, Sendable, CustomStringConvertible {
    public var words: (UInt64, UInt64, UInt64, UInt64)

    public init() { words = (0, 0, 0, 0) }

    /// Vector v is bit (v % 64) of word (v / 64).
    public init(words: (UInt64, UInt64, UInt64, UInt64)) { self.words = words }

    public init(_ vectors: some Sequence<UInt8>) {
        self.init()
        for vector in vectors { insert(vector) }
    }

    public static func == (a: VectorSet, b: VectorSet) -> Bool {
        a.words.0 == b.words.0 && a.words.1 == b.words.1 && a.words.2 == b.words.2 && a.words.3 == b.words.3
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(words.0); hasher.combine(words.1); hasher.combine(words.2); hasher.combine(words.3)
    }

    @inline(__always)
    func word(_ index: Int) -> UInt64 {
        switch index & 3 {
        case 0: words.0
        case 1: words.1
        case 2: words.2
        default: words.3
        }
    }

    @inline(__always)
    mutating func setWord(_ index: Int, _ value: UInt64) {
        switch index & 3 {
        case 0: words.0 = value
        case 1: words.1 = value
        case 2: words.2 = value
        default: words.3 = value
        }
    }

    public var isEmpty: Bool { words.0 | words.1 | words.2 | words.3 == 0 }

    public func contains(_ vector: UInt8) -> Bool {
        word(Int(vector) >> 6) & (1 << UInt64(vector & 63)) != 0
    }

    public mutating func insert(_ vector: UInt8) {
        let index = Int(vector) >> 6
        setWord(index, word(index) | (1 << UInt64(vector & 63)))
    }

    public mutating func remove(_ vector: UInt8) {
        let index = Int(vector) >> 6
        setWord(index, word(index) & ~(1 << UInt64(vector & 63)))
    }

    public mutating func formUnion(_ other: VectorSet) {
        words = (words.0 | other.words.0, words.1 | other.words.1, words.2 | other.words.2, words.3 | other.words.3)
    }

    public func intersection(_ other: VectorSet) -> VectorSet {
        VectorSet(words: (words.0 & other.words.0, words.1 & other.words.1,
                          words.2 & other.words.2, words.3 & other.words.3))
    }

    public mutating func subtract(_ other: VectorSet) {
        words = (words.0 & ~other.words.0, words.1 & ~other.words.1, words.2 & ~other.words.2, words.3 & ~other.words.3)
    }

    /// The highest vector in the set: the highest-priority one, since an
    /// interrupt's priority grows with its vector (SDM §10.8.3).
    public var highest: UInt8? {
        for index in stride(from: 3, through: 0, by: -1) {
            let bits = word(index)
            if bits != 0 { return UInt8(truncatingIfNeeded: index * 64 + 63 - bits.leadingZeroBitCount) }
        }
        return nil
    }

    /// The 32-bit register the APIC shows for vectors 32·i ... 32·i+31
    /// (the IRR/ISR/TMR registers at offsets base + 0x10·i).
    public func register(_ index: Int) -> UInt32 {
        UInt32(truncatingIfNeeded: word(index >> 1) >> (UInt64(index & 1) * 32))
    }

    public var description: String {
        var vectors: [String] = []
        for vector in 0...255 where contains(UInt8(vector)) { vectors.append("0x" + hex(UInt64(vector), 2)) }
        return "{" + vectors.joined(separator: ", ") + "}"
    }
}

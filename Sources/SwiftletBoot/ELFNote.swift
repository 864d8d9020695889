/// One ELF note (gABI, "Note Section"): an owner name, a type that the owner
/// defines, and a descriptor. The PVH entry point, for one, is the note
/// ("Xen", 18) whose descriptor is the 32-bit physical entry address.
public struct ELFNote: Hashable, Sendable {
    public var name: String
    public var type: UInt32
    public var descriptor: [UInt8]

    public init(name: String, type: UInt32, descriptor: [UInt8]) {
        self.name = name
        self.type = type
        self.descriptor = descriptor
    }

    /// A note that does not fit in its segment: where it starts.
    public struct Malformed: Error, Equatable, Sendable {
        public var offset: Int
    }

    /// The notes in a PT_NOTE segment's bytes. Each is a 12-byte header
    /// (namesz, descsz, type; 32-bit words in ELF32 and ELF64 alike), then
    /// the name and the descriptor, each padded to `alignment` — 4 in
    /// practice, 8 for segments aligned to 8 (binutils treats them so).
    /// Fewer than 12 bytes left over at the end are padding, not a note.
    public static func parse(_ bytes: [UInt8], alignment: Int) throws(Malformed) -> [ELFNote] {
        precondition(alignment == 4 || alignment == 8)
        var notes: [ELFNote] = []
        var offset = 0
        while bytes.count - offset >= 12 {
            let header = LittleEndianReader(bytes, at: offset)
            let nameSize = Int(header.u32(0)), descriptorSize = Int(header.u32(4))
            let nameStart = offset + 12
            // All in Int: sizes are at most 2^32 and the buffer is small, so
            // nothing here can overflow on a 64-bit host.
            let descriptorStart = align(nameStart + nameSize, alignment)
            let end = align(descriptorStart + descriptorSize, alignment)
            guard nameStart + nameSize <= bytes.count, descriptorStart + descriptorSize <= bytes.count else {
                throw Malformed(offset: offset)
            }
            // namesz counts the terminating NUL; stop at the first NUL anyway.
            let nameBytes = bytes[nameStart..<nameStart + nameSize].prefix { $0 != 0 }
            notes.append(ELFNote(name: String(decoding: nameBytes, as: UTF8.self),
                                 type: header.u32(8),
                                 descriptor: Array(bytes[descriptorStart..<descriptorStart + descriptorSize])))
            offset = min(end, bytes.count)
        }
        return notes
    }
}

private func align(_ value: Int, _ alignment: Int) -> Int { (value + alignment - 1) & ~(alignment - 1) }

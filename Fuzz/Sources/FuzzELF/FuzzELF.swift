import SwiftletBoot

/// ELF headers, program headers and notes from arbitrary bytes: parsing
/// either succeeds with a table that is consistent with the file, or fails
/// with a one-line error. Never a trap.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzELF(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    let image = ByteImage(name: "fuzz.elf", bytes: bytes)
    do {
        let elf = try ELFImage(parsing: image)
        precondition(!elf.loadSegments.isEmpty)
        for segment in elf.loadSegments {
            precondition(segment.fileSize <= segment.memorySize)
            precondition(segment.fileSize == 0 || segment.offset + segment.fileSize <= image.size)
        }
        _ = elf.physicalEntry()
        do {
            for note in try elf.notes(in: image) { precondition(note.descriptor.count <= ELFImage.maximumNoteSegmentSize) }
        } catch {
            checkOneLine(error)
        }
    } catch {
        checkOneLine(error)
    }
    // The note parser on its own, at both alignments.
    _ = try? ELFNote.parse(bytes, alignment: 4)
    _ = try? ELFNote.parse(bytes, alignment: 8)
    return 0
}

func checkOneLine(_ error: BootError) {
    let text = error.description
    precondition(!text.isEmpty && !text.contains("\n"), "error is not one line: \(text)")
}

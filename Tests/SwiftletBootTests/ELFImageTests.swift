import Testing
@testable import SwiftletBoot

@Suite struct ELFImageTests {
    func parse(_ bytes: [UInt8], name: String = "k") throws(BootError) -> ELFImage {
        try ELFImage(parsing: ByteImage(name: name, bytes: bytes))
    }

    func problem(_ bytes: [UInt8]) -> BootProblem? {
        do {
            _ = try parse(bytes)
            return nil
        } catch {
            return error.problem
        }
    }

    @Test func parsesELF64() throws {
        var builder = ELFBuilder(entry: 0xffff_ffff_8010_0010, segments: [
            .init(flags: 5, physicalAddress: 0x10_0000, virtualAddress: 0xffff_ffff_8010_0000, data: pattern(0x40, seed: 1),
                  memorySize: 0x80, alignment: 0x20_0000),
            .init(type: ELFProgramHeader.typeNote, flags: 4, physicalAddress: 0, data: [], alignment: 4),
        ])
        builder.type = ELFImage.typeSharedObject
        let elf = try parse(builder.build())
        #expect(elf.elfClass == .elf64)
        #expect(elf.machine == .x86_64)
        #expect(elf.type == ELFImage.typeSharedObject)
        #expect(elf.entry == 0xffff_ffff_8010_0010)
        #expect(elf.programHeaders.count == 2)
        #expect(elf.programHeaders[0] == ELFProgramHeader(
            index: 0, type: 1, flags: 5, offset: UInt64(builder.dataOffset(0)), virtualAddress: 0xffff_ffff_8010_0000,
            physicalAddress: 0x10_0000, fileSize: 0x40, memorySize: 0x80, alignment: 0x20_0000))
        #expect(elf.programHeaders[1].type == ELFProgramHeader.typeNote)
        #expect(elf.loadSegments.map(\.index) == [0])
        // A higher-half entry translates through its segment.
        #expect(elf.physicalEntry() == 0x10_0010)
    }

    @Test func parsesELF32() throws {
        let builder = ELFBuilder(elfClass: .elf32, entry: 0x10_0004, segments: [
            .init(flags: 7, physicalAddress: 0x10_0000, data: pattern(0x30, seed: 2), memorySize: 0x1000, alignment: 4),
            .init(flags: 6, physicalAddress: 0x20_0000, virtualAddress: 0xC020_0000, data: pattern(8, seed: 3)),
        ])
        let elf = try parse(builder.build())
        #expect(elf.elfClass == .elf32)
        #expect(elf.machine == .i386)
        #expect(elf.type == ELFImage.typeExecutable)
        #expect(elf.entry == 0x10_0004)
        #expect(elf.programHeaders == [
            ELFProgramHeader(index: 0, type: 1, flags: 7, offset: UInt64(builder.dataOffset(0)), virtualAddress: 0x10_0000,
                             physicalAddress: 0x10_0000, fileSize: 0x30, memorySize: 0x1000, alignment: 4),
            ELFProgramHeader(index: 1, type: 1, flags: 6, offset: UInt64(builder.dataOffset(1)), virtualAddress: 0xC020_0000,
                             physicalAddress: 0x20_0000, fileSize: 8, memorySize: 8, alignment: 0x1000),
        ])
        #expect(elf.physicalEntry() == 0x10_0004)
    }

    @Test func entryIsPhysicalFirstThenVirtual() throws {
        var builder = ELFBuilder.kernel()
        builder.segments[0].virtualAddress = 0x8010_0000
        builder.entry = 0x10_0020  // physical, as xv6 sets it
        #expect(try parse(builder.build()).physicalEntry() == 0x10_0020)
        builder.entry = 0x8010_0040  // virtual
        #expect(try parse(builder.build()).physicalEntry() == 0x10_0040)
        builder.entry = 0x8010_0000 + 0x4FF  // in the bss: still inside memsz
        #expect(try parse(builder.build()).physicalEntry() == 0x10_04FF)
        builder.entry = 0x8010_0000 + 0x500
        #expect(try parse(builder.build()).physicalEntry() == nil)
    }

    @Test func rejectsWhatIsNotELF() {
        #expect(problem([]) == .notELF)
        #expect(problem([0x7f, 0x45, 0x4c]) == .notELF)
        #expect(problem(Array("MZ\u{90}\u{0}".utf8) + [UInt8](repeating: 0, count: 100)) == .notELF)
    }

    @Test func rejectsBadIdentification() {
        var bytes = ELFBuilder.kernel().build()
        bytes[4] = 3
        #expect(problem(bytes) == .unsupportedELFClass(3))
        bytes = ELFBuilder.kernel().build()
        bytes[5] = 2
        #expect(problem(bytes) == .unsupportedELFEncoding(2))
        #expect(BootProblem.unsupportedELFEncoding(2).description == "big-endian ELF images are not supported")
        bytes[5] = 0
        #expect(problem(bytes) == .unsupportedELFEncoding(0))
        bytes = ELFBuilder.kernel().build()
        bytes[6] = 0
        #expect(problem(bytes) == .unsupportedELFVersion(0))
        bytes = ELFBuilder.kernel().build()
        bytes.put(UInt32(2), at: 20)
        #expect(problem(bytes) == .unsupportedELFVersion(2))
    }

    @Test func rejectsOtherMachinesAndTypes() throws {
        var builder = ELFBuilder.kernel()
        builder.machine = 0xb7  // AArch64
        do {
            _ = try parse(builder.build())
            Issue.record("accepted an AArch64 image")
        } catch {
            #expect(error.description == "k: unsupported ELF machine 0xb7 (expected x86-64 or i386)")
        }
        builder.machine = ELFMachine.i386.rawValue
        #expect(problem(builder.build()) == .elfClassMachineMismatch(.elf64, .i386))
        builder = ELFBuilder.kernel(.elf32)
        builder.machine = ELFMachine.x86_64.rawValue
        #expect(problem(builder.build()) == .elfClassMachineMismatch(.elf32, .x86_64))
        builder = ELFBuilder.kernel()
        builder.type = 1
        #expect(problem(builder.build()) == .unsupportedELFType(1))
        #expect(BootProblem.unsupportedELFType(1).description.contains("relocatable"))
        builder.type = 4
        #expect(problem(builder.build()) == .unsupportedELFType(4))
    }

    @Test func rejectsBadProgramHeaderTables() {
        var builder = ELFBuilder.kernel()
        builder.segments = []
        #expect(problem(builder.build()) == .noProgramHeaders)

        var bytes = ELFBuilder.kernel().build()
        bytes.put(UInt16(0xffff), at: 56)
        #expect(problem(bytes) == .extendedProgramHeaderNumbering)

        bytes = ELFBuilder.kernel().build()
        bytes.put(UInt16(40), at: 54)
        #expect(problem(bytes) == .badProgramHeaderSize(40, expected: 56))

        bytes = ELFBuilder.kernel().build()
        bytes.put(UInt16(2000), at: 56)
        #expect(problem(bytes) == .tooManyProgramHeaders(2000, maximum: 1170))

        bytes = ELFBuilder.kernel().build()
        bytes.put(UInt64.max - 10, at: 32)
        #expect(problem(bytes) == .offsetOverflow(.programHeaders, offset: UInt64.max - 10, size: 56))

        builder = ELFBuilder.kernel()
        builder.segments[0].type = ELFProgramHeader.typeNote
        #expect(problem(builder.build()) == .noLoadableSegments)
        // An empty PT_LOAD does not count as loadable.
        builder = ELFBuilder.kernel(size: 0, bss: 0)
        #expect(problem(builder.build()) == .noLoadableSegments)
    }

    @Test func rejectsBadSegments() {
        var bytes = ELFBuilder.kernel(size: 0x200, bss: 0).build()
        let header = 64
        bytes.put(UInt64(0x100), at: header + 40)  // p_memsz below p_filesz
        #expect(problem(bytes) == .fileSizeExceedsMemorySize(index: 0, fileSize: 0x200, memorySize: 0x100))

        bytes = ELFBuilder.kernel().build()
        bytes.put(UInt64.max - 0x10, at: header + 8)  // p_offset
        #expect(problem(bytes) == .offsetOverflow(.segment(0), offset: UInt64.max - 0x10, size: 0x200))

        bytes = ELFBuilder.kernel().build()
        bytes.put(UInt64(0x10_0000), at: header + 8)
        #expect(problem(bytes) == .truncated(.segment(0), end: 0x10_0200, fileSize: UInt64(bytes.count)))
    }

    @Test func rejectsTruncationAtEveryStructure() throws {
        let builder = ELFBuilder(entry: 0x10_0000, segments: [
            .init(physicalAddress: 0x10_0000, data: pattern(0x100, seed: 1)),
            .init(physicalAddress: 0x20_0000, data: pattern(0x100, seed: 2)),
        ])
        let full = builder.build()
        _ = try parse(full)
        for length in 0..<full.count {
            let cut = Array(full[..<length])
            let expected: BootProblem = switch length {
            case ..<4: .notELF
            case ..<16: .truncated(.elfHeader, end: 16, fileSize: UInt64(length))
            case ..<64: .truncated(.elfHeader, end: 64, fileSize: UInt64(length))
            case ..<builder.programHeaderTableEnd:
                .truncated(.programHeaders, end: UInt64(builder.programHeaderTableEnd), fileSize: UInt64(length))
            case ..<builder.dataOffset(1):
                .truncated(.segment(0), end: UInt64(builder.dataOffset(1)), fileSize: UInt64(length))
            default:
                .truncated(.segment(1), end: UInt64(full.count), fileSize: UInt64(length))
            }
            #expect(problem(cut) == expected, "cut at \(length)")
        }
        #expect(problem(Array(full[..<100])) == .truncated(.programHeaders, end: 176, fileSize: 100))
        do {
            _ = try parse(Array(full[..<100]), name: "x.elf")
        } catch {
            #expect(error.description == "x.elf: truncated: program headers end at byte 176 but the file has 100 bytes")
        }
    }

    @Test func truncatedELF32() {
        let full = ELFBuilder.kernel(.elf32).build()
        #expect(problem(Array(full[..<40])) == .truncated(.elfHeader, end: 52, fileSize: 40))
        #expect(problem(Array(full[..<60])) == .truncated(.programHeaders, end: 84, fileSize: 60))
    }
}

@Suite struct ELFNoteTests {
    func note(_ name: String, type: UInt32, descriptor: [UInt8], alignment: Int = 4) -> [UInt8] {
        func padded(_ bytes: [UInt8]) -> [UInt8] {
            bytes + [UInt8](repeating: 0, count: (alignment - bytes.count % alignment) % alignment)
        }
        let nameBytes = Array(name.utf8) + [0]
        var bytes: [UInt8] = []
        bytes.put(UInt32(nameBytes.count), at: 0)
        bytes.put(UInt32(descriptor.count), at: 4)
        bytes.put(type, at: 8)
        return padded(bytes + nameBytes) + padded(descriptor)
    }

    @Test func iteratesNotesOfEveryNoteSegment() throws {
        let pvh = note("Xen", type: 18, descriptor: [0x00, 0x00, 0x10, 0x00])
        let gnu = note("GNU", type: 3, descriptor: pattern(20, seed: 9))
        let wide = note("Go", type: 4, descriptor: pattern(5, seed: 4), alignment: 8)
        var builder = ELFBuilder.kernel()
        builder.segments.append(.init(type: ELFProgramHeader.typeNote, physicalAddress: 0, data: pvh + gnu, alignment: 4))
        builder.segments.append(.init(type: ELFProgramHeader.typeNote, physicalAddress: 0, data: wide, alignment: 8))
        let image = ByteImage(name: "k", bytes: builder.build())
        let notes = try ELFImage(parsing: image).notes(in: image)
        #expect(notes == [
            ELFNote(name: "Xen", type: 18, descriptor: [0x00, 0x00, 0x10, 0x00]),
            ELFNote(name: "GNU", type: 3, descriptor: pattern(20, seed: 9)),
            ELFNote(name: "Go", type: 4, descriptor: pattern(5, seed: 4)),
        ])
    }

    @Test func ignoresTrailingPaddingAndRejectsOverruns() throws {
        let xen = note("Xen", type: 18, descriptor: [1, 2, 3, 4])
        #expect(try ELFNote.parse(xen + [0, 0, 0, 0], alignment: 4).count == 1)
        #expect(try ELFNote.parse([], alignment: 4).isEmpty)

        var huge = xen
        huge.put(UInt32.max, at: 4)  // descsz
        #expect(throws: ELFNote.Malformed(offset: 0)) { try ELFNote.parse(huge, alignment: 4) }
        var second = xen + xen
        second.put(UInt32(100), at: xen.count)  // namesz of the second note
        #expect(throws: ELFNote.Malformed(offset: xen.count)) { try ELFNote.parse(second, alignment: 4) }

        var builder = ELFBuilder.kernel()
        builder.segments.append(.init(type: ELFProgramHeader.typeNote, physicalAddress: 0, data: huge, alignment: 4))
        let image = ByteImage(name: "k", bytes: builder.build())
        #expect(throws: BootError("k", .malformedNote(index: 1, offset: 0))) {
            try ELFImage(parsing: image).notes(in: image)
        }
    }

    @Test func refusesOversizedNoteSegments() throws {
        var builder = ELFBuilder.kernel()
        builder.segments.append(.init(type: ELFProgramHeader.typeNote, physicalAddress: 0,
                                      data: [UInt8](repeating: 0, count: ELFImage.maximumNoteSegmentSize + 1)))
        let image = ByteImage(name: "k", bytes: builder.build())
        let elf = try ELFImage(parsing: image)
        #expect(throws: BootError("k", .noteSegmentTooLarge(index: 1, size: UInt64(ELFImage.maximumNoteSegmentSize + 1),
                                                             maximum: ELFImage.maximumNoteSegmentSize))) {
            try elf.notes(in: image)
        }
    }
}

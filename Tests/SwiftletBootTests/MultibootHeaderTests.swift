import Testing
@testable import SwiftletBoot

@Suite struct MultibootHeaderTests {
    func image(header: [UInt8], at offset: Int, size: Int = 0x3000) -> [UInt8] {
        var bytes = pattern(size, seed: 5)
        bytes.place(header, at: offset)
        return bytes
    }

    func search(_ bytes: [UInt8]) throws(BootProblem) -> MultibootHeader.Search {
        try MultibootHeader.search(Array(bytes.prefix(MultibootHeader.searchLimit)))
    }

    @Test func findsAnAlignedHeaderInTheFirst8KiB() throws {
        let addresses = MultibootHeader.Addresses(header: 0x10_1000, load: 0x10_0000, loadEnd: 0x10_2000,
                                                  bssEnd: 0x10_4000, entry: 0x10_1020)
        let found = try search(image(header: multibootHeader(flags: 3, addresses: addresses), at: 0x1000))
        #expect(found == .found(MultibootHeader(offset: 0x1000, flags: 0x1_0003, addresses: addresses)))

        // The last place a 12-byte header fits.
        #expect(try search(image(header: multibootHeader(), at: 8192 - 12)) ==
                .found(MultibootHeader(offset: 8192 - 12, flags: 0, addresses: nil)))
        // Straddling the limit, past it, or misaligned: not a header.
        #expect(try search(image(header: multibootHeader(), at: 8192 - 8)) == .notFound)
        #expect(try search(image(header: multibootHeader(), at: 8192)) == .notFound)
        #expect(try search(image(header: multibootHeader(), at: 0x102)) == .notFound)
        #expect(try search([]) == .notFound)
    }

    @Test func reportsABadChecksumUnlessAValidHeaderFollows() throws {
        let bad = multibootHeader(checksum: 0x1234)
        let sum = MultibootHeader.magic &+ 0 &+ 0x1234
        #expect(try search(image(header: bad, at: 0x40)) == .badChecksum(offset: 0x40, sum: sum))
        var both = image(header: bad, at: 0x40)
        both.place(multibootHeader(flags: 2), at: 0x80)
        #expect(try search(both) == .found(MultibootHeader(offset: 0x80, flags: 2, addresses: nil)))
        #expect(BootProblem.multibootChecksum(offset: 0x40, sum: sum).description ==
                "Multiboot header at byte 64 has a bad checksum (magic + flags + checksum = 0x1badc236, not 0)")
    }

    @Test func refusesUnsupportedRequiredFlags() throws {
        for bit in [3, 4, 8, 15] {
            #expect(throws: BootProblem.unsupportedMultibootFlag(bit: bit)) {
                try search(image(header: multibootHeader(flags: 1 << bit | 3), at: 0))
            }
        }
        // Optional bits above 16 that Swiftlet does not know are ignored.
        #expect(try search(image(header: multibootHeader(flags: 1 << 17 | 1 << 31), at: 0)) ==
                .found(MultibootHeader(offset: 0, flags: 1 << 17 | 1 << 31, addresses: nil)))
        let video = try search(image(header: multibootHeader(flags: 4), at: 0))
        guard case .found(let header) = video else { Issue.record("no header"); return }
        #expect(header.wantsVideoMode)
    }

    @Test func refusesCutOffAddressFields() throws {
        let addresses = MultibootHeader.Addresses(header: 0, load: 0, loadEnd: 0, bssEnd: 0, entry: 0)
        let header = multibootHeader(addresses: addresses)
        // The image ends inside the address fields.
        #expect(throws: BootProblem.truncated(.multibootHeader(offset: 0x20), end: 0x40, fileSize: 0x30)) {
            try search(Array(image(header: header, at: 0x20).prefix(0x30)))
        }
        // The address fields run past the first 8192 bytes.
        #expect(throws: BootProblem.multibootFieldsBeyondSearchLimit(offset: 8192 - 16, end: 8192 + 16)) {
            try search(image(header: header, at: 8192 - 16))
        }
    }
}

@Suite struct MultibootLoadLayoutTests {
    typealias Addresses = MultibootHeader.Addresses

    func layout(_ a: Addresses, headerOffset: Int = 0x40, imageSize: UInt64 = 0x3000) throws(BootProblem) -> MultibootLoadLayout {
        try MultibootLoadLayout(a, headerOffset: headerOffset, imageSize: imageSize)
    }

    @Test func followsTheAddressFields() throws {
        // The header is 0x40 bytes into the file and 0x40 bytes after load_addr: load from byte 0.
        let full = try layout(Addresses(header: 0x10_0040, load: 0x10_0000, loadEnd: 0x10_2000, bssEnd: 0x10_5000, entry: 0x10_0080))
        #expect(full == MultibootLoadLayout(fileOffset: 0, loadAddress: 0x10_0000, fileSize: 0x2000, memorySize: 0x5000,
                                            entry: 0x10_0080))
        // load_end_addr 0: to the end of the file; bss_end_addr 0: no bss.
        let rest = try layout(Addresses(header: 0x20_0020, load: 0x20_0000, loadEnd: 0, bssEnd: 0, entry: 0x20_0000))
        #expect(rest == MultibootLoadLayout(fileOffset: 0x20, loadAddress: 0x20_0000, fileSize: 0x3000 - 0x20,
                                            memorySize: 0x3000 - 0x20, entry: 0x20_0000))
    }

    @Test func refusesInconsistentAddressFields() {
        #expect(throws: BootProblem.multibootHeaderBelowLoadAddress(header: 0x10_0000, load: 0x10_0040)) {
            try layout(Addresses(header: 0x10_0000, load: 0x10_0040, loadEnd: 0, bssEnd: 0, entry: 0x10_0040))
        }
        #expect(throws: BootProblem.multibootLoadBeforeFileStart(offset: 0x40, header: 0x10_0080, load: 0x10_0000)) {
            try layout(Addresses(header: 0x10_0080, load: 0x10_0000, loadEnd: 0, bssEnd: 0, entry: 0x10_0000))
        }
        #expect(throws: BootProblem.multibootLoadEndBelowLoadAddress(loadEnd: 0x10_0000 - 1, load: 0x10_0000)) {
            try layout(Addresses(header: 0x10_0040, load: 0x10_0000, loadEnd: 0x10_0000 - 1, bssEnd: 0, entry: 0x10_0000))
        }
        #expect(throws: BootProblem.truncated(.multibootImage, end: 0x4000, fileSize: 0x3000)) {
            try layout(Addresses(header: 0x10_0040, load: 0x10_0000, loadEnd: 0x10_4000, bssEnd: 0, entry: 0x10_0000))
        }
        #expect(throws: BootProblem.multibootBSSEndBelowLoadEnd(bssEnd: 0x10_1000, loadEnd: 0x10_2000)) {
            try layout(Addresses(header: 0x10_0040, load: 0x10_0000, loadEnd: 0x10_2000, bssEnd: 0x10_1000, entry: 0x10_0000))
        }
        #expect(throws: BootProblem.multibootEntryOutsideImage(entry: 0x10_2000, image: .init(start: .init(0x10_0000), length: 0x2000))) {
            try layout(Addresses(header: 0x10_0040, load: 0x10_0000, loadEnd: 0x10_2000, bssEnd: 0, entry: 0x10_2000))
        }
        #expect(throws: BootProblem.multibootEntryOutsideImage(entry: 0xF_FFFF, image: .init(start: .init(0x10_0000), length: 0x2000))) {
            try layout(Addresses(header: 0x10_0040, load: 0x10_0000, loadEnd: 0x10_2000, bssEnd: 0, entry: 0xF_FFFF))
        }
        // bss reaching past 4 GiB cannot be addressed.
        #expect(throws: BootProblem.above4GiB(.multibootImage, address: 0xFFFF_F000, size: 0x1_0000)) {
            try layout(Addresses(header: 0xFFFF_F040, load: 0xFFFF_F000, loadEnd: 0, bssEnd: 0, entry: 0xFFFF_F000),
                       imageSize: 0x1_0000)
        }
    }
}

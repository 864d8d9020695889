import Testing
import SwiftletMemory
@testable import SwiftletBoot

@Suite struct X86LayoutTests {
    @Test func smallGuestsAreOneRangeFromZero() {
        #expect(X86Layout.ramRanges(size: 128 << 20) == [GuestRange(start: GuestAddress(0), length: 128 << 20)])
    }

    @Test func largeGuestsSplitAroundTheMMIOHole() {
        let ranges = X86Layout.ramRanges(size: 8 << 30)
        #expect(ranges == [
            GuestRange(start: GuestAddress(0), length: 3 << 30),
            GuestRange(start: GuestAddress(4 << 30), length: 5 << 30),
        ])
        #expect(ranges.reduce(0) { $0 + $1.length } == 8 << 30)
    }

    @Test func bootStructuresDoNotOverlap() {
        let structures = [
            GuestRange(start: X86Layout.gdtAddress, length: 48),
            GuestRange(start: X86Layout.bootInfoAddress, length: X86Layout.bootInfoSize),
            GuestRange(start: X86Layout.pageTableAddress, length: X86Layout.pageTableSize),
            GuestRange(start: X86Layout.commandLineAddress, length: X86Layout.commandLineMaxSize),
            GuestRange(start: GuestAddress(0x70000), length: 0x10000),
        ]
        for (i, a) in structures.enumerated() {
            #expect(a.end <= X86Layout.lowRAMEnd.rawValue)
            for b in structures[(i + 1)...] { #expect(!a.overlaps(b), "\(a) overlaps \(b)") }
        }
    }
}

import Testing
import SwiftletKVM
@testable import SwiftletVCPU

@Suite struct CPUModelTests {
    /// A small "supported CPUID" as KVM reports it on a PVM host.
    let supported = CPUIDTable(entries: [
        CPUIDEntry(function: 0, eax: 0x10, ebx: 0x6874_7541, ecx: 0x444d_4163, edx: 0x6974_6e65),
        CPUIDEntry(function: 1, eax: 0x00a0_0f11, ebx: 0x0002_0800, ecx: 0x8120_2000 | (1 << 13) | (1 << 26), edx: 0x078b_fbff),
        CPUIDEntry(function: 7, flags: 1, ebx: 0x0180_0002, ecx: 4, edx: 0xa800_0000),
        CPUIDEntry(function: 0xb, flags: 1),
        CPUIDEntry(function: 0xd, index: 1, flags: 1, eax: 0xf),
        CPUIDEntry(function: 0x4000_0000, eax: 0x4000_0001, ebx: 0x4b4d_564b, ecx: 0x564b_4d56, edx: 0x4d),
    ])

    @Test func identityAndTopologyPerVCPU() {
        let t = CPUSetup.cpuid(from: supported, apicID: 5, cpuCount: 8)
        let leaf1 = t.entry(1)!
        #expect(leaf1.ebx >> 24 == 5)
        #expect((leaf1.ebx >> 16) & 0xff == 8)
        #expect(leaf1.ecx >> 31 == 1, "hypervisor bit")
        #expect(leaf1.edx & (1 << 28) != 0, "HTT")
        let smt = t.entry(0xb, index: 0)!, core = t.entry(0xb, index: 1)!, end = t.entry(0xb, index: 2)!
        #expect(smt.edx == 5 && core.edx == 5 && end.edx == 5)
        #expect(smt.ebx == 1 && (smt.ecx >> 8) & 0xff == 1)
        #expect(core.ebx == 8 && (core.ecx >> 8) & 0xff == 2 && core.eax == 3)
        #expect((end.ecx >> 8) & 0xff == 0)
        #expect(t.entries.filter { $0.function == 0xb }.count == 3)
        #expect(t.entry(0x4000_0000) == supported.entry(0x4000_0000), "KVM's hypervisor leaves pass through")
    }

    @Test func oneCPUNeedsOneCoreBit() {
        #expect(CPUSetup.cpuid(from: supported, apicID: 0, cpuCount: 1).entry(0xb, index: 1)!.eax == 1)
    }

    @Test func hidingFeatures() throws {
        let selection = try CPUFeatureSelection.parse("-cx16, -xsave,-xsaveopt,-smep,-cx16")
        #expect(selection.hidden.map(\.name) == ["cx16", "xsave", "xsaveopt", "smep"])
        let t = CPUSetup.cpuid(from: supported, apicID: 0, cpuCount: 1, hiding: selection)
        #expect(t.entry(1)!.ecx & (1 << 13) == 0)
        #expect(t.entry(1)!.ecx & (1 << 26) == 0)
        #expect(t.entry(0xd, index: 1)!.eax & 1 == 0)
        #expect(t.entry(7)!.ebx & (1 << 7) == 0)
        #expect(t.entry(1)!.edx == supported.entry(1)!.edx | (1 << 28), "EDX untouched but for HTT")
    }

    @Test func refusesUnknownNamesAndAdditions() throws {
        #expect(throws: CPUFeatureSelection.ParseError.unknownFeature("warp_drive")) { try CPUFeatureSelection.parse("-warp_drive") }
        #expect(throws: CPUFeatureSelection.ParseError.notARemoval("+avx512f")) { try CPUFeatureSelection.parse("+avx512f") }
        #expect(throws: CPUFeatureSelection.ParseError.notARemoval("cx16")) { try CPUFeatureSelection.parse("cx16") }
        #expect(try CPUFeatureSelection.parse("").hidden.isEmpty)
    }

    @Test func featureNamesAreUnique() {
        #expect(Set(CPUFeature.all.map(\.name)).count == CPUFeature.all.count)
    }

    @Test func segmentsFromDescriptors() {
        // 64-bit code, DPL 0, accessed (0x00af9b000000ffff).
        let cs = CPUSetup.segment(selector: 0x08, descriptor: 0x00af_9b00_0000_ffff)
        #expect(cs.selector == 8 && cs.base == 0 && cs.limit == 0xffff_ffff)
        #expect(cs.type == 0xb && cs.s == 1 && cs.dpl == 0 && cs.present == 1 && cs.l == 1 && cs.db == 0 && cs.g == 1)
        #expect(cs.unusable == 0)
        let null = CPUSetup.segment(selector: 0, descriptor: 0)
        #expect(null.present == 0 && null.unusable == 1)
    }
}

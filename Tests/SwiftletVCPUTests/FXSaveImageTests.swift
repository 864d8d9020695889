import CSwiftlet
import Testing
import SwiftletMemory
@testable import SwiftletKVM
@testable import SwiftletVCPU

@Suite struct FXSaveImageTests {
    @Test func fieldsSitWhereTheSDMPutsThem() {
        var image = FXSaveImage(bytes: [UInt8](repeating: 0, count: 512))
        image.fcw = 0x1234
        image.fsw = 0x5678
        image.abridgedTagWord = 0x9a
        image.lastOpcode = 0x7bc
        image.lastInstructionPointer = 0x1122_3344_5566_7788
        image.lastDataPointer = 0x99aa_bbcc_ddee_ff00
        image.mxcsr = 0x1f80
        image.mxcsrMask = 0xffff
        image.setST(2, [UInt8](repeating: 0x33, count: 10))
        image.setXMM(15, [UInt8](repeating: 0x44, count: 16))
        let b = image.bytes
        #expect(Array(b[0..<8]) == [0x34, 0x12, 0x78, 0x56, 0x9a, 0x00, 0xbc, 0x07])
        #expect(Array(b[8..<16]) == [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11])
        #expect(Array(b[16..<24]) == [0x00, 0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99])
        #expect(Array(b[24..<32]) == [0x80, 0x1f, 0, 0, 0xff, 0xff, 0, 0])
        #expect(Array(b[64..<74]) == [UInt8](repeating: 0x33, count: 10) && b[74] == 0)
        #expect(Array(b[400..<416]) == [UInt8](repeating: 0x44, count: 16))
        #expect(image.st(2) == [UInt8](repeating: 0x33, count: 10))
        #expect(image.xmm(15) == [UInt8](repeating: 0x44, count: 16))
    }

    @Test func initialStateAndMaskDefault() {
        let image = FXSaveImage.initial(mxcsrMask: 0)
        #expect(image.fcw == 0x37f && image.mxcsr == 0x1f80)
        #expect(image.writableMXCSRBits == 0xffbf)
        #expect(FXSaveImage.initial(mxcsrMask: 0x2ffff).writableMXCSRBits == 0x2ffff)
    }

    @Test func thirtyTwoBitFormatRoundTrip() {
        var image = FXSaveImage.initial()
        image.lastInstructionPointer = 0xffff_8000_dead_beef
        image.lastDataPointer = 0x1_0000_1234
        let stored = image.memoryImage(.bits32)
        #expect(stored.count == 416)
        #expect(Array(stored[8..<24]) == [0xef, 0xbe, 0xad, 0xde, 0, 0, 0, 0, 0x34, 0x12, 0, 0, 0, 0, 0, 0])
        let back = FXSaveImage.initial().restoring(stored, .bits32)
        #expect(back.lastInstructionPointer == 0xdead_beef)
        #expect(back.lastDataPointer == 0x1234)
        #expect(image.restoring(image.memoryImage(.bits64), .bits64) == image)
    }
}

/// The KVM side of the assist that can be checked without a VM.
@Suite struct AssistKVMBindingTests {
    @Test func xsaveIoctlNumbers() {
        // _IOR(0xae, 0xa4, struct kvm_xsave) and _IOW(0xae, 0xa5, struct kvm_xsave), 4096 bytes.
        #expect(VCPUDescriptor.kvmGetXSave == 0x9000_aea4)
        #expect(VCPUDescriptor.kvmSetXSave == 0x5000_aea5)
        // The composition agrees with the C macros for ioctls the shim does export.
        #expect(VCPUDescriptor.ioctlRequest(direction: 2, type: 0xae, number: 0x8c, size: MemoryLayout<FPUState>.size) == SWL_KVM_GET_FPU)
        #expect(VCPUDescriptor.ioctlRequest(direction: 1, type: 0xae, number: 0xa0, size: MemoryLayout<VCPUEvents>.size) == SWL_KVM_SET_VCPU_EVENTS)
    }

    @Test func guestMemoryCompareExchange() throws {
        let memory = try GuestMemory(ranges: [GuestRange(start: GuestAddress(0), length: 0x10000)])
        try memory.store(UInt64(0x1000_0003), to: GuestAddress(0x2008))
        #expect(memory.compareExchange64(physical: 0x2008, expected: 0x1000_0003, desired: 0x1000_0063))
        #expect(try memory.load(UInt64.self, from: GuestAddress(0x2008)) == 0x1000_0063)
        #expect(!memory.compareExchange64(physical: 0x2008, expected: 0x1000_0003, desired: 0x1000_0023), "value changed")
        #expect(!memory.compareExchange64(physical: 0x2004, expected: 0, desired: 1), "misaligned")
        #expect(!memory.compareExchange64(physical: 0x10000, expected: 0, desired: 1), "outside RAM")
        #expect(memory.isRAM(physical: 0xff00, count: 0x100) && !memory.isRAM(physical: 0xff00, count: 0x101))
        #expect(memory.write([1, 2, 3], physical: 0x10) && memory.read(physical: 0x10, count: 3) == [1, 2, 3])
        #expect(!memory.write([1, 2], physical: 0xffff) && memory.read(physical: 0xffff, count: 2) == nil)
    }
}

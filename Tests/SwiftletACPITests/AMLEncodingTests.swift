import Testing
@testable import SwiftletACPI

@Suite struct PackageLengthTests {
    /// (content bytes, expected PkgLength bytes). The encoded value counts the
    /// PkgLength's own bytes, so each size boundary sits a few bytes below
    /// the power of two.
    @Test(arguments: [
        (0, [0x01] as [UInt8]),
        (62, [0x3f]),                      // 63 total: the largest 1-byte length
        (63, [0x41, 0x04]),                // 65 = 0x41: 2 bytes, low nibble 1, then 0x04
        (64, [0x42, 0x04]),
        (4093, [0x4f, 0xff]),              // 4095 = 0xFFF: the largest 2-byte length
        (4094, [0x81, 0x00, 0x01]),        // 4097 = 0x1001
        (1_048_572, [0x8f, 0xff, 0xff]),   // 2^20 - 1: the largest 3-byte length
        (1_048_573, [0xc1, 0x00, 0x00, 0x01]),  // 2^20 + 1
        ((1 << 28) - 5, [0xcf, 0xff, 0xff, 0xff]),  // 2^28 - 1: the largest of all
    ])
    func encodesEverySize(contentLength: Int, expected: [UInt8]) throws {
        let encoded = AMLEncoding.packageLength(contentLength: contentLength)
        #expect(encoded == expected)
        // Decoding it back gives the whole package's length.
        var reader = AMLNamespace.Reader(bytes: encoded, position: 0)
        #expect(try AMLNamespace.Reader.pkgLength(&reader) == contentLength + encoded.count)
    }

    @Test func sizeGrowsExactlyAtTheBoundaries() {
        var previous = 1
        for content in [0, 1, 61, 62, 63, 64, 4092, 4093, 4094, 4095, 1_048_571, 1_048_572, 1_048_573] {
            let size = AMLEncoding.packageLength(contentLength: content).count
            #expect(size >= previous)
            previous = size
            let expected = content + 1 <= 63 ? 1 : content + 2 <= 4095 ? 2 : content + 3 <= 1_048_575 ? 3 : 4
            #expect(size == expected, "content \(content)")
        }
    }

    @Test func fieldWidthsDoNotCountThemselves() {
        #expect(AMLEncoding.fieldLength(1) == [0x01])
        #expect(AMLEncoding.fieldLength(32) == [0x20])
        #expect(AMLEncoding.fieldLength(63) == [0x3f])
        #expect(AMLEncoding.fieldLength(64) == [0x40, 0x04])
        #expect(AMLEncoding.fieldLength(0x7f8) == [0x48, 0x7f])
    }

    @Test func scopesAroundLargeBodiesUseLongerLengths() throws {
        // A device whose body makes the package cross the 1→2 and 2→3 byte boundaries.
        for bodyBytes in [50, 58, 59, 60, 4080, 4085, 4090, 5000] {
            let device = AML.Device("BIG0") { AML.Name("DATA", .buffer([UInt8](repeating: 0xab, count: bodyBytes))) }
            let namespace = try AMLNamespace(aml: device.bytes)
            #expect(namespace.value("\\BIG0.DATA") == .buffer([UInt8](repeating: 0xab, count: bodyBytes)))
            var reader = AMLNamespace.Reader(bytes: device.bytes, position: 2)
            #expect(try reader.packageEnd() == device.bytes.count)
        }
    }
}

@Suite struct AMLNameTests {
    @Test func padsAndEncodesNames() throws {
        #expect(AMLName("COM1").encoded == Array("COM1".utf8))
        #expect(AMLName("_SB").encoded == Array("_SB_".utf8))
        #expect(AMLName("\\_SB").encoded == [0x5c] + Array("_SB_".utf8))
        #expect(AMLName("\\").encoded == [0x5c, 0x00])
        #expect(AMLName("^CSTA").encoded == [0x5e] + Array("CSTA".utf8))
        #expect(AMLName("^^X").encoded == [0x5e, 0x5e] + Array("X___".utf8))
        #expect(AMLName("_SB.PCI0").encoded == [0x2e] + Array("_SB_PCI0".utf8))
        #expect(AMLName("\\_SB.CPUS.CSCN").encoded == [0x5c, 0x2f, 3] + Array("_SB_CPUSCSCN".utf8))
        #expect(AMLName("\\_SB.CPUS.CSCN").description == "\\_SB_.CPUS.CSCN")
        #expect(try AMLName(validating: "C0A1").segments == ["C0A1"])
    }

    @Test(arguments: ["", "1ABC", "ABCDE", "com1", "A-B", "\\^A", "A..B", "A.", "^", "É"])
    func rejectsInvalidNames(_ text: String) {
        #expect(throws: ACPIError.self) { try AMLName(validating: text) }
    }
}

@Suite struct AMLDataTests {
    @Test func encodesIntegersInTheirShortestForm() {
        #expect(AMLData.integer(0).bytes == [0x00])
        #expect(AMLData.integer(1).bytes == [0x01])
        #expect(AMLData.integer(2).bytes == [0x0a, 0x02])
        #expect(AMLData.integer(0xff).bytes == [0x0a, 0xff])
        #expect(AMLData.integer(0x100).bytes == [0x0b, 0x00, 0x01])
        #expect(AMLData.integer(0xffff).bytes == [0x0b, 0xff, 0xff])
        #expect(AMLData.integer(0x1_0000).bytes == [0x0c, 0x00, 0x00, 0x01, 0x00])
        #expect(AMLData.integer(0xfeb0_0000).bytes == [0x0c, 0x00, 0x00, 0xb0, 0xfe])
        #expect(AMLData.integer(0x1_0000_0000).bytes == [0x0e, 0, 0, 0, 0, 1, 0, 0, 0])
        #expect(AMLData.integer(.max).bytes == [0x0e] + [UInt8](repeating: 0xff, count: 8))
    }

    @Test func encodesStringsBuffersAndPackages() throws {
        #expect(AMLData.string("ACPI0007").bytes == [0x0d] + Array("ACPI0007".utf8) + [0])
        #expect(AMLData.buffer([1, 2, 3]).bytes == [0x11, 0x06, 0x0a, 0x03, 1, 2, 3])
        #expect(AMLData.buffer([]).bytes == [0x11, 0x02, 0x00])
        #expect(AMLData.package([5, 0, 0, 0]).bytes == [0x12, 0x07, 0x04, 0x0a, 0x05, 0x00, 0x00, 0x00])
        #expect(AMLData.package([]).bytes == [0x12, 0x02, 0x00])
        #expect(throws: ACPIError.invalidString("caf\u{e9}")) { try AMLData.string(validating: "caf\u{e9}") }
        #expect(throws: ACPIError.self) { try AMLData.string(validating: "a\0b") }
    }

    @Test func compressesEISAIDs() throws {
        let serial = EISAID("PNP0501")
        #expect(serial.value == 0x0105_d041)
        #expect(AMLData.eisaID(serial).bytes == [0x0c, 0x41, 0xd0, 0x05, 0x01])
        #expect(EISAID("PNP0C02").value == 0x020c_d041)
        #expect(EISAID("PNP0A05").value == 0x050a_d041)
        #expect(EISAID("PNP0303").value == 0x0303_d041)
        // Small values still take a DWordConst, as ASL's EisaId() does.
        #expect(AMLData.eisaID("AAA0000").bytes == [0x0c, 0x04, 0x21, 0x00, 0x00])
        for bad in ["PNP050", "PNP05011", "pnp0501", "PNP050G", "1NP0501"] {
            #expect(throws: ACPIError.invalidEISAID(bad)) { try EISAID(validating: bad) }
        }
    }
}

@Suite struct AMLResourceTests {
    // Expected bytes: ACPI 6.5, 6.4, and what iasl emits for the same ASL.

    @Test func ioPort() {
        // IO (Decode16, 0x03F8, 0x03F8, 0x01, 0x08)
        #expect(AMLResource.io(min: 0x3f8, max: 0x3f8, alignment: 1, length: 8).bytes
                    == [0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08])
        // IO (Decode10, 0x0060, 0x0060, 0x00, 0x01)
        #expect(AMLResource.io(min: 0x60, max: 0x60, alignment: 0, length: 1, decodes16Bit: false).bytes
                    == [0x47, 0x00, 0x60, 0x00, 0x60, 0x00, 0x00, 0x01])
        #expect(AMLResource.fixedIO(base: 0x3f8, length: 8).bytes == [0x4b, 0xf8, 0x03, 0x08])
    }

    @Test func irq() {
        // IRQNoFlags () {4}
        #expect(AMLResource.irqNoFlags([4]).bytes == [0x22, 0x10, 0x00])
        // IRQNoFlags () {1, 12}
        #expect(AMLResource.irqNoFlags([1, 12]).bytes == [0x22, 0x02, 0x10])
        // IRQ (Edge, ActiveHigh, Exclusive) {4}, with the information byte
        #expect(AMLResource.irq([4]).bytes == [0x23, 0x10, 0x00, 0x01])
        // IRQ (Level, ActiveLow, Shared) {5}
        #expect(AMLResource.irq([5], edgeTriggered: false, activeLow: true, shared: true).bytes
                    == [0x23, 0x20, 0x00, 0x18])
    }

    @Test func extendedInterrupt() {
        // Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) {23}
        #expect(AMLResource.interrupt([23]).bytes == [0x89, 0x06, 0x00, 0x03, 0x01, 0x17, 0x00, 0x00, 0x00])
        // Interrupt (ResourceConsumer, Level, ActiveLow, Shared) {5, 0x100}
        #expect(AMLResource.interrupt([5, 0x100], edgeTriggered: false, activeLow: true, shared: true).bytes
                    == [0x89, 0x0a, 0x00, 0x0d, 0x02, 0x05, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00])
    }

    @Test func memory32Fixed() {
        // Memory32Fixed (ReadWrite, 0xFEB00000, 0x00001000)
        #expect(AMLResource.memory32Fixed(base: 0xfeb0_0000, length: 0x1000).bytes
                    == [0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0xb0, 0xfe, 0x00, 0x10, 0x00, 0x00])
        #expect(AMLResource.memory32Fixed(base: 0xfed0_0000, length: 0x400, writable: false).bytes[3] == 0)
    }

    @Test func templateEndsWithAnEndTag() throws {
        let descriptors: [AMLResource] = [.io(min: 0x3f8, max: 0x3f8, alignment: 1, length: 8), .irqNoFlags([4])]
        let zero = AMLResource.template(descriptors)
        #expect(zero == [0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08, 0x22, 0x10, 0x00, 0x79, 0x00])
        let computed = AMLResource.template(descriptors, checksum: .computed)
        #expect(computed.dropLast() == zero.dropLast())
        #expect(ACPIChecksum.sum(computed) == 0)
        #expect(try resourceDescriptors(computed).count == 3)
        // As a Name's value: a Buffer of the template's size.
        #expect(AMLData.resourceTemplate(descriptors).bytes == [0x11, 0x10, 0x0a, 0x0d] + zero)
        #expect(AMLData.resourceTemplate([]).bytes == [0x11, 0x05, 0x0a, 0x02, 0x79, 0x00])
    }
}

@Suite struct AMLTermTests {
    @Test func namesScopesAndDevices() throws {
        let aml = AML.encode {
            AML.Scope("\\_SB_") {
                AML.Device("COM1") {
                    AML.Name("_HID", .eisaID("PNP0501"))
                    AML.Name("_UID", 1)
                }
            }
        }
        // Scope(\_SB_) { Device(COM1) { Name(_HID, EisaId("PNP0501")) Name(_UID, One) } }
        let device: [UInt8] = [0x5b, 0x82, 0x15] + Array("COM1".utf8)
            + [0x08] + Array("_HID".utf8) + [0x0c, 0x41, 0xd0, 0x05, 0x01]
            + [0x08] + Array("_UID".utf8) + [0x01]
        #expect(aml == [0x10, UInt8(device.count + 6), 0x5c] + Array("_SB_".utf8) + device)
        let namespace = try AMLNamespace(aml: aml)
        #expect(namespace["\\_SB_.COM1"] == .device)
        #expect(namespace.value("\\_SB_.COM1._HID") == .integer(0x0105_d041))
    }

    @Test func methodsCarryArgumentCountSerializationAndSyncLevel() {
        let method = AML.Method("CSTA", arguments: 1, serialized: true) { AML.Return(.arg(0)) }
        #expect(method.bytes == [0x14, 0x08] + Array("CSTA".utf8) + [0x09, 0xa4, 0x68])
        #expect(AML.Method("_STA") { AML.Return(0x0f) }.bytes == [0x14, 0x09] + Array("_STA".utf8) + [0x00, 0xa4, 0x0a, 0x0f])
        #expect(AML.Method("SYNC", arguments: 7, syncLevel: 15) {}.bytes == [0x14, 0x06] + Array("SYNC".utf8) + [0xf7])
    }

    @Test func controlFlow() {
        let ifElse = AML.If(.lEqual(.local(0), 1)) {
            AML.Store(0x0f, .local(1))
        } else: {
            AML.Break()
        }
        // If (LEqual (Local0, One)) { Store (0x0F, Local1) } Else { Break }
        #expect(ifElse.bytes == [0xa0, 0x08, 0x93, 0x60, 0x01, 0x70, 0x0a, 0x0f, 0x61, 0xa1, 0x02, 0xa5])
        let loop = AML.While(.lLess(.local(0), 4)) { AML.Increment(.local(0)) }
        #expect(loop.bytes == [0xa2, 0x07, 0x95, 0x60, 0x0a, 0x04, 0x75, 0x60])
        #expect(AML.Return(.local(0)).bytes == [0xa4, 0x60])
        #expect(AML.Notify("C001", .arg(1)).bytes == [0x86] + Array("C001".utf8) + [0x69])
        #expect(AML.Call("CTFY", .local(0), 3).bytes == Array("CTFY".utf8) + [0x60, 0x0a, 0x03])
        #expect(AML.Call("\\_SB.CPUS.CSCN").bytes == [0x5c, 0x2f, 0x03] + Array("_SB_CPUSCSCN".utf8))
    }

    @Test func logicAndArithmetic() {
        #expect(AMLExpression.lNotEqual(.arg(0), 1).bytes == [0x92, 0x93, 0x68, 0x01])
        #expect(AMLExpression.lGreaterEqual(.arg(0), 1).bytes == [0x92, 0x95, 0x68, 0x01])
        #expect(AMLExpression.lLessEqual(.arg(0), 1).bytes == [0x92, 0x94, 0x68, 0x01])
        #expect(AMLExpression.lAnd(.lNot(.arg(0)), .lOr(.arg(1), .arg(2))).bytes == [0x90, 0x92, 0x68, 0x91, 0x69, 0x6a])
        #expect(AMLExpression.and(.local(0), 1).bytes == [0x7b, 0x60, 0x01, 0x00])
        #expect(AMLExpression.add(.local(0), 1, into: .local(0)).bytes == [0x72, 0x60, 0x01, 0x60])
        #expect(AMLExpression.shiftLeft(1, .arg(0), into: .local(2)).bytes == [0x79, 0x01, 0x68, 0x62])
        #expect(AMLExpression.or(.local(0), 2, into: "FLAG").bytes == [0x7d, 0x60, 0x0a, 0x02] + Array("FLAG".utf8))
        #expect(AMLExpression.sizeOf(.arg(0)).bytes == [0x87, 0x68])
        #expect(AMLExpression.element(.arg(0), 2).bytes == [0x83, 0x88, 0x68, 0x0a, 0x02, 0x00])
        #expect(AML.Store("hi", .debug).bytes == [0x70, 0x0d, 0x68, 0x69, 0x00, 0x5b, 0x31])
    }

    @Test func mutexesRegionsAndFields() throws {
        #expect(AML.Mutex("CPLK").bytes == [0x5b, 0x01] + Array("CPLK".utf8) + [0x00])
        #expect(AML.Acquire("CPLK").bytes == [0x5b, 0x23] + Array("CPLK".utf8) + [0xff, 0xff])
        #expect(AML.Acquire("CPLK", timeout: 100).bytes == [0x5b, 0x23] + Array("CPLK".utf8) + [0x64, 0x00])
        #expect(AML.Release("CPLK").bytes == [0x5b, 0x27] + Array("CPLK".utf8))
        let region = AML.OperationRegion("PRST", .systemIO, offset: 0x600, length: 3)
        #expect(region.bytes == [0x5b, 0x80] + Array("PRST".utf8) + [0x01, 0x0b, 0x00, 0x06, 0x0a, 0x03])
        // Field (PRST, ByteAcc, NoLock, WriteAsZeros) { Offset (1), CPEN, 1, CINS, 1, , 6, CCMD, 8 }
        let field = AML.Field("PRST", access: .byte, update: .writeAsZeros, [
            .offset(1), .named("CPEN", bits: 1), .named("CINS", bits: 1), .reserved(bits: 6), .named("CCMD", bits: 8),
        ])
        #expect(field.bytes == [0x5b, 0x81, 0x19] + Array("PRST".utf8) + [0x41, 0x00, 0x08]
            + Array("CPEN".utf8) + [0x01] + Array("CINS".utf8) + [0x01] + [0x00, 0x06] + Array("CCMD".utf8) + [0x08])
        let namespace = try AMLNamespace(aml: region.bytes + field.bytes + AML.Field("PRST", lock: true, [.named("WIDE", bits: 100)]).bytes)
        #expect(namespace["\\CINS"] == .field(region: "\\PRST", flags: 0x41, bitOffset: 9, bits: 1))
        #expect(namespace["\\CCMD"] == .field(region: "\\PRST", flags: 0x41, bitOffset: 16, bits: 8))
        #expect(namespace["\\WIDE"] == .field(region: "\\PRST", flags: 0x10, bitOffset: 0, bits: 100))
        #expect(namespace["\\PRST"] == .region(space: 1, offset: 0x600, length: 3))
    }

    @Test func swiftControlFlowSelectsTerms() {
        let withOptional = AML.encode {
            for index in 0..<3 { AML.Name(AMLName(segment: SwiftletTables.processorDeviceName(index)), .integer(UInt64(index))) }
            if Bool.random() { AML.Noop() } else { AML.Noop() }
        }
        #expect(withOptional.count == 6 + 6 + 7 + 1)
    }
}

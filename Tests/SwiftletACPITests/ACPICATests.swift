import Foundation
import Testing
@testable import SwiftletACPI

/// The ACPICA tools (package acpica-tools): iasl, the compiler and
/// disassembler, and acpiexec, which loads tables into the reference AML
/// interpreter and evaluates objects.
enum ACPICA {
    static func tool(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return (path.split(separator: ":").map { "\($0)/\(name)" } + ["/usr/bin/\(name)"])
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static let iasl = tool("iasl")
    static let acpiexec = tool("acpiexec")
    static let iaslReason: Comment = "iasl is not installed (apt-get install acpica-tools)"
    static let acpiexecReason: Comment = "acpiexec is not installed (apt-get install acpica-tools)"

    struct Run {
        let status: Int32
        let output: String
    }

    /// Runs `tool` in `directory` with stdout and stderr together.
    static func run(_ tool: String, _ arguments: [String], in directory: URL) throws -> Run {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        process.currentDirectoryURL = directory
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Run(status: process.terminationStatus, output: String(decoding: data, as: UTF8.self))
    }

    /// A fresh directory, removed after `body`.
    static func withDirectory<T>(_ body: (URL) throws -> T) throws -> T {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("swiftlet-acpi-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        return try body(directory)
    }

    static func write(_ bytes: [UInt8], _ name: String, in directory: URL) throws {
        try Data(bytes).write(to: directory.appendingPathComponent(name))
    }

    static func read(_ name: String, in directory: URL) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: directory.appendingPathComponent(name)))
    }

    /// Disassembles `table` with `iasl -d` and returns the listing; records
    /// an issue if iasl reports a problem.
    static func disassemble(_ table: [UInt8], name: String, in directory: URL,
                            sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        try write(table, name + ".dat", in: directory)
        let run = try run(iasl!, ["-d", name + ".dat"], in: directory)
        #expect(run.status == 0, "iasl -d failed: \(run.output)", sourceLocation: sourceLocation)
        for word in ["Error", "Warning", "Failure", "AE_"] {
            #expect(!run.output.contains(word), "iasl -d said: \(run.output)", sourceLocation: sourceLocation)
        }
        let listing = String(decoding: try read(name + ".dsl", in: directory), as: UTF8.self)
        for word in ["Error", "Warning", "Unknown", "Invalid"] {
            #expect(!listing.contains(word), "the listing has \"\(word)\":\n\(listing)", sourceLocation: sourceLocation)
        }
        return listing
    }

    /// Compiles `source` (in `directory`) with iasl and returns the output
    /// table. `-on` keeps named references as written, so that the bytes
    /// compare with the builder's.
    static func compile(_ source: String, in directory: URL, sourceLocation: SourceLocation = #_sourceLocation) throws -> [UInt8] {
        let run = try run(iasl!, ["-on", source], in: directory)
        #expect(run.status == 0 && run.output.contains(" 0 Errors, 0 Warnings"), "iasl said: \(run.output)",
                sourceLocation: sourceLocation)
        return try read((source as NSString).deletingPathExtension + ".aml", in: directory)
    }
}

@Suite struct IASLTests {
    /// Disassembles the DSDT, checks the names, recompiles the listing and
    /// expects iasl's AML to be byte for byte the builder's (the header's
    /// compiler ID and checksum differ: iasl puts its own).
    private func roundTrip(_ configuration: ACPIConfiguration, expecting names: [String],
                           sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let blob = try ACPITables.build(configuration, capacity: 0x10_0000)
        let dsdt = tableBytes(blob, "DSDT")
        return try ACPICA.withDirectory { directory in
            let listing = try ACPICA.disassemble(dsdt, name: "dsdt", in: directory, sourceLocation: sourceLocation)
            for name in names {
                #expect(listing.contains(name), "no \(name) in\n\(listing)", sourceLocation: sourceLocation)
            }
            let recompiled = try ACPICA.compile("dsdt.dsl", in: directory, sourceLocation: sourceLocation)
            #expect(recompiled.count == dsdt.count, sourceLocation: sourceLocation)
            #expect(recompiled.dropFirst(36) == dsdt.dropFirst(36), "AML differs from iasl's", sourceLocation: sourceLocation)
            #expect(recompiled[0..<9] == dsdt[0..<9] && recompiled[10..<28] == dsdt[10..<28], sourceLocation: sourceLocation)
            return listing
        }
    }

    @Test(.enabled(if: ACPICA.iasl != nil, ACPICA.iaslReason))
    func plainDSDTDisassemblesAndRecompilesIdentically() throws {
        let listing = try roundTrip(ACPIConfiguration(cpus: 2), expecting: [
            "DefinitionBlock (\"\", \"DSDT\", 2, \"SWIFTL\", \"SWLTDSDT\", 0x00000001)",
            "Device (COM1)", "EisaId (\"PNP0501\")", "IO (Decode16,", "0x03F8", "IRQNoFlags ()", "{4}",
            "Device (FWCF)", "\"QEMU0002\"", "Device (MBRS)", "EisaId (\"PNP0C02\")", "0x0600", "0x00F4", "0x0510",
            "Device (CPUS)", "\"ACPI0010\"", "Device (C000)", "Device (C001)", "\"ACPI0007\"",
            "Name (\\_S5, Package (0x04)",
        ])
        #expect(!listing.contains("_EJ0") && !listing.contains("GED"))
    }

    @Test(.enabled(if: ACPICA.iasl != nil, ACPICA.iaslReason))
    func hotplugDSDTDisassemblesAndRecompilesIdentically() throws {
        let listing = try roundTrip(ACPIConfiguration(cpus: 2, maxCPUs: 4, i8042: true), expecting: [
            "Device (PS2K)", "EisaId (\"PNP0303\")",
            "OperationRegion (CPRG, SystemMemory, 0xFEB00000, 0x08)",
            "Field (CPRG, DWordAcc, NoLock, Preserve)", "CSEL,   32",
            "Field (CPRG, ByteAcc, NoLock, WriteAsZeros)", "CPEN,   1", "CINS,   1", "CRMV,   1", "CEJT,   1",
            "Mutex (CPLK, 0x00)", "Method (CSTA, 1, Serialized)", "Method (CEJ0, 1, Serialized)",
            "Method (CTFY, 2, Serialized)", "Notify (C003, Arg1)", "Method (CSCN, 0, Serialized)",
            "While ((Local0 < 0x04))", "CTFY (Local0, One)", "ElseIf ((CRMV == One))", "CTFY (Local0, 0x03)",
            "Method (_STA, 0, NotSerialized)", "Return (CSTA (0x03))", "Method (_EJ0, 1, NotSerialized)", "CEJ0 (0x03)",
            "Name (_MAT, Buffer (0x08)", "Device (GED)", "\"ACPI0013\"",
            "Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )", "0x00000017",
            "Memory32Fixed (ReadWrite,", "0xFEB00000", "OperationRegion (GDRG, SystemMemory, 0xFEB00008, 0x04)",
            "Method (_EVT, 1, Serialized)", "\\_SB.CPUS.CSCN ()",
        ])
        // CPU 0 is not ejectable: exactly three _EJ0 methods.
        #expect(listing.components(separatedBy: "Method (_EJ0").count == 4)
    }

    @Test(.enabled(if: ACPICA.iasl != nil, ACPICA.iaslReason))
    func threeHundredCPUDSDT() throws {
        let listing = try roundTrip(ACPIConfiguration(cpus: 4, maxCPUs: 300), expecting: [
            "Device (C12B)", "Name (_UID, 0x012B)", "Return (CSTA (0x012B))", "Notify (C12B, Arg1)",
            "While ((Local0 < 0x012C))",
        ])
        #expect(listing.components(separatedBy: "\"ACPI0007\"").count == 301)
    }

    @Test(.enabled(if: ACPICA.iasl != nil, ACPICA.iaslReason))
    func dataTablesDisassembleAndRecompileIdentically() throws {
        let blob = try ACPITables.build(ACPIConfiguration(cpus: 2, maxCPUs: 300), capacity: 0x10_0000)
        try ACPICA.withDirectory { directory in
            let fadt = try ACPICA.disassemble(tableBytes(blob, "FACP"), name: "facp", in: directory)
            for line in ["Hardware Reduced (V5) : 1", "Reset Register Supported (V2) : 1", "Value to cause reset : 01",
                         "Address : 0000000000000602", "Address : 0000000000000600", "Address : 0000000000000601",
                         "FADT Minor Revision : 05", "DSDT Address : \(hex16(blob.table("DSDT")!.address))",
                         "SCI Interrupt : 0000", "Hypervisor ID : 54454C5446495753",
                         "8042 Present on ports 60/64 (V2) : 0", "CMOS RTC Not Present (V5) : 1"] {
                #expect(squeezed(fadt).contains(line), "no \(line) in\n\(fadt)")
            }
            let madt = try ACPICA.disassemble(tableBytes(blob, "APIC"), name: "apic", in: directory)
            for line in ["Local Apic Address : FEE00000", "PC-AT Compatibility : 1",
                         "Subtable Type : 09 [Processor Local x2APIC]", "Processor x2Apic ID : 0000012B",
                         "Subtable Type : 01 [I/O APIC]", "Address : FEC00000",
                         "Subtable Type : 04 [Local APIC NMI]", "Interrupt Input LINT : 01",
                         "Subtable Type : 0A [Local x2APIC NMI]", "Runtime Online Capable : 1"] {
                #expect(squeezed(madt).contains(line), "no \(line) in\n\(madt)")
            }
            #expect(madt.components(separatedBy: "[Processor Local APIC]").count == 256)
            #expect(madt.components(separatedBy: "[Processor Local x2APIC]").count == 46)
            let xsdt = try ACPICA.disassemble(tableBytes(blob, "XSDT"), name: "xsdt", in: directory)
            #expect(squeezed(xsdt).contains("ACPI Table Address 0 : \(hex16(blob.table("FACP")!.address))"))
            #expect(squeezed(xsdt).contains("ACPI Table Address 1 : \(hex16(blob.table("APIC")!.address))"))

        }
    }

    /// iasl's data table compiler rebuilds each table from its listing. (The
    /// iasl of Debian 12, 20200925, predates the x2APIC structure's Online
    /// Capable bit and drops it, hence x2APIC CPUs all enabled here.)
    @Test(.enabled(if: ACPICA.iasl != nil, ACPICA.iaslReason),
          arguments: [ACPIConfiguration(cpus: 2, maxCPUs: 8), ACPIConfiguration(cpus: 300, i8042: true)])
    func dataTablesRecompileIdentically(_ configuration: ACPIConfiguration) throws {
        let blob = try ACPITables.build(configuration, capacity: 0x10_0000)
        try ACPICA.withDirectory { directory in
            for signature in ["FACP", "APIC", "XSDT"] {
                let original = tableBytes(blob, signature)
                _ = try ACPICA.disassemble(original, name: signature, in: directory)
                let recompiled = try ACPICA.compile(signature + ".dsl", in: directory)
                #expect(recompiled.count == original.count)
                #expect(recompiled.dropFirst(36) == original.dropFirst(36), "\(signature) differs from iasl's")
            }
        }
    }

    @Test(.enabled(if: ACPICA.iasl != nil, ACPICA.iaslReason))
    func builderMatchesIASLOnHandWrittenASL() throws {
        // The same definitions in ASL and through the builder.
        let asl = #"""
        DefinitionBlock ("", "SSDT", 2, "SWIFTL", "SWLTSSDT", 1)
        {
            Scope (\_SB)
            {
                Device (TST0)
                {
                    Name (_HID, EisaId ("PNP0A06"))
                    Name (_UID, "unit")
                    Name (_CRS, ResourceTemplate ()
                    {
                        IO (Decode16, 0x0060, 0x0060, 0x01, 0x01)
                        IO (Decode10, 0x0070, 0x0071, 0x00, 0x02)
                        IRQNoFlags () {1, 12}
                        IRQ (Level, ActiveLow, Shared) {5}
                        Interrupt (ResourceConsumer, Level, ActiveLow, Shared, ,, ) {5, 0x100}
                        Memory32Fixed (ReadOnly, 0xFED00000, 0x00000400)
                    })
                    Name (PKG0, Package () { 0, 1, 0x1234, 0x12345678, 0x123456789A, "text", Buffer () { 1, 2 } })
                    OperationRegion (REG0, SystemIO, 0x0600, 0x03)
                    Field (REG0, ByteAcc, Lock, WriteAsOnes) { Offset (1), FLD0, 3, , 5, FLD1, 8 }
                    Mutex (MUT0, 3)
                    Method (MTH0, 2, Serialized, 4)
                    {
                        Acquire (MUT0, 0xFFFF)
                        Local0 = Zero
                        While ((Local0 < Arg0))
                        {
                            If (((Arg1 & 0x02) && !(Local0 == 0x05)))
                            {
                                Notify (\_SB.TST0, 0x80)
                                Break
                            }
                            ElseIf ((Local0 >= 0x0A))
                            {
                                Local1 = (Local0 << One)
                                FLD1 = Local1
                            }
                            Else
                            {
                                FLD1 = (Local0 + 0x03)
                            }

                            Local0++
                        }

                        Release (MUT0)
                        Return (SizeOf (Arg0))
                    }

                    Method (MTH1, 0, NotSerialized)
                    {
                        Return (MTH0 (One, ^^TST0.FLD0))
                    }
                }
            }
        }
        """#
        let block = DefinitionBlock(signature: "SSDT") {
            AML.Scope("\\_SB") {
                AML.Device("TST0") {
                    AML.Name("_HID", .eisaID("PNP0A06"))
                    AML.Name("_UID", "unit")
                    AML.Name("_CRS", .resourceTemplate([
                        .io(min: 0x60, max: 0x60, alignment: 1, length: 1),
                        .io(min: 0x70, max: 0x71, alignment: 0, length: 2, decodes16Bit: false),
                        .irqNoFlags([1, 12]),
                        .irq([5], edgeTriggered: false, activeLow: true, shared: true),
                        .interrupt([5, 0x100], edgeTriggered: false, activeLow: true, shared: true),
                        .memory32Fixed(base: 0xfed0_0000, length: 0x400, writable: false),
                    ]))
                    AML.Name("PKG0", .package([0, 1, 0x1234, 0x1234_5678, 0x12_3456_789a, "text", .buffer([1, 2])]))
                    AML.OperationRegion("REG0", .systemIO, offset: 0x600, length: 3)
                    AML.Field("REG0", access: .byte, lock: true, update: .writeAsOnes, [
                        .offset(1), .named("FLD0", bits: 3), .reserved(bits: 5), .named("FLD1", bits: 8),
                    ])
                    AML.Mutex("MUT0", syncLevel: 3)
                    AML.Method("MTH0", arguments: 2, serialized: true, syncLevel: 4) {
                        AML.Acquire("MUT0")
                        AML.Store(0, .local(0))
                        AML.While(.lLess(.local(0), .arg(0))) {
                            AML.If(.lAnd(.and(.arg(1), 2), .lNot(.lEqual(.local(0), 5)))) {
                                AML.Notify("\\_SB.TST0", 0x80)
                                AML.Break()
                            } else: {
                                AML.If(.lGreaterEqual(.local(0), 10)) {
                                    // ASL+ `Local1 = (Local0 << One)` is the operator with a target.
                                    AMLExpression.shiftLeft(.local(0), 1, into: .local(1))
                                    AML.Store(.local(1), "FLD1")
                                } else: {
                                    AMLExpression.add(.local(0), 3, into: "FLD1")
                                }
                            }
                            AML.Increment(.local(0))
                        }
                        AML.Release("MUT0")
                        AML.Return(.sizeOf(.arg(0)))
                    }
                    AML.Method("MTH1") {
                        AML.Return(.call("MTH0", 1, .name("^^TST0.FLD0")))
                    }
                }
            }
        }
        try ACPICA.withDirectory { directory in
            try Data(asl.utf8).write(to: directory.appendingPathComponent("test.asl"))
            let compiled = try ACPICA.compile("test.asl", in: directory)
            let ours = block.table().bytes
            #expect(compiled.count == ours.count)
            #expect(compiled.dropFirst(36) == ours.dropFirst(36),
                    "iasl: \(compiled.dropFirst(36).map { String($0, radix: 16) })\nours: \(ours.dropFirst(36).map { String($0, radix: 16) })")
        }
    }

    /// Runs of spaces collapsed, so that iasl's column alignment does not matter.
    private func squeezed(_ text: String) -> String {
        text.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ") }
            .joined(separator: "\n")
    }

    private func hex16(_ value: UInt64) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}

@Suite struct ACPIExecTests {
    /// Loads the FADT, MADT and DSDT (and `extra` definition blocks) into
    /// acpiexec and runs `commands` in batch mode.
    private func execute(_ configuration: ACPIConfiguration, extra: [DefinitionBlock] = [],
                         _ commands: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let blob = try ACPITables.build(configuration)
        return try ACPICA.withDirectory { directory in
            var files: [String] = []
            for signature in ["FACP", "APIC", "DSDT"] {
                try ACPICA.write(tableBytes(blob, signature), signature + ".dat", in: directory)
                files.append(signature + ".dat")
            }
            for (index, block) in extra.enumerated() {
                try ACPICA.write(block.table().bytes, "extra\(index).dat", in: directory)
                files.append("extra\(index).dat")
            }
            let run = try ACPICA.run(ACPICA.acpiexec!, ["-b", commands.joined(separator: "; ")] + files, in: directory)
            #expect(run.status == 0, "acpiexec failed: \(run.output)", sourceLocation: sourceLocation)
            for word in ["Exception", "Error", "AE_", "Warning"] {
                #expect(!run.output.contains(word), "acpiexec said: \(run.output)", sourceLocation: sourceLocation)
            }
            #expect(run.output.contains("ACPI: No outstanding allocations"), sourceLocation: sourceLocation)
            return run.output
        }
    }

    @Test(.enabled(if: ACPICA.acpiexec != nil, ACPICA.acpiexecReason))
    func evaluatesTheMachinesObjects() throws {
        let output = try execute(ACPIConfiguration(cpus: 2), [
            "evaluate \\_S5", "evaluate \\_SB.COM1._CRS", "evaluate \\_SB.COM1._STA", "evaluate \\_SB.COM1._HID",
            "evaluate \\_SB.FWCF._CRS", "evaluate \\_SB.CPUS.C001._UID",
        ])
        #expect(output.contains("""
              [Package] Contains 4 Elements:
                [Integer] = 0000000000000005
                [Integer] = 0000000000000000
                [Integer] = 0000000000000000
                [Integer] = 0000000000000000
            """))
        #expect(output.contains("[Buffer] Length 0D =     0000: 47 01 F8 03 F8 03 01 08 22 10 00 79 00"))
        #expect(output.contains("Evaluation of \\_SB.COM1._STA returned object") && output.contains("[Integer] = 000000000000000F"))
        #expect(output.contains("[Integer] = 000000000105D041"))
        #expect(output.contains("[Buffer] Length 0A =     0000: 47 01 10 05 10 05 01 02 79 00"))
        #expect(output.contains("[Integer] = 0000000000000001"))
    }

    /// acpiexec backs SystemMemory regions with plain simulated memory, so
    /// the status byte is one byte for all CPUs; a helper SSDT writes it.
    /// That is enough to run _STA, _EJ0, the scan and the GED's _EVT through
    /// the reference interpreter.
    @Test(.enabled(if: ACPICA.acpiexec != nil, ACPICA.acpiexecReason))
    func runsTheHotplugMethods() throws {
        let helpers = DefinitionBlock(signature: "SSDT") {
            AML.Method("\\TSTA", arguments: 1) { AML.Store(.arg(0), "\\_SB.CPUS.CPEN") }
            AML.Method("\\TINS") { AML.Store(1, "\\_SB.CPUS.CINS") }
            AML.Method("\\TRMV") { AML.Store(1, "\\_SB.CPUS.CRMV") }
            AML.Method("\\TEVT") { AML.Store(1, "\\_SB.GED.GEVT") }
            AML.Method("\\RSEL") { AML.Return(.name("\\_SB.CPUS.CSEL")) }
            AML.Method("\\RSTS") {
                AML.Return(.or(.or(.name("\\_SB.CPUS.CPEN"), .shiftLeft(.name("\\_SB.CPUS.CINS"), 1)),
                               .or(.shiftLeft(.name("\\_SB.CPUS.CRMV"), 2), .shiftLeft(.name("\\_SB.CPUS.CEJT"), 3))))
            }
        }
        let output = try execute(ACPIConfiguration(cpus: 1, maxCPUs: 3), extra: [helpers], [
            "evaluate \\_SB.CPUS.C002._STA",      // enabled bit clear: 0
            "evaluate \\TSTA 1",
            "evaluate \\_SB.CPUS.C002._STA",      // enabled: 0xF
            "evaluate \\RSEL",                    // _STA selected CPU 2
            "evaluate \\_SB.CPUS.C001._EJ0 0",
            "evaluate \\RSEL", "evaluate \\RSTS", // selected 1, eject bit written alone
            "evaluate \\TINS", "evaluate \\_SB.CPUS.CSCN",
            "evaluate \\TRMV", "evaluate \\TEVT", "evaluate \\_SB.GED._EVT 23",
            "evaluate \\_SB.CPUS.C002._MAT",
        ])
        let results = output.components(separatedBy: "Evaluation of ").dropFirst().map {
            $0.split(separator: "\n").dropFirst().first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        }
        #expect(results.count >= 5)
        #expect(results.first == "[Integer] = 0000000000000000")
        #expect(results.dropFirst().first == "[Integer] = 000000000000000F")
        #expect(results.dropFirst(2).first == "[Integer] = 0000000000000002")
        #expect(results.dropFirst(3).first == "[Integer] = 0000000000000001")
        #expect(results.dropFirst(4).first == "[Integer] = 0000000000000008")
        // The scan saw the insert event on every CPU (the simulated byte is
        // shared) and sent Device Check; the GED handler saw the CPU event
        // and the remove event, and sent Eject Request.
        for cpu in ["C000", "C001", "C002"] {
            #expect(output.contains("Received a System Notify on [\(cpu)]"), "\(output)")
        }
        #expect(output.contains("Value 0x01 (Device Check)"))
        #expect(output.contains("Value 0x03 (Eject Request)"))
        #expect(output.contains("[Buffer] Length 08 =     0000: 00 08 02 02 01 00 00 00"))
    }
}

import Testing
@testable import SwiftletACPI

@Suite struct TableLayoutTests {
    @Test func headerFieldsAndChecksum() {
        let table = ACPITable(signature: "TEST", revision: 3, body: [1, 2, 3]).bytes
        let header = DecodedHeader(table)
        #expect(table.count == 39)
        #expect(header == DecodedHeader(table))
        expectValidHeader(table, signature: "TEST", revision: 3)
        let custom = ACPITable(signature: "TEST", revision: 1,
                               oem: ACPIOEM(oemID: "ABC", tableIDPrefix: "XY", oemRevision: 7, creatorID: "CR",
                                            creatorRevision: 9), body: []).bytes
        let decoded = DecodedHeader(custom)
        #expect(decoded.oemID == "ABC   " && decoded.oemTableID == "XYTEST  " && decoded.creatorID == "CR  ")
        #expect(decoded.oemRevision == 7 && decoded.creatorRevision == 9 && decoded.checksumOK)
    }

    @Test func rsdpHasBothChecksums() {
        let rsdp = RSDP(xsdtAddress: 0x1234_5678_9abc).bytes
        let r = TableReader(rsdp)
        #expect(rsdp.count == 36)
        #expect(r.ascii(0, 8) == "RSD PTR ")
        #expect(ACPIChecksum.sum(rsdp[0..<20]) == 0)
        #expect(ACPIChecksum.sum(rsdp) == 0)
        #expect(r.ascii(9, 6) == "SWIFTL")
        #expect(r.u8(15) == 2)
        #expect(r.u32(16) == 0)
        #expect(r.u32(20) == 36)
        #expect(r.u64(24) == 0x1234_5678_9abc)
        #expect(Array(rsdp[33..<36]) == [0, 0, 0])
    }

    @Test func genericAddressStructure() {
        #expect(GenericAddress.ioPort(0x602).bytes == [1, 8, 0, 1, 0x02, 0x06, 0, 0, 0, 0, 0, 0])
        #expect(GenericAddress(space: .systemMemory, bitWidth: 32, bitOffset: 0, accessSize: .dword,
                               address: 0xfeb0_0000).bytes == [0, 32, 0, 3, 0, 0, 0xb0, 0xfe, 0, 0, 0, 0])
        #expect(GenericAddress.none.bytes == [UInt8](repeating: 0, count: 12))
    }
}

@Suite struct ACPIBlobTests {
    @Test func laysOutEveryTableAndPointsThemAtEachOther() throws {
        let blob = try ACPITables.build(ACPIConfiguration(cpus: 2))
        #expect(blob.address == 0xe_0000)
        #expect(blob.rsdpAddress == 0xe_0000)
        #expect(blob.range.start == 0xe_0000 && blob.range.length == UInt64(blob.bytes.count))
        #expect(blob.tables.map(\.signature) == ["RSD PTR ", "XSDT", "FACP", "APIC", "DSDT"])
        for (table, next) in zip(blob.tables, blob.tables.dropFirst()) {
            #expect(table.address % 16 == 0)
            #expect(table.address + UInt64(table.length) <= next.address)
        }
        let last = blob.tables.last!
        #expect(last.address + UInt64(last.length) == blob.address + UInt64(blob.bytes.count))

        let rsdp = TableReader(tableBytes(blob, "RSD PTR "))
        #expect(ACPIChecksum.sum(tableBytes(blob, "RSD PTR ")) == 0)
        #expect(rsdp.u64(24) == blob.table("XSDT")!.address)

        let xsdt = tableBytes(blob, "XSDT")
        expectValidHeader(xsdt, signature: "XSDT", revision: 1)
        #expect(xsdt.count == 36 + 16)
        #expect(TableReader(xsdt).u64(36) == blob.table("FACP")!.address)
        #expect(TableReader(xsdt).u64(44) == blob.table("APIC")!.address)

        let fadt = TableReader(tableBytes(blob, "FACP"))
        #expect(fadt.u64(140) == blob.table("DSDT")!.address)
        expectValidHeader(tableBytes(blob, "DSDT"), signature: "DSDT", revision: 2)
        expectValidHeader(tableBytes(blob, "APIC"), signature: "APIC", revision: 6)
    }

    @Test func honoursTheAddressAndTheCapacity() throws {
        let blob = try ACPITables.build(ACPIConfiguration(cpus: 1), at: 0x7ff_0000, capacity: 0x1_0000)
        #expect(blob.rsdpAddress == 0x7ff_0000)
        #expect(TableReader(tableBytes(blob, "RSD PTR ")).u64(24) == blob.table("XSDT")!.address)
        #expect(blob.table("DSDT")!.address > 0x7ff_0000)

        #expect(throws: ACPIError.doesNotFit(needed: UInt64(blob.bytes.count), available: 0x100)) {
            try ACPITables.build(ACPIConfiguration(cpus: 1), capacity: 0x100)
        }
        // A machine with the largest CPU count does not fit below 1 MiB.
        #expect {
            try ACPITables.build(ACPIConfiguration(cpus: 1, maxCPUs: 4096))
        } throws: { error in
            guard case ACPIError.doesNotFit(let needed, 0x2_0000) = error else { return false }
            return needed > 0x2_0000
        }
        #expect(throws: ACPIError.self) { try ACPITables.build(ACPIConfiguration(cpus: 1), at: 0xe_0008) }
    }

    @Test(arguments: [
        ACPIConfiguration(cpus: 0),
        ACPIConfiguration(cpus: 4, maxCPUs: 2),
        ACPIConfiguration(cpus: 1, maxCPUs: 4097),
        ACPIConfiguration(cpus: 1, maxCPUs: 2, cpuHotplug: .disabled),
        ACPIConfiguration(cpus: 1, maxCPUs: 2, hotplugRegisterBase: 0xfeb0_0004),
        ACPIConfiguration(cpus: 1, maxCPUs: 2, hotplugRegisterBase: 0xfebf_f800),
        ACPIConfiguration(cpus: 1, maxCPUs: 2, hotplugRegisterBase: 0xfee0_0000),
        ACPIConfiguration(cpus: 1, maxCPUs: 2, hotplugRegisterBase: 0xffff_fff0),
        ACPIConfiguration(cpus: 1, interruptSourceOverrides: [.init(isaIRQ: 16, gsi: 16)]),
        ACPIConfiguration(cpus: 1, oem: ACPIOEM(oemID: "TOOLONG")),
        ACPIConfiguration(cpus: 1, hypervisorVendor: "NINECHARS"),
    ])
    func rejectsImpossibleMachines(_ configuration: ACPIConfiguration) {
        #expect(throws: ACPIError.self) { try ACPITables.build(configuration) }
    }
}

@Suite struct FADTTests {
    @Test func describesAHardwareReducedPlatform() throws {
        let blob = try ACPITables.build(ACPIConfiguration(cpus: 1))
        let table = tableBytes(blob, "FACP")
        expectValidHeader(table, signature: "FACP", revision: 6)
        #expect(table.count == 276)
        let r = TableReader(table)
        #expect(r.u32(36) == 0)  // FIRMWARE_CTRL: no FACS
        #expect(r.u32(40) == 0)  // DSDT: X_DSDT is used
        #expect(r.u16(46) == 0)  // SCI_INT: none
        #expect(r.u32(48) == 0)  // SMI_CMD
        for offset in stride(from: 56, to: 88, by: 4) { #expect(r.u32(offset) == 0) }  // PM1/PM2/PM_TMR/GPE blocks
        #expect(table[88..<96].allSatisfy { $0 == 0 })  // their lengths
        let flags = r.u32(112)
        #expect(flags & (1 << 20) != 0)  // HW_REDUCED_ACPI
        #expect(flags & (1 << 10) != 0)  // RESET_REG_SUP
        #expect(flags & (1 << 4) != 0 && flags & (1 << 5) != 0)  // no fixed power/sleep buttons
        #expect(flags == 0x0010_0430)
        #expect(r.u16(109) == 0x24)  // VGA not present, CMOS RTC not present, no 8042
        #expect(r.gas(116) == GenericAddress(space: .systemIO, bitWidth: 8, accessSize: .byte, address: 0x602))
        #expect(r.u8(128) == 1)  // RESET_VALUE
        #expect(r.u16(129) == 0)  // ARM_BOOT_ARCH
        #expect(r.u8(131) == 5)  // ACPI 6.5
        #expect(r.u64(132) == 0)  // X_FIRMWARE_CTRL
        #expect(r.u64(140) == blob.table("DSDT")!.address)
        #expect(table[148..<244].allSatisfy { $0 == 0 })  // X_PM1a_EVT_BLK ... X_GPE1_BLK
        #expect(r.gas(244) == GenericAddress(space: .systemIO, bitWidth: 8, accessSize: .byte, address: 0x600))
        #expect(r.gas(256) == GenericAddress(space: .systemIO, bitWidth: 8, accessSize: .byte, address: 0x601))
        #expect(r.ascii(268, 8) == "SWIFTLET")
    }

    @Test func i8042FlagFollowsTheConfiguration() throws {
        let blob = try ACPITables.build(ACPIConfiguration(cpus: 1, i8042: true))
        #expect(TableReader(tableBytes(blob, "FACP")).u16(109) == 0x26)
        let namespace = try AMLNamespace(aml: Array(tableBytes(blob, "DSDT").dropFirst(36)))
        #expect(namespace.value("\\_SB_.PS2K._HID") == .integer(UInt64(EISAID("PNP0303").value)))
        guard case .buffer(let crs) = namespace.value("\\_SB_.PS2K._CRS") else { Issue.record("no _CRS"); return }
        #expect(try resourceDescriptors(crs) == [AMLResource.io(min: 0x60, max: 0x60, alignment: 1, length: 1).bytes,
                                                 AMLResource.io(min: 0x64, max: 0x64, alignment: 1, length: 1).bytes,
                                                 [0x79, 0x00]])
    }
}

@Suite struct MADTTests {
    private func madt(_ configuration: ACPIConfiguration) throws -> [UInt8] {
        let table = tableBytes(try ACPITables.build(configuration, capacity: 0x10_0000), "APIC")
        expectValidHeader(table, signature: "APIC", revision: 6)
        let r = TableReader(table)
        #expect(r.u32(36) == 0xfee0_0000)
        #expect(r.u32(40) == 1)  // PCAT_COMPAT
        return table
    }

    private static let ioapic: [UInt8] = [1, 12, 0, 0, 0x00, 0x00, 0xc0, 0xfe, 0, 0, 0, 0]
    private static let lapicNMI: [UInt8] = [4, 6, 0xff, 0, 0, 1]

    @Test func oneCPU() throws {
        let entries = madtEntries(try madt(ACPIConfiguration(cpus: 1)))
        #expect(entries == [[0, 8, 0, 0, 1, 0, 0, 0], Self.ioapic, Self.lapicNMI])
    }

    @Test func fourCPUsTwoOfThemHotPluggable() throws {
        let entries = madtEntries(try madt(ACPIConfiguration(cpus: 2, maxCPUs: 4)))
        #expect(entries == [
            [0, 8, 0, 0, 1, 0, 0, 0],  // Enabled
            [0, 8, 1, 1, 1, 0, 0, 0],
            [0, 8, 2, 2, 2, 0, 0, 0],  // Online Capable
            [0, 8, 3, 3, 2, 0, 0, 0],
            Self.ioapic, Self.lapicNMI,
        ])
        let all = madtEntries(try madt(ACPIConfiguration(cpus: 4)))
        #expect(all.prefix(4).allSatisfy { TableReader($0).u32(4) == 1 })
    }

    @Test func threeHundredCPUsUseX2APICStructuresFromAPICID255() throws {
        let entries = madtEntries(try madt(ACPIConfiguration(cpus: 8, maxCPUs: 300)))
        #expect(entries.count == 300 + 3)
        for cpu in 0..<300 {
            let entry = TableReader(entries[cpu])
            let flags: UInt32 = cpu < 8 ? 1 : 2
            if cpu < 255 {
                #expect(entries[cpu].count == 8 && entry.u8(0) == 0)
                #expect(entry.u8(2) == UInt8(cpu) && entry.u8(3) == UInt8(cpu) && entry.u32(4) == flags)
            } else {
                #expect(entries[cpu].count == 16 && entry.u8(0) == 9)
                #expect(entry.u16(2) == 0 && entry.u32(4) == UInt32(cpu) && entry.u32(8) == flags && entry.u32(12) == UInt32(cpu))
            }
        }
        #expect(entries[300] == Self.ioapic)
        #expect(entries[301] == Self.lapicNMI)
        #expect(entries[302] == [0x0a, 12, 0, 0, 0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0])
    }

    @Test func interruptSourceOverrides() throws {
        let configuration = ACPIConfiguration(cpus: 1, interruptSourceOverrides: [
            .init(isaIRQ: 0, gsi: 2),
            .init(isaIRQ: 9, gsi: 9, flags: .init(polarity: .activeHigh, trigger: .level)),
        ])
        let entries = madtEntries(try madt(configuration))
        #expect(entries[2] == [2, 10, 0, 0, 2, 0, 0, 0, 0, 0])
        #expect(entries[3] == [2, 10, 0, 9, 9, 0, 0, 0, 0x0d, 0])
        #expect(entries[4] == Self.lapicNMI)
    }

    @Test func processorEntriesChooseTheirForm() {
        #expect(MADT.Entry.processor(uid: 254, apicID: 254, flags: .enabled) == .localAPIC(processorUID: 254, apicID: 254, flags: .enabled))
        #expect(MADT.Entry.processor(uid: 255, apicID: 255, flags: .enabled) == .localX2APIC(x2apicID: 255, flags: .enabled, processorUID: 255))
        #expect(MADT.Entry.processor(uid: 256, apicID: 3, flags: .enabled) == .localX2APIC(x2apicID: 3, flags: .enabled, processorUID: 256))
    }
}

@Suite struct DSDTTests {
    private func namespace(_ configuration: ACPIConfiguration) throws -> AMLNamespace {
        let table = tableBytes(try ACPITables.build(configuration, capacity: 0x10_0000), "DSDT")
        expectValidHeader(table, signature: "DSDT", revision: 2)
        return try AMLNamespace(aml: Array(table.dropFirst(36)))
    }

    private func crs(_ namespace: AMLNamespace, _ device: String) throws -> [[UInt8]] {
        guard case .buffer(let template) = namespace.value(device + "._CRS") else {
            Issue.record("\(device) has no _CRS buffer")
            return []
        }
        return try resourceDescriptors(template)
    }

    @Test func describesTheMachinesDevices() throws {
        let ns = try namespace(ACPIConfiguration(cpus: 1))
        #expect(ns.devices(in: "\\_SB_") == ["\\_SB_.COM1", "\\_SB_.FWCF", "\\_SB_.MBRS", "\\_SB_.CPUS"])

        #expect(ns.value("\\_SB_.COM1._HID") == .integer(0x0105_d041))
        #expect(ns.value("\\_SB_.COM1._UID") == .integer(1))
        #expect(ns.value("\\_SB_.COM1._STA") == .integer(0x0f))
        #expect(try crs(ns, "\\_SB_.COM1") == [[0x47, 1, 0xf8, 3, 0xf8, 3, 1, 8], [0x22, 0x10, 0x00], [0x79, 0]])

        #expect(ns.value("\\_SB_.FWCF._HID") == .string("QEMU0002"))
        #expect(ns.value("\\_SB_.FWCF._STA") == .integer(0x0b))
        #expect(try crs(ns, "\\_SB_.FWCF") == [[0x47, 1, 0x10, 5, 0x10, 5, 1, 2], [0x79, 0]])

        #expect(ns.value("\\_SB_.MBRS._HID") == .integer(UInt64(EISAID("PNP0C02").value)))
        #expect(try crs(ns, "\\_SB_.MBRS") == [
            [0x47, 1, 0x00, 6, 0x00, 6, 1, 3],      // power control 0x600-0x602
            [0x47, 1, 0xf4, 0, 0xf4, 0, 1, 4],      // debug exit 0xf4-0xf7
            [0x47, 1, 0x10, 5, 0x10, 5, 1, 2],      // fw_cfg 0x510-0x511
            [0x79, 0],
        ])

        #expect(ns.value("\\_S5_") == .package([.integer(5), .integer(0), .integer(0), .integer(0)]))
    }

    @Test func plainMachineHasStaticProcessorsAndNoHotplug() throws {
        let ns = try namespace(ACPIConfiguration(cpus: 4))
        #expect(ns.value("\\_SB_.CPUS._HID") == .string("ACPI0010"))
        #expect(ns.value("\\_SB_.CPUS._CID") == .integer(UInt64(EISAID("PNP0A05").value)))
        #expect(ns.devices(in: "\\_SB_.CPUS") == ["\\_SB_.CPUS.C000", "\\_SB_.CPUS.C001", "\\_SB_.CPUS.C002", "\\_SB_.CPUS.C003"])
        for cpu in 0..<4 {
            let device = "\\_SB_.CPUS.C00\(cpu)"
            #expect(ns.value(device + "._HID") == .string("ACPI0007"))
            #expect(ns.value(device + "._UID") == .integer(UInt64(cpu)))
            #expect(ns[device + "._STA"] == nil && ns[device + "._MAT"] == nil && ns[device + "._EJ0"] == nil)
        }
        #expect(ns["\\_SB_.CPUS.CSCN"] == nil)
        #expect(ns["\\_SB_.GED_"] == nil)
        #expect(try crs(ns, "\\_SB_.MBRS").count == 4)  // no MMIO reservation
    }

    @Test func hotplugMachineHasTheRegisterBlockMethodsAndGED() throws {
        let ns = try namespace(ACPIConfiguration(cpus: 2, maxCPUs: 4, hotplugGSI: 21))
        #expect(ns["\\_SB_.CPUS.CPRG"] == .region(space: 0, offset: 0xfeb0_0000, length: 8))
        #expect(ns["\\_SB_.CPUS.CSEL"] == .field(region: "\\_SB_.CPUS.CPRG", flags: 0x03, bitOffset: 0, bits: 32))
        for (index, name) in ["CPEN", "CINS", "CRMV", "CEJT"].enumerated() {
            #expect(ns["\\_SB_.CPUS.\(name)"] == .field(region: "\\_SB_.CPUS.CPRG", flags: 0x41, bitOffset: 32 + index, bits: 1))
        }
        #expect(ns["\\_SB_.CPUS.CPLK"] == .mutex(syncLevel: 0))
        for (method, arguments) in [("CSTA", 1), ("CEJ0", 1), ("CTFY", 2), ("CSCN", 0)] {
            guard case .method(let count, let serialized, _) = ns["\\_SB_.CPUS." + method] else {
                Issue.record("no \(method)")
                continue
            }
            #expect(count == arguments && serialized)
        }
        for cpu in 0..<4 {
            let device = "\\_SB_.CPUS.C00\(cpu)"
            #expect(ns.value(device + "._MAT") == .buffer([0, 8, UInt8(cpu), UInt8(cpu), 1, 0, 0, 0]))
            // _STA: Return (CSTA (cpu))
            let argument = cpu <= 1 ? [UInt8(cpu)] : [0x0a, UInt8(cpu)]
            #expect(ns[device + "._STA"] == .method(arguments: 0, serialized: false, body: [0xa4] + Array("CSTA".utf8) + argument))
            if cpu == 0 {
                #expect(ns[device + "._EJ0"] == nil)
            } else {
                #expect(ns[device + "._EJ0"] == .method(arguments: 1, serialized: false, body: Array("CEJ0".utf8) + argument))
            }
        }
        #expect(ns.value("\\_SB_.GED_._HID") == .string("ACPI0013"))
        #expect(try crs(ns, "\\_SB_.GED_") == [[0x89, 6, 0, 0x03, 1, 21, 0, 0, 0], [0x79, 0]])
        #expect(ns["\\_SB_.GED_.GDRG"] == .region(space: 0, offset: 0xfeb0_0008, length: 4))
        #expect(ns["\\_SB_.GED_.GEVT"] == .field(region: "\\_SB_.GED_.GDRG", flags: 0x03, bitOffset: 0, bits: 32))
        guard case .method(1, true, _) = ns["\\_SB_.GED_._EVT"] else { Issue.record("no _EVT(1)"); return }
        #expect(try crs(ns, "\\_SB_.MBRS").dropLast().last == AMLResource.memory32Fixed(base: 0xfeb0_0000, length: 0x1000).bytes)
    }

    @Test func hotplugCanBeForcedWithoutSpareCPUs() throws {
        let ns = try namespace(ACPIConfiguration(cpus: 2, cpuHotplug: .enabled))
        #expect(ns["\\_SB_.CPUS.CSCN"] != nil && ns["\\_SB_.GED_._EVT"] != nil)
        #expect(ns["\\_SB_.CPUS.C001._EJ0"] != nil)
    }

    @Test func threeHundredCPUs() throws {
        let ns = try namespace(ACPIConfiguration(cpus: 1, maxCPUs: 300))
        let devices = ns.devices(in: "\\_SB_.CPUS")
        #expect(devices.count == 300)
        #expect(devices.last == "\\_SB_.CPUS.C12B")
        #expect(ns.value("\\_SB_.CPUS.C12B._UID") == .integer(299))
        // x2APIC form from APIC ID 255 on, Enabled set for _MAT.
        #expect(ns.value("\\_SB_.CPUS.C0FF._MAT") == .buffer([9, 16, 0, 0, 0xff, 0, 0, 0, 1, 0, 0, 0, 0xff, 0, 0, 0]))
        #expect(ns.value("\\_SB_.CPUS.C0FE._MAT") == .buffer([0, 8, 0xfe, 0xfe, 1, 0, 0, 0]))
    }

    @Test func processorDeviceNames() {
        #expect(SwiftletTables.processorDeviceName(0).description == "C000")
        #expect(SwiftletTables.processorDeviceName(10).description == "C00A")
        #expect(SwiftletTables.processorDeviceName(299).description == "C12B")
        #expect(SwiftletTables.processorDeviceName(4095).description == "CFFF")
    }
}

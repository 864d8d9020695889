/// The tables of a Swiftlet machine, one builder per table. `ACPITables.build`
/// uses them to lay out the whole set; they are public so that a machine
/// with different needs can assemble its own.
public enum SwiftletTables {
    /// Notification values of `Notify` (ACPI 6.5, 5.6.6, table 5.166).
    public static let notifyDeviceCheck: UInt64 = 0x01
    public static let notifyEjectRequest: UInt64 = 0x03

    /// The MADT: the LAPIC address, PCAT_COMPAT (the 8259 pair exists), one
    /// processor structure per possible CPU in UID order (the boot processor
    /// first), the IOAPIC, the overrides, and LINT1 as NMI on every
    /// processor.
    public static func madt(_ configuration: ACPIConfiguration) -> MADT {
        var entries: [MADT.Entry] = []
        for cpu in 0..<configuration.maxCPUs {
            entries.append(.processor(uid: UInt32(cpu), apicID: configuration.apicID(ofCPU: cpu),
                                      flags: cpu < configuration.cpus ? .enabled : .onlineCapable))
        }
        entries.append(.ioAPIC(id: SwiftletMachine.ioapicID, address: SwiftletMachine.ioapicAddress,
                               gsiBase: SwiftletMachine.ioapicGSIBase))
        for override in configuration.interruptSourceOverrides {
            entries.append(.interruptSourceOverride(source: override.isaIRQ, gsi: override.gsi, flags: override.flags))
        }
        entries.append(.localAPICNMI(processorUID: 0xff, flags: .conforming, lint: 1))
        if entries.contains(where: { if case .localX2APIC = $0 { true } else { false } }) {
            // Processors described by x2APIC structures take their NMI from the x2APIC form.
            entries.append(.localX2APICNMI(processorUID: 0xffff_ffff, flags: .conforming, lint: 1))
        }
        return MADT(localAPICAddress: SwiftletMachine.localAPICAddress, flags: MADT.pcatCompatible, entries: entries)
    }

    /// The FADT of a hardware-reduced platform with the power control
    /// registers at 0x600–0x602.
    public static func fadt(_ configuration: ACPIConfiguration, dsdtAddress: UInt64) -> FADT {
        var boot: FADT.BootArchitecture = [.vgaNotPresent, .cmosRTCNotPresent]
        if configuration.i8042 { boot.insert(.i8042) }
        return FADT(dsdtAddress: dsdtAddress, bootArchitecture: boot,
                    resetRegister: .ioPort(SwiftletMachine.resetPort), resetValue: SwiftletMachine.resetValue,
                    sleepControlRegister: .ioPort(SwiftletMachine.sleepControlPort),
                    sleepStatusRegister: .ioPort(SwiftletMachine.sleepStatusPort),
                    hypervisorVendor: configuration.hypervisorVendor)
    }

    /// The DSDT: the devices of the machine under `\_SB`, the processor
    /// container `\_SB.CPUS` with one `ACPI0007` device per possible CPU,
    /// `\_S5`, and, with hot-plug, the hot-plug methods and the Generic Event
    /// Device that triggers them.
    public static func dsdt(_ configuration: ACPIConfiguration) -> DefinitionBlock {
        DefinitionBlock {
            AML.Scope("\\_SB_") {
                AML.Device("COM1") {
                    AML.Name("_HID", .eisaID("PNP0501"))
                    AML.Name("_UID", 1)
                    AML.Name("_STA", 0x0f)
                    AML.Name("_CRS", .resourceTemplate([
                        .io(min: SwiftletMachine.serialPort, max: SwiftletMachine.serialPort, alignment: 1,
                            length: SwiftletMachine.serialPortLength),
                        .irqNoFlags([SwiftletMachine.serialIRQ]),
                    ]))
                }
                // QEMU's fw_cfg interface (selector at +0, data at +1); Linux's
                // qemu_fw_cfg driver binds to it by this _HID.
                AML.Device("FWCF") {
                    AML.Name("_HID", "QEMU0002")
                    AML.Name("_STA", 0x0b)
                    AML.Name("_CRS", .resourceTemplate([
                        .io(min: SwiftletMachine.firmwareConfigPort, max: SwiftletMachine.firmwareConfigPort,
                            alignment: 1, length: SwiftletMachine.firmwareConfigLength),
                    ]))
                }
                if configuration.i8042 {
                    AML.Device("PS2K") {
                        AML.Name("_HID", .eisaID("PNP0303"))
                        AML.Name("_STA", 0x0f)
                        AML.Name("_CRS", .resourceTemplate([
                            .io(min: SwiftletMachine.i8042DataPort, max: SwiftletMachine.i8042DataPort,
                                alignment: 1, length: 1),
                            .io(min: SwiftletMachine.i8042CommandPort, max: SwiftletMachine.i8042CommandPort,
                                alignment: 1, length: 1),
                        ]))
                    }
                }
                motherboardResources(configuration)
                processors(configuration)
                if configuration.hasCPUHotplug {
                    genericEventDevice(configuration)
                }
            }
            // Soft-off: SLP_TYP 5 for the sleep control register. The package
            // has the historical four elements (SLP_TYPa, SLP_TYPb, reserved).
            AML.Name("\\_S5_", .package([.integer(UInt64(SwiftletMachine.softOffSleepType)), 0, 0, 0]))
        }
    }

    /// `\_SB.MBRS`, PNP0C02: ports and memory the OS must not hand to other
    /// devices, as firmware reserves its chipset registers.
    static func motherboardResources(_ configuration: ACPIConfiguration) -> AMLTerm {
        var resources: [AMLResource] = [
            .io(min: SwiftletMachine.powerControlPort, max: SwiftletMachine.powerControlPort, alignment: 1,
                length: SwiftletMachine.powerControlLength),
            .io(min: SwiftletMachine.debugExitPort, max: SwiftletMachine.debugExitPort, alignment: 1,
                length: SwiftletMachine.debugExitLength),
            .io(min: SwiftletMachine.firmwareConfigPort, max: SwiftletMachine.firmwareConfigPort, alignment: 1,
                length: SwiftletMachine.firmwareConfigLength),
        ]
        if configuration.hasCPUHotplug {
            resources.append(.memory32Fixed(base: UInt32(configuration.hotplugRegisterBase),
                                            length: UInt32(CPUHotplugRegisters.reservedLength)))
        }
        return AML.Device("MBRS") {
            AML.Name("_HID", .eisaID("PNP0C02"))
            AML.Name("_UID", 0)
            AML.Name("_CRS", .resourceTemplate(resources))
        }
    }

    /// The name of CPU `index`'s processor device: `C` and three hex digits
    /// (C000, C001, ... C12B).
    public static func processorDeviceName(_ index: Int) -> AMLNameSegment {
        precondition((0..<ACPIConfiguration.cpuLimit).contains(index))
        let hex = String(index, radix: 16, uppercase: true)
        return AMLNameSegment(stringLiteral: "C" + String(repeating: "0", count: 3 - hex.count) + hex)
    }

    /// `\_SB.CPUS`, the processor container (ACPI0010, 8.4.2.1), with one
    /// processor device (ACPI0007) per possible CPU. With hot-plug it also
    /// holds the register block's fields and the methods:
    ///
    /// - `CSTA (cpu)`: 0xF if the CPU is enabled, else 0 (each `_STA`);
    /// - `CEJ0 (cpu)`: eject the CPU (each `_EJ0`);
    /// - `CTFY (cpu, value)`: `Notify` the CPU's device;
    /// - `CSCN ()`: for every CPU with an insert (remove) event, Notify 1
    ///   Device Check (3 Eject Request) and acknowledge the event.
    ///
    /// The register accesses of one CPU happen under the mutex `CPLK`, since
    /// the selector is shared.
    static func processors(_ configuration: ACPIConfiguration) -> AMLTerm {
        let hotplug = configuration.hasCPUHotplug
        let maxCPUs = configuration.maxCPUs
        return AML.Device("CPUS") {
            AML.Name("_HID", "ACPI0010")
            AML.Name("_CID", .eisaID("PNP0A05"))
            if hotplug {
                AML.OperationRegion("CPRG", .systemMemory, offset: .integer(configuration.hotplugRegisterBase),
                                    length: .integer(CPUHotplugRegisters.eventOffset))
                AML.Field("CPRG", access: .dword, update: .preserve, [
                    .offset(Int(CPUHotplugRegisters.selectorOffset)), .named("CSEL", bits: 32),
                ])
                AML.Field("CPRG", access: .byte, update: .writeAsZeros, [
                    .offset(Int(CPUHotplugRegisters.statusOffset)),
                    .named("CPEN", bits: 1),  // enabled
                    .named("CINS", bits: 1),  // inserting / acknowledge insert
                    .named("CRMV", bits: 1),  // removing / acknowledge remove
                    .named("CEJT", bits: 1),  // eject
                ])
                AML.Mutex("CPLK")
                AML.Method("CSTA", arguments: 1, serialized: true) {
                    AML.Acquire("CPLK")
                    AML.Store(.arg(0), "CSEL")
                    AML.Store(0, .local(0))
                    AML.If(.lEqual(.name("CPEN"), 1)) {
                        AML.Store(0x0f, .local(0))
                    }
                    AML.Release("CPLK")
                    AML.Return(.local(0))
                }
                AML.Method("CEJ0", arguments: 1, serialized: true) {
                    AML.Acquire("CPLK")
                    AML.Store(.arg(0), "CSEL")
                    AML.Store(1, "CEJT")
                    AML.Release("CPLK")
                }
                AML.Method("CTFY", arguments: 2, serialized: true) {
                    for cpu in 0..<maxCPUs {
                        AML.If(.lEqual(.arg(0), .integer(UInt64(cpu)))) {
                            AML.Notify(AMLName(segment: processorDeviceName(cpu)), .arg(1))
                        }
                    }
                }
                AML.Method("CSCN", serialized: true) {
                    AML.Acquire("CPLK")
                    AML.Store(0, .local(0))
                    AML.While(.lLess(.local(0), .integer(UInt64(maxCPUs)))) {
                        AML.Store(.local(0), "CSEL")
                        AML.If(.lEqual(.name("CINS"), 1)) {
                            AML.Call("CTFY", .local(0), .integer(notifyDeviceCheck))
                            AML.Store(1, "CINS")
                        } else: {
                            AML.If(.lEqual(.name("CRMV"), 1)) {
                                AML.Call("CTFY", .local(0), .integer(notifyEjectRequest))
                                AML.Store(1, "CRMV")
                            }
                        }
                        AML.Increment(.local(0))
                    }
                    AML.Release("CPLK")
                }
            }
            for cpu in 0..<maxCPUs {
                processorDevice(cpu, configuration)
            }
        }
    }

    static func processorDevice(_ cpu: Int, _ configuration: ACPIConfiguration) -> AMLTerm {
        AML.Device(AMLName(segment: processorDeviceName(cpu))) {
            AML.Name("_HID", "ACPI0007")
            AML.Name("_UID", .integer(UInt64(cpu)))
            if configuration.hasCPUHotplug {
                // The CPU's MADT structure, always with Enabled set: OSPM reads
                // _MAT when _STA says present, and Linux ignores a disabled entry.
                AML.Name("_MAT", .buffer(MADT.Entry.processor(uid: UInt32(cpu), apicID: configuration.apicID(ofCPU: cpu),
                                                               flags: .enabled).bytes))
                AML.Method("_STA") {
                    AML.Return(.call("CSTA", .integer(UInt64(cpu))))
                }
                if cpu != 0 {
                    // The boot processor cannot be ejected.
                    AML.Method("_EJ0", arguments: 1) {
                        AML.Call("CEJ0", .integer(UInt64(cpu)))
                    }
                }
            }
        }
    }

    /// `\_SB.GED_`, a Generic Event Device (ACPI0013, 5.6.9): on its
    /// interrupt the OS runs `_EVT`, which reads and acknowledges the pending
    /// events and runs the CPU scan for a CPU hot-plug event.
    static func genericEventDevice(_ configuration: ACPIConfiguration) -> AMLTerm {
        AML.Device("GED_") {
            AML.Name("_HID", "ACPI0013")
            AML.Name("_UID", 0)
            AML.Name("_CRS", .resourceTemplate([
                .interrupt([configuration.hotplugGSI], consumer: true, edgeTriggered: true, activeLow: false),
            ]))
            AML.OperationRegion("GDRG", .systemMemory,
                                offset: .integer(configuration.hotplugRegisterBase + CPUHotplugRegisters.eventOffset),
                                length: 4)
            AML.Field("GDRG", access: .dword, update: .preserve, [.named("GEVT", bits: 32)])
            AML.Method("_EVT", arguments: 1, serialized: true) {
                AML.Store(.name("GEVT"), .local(0))
                AML.Store(.local(0), "GEVT")  // write 1 to clear what was read
                AML.If(.and(.local(0), .integer(UInt64(CPUHotplugRegisters.eventCPUHotplug)))) {
                    AML.Call("\\_SB_.CPUS.CSCN")
                }
            }
        }
    }
}

import Swiftlet
import SwiftletKVM
import SwiftletSystem

/// `swiftlet kvm-info`: what this host's KVM offers, and what kind of host
/// it is — on a PVM host guest kernel code is emulated, which changes what
/// guests can do and what benchmarks mean.
enum KVMInfoCommand {
    static let parser = ArgumentParser(command: "swiftlet kvm-info", options: [
        .init("device", value: "PATH", help: "the KVM device (default /dev/kvm)"),
    ])

    static var help: String {
        """
        USAGE: swiftlet kvm-info [--device PATH]

        Prints the KVM API version, the capabilities Swiftlet relies on, and the
        kind of host (hardware virtualization or PVM). Exit status 3 when KVM is
        missing or lacks a capability Swiftlet needs.

        OPTIONS:
        \(parser.optionsHelp)
        """
    }

    private struct Row {
        let capability: KVMCapability
        let use: String
        let required: Bool
        let showsValue: Bool
    }

    private static let rows: [Row] = [
        Row(capability: .userMemory, use: "guest memory slots", required: true, showsValue: false),
        Row(capability: .setTSSAddress, use: "real-mode TSS placement", required: true, showsValue: false),
        Row(capability: .extendedCPUID, use: "CPUID model", required: true, showsValue: false),
        Row(capability: .immediateExit, use: "race-free vCPU kicks", required: true, showsValue: false),
        Row(capability: .mpState, use: "SMP bring-up state", required: true, showsValue: false),
        Row(capability: .irqchip, use: "in-kernel PIC/IOAPIC/LAPIC (--irqchip kernel)", required: true, showsValue: false),
        Row(capability: .pit2, use: "in-kernel PIT", required: true, showsValue: false),
        Row(capability: .irqfd, use: "device interrupts by eventfd", required: false, showsValue: false),
        Row(capability: .ioeventfd, use: "device notifications by eventfd", required: false, showsValue: false),
        Row(capability: .signalMSI, use: "message-signalled interrupts", required: false, showsValue: false),
        Row(capability: .splitIRQChip, use: "userspace IOAPIC/PIC", required: false, showsValue: false),
        Row(capability: .x2apicAPI, use: "over 254 vCPUs with --irqchip kernel", required: false, showsValue: false),
        Row(capability: .userSpaceMSR, use: "x2APIC MSRs in userspace (--irqchip userspace)", required: false, showsValue: false),
        Row(capability: .vcpuEvents, use: "exception injection", required: false, showsValue: false),
        Row(capability: .exitOnEmulationFailure, use: "instruction bytes in emulation failures", required: false, showsValue: false),
        Row(capability: .dirtyLogRing, use: "per-vCPU dirty ring (max bytes)", required: false, showsValue: true),
        Row(capability: .manualDirtyLogProtect, use: "dirty log with manual protect", required: false, showsValue: true),
        Row(capability: .recommendedVCPUs, use: "recommended vCPUs", required: false, showsValue: true),
        Row(capability: .maxVCPUs, use: "maximum vCPUs per VM", required: false, showsValue: true),
        Row(capability: .maxVCPUID, use: "maximum vCPU id", required: false, showsValue: true),
    ]

    static func run(_ arguments: ArraySlice<String>) -> Int32 {
        let values: [String: String]
        do {
            values = try parser.parse(arguments)
        } catch {
            return SwiftletCommand.usageError(error)
        }
        let path = values["device"] ?? "/dev/kvm"
        let kvm: KVMSystem
        do {
            kvm = try KVMSystem(path: path)
        } catch {
            SwiftletCommand.writeError("swiftlet: error: \(error)")
            return ExitStatus.kvmUnavailable
        }
        let host = KVMHostKind.detect()
        var lines = [
            "KVM device:      \(path)",
            "KVM API version: \(kvm.apiVersion)",
            "Host:            \(host)",
        ]
        switch host {
        case .pvm:
            lines += [
                "                 Guest kernel-mode and 16/32-bit code run instruction-emulated (~0.4 µs per",
                "                 instruction); some instructions are missing from the emulator (a stock",
                "                 Linux kernel stops at lock cmpxchg16b, xrstor, int3). KVM_SET_CPUID2 is only",
                "                 partly honoured: guests see the host's feature bits. Figures measured here",
                "                 are PVM figures, not hardware-virtualization figures.",
            ]
        case .intelVTx, .amdV:
            lines.append("                 Guest code runs natively; exits are hardware VM exits.")
        case .unknown:
            break
        }
        lines.append("")
        lines.append("Capabilities Swiftlet relies on:")
        let width = rows.map(\.capability.name.count).max()! + 2
        var missing: [String] = []
        for row in rows {
            let value = kvm.check(row.capability)
            let shown = row.showsValue ? (value == 0 ? "no" : String(value)) : (value != 0 ? "yes" : "no")
            let name = row.capability.name
            lines.append("  " + name + String(repeating: " ", count: width - name.count)
                         + shown.padding(8) + row.use + (row.required ? " (required)" : ""))
            if row.required && value == 0 { missing.append(name) }
        }
        print(lines.joined(separator: "\n"))
        if !missing.isEmpty {
            SwiftletCommand.writeError("swiftlet: error: this host's KVM lacks \(missing.joined(separator: ", ")), which Swiftlet requires")
            return ExitStatus.kvmUnavailable
        }
        return ExitStatus.success
    }
}

private extension String {
    func padding(_ width: Int) -> String { self + String(repeating: " ", count: max(1, width - count)) }
}

import Swiftlet
import SwiftletBoot
import SwiftletSystem
import SwiftletVCPU

/// `swiftlet run`'s options, turned into one validated `MachineConfiguration`.
public struct RunOptions: Sendable {
    public var configuration: MachineConfiguration
    public var logLevel: Log.Level
    /// Where to serve the control API (HTTP/1.1 over a Unix socket), if anywhere.
    public var apiSocketPath: String?

    public static let parser = ArgumentParser(command: "swiftlet run", options: [
        .init("kernel", value: "PATH", help: "kernel: bzImage, ELF vmlinux (PVH or 64-bit entry), Multiboot, or ELF64; default: the built-in guest"),
        .init("initrd", value: "PATH", help: "initial ramdisk (Multiboot module 0; fw_cfg initrd item)"),
        .init("cmdline", value: "STRING", help: "kernel command line"),
        .init("cpus", value: "N", help: "number of vCPUs (default 1)"),
        .init("max-cpus", value: "M", help: "CPUs the guest may ever have; those beyond --cpus are hot-pluggable (default --cpus)"),
        .init("memory", value: "MIB", help: "guest RAM in MiB (default 128)"),
        .init("serial", value: "stdio|file:PATH|none", help: "where COM1 goes (default stdio)"),
        .init("boot-protocol", value: "auto|linux|pvh|multiboot|elf64", help: "how to enter the kernel (default auto: from the image)"),
        .init("irqchip", value: "kernel|userspace", help: "interrupt controllers: KVM's in-kernel ones (default) or Swiftlet's own"),
        .init("halt-poll-us", value: "N", help: "userspace irqchip: adaptive halt polling limit in µs, 0 to disable (default 200)"),
        .init("cpu-features", value: "-NAME,...", help: "CPUID features to hide from the guest, e.g. -cx16,-xsave (names as in /proc/cpuinfo)"),
        .init("pvm-assist", value: "on|off|auto", help: "complete instructions a PVM host cannot emulate (int3, clac/stac, popcnt, ...) (default auto: on for PVM hosts)"),
        .init("api-socket", value: "PATH", help: "serve the control API (HTTP/1.1, JSON) on this Unix socket, e.g. for `swiftlet vcpus`"),
        .init("log-level", value: "error|warning|info|debug", help: "how much Swiftlet logs on stderr (default warning)"),
    ])

    /// Parses `arguments` (after `run`). `defaultKernel` is used when no
    /// `--kernel` is given.
    public static func parse(_ arguments: some Collection<String>,
                             defaultKernel: @autoclosure () -> MachineConfiguration.Kernel) throws(UsageError) -> RunOptions {
        let values = try parser.parse(arguments)
        var config = MachineConfiguration(kernel: values["kernel"].map { .file(path: $0) } ?? defaultKernel())
        config.initrdPath = values["initrd"]
        if let cmdline = values["cmdline"] { config.commandLine = cmdline }
        if let cpus = values["cpus"] {
            config.cpus = try ArgumentParser.integer(cpus, option: "cpus", in: MachineConfiguration.cpuRange)
        }
        if let maxCPUs = values["max-cpus"] {
            config.maxCPUs = try ArgumentParser.integer(maxCPUs, option: "max-cpus", in: MachineConfiguration.cpuRange)
        }
        if let memory = values["memory"] {
            config.memoryMiB = try ArgumentParser.integer(memory, option: "memory", in: MachineConfiguration.memoryRange)
        }
        if let serial = values["serial"] {
            config.serial = try parseSerial(serial)
        }
        if let proto = values["boot-protocol"] {
            guard let parsed = BootProtocol(rawValue: proto) else {
                throw UsageError("--boot-protocol must be auto, linux, pvh, multiboot or elf64, not '\(proto)'")
            }
            config.bootProtocol = parsed
        }
        if let mode = values["irqchip"] {
            guard let parsed = InterruptControllerMode(rawValue: mode) else {
                throw UsageError("--irqchip must be kernel or userspace, not '\(mode)'")
            }
            config.irqchip = parsed
        }
        if let poll = values["halt-poll-us"] {
            config.haltPollMicroseconds = try ArgumentParser.integer(poll, option: "halt-poll-us", in: 0...1_000_000)
        }
        if let features = values["cpu-features"] {
            do {
                config.cpuFeatures = try CPUFeatureSelection.parse(features)
            } catch {
                throw UsageError("--cpu-features: \(error)")
            }
        }
        if let assist = values["pvm-assist"] {
            guard let mode = InstructionAssist.Mode(rawValue: assist) else {
                throw UsageError("--pvm-assist must be on, off or auto, not '\(assist)'")
            }
            config.pvmAssist = mode
        }
        var level = Log.Level.warning
        if let name = values["log-level"] {
            guard let parsed = Log.Level(name: name) else {
                throw UsageError("--log-level must be error, warning, info or debug, not '\(name)'")
            }
            level = parsed
        }
        do {
            try config.validate()
        } catch {
            throw UsageError(error.description)
        }
        if let path = values["api-socket"], path.isEmpty { throw UsageError("--api-socket needs a path") }
        return RunOptions(configuration: config, logLevel: level, apiSocketPath: values["api-socket"])
    }

    static func parseSerial(_ text: String) throws(UsageError) -> MachineConfiguration.Serial {
        switch text {
        case "stdio": return .stdio
        case "none": return .none
        default:
            if text.hasPrefix("file:") {
                let path = String(text.dropFirst(5))
                guard !path.isEmpty else { throw UsageError("--serial file: needs a path, as in file:/tmp/console.log") }
                return .file(path: path)
            }
            throw UsageError("--serial must be stdio, none or file:PATH, not '\(text)'")
        }
    }
}

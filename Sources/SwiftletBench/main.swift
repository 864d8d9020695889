// swiftlet-bench: benchmarks that drive the Machine API in-process, where
// the figure is a VMM-internal latency that no outside harness can see.
//
//   swiftlet-bench hotplug GUEST [--cycles N] [--irqchip kernel|userspace]
//       hot-add and hot-remove latency (VMM side, p50/p99) on a running
//       guest (Guests/out/hotplug.elf), and what the RCU registry costs one
//       interrupt's routing lookup against a plain array.
//
//   swiftlet-bench interrupts GUEST [--irqchip kernel|userspace|both]
//                  [--cpus 1,64,256,1024] [--samples N] [--gap-us N]
//                  [--seconds S] [--halt-poll-us N]
//       post-to-handler latency for a halted vCPU (p50/p99) with N vCPUs
//       in the VM, and interrupts per second to a vCPU busy in user mode
//       (Guests/out/irq-latency.elf; see InterruptBenchmark.swift).
//
// Run by Benchmarks/run (`hotplug`, `interrupts`), which stamps the date
// and host kind.
import Glibc
import Swiftlet
import SwiftletDevices
import SwiftletSystem
import SwiftletVCPU

func fail(_ message: String) -> Never {
    Log.writeLine("swiftlet-bench: \(message)")
    exit(2)
}

func percentile(_ sorted: [Int64], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    let rank = Int((p / 100 * Double(sorted.count - 1)).rounded())
    return Double(sorted[rank]) / 1e6
}

func format(_ value: Double) -> String {
    let scaled = Int((value * 1000).rounded())
    let fraction = String(scaled % 1000)
    return "\(scaled / 1000).\(String(repeating: "0", count: 3 - fraction.count))\(fraction)"
}

/// Builds and starts a machine, then waits (up to 30 s) for its guest to
/// print `readyLine`; ends the process with a clear error otherwise.
func startGuest(_ configuration: MachineConfiguration, capture: ConsoleCapture, until readyLine: String,
                describing what: String) -> Machine {
    let machine: Machine
    do {
        machine = try Machine(configuration)
        try machine.start()
    } catch {
        fail("cannot start \(what): \(error)")
    }
    let deadline = MonotonicClock.nanoseconds() + 30_000_000_000
    while !capture.text.contains(readyLine) {
        if MonotonicClock.nanoseconds() > deadline || machine.hasEnded {
            fail("the guest did not get ready (\(machine.hasEnded ? "it ended" : "timeout")):\n\(capture.text)")
        }
        usleep(1000)
    }
    return machine
}

func hotplug(guest: String, cycles: Int, irqchip: InterruptControllerMode) {
    let capture = ConsoleCapture()
    var configuration = MachineConfiguration(kernel: .file(path: guest), cpus: 1, serial: .capture(capture))
    configuration.maxCPUs = 4
    configuration.irqchip = irqchip
    let machine = startGuest(configuration, capture: capture, until: "hotplug: ready", describing: guest)
    var adds: [Int64] = [], removes: [Int64] = []
    for cycle in 0..<cycles {
        let index = 1 + cycle % 3
        do {
            let t0 = MonotonicClock.nanoseconds()
            try machine.hotAddVCPU(index, notifyGuest: false)
            let t1 = MonotonicClock.nanoseconds()
            try machine.hotRemoveVCPU(index)
            let t2 = MonotonicClock.nanoseconds()
            adds.append(t1 - t0)
            removes.append(t2 - t1)
        } catch {
            fail("cycle \(cycle): \(error)")
        }
    }
    adds.sort()
    removes.sort()
    print("hotplug \(irqchip): \(cycles) cycles; add p50 \(format(percentile(adds, 50))) ms p99 \(format(percentile(adds, 99))) ms; remove p50 \(format(percentile(removes, 50))) ms p99 \(format(percentile(removes, 99))) ms")

    // Routing cost: find vCPU `i`'s object, as a fixed-destination delivery
    // does, through the registry's read section vs an array.
    _ = try? machine.hotAddVCPU(1, notifyGuest: false)
    let registry = machine.vcpuRegistry
    let array = machine.vcpus
    let lookups = 10_000_000
    var sink: UInt64 = 0
    var t0 = MonotonicClock.nanoseconds()
    for i in 0..<lookups {
        sink &+= UInt64(registry.read { $0[i & 1] }?.index ?? 0)
    }
    let registryNanoseconds = Double(MonotonicClock.nanoseconds() - t0) / Double(lookups)
    t0 = MonotonicClock.nanoseconds()
    for i in 0..<lookups {
        sink &+= UInt64(array[i & 1].index)
    }
    let arrayNanoseconds = Double(MonotonicClock.nanoseconds() - t0) / Double(lookups)
    print("routing lookup: registry \(format(registryNanoseconds)) ns, array \(format(arrayNanoseconds)) ns (checksum \(sink & 1))")
    machine.stop(reason: "benchmark done")
    _ = machine.waitForExit()
}

func hotplugMain(_ arguments: ArraySlice<String>) {
    guard let guest = arguments.first else {
        fail("usage: swiftlet-bench hotplug GUEST [--cycles N] [--irqchip kernel|userspace]")
    }
    var cycles = 1000
    var irqchip = InterruptControllerMode.kernel
    var rest = arguments.dropFirst()
    while let option = rest.popFirst() {
        guard let value = rest.popFirst() else { fail("\(option) needs a value") }
        switch option {
        case "--cycles":
            guard let n = Int(value), n > 0 else { fail("--cycles must be a positive integer") }
            cycles = n
        case "--irqchip":
            guard let mode = InterruptControllerMode(rawValue: value) else { fail("--irqchip must be kernel or userspace") }
            irqchip = mode
        default: fail("unknown option \(option)")
        }
    }
    hotplug(guest: guest, cycles: cycles, irqchip: irqchip)
}

let arguments = CommandLine.arguments.dropFirst()
switch arguments.first {
case "hotplug": hotplugMain(arguments.dropFirst())
case "interrupts": InterruptBenchmark.parse(arguments.dropFirst()).run()
default: fail("usage: swiftlet-bench hotplug|interrupts GUEST [options]")
}

// `swiftlet-bench interrupts`: issue 3's interrupt benchmark.
//
// The guest is Guests/out/irq-latency.elf. The host posts vector 0x40 to
// APIC ID 0 with `Machine.sendInterrupt` (the router and the target's
// posted-interrupt descriptor in userspace mode, KVM_SIGNAL_MSI with the
// in-kernel irqchip) and the guest's handler writes port 0x80, whose
// `PostCodePort` records the CLOCK_MONOTONIC time of the write. Closed
// loop, one interrupt in flight; the host polls for the write with short
// sleeps, so it never holds a host CPU the guest needs (there are two).
//
//   halted  CPU 0 waits in `sti; hlt`; latency = time of the handler's port
//           write - time just before sendInterrupt. Between samples the
//           host waits `gap` (default 1 ms, more than the 200 µs halt-poll
//           limit) so the target has gone back to sleep. The VM has N vCPUs;
//           the guest starts none but CPU 0, so the others sit blocked in
//           wait-for-SIPI for the whole run.
//   busy    CPU 0 spins at CPL 3 with interrupts enabled; the host posts the
//           next interrupt as soon as the previous handler's write is seen,
//           for `seconds`: interrupts per second, and the same latency.
import Glibc
import Swiftlet
import SwiftletDevices
import SwiftletSystem

struct InterruptBenchmark {
    static let vector: UInt8 = 0x40
    var guest: String
    var modes: [InterruptControllerMode] = [.userspace, .kernel]
    var cpuCounts: [Int] = [1, 64, 256, 1024]
    var samples = 2000
    var warmup = 50
    var gapMicroseconds = 1000
    var busySeconds = 3.0
    var haltPollMicroseconds: Int?

    struct Latencies {
        var nanoseconds: [Int64] = []
        mutating func add(_ value: Int64) { nanoseconds.append(value) }
        /// p50, p99 and max in µs.
        var summary: (p50: Double, p99: Double, max: Double) {
            let sorted = nanoseconds.sorted()
            return (percentile(sorted, 50) * 1000, percentile(sorted, 99) * 1000, Double(sorted.last ?? 0) / 1000)
        }
    }

    func run() {
        var hostKind = "unknown"
        print("interrupts: \(sysconf(Int32(_SC_NPROCESSORS_ONLN))) host CPUs; vector 0x\(String(Self.vector, radix: 16)) to APIC ID 0")
        print("interrupts: halted target: \(samples) samples after \(warmup) warm-up, \(gapMicroseconds) µs between samples; "
              + "the VM's other vCPUs are created but never started (blocked in wait-for-SIPI)")
        for mode in modes {
            for cpus in cpuCounts { hostKind = halted(mode: mode, cpus: cpus) }
            hostKind = busy(mode: mode)
        }
        print("interrupts: host kind: \(hostKind)")
    }

    private func makeMachine(mode: InterruptControllerMode, cpus: Int, commandLine: String) -> (Machine, ConsoleCapture) {
        let capture = ConsoleCapture()
        var configuration = MachineConfiguration(kernel: .file(path: guest), commandLine: commandLine, cpus: cpus,
                                                 serial: .capture(capture))
        configuration.irqchip = mode
        if let haltPollMicroseconds { configuration.haltPollMicroseconds = haltPollMicroseconds }
        let machine = startGuest(configuration, capture: capture, until: "irq-latency: ready (\(commandLine))",
                                 describing: "\(guest) with \(cpus) vCPUs, --irqchip \(mode)")
        usleep(20_000)  // past the print's last exits, into hlt or the user loop
        return (machine, capture)
    }

    /// Posts one interrupt and waits for the handler's port write; returns
    /// post → write in nanoseconds.
    private func postAndWait(_ machine: Machine) -> Int64 {
        let port = machine.postCode
        let before = port.writeCount
        let t0 = MonotonicClock.nanoseconds()
        do {
            try machine.sendInterrupt(vector: Self.vector, toAPICID: 0)
        } catch {
            fail("sendInterrupt: \(error)")
        }
        // Poll by sleeping (10 µs + the timer slack): a thread that wakes
        // from a sleep preempts a vCPU thread that shares its host CPU,
        // where a spinning or yielding one waits for the scheduler tick.
        var request = timespec(tv_sec: 0, tv_nsec: 10_000)
        while port.writeCount == before {
            nanosleep(&request, nil)
            if MonotonicClock.nanoseconds() - t0 > 5_000_000_000 || machine.hasEnded {
                fail("no handler write within 5 s (machine ended: \(machine.hasEnded))")
            }
        }
        return port.lastWriteTime - t0
    }

    private func finish(_ machine: Machine) {
        machine.stop(reason: "benchmark done")
        _ = machine.waitForExit()
    }

    /// Returns the host kind the machine saw.
    private func halted(mode: InterruptControllerMode, cpus: Int) -> String {
        let created = MonotonicClock.nanoseconds()
        let (machine, _) = makeMachine(mode: mode, cpus: cpus, commandLine: "halt")
        let startup = Double(MonotonicClock.nanoseconds() - created) / 1e6
        let haltsBefore = machine.vcpus[0].statistics.halts
        var latencies = Latencies()
        for i in 0..<(warmup + samples) {
            usleep(UInt32(gapMicroseconds))
            let latency = postAndWait(machine)
            if i >= warmup { latencies.add(latency) }
        }
        let halts = machine.vcpus[0].statistics.halts - haltsBefore
        finish(machine)
        let s = latencies.summary
        let haltNote = mode == .userspace ? ", \(halts) HLT exits" : ""
        print("interrupts: \(mode) halted cpus=\(cpus) samples=\(samples) p50_us=\(format(s.p50)) p99_us=\(format(s.p99)) max_us=\(format(s.max))"
              + " (VM ready in \(format(startup)) ms\(haltNote))")
        return "\(machine.hostKind)"
    }

    private func busy(mode: InterruptControllerMode) -> String {
        let (machine, _) = makeMachine(mode: mode, cpus: 1, commandLine: "user")
        var latencies = Latencies()
        for _ in 0..<warmup { _ = postAndWait(machine) }
        let t0 = MonotonicClock.nanoseconds()
        let end = t0 + Int64(busySeconds * 1e9)
        var count = 0
        while MonotonicClock.nanoseconds() < end {
            latencies.add(postAndWait(machine))
            count += 1
        }
        let elapsed = Double(MonotonicClock.nanoseconds() - t0) / 1e9
        finish(machine)
        let s = latencies.summary
        let rate = Int((Double(count) / elapsed).rounded())
        print("interrupts: \(mode) busy cpus=1 interrupts=\(count) seconds=\(format(elapsed)) per_second=\(rate) p50_us=\(format(s.p50)) p99_us=\(format(s.p99))")
        return "\(machine.hostKind)"
    }

    static func parse(_ arguments: ArraySlice<String>) -> InterruptBenchmark {
        let usage = "usage: swiftlet-bench interrupts GUEST [--irqchip kernel|userspace|both] [--cpus 1,64,256,1024] "
            + "[--samples N] [--gap-us N] [--seconds S] [--halt-poll-us N]"
        guard let guest = arguments.first else { fail(usage) }
        var bench = InterruptBenchmark(guest: guest)
        var rest = arguments.dropFirst()
        while let option = rest.popFirst() {
            guard let value = rest.popFirst() else { fail("\(option) needs a value\n\(usage)") }
            switch option {
            case "--irqchip":
                if value == "both" { bench.modes = [.userspace, .kernel]; continue }
                guard let mode = InterruptControllerMode(rawValue: value) else { fail("--irqchip must be kernel, userspace or both") }
                bench.modes = [mode]
            case "--cpus":
                let counts = value.split(separator: ",").map { Int($0) }
                guard !counts.isEmpty, counts.allSatisfy({ $0.map { MachineConfiguration.cpuRange.contains($0) } ?? false }) else {
                    fail("--cpus must be a comma-separated list of counts in \(MachineConfiguration.cpuRange)")
                }
                bench.cpuCounts = counts.map { $0! }
            case "--samples":
                guard let n = Int(value), n > 0 else { fail("--samples must be a positive integer") }
                bench.samples = n
            case "--gap-us":
                guard let n = Int(value), n >= 0 else { fail("--gap-us must be a non-negative integer") }
                bench.gapMicroseconds = n
            case "--seconds":
                guard let s = Double(value), s > 0 else { fail("--seconds must be positive") }
                bench.busySeconds = s
            case "--halt-poll-us":
                guard let n = Int(value), n >= 0 else { fail("--halt-poll-us must be a non-negative integer") }
                bench.haltPollMicroseconds = n
            default: fail("unknown option \(option)\n\(usage)")
            }
        }
        return bench
    }
}

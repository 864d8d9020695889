import Foundation
import Testing
import Swiftlet
import SwiftletDevices
import SwiftletKVM
import SwiftletSystem
import SwiftletTestSupport

/// Debian's Linux kernel and a busybox initramfs (`Guests/linux/build`),
/// booted in-process. Opt-in, because a boot costs minutes on a PVM host:
///
///     SWIFTLET_LINUX_TESTS=1 swift test --filter SwiftletLinuxTests
///     SWIFTLET_LINUX_TESTS=1 SWIFTLET_LINUX_LONG=1 swift test --filter SwiftletLinuxTests
///
/// The tests build the guest themselves when `Guests/linux/out/` lacks it
/// (a download of about 70 MB through `apt-get download`).
enum LinuxGuest {
    static let environment = ProcessInfo.processInfo.environment
    static let isEnabled = environment["SWIFTLET_LINUX_TESTS"] == "1" && KVMTestSupport.isAvailable
    static let reason: Comment = KVMTestSupport.isAvailable
        ? "boots Debian's Linux kernel (minutes on a PVM host): set SWIFTLET_LINUX_TESTS=1 to run"
        : "requires /dev/kvm (read-write) and SWIFTLET_LINUX_TESTS=1"
    static let isLongEnabled = isEnabled && environment["SWIFTLET_LINUX_LONG"] == "1"
    static let longReason: Comment = "boots Linux with the PVM assist until it finds COM1 through ACPI (5–10 minutes on a PVM host): set SWIFTLET_LINUX_TESTS=1 and SWIFTLET_LINUX_LONG=1 to run"

    static let isPVMHost = KVMHostKind.detect() == .pvm

    /// Kernel switches a PVM host needs, where guest kernel code is
    /// instruction-emulated (README, "Running Linux"): keep the kernel off
    /// instructions the host's emulator lacks and that Swiftlet's PVM assist
    /// does not complete: xsave/xrstor (`noxsave`), and SSE/AVX code such as
    /// blake2s_compress_ssse3's `movd %ecx,%xmm15`, which the random driver
    /// runs (the guest sees the host's SSSE3 whatever CPUID says, so the
    /// kernel's `clearcpuid=` has to hide it). A hardware-virtualization
    /// host needs none.
    static let pvmSwitches = "noxsave clearcpuid=ssse3,sse4_1,sse4_2,pclmulqdq,aes,avx,avx2,avx512f,sha_ni"
    /// CPUID features Swiftlet hides on a PVM host (`--cpu-features`).
    static let pvmHiddenFeatures = "-cx16"
    /// Initcalls that take many minutes when emulated and that the long
    /// test does not need, skipped on a PVM host (`initcall_blacklist=`).
    /// Measured with `initcall_debug` on a PVM host: ftrace's check of its
    /// 40,000 call sites (a work item that holds the only CPU for many
    /// minutes) and the kprobe tracer's set-up (about 250 s).
    static let pvmSlowInitcalls = ["ftrace_check_for_weak_functions", "init_kprobe_trace"]
    /// `clocksource=jiffies` keeps a PVM guest out of a livelock in its
    /// periodic tick. Until high-resolution mode starts, Linux runs the tick
    /// on the one-shot TSC-deadline timer and catches up on missed ticks
    /// by calling tick_periodic() once per tick owed, as long as the
    /// clocksource is a high-resolution one. Emulated, a tick (kvm-clock
    /// reads included) can cost more than its 4 ms period, and once
    /// clocksource_done_booting switched to kvm-clock the catch-up never
    /// ended: the interrupted task sat at one instruction for half an hour
    /// while only timer interrupts ran (traced with the kvm_emulate_insn
    /// tracepoint). With jiffies the catch-up skips the tick; the kernel
    /// then keeps time in whole ticks, which this test does not mind.
    static let pvmClockSwitch = "clocksource=jiffies"
    static var pvmLongSwitches: String {
        guard isPVMHost else { return "" }
        return " " + pvmClockSwitch + (pvmSlowInitcalls.isEmpty ? "" : " initcall_blacklist=" + pvmSlowInitcalls.joined(separator: ","))
    }

    static var directory: String { TestGuests.repositoryRoot + "/Guests/linux/out" }
    static var vmlinux: String { directory + "/vmlinux" }
    static var initramfs: String { directory + "/initramfs.cpio.gz" }

    /// Runs `Guests/linux/build` once per process when its outputs are missing.
    private static let buildResult: Result<String, TestSetupError> = {
        let files = [vmlinux, initramfs, directory + "/kernel-version"]
        if !files.allSatisfy({ FileManager.default.fileExists(atPath: $0) }) {
            if case .failure(let error) = TestGuests.runScript("Guests/linux/build") { return .failure(error) }
        }
        guard let version = try? String(contentsOfFile: directory + "/kernel-version", encoding: .utf8) else {
            return .failure(TestSetupError("Guests/linux/build left no kernel-version"))
        }
        return .success(version.trimmingCharacters(in: .whitespacesAndNewlines))
    }()

    /// The kernel's version string (e.g. "6.1.0-56-amd64"), building the guest if needed.
    static func kernelVersion() throws -> String { try buildResult.get() }

    /// `base` plus the PVM switches on a PVM host.
    static func commandLine(_ base: String) -> String { isPVMHost ? base + " " + pvmSwitches : base }

    static func configuration(commandLine: String, cpus: Int = 1, maxCPUs: Int? = nil, memoryMiB: Int,
                              initrd: Bool = true) throws -> MachineConfiguration {
        _ = try kernelVersion()
        var configuration = guestConfiguration(kernelPath: vmlinux, initrdPath: initrd ? initramfs : nil, commandLine: commandLine, cpus: cpus,
                                               maxCPUs: maxCPUs, memoryMiB: memoryMiB, consoleLimit: 8 << 20)
        if isPVMHost { configuration.cpuFeatures = try .parse(pvmHiddenFeatures) }
        return configuration
    }
}

/// `value` as C's `%0<width>llx` / `%0<width>llX` would print it.
func hex(_ value: UInt64, width: Int, uppercase: Bool = false) -> String {
    let digits = String(value, radix: 16, uppercase: uppercase)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
}

/// Linux's name for an e820 type (arch/x86/kernel/e820.c, e820_print_type).
func e820TypeName(_ type: UInt32) -> String {
    switch type {
    case 1: "usable"
    case 2: "reserved"
    case 3: "ACPI data"
    case 4: "ACPI NVS"
    case 5: "unusable"
    default: "type \(type)"
    }
}

/// Console lines without the printk timestamp ("[   12.345678] "). The
/// serial console ends lines with "\r\n", which Swift treats as one
/// Character, so lines are split on any newline character.
func kernelMessages(_ output: String) -> [String] {
    output.split(whereSeparator: \.isNewline).map { line in
        var text = Substring(line)
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            text = text[text.index(after: close)...].drop(while: { $0 == " " })
        }
        return String(text)
    }
}

/// The longest time, in seconds, that the kernel's soft-lockup detector
/// reported a CPU stuck ("watchdog: BUG: soft lockup - CPU#0 stuck for 22s!").
func longestSoftLockup(_ output: String) -> UInt64 {
    output.split(separator: "soft lockup - CPU#").dropFirst().compactMap { report in
        guard let range = report.firstRange(of: " stuck for ") else { return nil }
        return UInt64(report[range.upperBound...].prefix(while: \.isNumber))
    }.max() ?? 0
}

/// Seconds since `start`, for the reports the tests print.
func seconds(since start: Int64) -> String {
    String(format: "%.1f", Double(MonotonicClock.nanoseconds() - start) / 1e9)
}

/// The value of a regex capture as a number.
func number(_ match: Regex<AnyRegexOutput>.Match, _ index: Int) -> UInt64? {
    match.output[index].substring.flatMap { UInt64($0) }
}

@Suite(.serialized)
struct LinuxBootTests {
    /// PVH boot of Debian's vmlinux up to the kernel's "Memory:" line
    /// (one to a few minutes on a PVM host, depending on its load): the
    /// kernel's own log shows that it took the memory map, the RSDP and
    /// ACPI tables, the MADT's IOAPIC and CPUs, the command line and the
    /// initrd as Swiftlet built them. The VM is stopped there.
    @Test(.enabled(if: LinuxGuest.isEnabled, LinuxGuest.reason), .timeLimit(.minutes(15)))
    func earlyBootSeesWhatSwiftletBuilt() throws {
        let version = try LinuxGuest.kernelVersion()
        let commandLine = LinuxGuest.commandLine("earlyprintk=serial console=ttyS0 swiftlet.test=early")
        let memoryMiB = 512
        let configuration = try LinuxGuest.configuration(commandLine: commandLine, cpus: 2, maxCPUs: 4, memoryMiB: memoryMiB)
        let memoryLine = try Regex(#"^Memory: (\d+)K/(\d+)K available"#)
        let start = MonotonicClock.nanoseconds()
        let run = try runGuest(configuration: configuration, timeout: 840) { machine, capture in
            try waitForOutput(capture, of: machine, timeout: 780) { $0.contains("Memory: ") && $0.contains("K available (") }
            machine.stop(reason: "the test saw the early boot log")
        }
        print("Linux early boot: the \"Memory:\" line after \(seconds(since: start)) s")
        guard case .stopped = run.exit else {
            Issue.record("the guest ended by itself: \(run.exit)\n\(run.output)")
            return
        }
        let messages = kernelMessages(run.output)
        func expectMessage(_ text: String, _ comment: String) {
            #expect(messages.contains(text), "\(comment): no line \"\(text)\" in\n\(run.output)")
        }
        func expectMessage(prefix: String, _ comment: String) {
            #expect(messages.contains { $0.hasPrefix(prefix) }, "\(comment): no line starting \"\(prefix)\" in\n\(run.output)")
        }

        // The banner and the command line, echoed back as given.
        expectMessage(prefix: "Linux version \(version) ", "version banner")
        expectMessage("Command line: \(commandLine)", "command line")

        // The e820 map: exactly the machine's memory map, entry by entry ...
        let map = run.machine.boot.memoryMap.entries
        let e820 = messages.filter { $0.hasPrefix("BIOS-e820: ") }
        let expectedE820 = map.map { entry in
            "BIOS-e820: [mem 0x\(hex(entry.range.start.rawValue, width: 16))-0x\(hex(entry.range.end - 1, width: 16))] "
                + e820TypeName(entry.type.rawValue)
        }
        #expect(e820 == expectedE820, "the kernel's e820 map is not the machine's:\n\(e820.joined(separator: "\n"))")
        // ... whose usable RAM is what --memory asked for: conventional
        // memory below the 0x9fc00 hole and the rest from 1 MiB.
        let usable = map.filter { $0.type.rawValue == 1 }.map { ($0.range.start.rawValue, $0.range.end) }
        #expect(usable.map(\.0) == [0, 0x10_0000] && usable.map(\.1) == [0x9_fc00, UInt64(memoryMiB) << 20],
                "usable ranges \(usable) do not describe \(memoryMiB) MiB")
        // "Memory: free/total": the total is the usable RAM in whole pages,
        // less page 0, which the kernel always reserves.
        if let match = messages.lazy.compactMap({ $0.firstMatch(of: memoryLine) }).first, let total = number(match, 2) {
            let pages = usable.reduce(UInt64(0)) { $0 + ($1.1 / 4096) - (($1.0 + 4095) / 4096) } - 1
            #expect(total == pages * 4, "Memory: total \(total)K, the e820 map's usable RAM is \(pages * 4)K")
        } else {
            Issue.record("no \"Memory: ...K/...K available\" line in\n\(run.output)")
        }

        // The ACPI tables, found at the RSDP the machine passed.
        expectMessage(prefix: "ACPI: RSDP 0x\(hex(run.machine.acpi.rsdpAddress, width: 16, uppercase: true)) ", "RSDP")
        for table in ["XSDT", "FACP", "DSDT", "APIC"] {
            expectMessage(prefix: "ACPI: \(table) 0x", "ACPI table \(table)")
        }
        #expect(!messages.contains { $0.contains("ACPI BIOS Error") || $0.contains("ACPI Error") || $0.contains("ACPI Warning") },
                "ACPI complained:\n\(messages.filter { $0.contains("ACPI") }.joined(separator: "\n"))")

        // The MADT: the IOAPIC (its version is the IOAPIC model's) and
        // 2 CPUs present plus 2 online-capable ones.
        let ioapic = try Regex(#"^IOAPIC\[0\]: apic_id 0, version \d+, address 0xfec00000, GSI 0-23$"#)
        #expect(messages.contains { $0.contains(ioapic) }, "no IOAPIC[0] line in\n\(run.output)")
        expectMessage("smpboot: Allowing 4 CPUs, 2 hotplug CPUs", "MADT CPUs")

        // The initrd, reserved where the loader put it (the kernel prints
        // the page-aligned range, end inclusive).
        if let initrd = run.machine.boot.initrd {
            let end = (initrd.end + 4095) / 4096 * 4096 - 1
            expectMessage("RAMDISK: [mem 0x\(hex(initrd.start.rawValue, width: 8))-0x\(hex(end, width: 8))]", "initrd")
        } else {
            Issue.record("the machine loaded no initrd")
        }
    }

    /// With the PVM assist, Linux runs on past its early boot: its ACPI
    /// interpreter loads Swiftlet's DSDT without an AML error, and the
    /// serial driver finds COM1 through the DSDT's PNP0501 device (PnP ACPI
    /// names it "00:0N"). The VM is stopped there, or ends at init's
    /// poweroff on a host where Linux gets that far. Five to ten minutes
    /// on a PVM host, where the initramfs is left out: unpacking it costs
    /// minutes of emulated kernel code, and the kernel's module requests
    /// wait for that before the serial driver runs.
    @Test(.enabled(if: LinuxGuest.isLongEnabled, LinuxGuest.longReason), .timeLimit(.minutes(30)))
    func acpiInterpreterLoadsTheDSDTAndFindsCOM1() throws {
        let commandLine = LinuxGuest.commandLine("earlyprintk=serial console=ttyS0 swiftlet.test=long" + LinuxGuest.pvmLongSwitches)
        // A hot-pluggable second CPU puts the CPU hot-plug device, its
        // methods and the GED in the DSDT, so the interpreter checks those too.
        var configuration = try LinuxGuest.configuration(commandLine: commandLine, cpus: 1, maxCPUs: 2, memoryMiB: 512,
                                                         initrd: !LinuxGuest.isPVMHost)
        configuration.pvmAssist = .on
        // "00:00: ttyS0 at I/O 0x3f8 (irq = 24, base_baud = 115200) is a 16550A".
        // The irq is Linux's number, not the GSI: with a hardware-reduced
        // FADT Linux has no legacy PIC, so even GSI 4 gets a dynamically
        // allocated number above the IOAPIC's 24 pins.
        let com1 = try Regex(#"^\d\d:\d\d: ttyS0 at I/O 0x3f8 \(irq = \d+, base_baud = 115200\) is a 16550A$"#)
        // Emulated kernel code trips the soft-lockup detector now and then
        // (parsing BTF takes 20-odd seconds), but a CPU stuck for minutes
        // is a hang (see `pvmClockSwitch`): end the test there rather than
        // at its time limit.
        let start = MonotonicClock.nanoseconds()
        let run = try runGuest(configuration: configuration, timeout: 1740) { machine, capture in
            // Any serial driver's ttyS0 line, or init's marker, ends the wait;
            // the checks below tell whether it came from the DSDT.
            try waitForOutput(capture, of: machine, timeout: 1680) {
                $0.contains(": ttyS0 at I/O 0x3f8") || $0.contains("SWIFTLET-LINUX-INIT ") || longestSoftLockup($0) >= 300
            }
            if !machine.hasEnded { machine.stop(reason: "the test saw COM1 found through ACPI, or a hang") }
        }
        let stuck = longestSoftLockup(run.output)
        if stuck >= 300 {
            Issue.record("the kernel hung: a CPU made no progress for \(stuck) s\n\(run.output)")
            return
        }
        let assisted = run.machine.instructionAssistStatistics.snapshot
        print("Linux with the PVM assist: COM1 found through ACPI after \(seconds(since: start)) s; \(assisted.summary)")
        switch run.exit {
        case .stopped, .poweredOff: break
        default: Issue.record("the guest ended by itself: \(run.exit)\n\(run.output)")
        }
        let messages = kernelMessages(run.output)
        func expectMessage(_ text: String, _ comment: String) {
            #expect(messages.contains(text), "\(comment): no line \"\(text)\" in\n\(run.output)")
        }
        // The interpreter loaded the DSDT (Swiftlet has no SSDTs) ...
        expectMessage("ACPI: 1 ACPI AML tables successfully acquired and loaded", "DSDT loaded")
        expectMessage("ACPI: Interpreter enabled", "ACPI interpreter")
        // ... without an error or warning from the interpreter (AML errors
        // are "ACPI Error: ..." / "ACPI BIOS Error (bug): ..." lines, with
        // the AE_ status).
        let complaints = messages.filter {
            $0.contains("ACPI Error") || $0.contains("ACPI BIOS Error") || $0.contains("ACPI Warning") || $0.contains("ACPI Exception")
                || $0.contains(" AE_")
        }
        #expect(complaints.isEmpty, "the ACPI interpreter complained:\n\(complaints.joined(separator: "\n"))")
        // ... and PnP ACPI enumerated the DSDT's devices, COM1 among them.
        #expect(messages.contains { $0.hasPrefix("pnp: PnP ACPI: found ") }, "no PnP ACPI enumeration in\n\(run.output)")
        #expect(messages.contains { $0.contains(com1) }, "COM1 not found through ACPI in\n\(run.output)")
    }
}

import Foundation
import Swiftlet
import SwiftletBoot
import SwiftletDevices
import SwiftletSystem
import Testing

/// Locating the repository, building the test guests and running them.
public enum TestGuests {
    /// The repository root, from this file's location.
    public static let repositoryRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// Builds every guest once per test process (`Guests/build` is
    /// incremental and takes seconds), so `swift test` needs no setup step.
    private static let buildResult: Result<Void, TestSetupError> = runScript("Guests/build")

    /// Runs a script of the repository (a path relative to its root) from
    /// the root, and fails with its output if it fails.
    public static func runScript(_ path: String) -> Result<Void, TestSetupError> {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: repositoryRoot + "/" + path)
        process.currentDirectoryURL = URL(fileURLWithPath: repositoryRoot)
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        do {
            try process.run()
        } catch {
            return .failure(TestSetupError("cannot run \(path): \(error)"))
        }
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            return .failure(TestSetupError("\(path) failed (\(process.terminationStatus)):\n" + String(decoding: output, as: UTF8.self)))
        }
        return .success(())
    }

    /// The built ELF of guest `name` (e.g. "hello").
    public static func path(_ name: String) throws -> String {
        try buildResult.get()
        let path = repositoryRoot + "/Guests/out/\(name).elf"
        guard FileManager.default.fileExists(atPath: path) else { throw TestSetupError("no guest named \(name) at \(path)") }
        return path
    }
}

public struct TestSetupError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Whether this machine can run KVM tests. Tests that need KVM are enabled
/// with `.enabled(if: KVMTestSupport.isAvailable, KVMTestSupport.reason)`:
/// they run wherever /dev/kvm exists and are reported as skipped, with this
/// reason, only where it does not.
public enum KVMTestSupport {
    public static let isAvailable: Bool = access("/dev/kvm", R_OK | W_OK) == 0
    public static let reason: Comment = "requires /dev/kvm (read-write)"
}


/// The outcome of running a guest in-process.
public struct GuestRun: Sendable {
    public let exit: MachineExit
    public let output: String
    public let machine: Machine

    /// Output lines, without the trailing empty line.
    public var lines: [String] { output.split(separator: "\n", omittingEmptySubsequences: false).map(String.init).filter { !$0.isEmpty } }
}

/// A configuration for guest `name` whose console is captured in memory.
public func guestConfiguration(_ name: String, cpus: Int = 1, memoryMiB: Int = 128, commandLine: String = "",
                               initrdPath: String? = nil, irqchip: InterruptControllerMode = .kernel) throws -> MachineConfiguration {
    var config = MachineConfiguration(kernel: .file(path: try TestGuests.path(name)), initrdPath: initrdPath,
                                      commandLine: commandLine, cpus: cpus, memoryMiB: memoryMiB, serial: .capture(ConsoleCapture()))
    config.irqchip = irqchip
    return config
}

/// Runs `guest` with its console captured; see `runGuest(configuration:)`.
public func runGuest(_ guest: String, cpus: Int = 1, memoryMiB: Int = 128, commandLine: String = "",
                     initrdPath: String? = nil, irqchip: InterruptControllerMode = .kernel, timeout: Double = 60,
                     whileRunning: (@Sendable (Machine, ConsoleCapture) throws -> Void)? = nil) throws -> GuestRun {
    try runGuest(configuration: guestConfiguration(guest, cpus: cpus, memoryMiB: memoryMiB, commandLine: commandLine,
                                                   initrdPath: initrdPath, irqchip: irqchip),
                 timeout: timeout, whileRunning: whileRunning)
}

/// Runs the `spin` guest with `cpus` vCPUs (and `maxCPUs` possible ones,
/// the spares parked) until every CPU spins, then stops it with `reason`:
/// a machine that ran and ended, for tests of what ending leaves behind.
public func runSpinGuestAndStop(cpus: Int, maxCPUs: Int? = nil, irqchip: InterruptControllerMode,
                                reason: String) throws -> GuestRun {
    var configuration = try guestConfiguration("spin", cpus: cpus, irqchip: irqchip)
    configuration.maxCPUs = maxCPUs
    return try runGuest(configuration: configuration) { machine, console in
        try waitForOutput(console, containing: "spin: \(cpus) CPUs spinning")
        machine.stop(reason: reason)
    }
}

/// Runs a VM until it ends; stops it after `timeout` seconds so a broken
/// guest or VMM fails the test instead of hanging it. `whileRunning` gets
/// the started machine and its console capture (to feed input, pause,
/// observe). The configuration's serial must be `.capture`.
public func runGuest(configuration: MachineConfiguration, timeout: Double = 60,
                     whileRunning: (@Sendable (Machine, ConsoleCapture) throws -> Void)? = nil) throws -> GuestRun {
    guard case .capture(let capture) = configuration.serial else {
        throw TestSetupError("runGuest needs a configuration with a captured console")
    }
    let machine = try Machine(configuration)
    try machine.start()
    let watchdog = Latch()
    let timer = try OSThread(name: "test-watchdog") {
        if !watchdog.wait(timeoutNanoseconds: Int64(timeout * 1e9)) {
            machine.stop(reason: "test timeout after \(timeout) s")
        }
    }
    defer {
        watchdog.signal()
        timer.join()
    }
    do {
        try whileRunning?(machine, capture)
    } catch {
        machine.stop(reason: "test failed while the guest ran")
        _ = machine.waitForExit()
        throw error
    }
    let exit = machine.waitForExit()
    return GuestRun(exit: exit, output: capture.text, machine: machine)
}

/// Types `text` into the machine's COM1, as a user at the console would,
/// waiting while the guest has not yet drained the receive FIFO.
public func typeIntoSerial(_ text: String, of machine: Machine) {
    var input = Array(text.utf8)[...]
    while !input.isEmpty {
        input = input.dropFirst(machine.serial.receive(input))
        if !input.isEmpty { usleep(1000) }
    }
}

/// Waits until `capture` has printed `text` (or `timeout` passes).
public func waitForOutput(_ capture: ConsoleCapture, containing text: String, timeout: Double = 30) throws {
    let deadline = MonotonicClock.nanoseconds() + Int64(timeout * 1e9)
    while !capture.text.contains(text) {
        guard MonotonicClock.nanoseconds() < deadline else {
            throw TestSetupError("timed out waiting for \"\(text)\"; output so far:\n\(capture.text)")
        }
        usleep(2_000)
    }
}

/// A configuration for the kernel at `kernelPath` (any image `swiftlet run
/// --kernel` takes) whose console is captured in memory, keeping up to
/// `consoleLimit` bytes.
public func guestConfiguration(kernelPath: String, initrdPath: String? = nil, commandLine: String = "", cpus: Int = 1,
                               maxCPUs: Int? = nil, memoryMiB: Int = 128,
                               consoleLimit: Int = 1 << 20) -> MachineConfiguration {
    var configuration = MachineConfiguration(kernel: .file(path: kernelPath), initrdPath: initrdPath, commandLine: commandLine,
                                             cpus: cpus, memoryMiB: memoryMiB,
                                             serial: .capture(ConsoleCapture(limit: consoleLimit)))
    configuration.maxCPUs = maxCPUs
    return configuration
}

/// Waits until `capture` has printed every line `isComplete` asks for:
/// polls the console text (every 50 ms) and returns when `isComplete`
/// returns true. Fails early if `machine` ends first, and after `timeout`
/// seconds, with the output so far.
public func waitForOutput(_ capture: ConsoleCapture, of machine: Machine, timeout: Double,
                          until isComplete: (String) -> Bool) throws {
    let deadline = MonotonicClock.nanoseconds() + Int64(timeout * 1e9)
    while true {
        let text = capture.text
        if isComplete(text) { return }
        if machine.hasEnded, isComplete(capture.text) == false {
            throw TestSetupError("the guest ended (\(machine.waitForExit())) before the output was complete; output:\n\(text)")
        }
        guard MonotonicClock.nanoseconds() < deadline else {
            throw TestSetupError("timed out after \(timeout) s waiting for the guest's output; output so far:\n\(text)")
        }
        usleep(50_000)
    }
}

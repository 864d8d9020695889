import Foundation
import Testing
import SwiftletTestSupport

/// End-to-end runs of the `swiftlet` executable, as a user runs it.
@Suite struct CommandTests {
    struct Result {
        let status: Int32
        let stdout: String
        let stderr: String
        var stderrLines: [String] { stderr.split(separator: "\n").map(String.init) }
    }

    /// The executable SwiftPM built next to this test bundle.
    static let executable: String = {
        let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: me).deletingLastPathComponent().appendingPathComponent("swiftlet").path
    }()

    static func swiftlet(_ arguments: [String], input: String? = nil, inputDelay: Double = 0,
                         whileRunning: ((Process) -> Void)? = nil) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let out = Pipe(), err = Pipe(), inPipe = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input == nil ? FileHandle.nullDevice : inPipe
        try process.run()
        if let input {
            Thread.sleep(forTimeInterval: inputDelay)
            inPipe.fileHandleForWriting.write(Data(input.utf8))
            try inPipe.fileHandleForWriting.close()
        }
        whileRunning?(process)
        // Read both pipes before waiting, so a chatty process cannot block.
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                      stderr: String(decoding: stderr, as: UTF8.self))
    }

    @Test func version() throws {
        let r = try Self.swiftlet(["--version"])
        #expect(r.status == 0)
        #expect(r.stdout == "swiftlet 0.1.0\n")
    }

    @Test func helpAndUsage() throws {
        let help = try Self.swiftlet(["help", "run"])
        #expect(help.status == 0 && help.stdout.contains("--boot-protocol auto|linux|pvh|multiboot|elf64"))
        let none = try Self.swiftlet([])
        #expect(none.status == 2 && none.stderr.contains("USAGE:"))
    }

    @Test(arguments: [
        (["frobnicate"], "swiftlet: error: unknown command 'frobnicate' (see 'swiftlet help')"),
        (["run", "--cpus", "0"], "swiftlet: error: --cpus must be between 1 and 1024, not 0"),
        (["run", "--bogus"], "swiftlet: error: unknown option '--bogus' for 'swiftlet run'"),
        (["run", "--kernel", "/nonexistent/k.elf"], "swiftlet: error: /nonexistent/k.elf: cannot open: No such file or directory"),
        (["run", "--kernel", "/"], "swiftlet: error: /: is a directory, not a kernel or initrd image"),
        (["run", "--serial", "file:/nonexistent/dir/log"], "swiftlet: error: --serial file:/nonexistent/dir/log: cannot open: No such file or directory"),
        (["kvm-info", "--bogus"], "swiftlet: error: unknown option '--bogus' for 'swiftlet kvm-info'"),
    ])
    func badInputIsOneLineAndStatusTwo(arguments: [String], message: String) throws {
        let r = try Self.swiftlet(arguments)
        #expect(r.status == 2)
        #expect(r.stderrLines == [message])
    }

    @Test func truncatedImageIsRefusedNamingTheFile() throws {
        let path = NSTemporaryDirectory() + "swiftlet-truncated-\(getpid()).elf"
        let hello = try Data(contentsOf: URL(fileURLWithPath: try TestGuests.path("hello")))
        try hello.prefix(100).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let r = try Self.swiftlet(["run", "--kernel", path])
        #expect(r.status == 2)
        #expect(r.stderrLines.count == 1)
        #expect(r.stderr.hasPrefix("swiftlet: error: \(path): "), "\(r.stderr)")
    }

    @Test func missingKVMIsStatusThree() throws {
        let r = try Self.swiftlet(["kvm-info", "--device", "/nonexistent/kvm"])
        #expect(r.status == 3)
        #expect(r.stderrLines == ["swiftlet: error: cannot open /nonexistent/kvm: No such file or directory (is the kvm module loaded?)"])
    }

    @Test(.enabled(if: KVMTestSupport.isAvailable, KVMTestSupport.reason))
    func kvmInfoDescribesTheHost() throws {
        let r = try Self.swiftlet(["kvm-info"])
        #expect(r.status == 0)
        #expect(r.stdout.contains("KVM API version: 12"))
        #expect(r.stdout.contains("KVM_CAP_IRQCHIP"))
        #expect(r.stdout.contains("Host:"))
    }

    @Test(.enabled(if: KVMTestSupport.isAvailable, KVMTestSupport.reason))
    func runBootsTheBuiltInGuest() throws {
        let r = try Self.swiftlet(["run", "--cpus", "2", "--memory", "64", "--cmdline", "from the test"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout == "Swiftlet default guest: 2 vCPUs, 64 MiB RAM\ncommand line: from the test\n")
        #expect(r.stderr.isEmpty)
    }

    @Test(.enabled(if: KVMTestSupport.isAvailable, KVMTestSupport.reason))
    func debugExitBecomesTheExitStatus() throws {
        let r = try Self.swiftlet(["run", "--kernel", try TestGuests.path("hello")])
        #expect(r.status == 33)
        #expect(r.stdout == "hello from the Swiftlet test guest\n")
    }

    @Test(.enabled(if: KVMTestSupport.isAvailable, KVMTestSupport.reason))
    func crashesAreDiagnosedOnStderr() throws {
        let r = try Self.swiftlet(["run", "--kernel", try TestGuests.path("triple-fault")])
        #expect(r.status == 8)
        let lines = r.stderrLines
        #expect(lines.first == "swiftlet: guest triple fault on vCPU 0: KVM_EXIT_SHUTDOWN (triple fault)")
        #expect(lines.contains { $0.contains("RIP=") && $0.contains("CS=0008") && $0.contains("CPL=0") })
        #expect(lines.contains { $0.contains("CR0=") && $0.contains("EFER=") })
        #expect(lines.contains { $0.hasPrefix("  bytes at RIP: 0f 0b") })
    }

    @Test(.enabled(if: KVMTestSupport.isAvailable, KVMTestSupport.reason))
    func stdinReachesTheGuestThroughTheUART() throws {
        // Sent both before the guest is ready and after it waits.
        for delay in [0.0, 0.5] {
            let r = try Self.swiftlet(["run", "--kernel", try TestGuests.path("serial")], input: "ping\n", inputDelay: delay)
            #expect(r.status == 33, "\(r.stdout)\(r.stderr)")
            #expect(r.stdout.contains("got: ping\n"))
        }
    }

    @Test(.enabled(if: KVMTestSupport.isAvailable, KVMTestSupport.reason))
    func serialToAFile() throws {
        let path = NSTemporaryDirectory() + "swiftlet-console-\(getpid()).log"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let r = try Self.swiftlet(["run", "--kernel", try TestGuests.path("hello"), "--serial", "file:\(path)"])
        #expect(r.status == 33)
        #expect(r.stdout.isEmpty)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "hello from the Swiftlet test guest\n")
    }

    @Test(.enabled(if: KVMTestSupport.isAvailable, KVMTestSupport.reason))
    func signalsEndTheVMCleanly() throws {
        let r = try Self.swiftlet(["run", "--kernel", try TestGuests.path("spin"), "--cpus", "2"]) { process in
            Thread.sleep(forTimeInterval: 1)
            kill(process.processIdentifier, SIGTERM)
        }
        #expect(r.status == 128 + SIGTERM)
        #expect(r.stdout.contains("spin: 2 CPUs spinning"))
        #expect(r.stderr.isEmpty)
    }
}

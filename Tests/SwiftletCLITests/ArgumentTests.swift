import Testing
import Swiftlet
import SwiftletBoot
@testable import SwiftletCLI

@Suite struct ArgumentTests {
    let parser = ArgumentParser(command: "t", options: [
        .init("cpus", value: "N", help: ""),
        .init("verbose", help: ""),
    ])

    @Test func acceptsBothValueForms() throws {
        #expect(try parser.parse(["--cpus", "2"]) == ["cpus": "2"])
        #expect(try parser.parse(["--cpus=2", "--verbose"]) == ["cpus": "2", "verbose": ""])
        #expect(try parser.parse(["--cpus="]) == ["cpus": ""])
    }

    @Test func refusesBadInvocationsWithOneLine() {
        #expect(throws: UsageError("unknown option '--cpu' for 't'")) { try parser.parse(["--cpu", "2"]) }
        #expect(throws: UsageError("option '--cpus' needs a value (N)")) { try parser.parse(["--cpus"]) }
        #expect(throws: UsageError("option '--cpus' given more than once")) { try parser.parse(["--cpus", "1", "--cpus=2"]) }
        #expect(throws: UsageError("option '--verbose' takes no value")) { try parser.parse(["--verbose=yes"]) }
        #expect(throws: UsageError("unexpected argument 'kernel.elf' for 't'")) { try parser.parse(["kernel.elf"]) }
        #expect(throws: UsageError("unexpected argument '--' for 't'")) { try parser.parse(["--"]) }
    }

    @Test func runOptionsBecomeOneConfiguration() throws {
        let options = try RunOptions.parse(
            ["--kernel", "k.elf", "--initrd=i.img", "--cmdline", "a b", "--cpus", "4", "--memory", "256",
             "--serial", "file:/tmp/c.log", "--boot-protocol", "multiboot", "--log-level", "debug"],
            defaultKernel: .image(name: "default", bytes: []))
        let c = options.configuration
        guard case .file(let path) = c.kernel else { Issue.record("kernel"); return }
        #expect(path == "k.elf")
        #expect(c.initrdPath == "i.img")
        #expect(c.commandLine == "a b")
        #expect(c.cpus == 4)
        #expect(c.memoryMiB == 256)
        guard case .file(let log) = c.serial else { Issue.record("serial"); return }
        #expect(log == "/tmp/c.log")
        #expect(c.bootProtocol == .multiboot)
        #expect(options.logLevel == .debug)
    }

    @Test func defaultsUseTheBuiltInGuest() throws {
        let c = try RunOptions.parse([], defaultKernel: .image(name: "built-in", bytes: [1, 2])).configuration
        guard case .image(let name, let bytes) = c.kernel else { Issue.record("kernel"); return }
        #expect(name == "built-in" && bytes == [1, 2])
        #expect(c.cpus == 1 && c.memoryMiB == 128 && c.commandLine.isEmpty && c.bootProtocol == .automatic)
    }

    @Test(arguments: [
        (["--cpus", "0"], "--cpus must be between 1 and 1024, not 0"),
        (["--cpus", "x"], "--cpus: 'x' is not a whole number"),
        (["--cpus", "99999999999999999999"], "--cpus: '99999999999999999999' is not a whole number"),
        (["--memory", "2"], "--memory must be between 4 and 1048576, not 2"),
        (["--cpus", "4", "--max-cpus", "2"], "--max-cpus must be between --cpus (4) and 1024, not 2"),
        (["--serial", "tty"], "--serial must be stdio, none or file:PATH, not 'tty'"),
        (["--serial", "file:"], "--serial file: needs a path, as in file:/tmp/console.log"),
        (["--boot-protocol", "bios"], "--boot-protocol must be auto, linux, pvh, multiboot or elf64, not 'bios'"),
        (["--log-level", "loud"], "--log-level must be error, warning, info or debug, not 'loud'"),
        (["--kernel", ""], "--kernel needs a path"),
        (["--cmdline", "a\u{0}b"], "--cmdline must not contain a NUL byte"),
    ])
    func refusesBadValues(arguments: [String], message: String) {
        #expect(throws: UsageError(message)) {
            try RunOptions.parse(arguments, defaultKernel: .image(name: "d", bytes: []))
        }
    }

    @Test func refusesACommandLineThatDoesNotFit() {
        #expect(throws: UsageError.self) {
            try RunOptions.parse(["--cmdline", String(repeating: "x", count: 70_000)], defaultKernel: .image(name: "d", bytes: []))
        }
    }
}

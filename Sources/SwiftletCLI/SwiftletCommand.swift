import Glibc
import Swiftlet
import SwiftletKVM
import SwiftletSystem

/// The `swiftlet` command: parses its arguments, runs a subcommand and
/// returns the process exit status (docs/boot-protocol.md lists them).
public enum SwiftletCommand {
    public static let version = "0.1.0"

    /// `defaultGuest` is the image `run` boots when no `--kernel` is given.
    public static func main(_ arguments: [String], defaultGuest: @autoclosure () -> [UInt8]) -> Int32 {
        guard let command = arguments.first else {
            writeError(usage)
            return ExitStatus.usage
        }
        let rest = arguments.dropFirst()
        switch command {
        case "run":
            if rest.contains("--help") || rest.contains("-h") { print(runHelp); return ExitStatus.success }
            return RunCommand.run(rest, defaultGuest: defaultGuest())
        case "kvm-info":
            return KVMInfoCommand.run(rest)
        case "vcpus":
            return VCPUsCommand.run(rest)
        case "--version", "-V", "version":
            guard rest.isEmpty else { return usageError(UsageError("'\(command)' takes no arguments")) }
            print("swiftlet \(version)")
            return ExitStatus.success
        case "--help", "-h", "help":
            switch rest.first {
            case nil: print(usage)
            case "run": print(runHelp)
            case "kvm-info": print(KVMInfoCommand.help)
            case "vcpus": print(VCPUsCommand.help)
            case let other?: return usageError(UsageError("no help for unknown command '\(other)'"))
            }
            return ExitStatus.success
        default:
            return usageError(UsageError("unknown command '\(command)' (see 'swiftlet help')"))
        }
    }

    static func usageError(_ error: UsageError) -> Int32 {
        writeError("swiftlet: error: \(error.message)")
        return ExitStatus.usage
    }

    static func writeError(_ line: String) {
        Log.writeLine(line)
    }

    static let usage = """
        Swiftlet \(version) — a virtual machine monitor for Linux KVM

        USAGE:
          swiftlet run [options]      boot a VM (the built-in guest when no --kernel is given)
          swiftlet kvm-info           what this host's KVM offers Swiftlet
          swiftlet vcpus ACTION       list, add or remove a running VM's vCPUs (--api-socket)
          swiftlet --version          print the version
          swiftlet help [command]     show help

        EXIT STATUS (run):
          0 the guest powered off; odd: the guest's debug-exit value v as (v << 1) | 1;
          2 bad invocation or input; 3 /dev/kvm missing or unusable; 4 guest reset request;
          6 host failure; 8 triple fault; 10 KVM internal/emulation error; 12 VM entry failed;
          14 unhandled exit; 16 stopped by the host; 128+n killed by signal n
        """

    static var runHelp: String {
        """
        USAGE: swiftlet run [options]

        OPTIONS:
        \(RunOptions.parser.optionsHelp)

        With --serial stdio and a terminal on stdin, the console is raw: Ctrl-C goes
        to the guest; Ctrl-A x ends the VM, Ctrl-A Ctrl-A sends Ctrl-A.
        """
    }
}

import Glibc
import Swiftlet
import SwiftletAPI
import SwiftletSystem
import SwiftletVCPU
import Synchronization

/// `swiftlet run`.
enum RunCommand {
    static func run(_ arguments: ArraySlice<String>, defaultGuest: @autoclosure () -> [UInt8]) -> Int32 {
        let options: RunOptions
        do {
            options = try RunOptions.parse(arguments, defaultKernel: .image(name: "the built-in guest", bytes: defaultGuest()))
        } catch {
            return SwiftletCommand.usageError(error)
        }
        Log.level = options.logLevel

        // A closed stdout pipe must show up as EPIPE on the console's writes
        // (counted there), not kill the VMM.
        signal(SIGPIPE, SIG_IGN)
        // SIGINT, SIGTERM and SIGHUP are taken by a thread of ours with
        // sigwait, so they end the VM cleanly (terminal restored, threads
        // joined). Blocked before any other thread exists, so all inherit it.
        let endSignals = [SIGINT, SIGTERM, SIGHUP]
        var set = sigset_t()
        sigemptyset(&set)
        for s in endSignals { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)

        let machine: Machine
        do {
            machine = try Machine(options.configuration)
        } catch {
            SwiftletCommand.writeError("swiftlet: error: \(error)")
            return error.exitStatus
        }
        var apiServer: APIServer?
        if let path = options.apiSocketPath {
            var router = APIRouter()
            router.addVCPUResource(machine)
            do {
                apiServer = try APIServer(socketPath: path, router: router)
            } catch {
                SwiftletCommand.writeError("swiftlet: error: \(error)")
                if case .system = error { return ExitStatus.hostFailure }
                return ExitStatus.usage
            }
        }
        defer { apiServer?.shutdown() }
        let caught = SignalCatcher()
        do {
            let waitSet = set
            _ = try OSThread(name: "swiftlet-sig", stackSize: 64 * 1024) {
                var signalNumber: Int32 = 0
                var s = waitSet
                guard sigwait(&s, &signalNumber) == 0 else { return }
                caught.record(signalNumber)
                machine.stop(reason: "signal \(signalNumber)")
            }
            try machine.start()
        } catch {
            SwiftletCommand.writeError("swiftlet: error: \(error)")
            _ = machine.waitForExit()
            return ExitStatus.hostFailure
        }
        let exit = machine.waitForExit()
        let assisted = machine.instructionAssistStatistics.snapshot
        if assisted.total > 0 {
            SwiftletCommand.writeError("swiftlet: \(assisted.summary)")
        }
        switch exit {
        case .poweredOff, .debugExit:
            Log.info(exit.description)
        case .stopped:
            if let n = caught.signal { return 128 + n }
            SwiftletCommand.writeError("swiftlet: \(exit)")
        case .resetRequested, .crashed, .hostFailure:
            SwiftletCommand.writeError("swiftlet: \(exit)")
        }
        return exit.exitStatus
    }
}

/// The signal that ended the VM, if one did.
private final class SignalCatcher: Sendable {
    private let value = Locked<Int32?>(nil)
    func record(_ n: Int32) { value.withLock { $0 = n } }
    var signal: Int32? { value.withLock { $0 } }
}



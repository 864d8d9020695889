import Testing
import Swiftlet
import SwiftletKVM
import SwiftletVCPU
import SwiftletTestSupport

/// The PVM instruction assist end to end, with the `pvm-assist` guest: at
/// CPL 0 it runs each instruction PVM's emulator lacks and checks the
/// results against the processor's semantics. On PVM hosts every one of
/// them reaches the assist; on hardware-virtualization hosts none does, and
/// the guest's results must be the same.
@Suite(.enabled(if: KVMTestSupport.isAvailable, KVMTestSupport.reason))
struct PVMAssistTests {
    static let isPVM = KVMHostKind.detect() == .pvm

    static let expectedLines = [
        "int3", "stac/clac", "fwait",
        "popcnt r64", "popcnt r32", "popcnt r16", "popcnt zero", "popcnt rip-relative", "popcnt across pages", "popcnt gs:",
        "popcnt in an interrupt shadow",
        "ldmxcsr/stmxcsr", "ldmxcsr reserved bit",
        "fxsave64", "fxsave (32-bit format)", "fxsave accessed/dirty", "fxrstor64",
        "fxsave misaligned", "fxsave into an unmapped page", "fxsave with CR0.TS",
    ].map { "pvm-assist: \($0): ok" } + ["pvm-assist: all ok"]

    /// What this PVM host's emulator leaves to the assist, measured: every
    /// instruction the guest runs except `fxsave` with CR0.TS set, whose
    /// #NM the emulator raises itself. Three raise exceptions: ldmxcsr of a
    /// reserved bit (#GP), a misaligned fxsave (#GP) and one into an
    /// unmapped page (#PF).
    static let pvmCounts = InstructionAssistCounts(
        byKind: [.int3: 1, .clac: 1, .stac: 1, .fwait: 1, .popcnt: 8, .ldmxcsr: 3, .stmxcsr: 1, .fxsave: 5, .fxrstor: 1],
        exceptionsRaised: 3)

    func run(_ mode: InstructionAssist.Mode) throws -> GuestRun {
        var configuration = try guestConfiguration("pvm-assist")
        configuration.pvmAssist = mode
        return try runGuest(configuration: configuration)
    }

    @Test(arguments: [InstructionAssist.Mode.on, .automatic])
    func completesEachInstructionExactly(mode: InstructionAssist.Mode) throws {
        let run = try run(mode)
        #expect(run.exit == .debugExit(code: 0x10), "\(run.exit)\n\(run.output)")
        #expect(run.lines == Self.expectedLines)
        let counts = run.machine.instructionAssistStatistics.snapshot
        if Self.isPVM {
            #expect(counts == Self.pvmCounts, "\(counts)")
            #expect(counts.summary == "PVM assist completed 22 instructions: int3 1, clac 1, stac 1, fwait 1, popcnt 8, "
                + "ldmxcsr 3, stmxcsr 1, fxsave 5, fxrstor 1, 3 raised an exception")
        } else {
            #expect(counts.total == 0, "hardware executes these instructions itself: \(counts)")
        }
    }

    @Test func withoutTheAssistPVMStopsAtTheFirstOne() throws {
        let run = try run(.off)
        #expect(run.machine.instructionAssistStatistics.snapshot.total == 0)
        guard Self.isPVM else {
            #expect(run.exit == .debugExit(code: 0x10), "\(run.output)")
            return
        }
        guard case .crashed(let diagnosis) = run.exit else {
            Issue.record("expected the emulation failure to stop the VM, got \(run.exit)\n\(run.output)")
            return
        }
        #expect(diagnosis.kind == .internalError)
        #expect(diagnosis.exit.contains("instruction emulation failed"))
        #expect(diagnosis.instructionBytes?.first == 0xcc, "int3 comes first")
        #expect(diagnosis.cpl == 0)
        #expect(run.exit.exitStatus == 10)
        #expect(run.lines.isEmpty)
    }

    /// Failures the assist does not complete still stop the VM as before.
    @Test func otherEmulationFailuresStillStopTheVM() throws {
        var configuration = try guestConfiguration("emulation-failure")
        configuration.pvmAssist = .on
        let run = try runGuest(configuration: configuration)
        guard case .crashed(let diagnosis) = run.exit else {
            Issue.record("expected a crash, got \(run.exit)")
            return
        }
        #expect(diagnosis.kind == .internalError)
        #expect(diagnosis.rip == 0xd000_0000)
        #expect(run.exit.exitStatus == 10)
        #expect(run.machine.instructionAssistStatistics.snapshot.total == 0)
    }
}

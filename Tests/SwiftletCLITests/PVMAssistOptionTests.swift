import Testing
import Swiftlet
import SwiftletKVM
import SwiftletTestSupport
import SwiftletVCPU
@testable import SwiftletCLI

/// `swiftlet run --pvm-assist` and the summary line it prints at exit.
@Suite struct PVMAssistOptionTests {
    @Test(arguments: [
        ([], InstructionAssist.Mode.automatic),
        (["--pvm-assist", "auto"], .automatic),
        (["--pvm-assist", "on"], .on),
        (["--pvm-assist=off"], .off),
    ] as [([String], InstructionAssist.Mode)])
    func parsesTheMode(arguments: [String], mode: InstructionAssist.Mode) throws {
        let options = try RunOptions.parse(arguments, defaultKernel: .image(name: "d", bytes: []))
        #expect(options.configuration.pvmAssist == mode)
    }

    @Test func refusesOtherValues() {
        #expect(throws: UsageError("--pvm-assist must be on, off or auto, not 'yes'")) {
            try RunOptions.parse(["--pvm-assist", "yes"], defaultKernel: .image(name: "d", bytes: []))
        }
    }

    @Test(.enabled(if: KVMTestSupport.isAvailable, KVMTestSupport.reason))
    func runPrintsASummaryWhenTheAssistWorked() throws {
        let r = try CommandTests.swiftlet(["run", "--kernel", TestGuests.path("pvm-assist"), "--serial", "none"])
        #expect(r.status == 33, "\(r.stderr)")
        let summaries = r.stderrLines.filter { $0.hasPrefix("swiftlet: PVM assist completed") }
        if KVMHostKind.detect() == .pvm {
            #expect(summaries == ["swiftlet: PVM assist completed 22 instructions: int3 1, clac 1, stac 1, fwait 1, popcnt 8, "
                + "ldmxcsr 3, stmxcsr 1, fxsave 5, fxrstor 1, 3 raised an exception"])
        } else {
            #expect(summaries.isEmpty, "nothing needs the assist on hardware")
        }
        let off = try CommandTests.swiftlet(["run", "--kernel", TestGuests.path("pvm-assist"), "--serial", "none", "--pvm-assist", "off"])
        #expect(!off.stderr.contains("PVM assist completed"))
    }
}

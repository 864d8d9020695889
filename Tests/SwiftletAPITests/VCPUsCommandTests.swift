import Testing
@testable import SwiftletAPI
@testable import SwiftletCLI

/// `swiftlet vcpus` against a server with a fake vCPU set.
@Suite(.serialized) struct VCPUsCommandTests {
    let directory = TemporaryDirectory()
    var socketPath: String { directory.file("api.sock") }

    func withServer(_ fake: FakeVCPUSet = FakeVCPUSet(), _ body: () throws -> Void) throws {
        var router = APIRouter()
        router.addVCPUResource(fake)
        let server = try APIServer(socketPath: socketPath, router: router)
        defer { server.shutdown() }
        try body()
    }

    func vcpus(_ arguments: String...) -> VCPUsCommand.Outcome {
        VCPUsCommand.perform(ArraySlice(arguments))
    }

    @Test func listAddRemoveSet() throws {
        let fake = FakeVCPUSet(boot: 1, present: 2, max: 4)
        try withServer(fake) {
            let list = vcpus("list", "--api-socket", socketPath)
            #expect(list == VCPUsCommand.Outcome(status: 0, output: """
                2 vCPUs present (1 at boot, at most 4)
                INDEX  APIC ID  STATE
                0      0        running
                1      1        running
                """))
            #expect(vcpus("add", "3", "--api-socket", socketPath) == .init(status: 0, output: "added vCPU 3"))
            // Options may come first.
            #expect(vcpus("--api-socket=\(socketPath)", "remove", "1") == .init(status: 0, output: "removal of vCPU 1 requested: it goes when the guest ejects it"))
            #expect(fake.vcpuSet().vcpus.map(\.index) == [0, 3])
            #expect(vcpus("set", "1", "--api-socket", socketPath) == .init(status: 0, output: "1 vCPU present"))
            #expect(fake.vcpuSet().vcpus.map(\.index) == [0])
        }
    }

    @Test func refusalsPrintTheReason() throws {
        try withServer {
            #expect(vcpus("remove", "0", "--api-socket", socketPath)
                == .init(status: VCPUsCommand.requestRefused, error: "vCPU 0 is a boot CPU and cannot be removed"))
            #expect(vcpus("add", "9", "--api-socket", socketPath).status == VCPUsCommand.requestRefused)
            #expect(vcpus("set", "0", "--api-socket", socketPath).error
                == "vCPU count 0 is out of range: it must be between 1 (the boot CPUs) and 4 (--max-cpus)")
        }
    }

    @Test func cannotConnect() {
        let outcome = vcpus("list", "--api-socket", socketPath)
        #expect(outcome.status == VCPUsCommand.cannotConnect)
        #expect(outcome.error == "cannot connect to the API socket \(socketPath): No such file or directory")
    }

    @Test(arguments: [
        ([], "'swiftlet vcpus' needs an action: list, add INDEX, remove INDEX or set COUNT"),
        (["list"], "'swiftlet vcpus' needs --api-socket PATH"),
        (["frob", "--api-socket", "x"], "unknown action 'frob' for 'swiftlet vcpus' (list, add, remove, set)"),
        (["add", "--api-socket", "x"], "'swiftlet vcpus add' needs INDEX"),
        (["add", "two", "--api-socket", "x"], "INDEX must be a whole number, not 'two'"),
        (["set", "-1", "--api-socket", "x"], "COUNT must be a whole number, not '-1'"),
        (["remove", "1", "2", "--api-socket", "x"], "unexpected argument '2' for 'swiftlet vcpus remove'"),
        (["list", "all", "--api-socket", "x"], "unexpected argument 'all' for 'swiftlet vcpus list'"),
        (["list", "--api-socket"], "option '--api-socket' needs a value (PATH)"),
        (["list", "--socket", "x"], "unknown option '--socket' for 'swiftlet vcpus'"),
    ])
    func badInvocations(_ arguments: [String], _ message: String) {
        #expect(VCPUsCommand.perform(ArraySlice(arguments)) == .init(status: 2, error: message))
    }

    @Test func help() {
        let outcome = vcpus("--help")
        #expect(outcome.status == 0 && outcome.output.contains("swiftlet vcpus remove INDEX --api-socket PATH"))
    }
}

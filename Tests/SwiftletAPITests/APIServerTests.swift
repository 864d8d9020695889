import Glibc
import SwiftletSystem
import Testing
@testable import SwiftletAPI

/// The server over a real Unix socket, with a fake vCPU set standing in for
/// the machine. Serialized: some tests count the process's descriptors.
@Suite(.serialized) struct APIServerTests {
    let directory = TemporaryDirectory()
    var socketPath: String { directory.file("api.sock") }

    func start(_ control: FakeVCPUSet, limits: APIServerLimits = APIServerLimits()) throws -> APIServer {
        var router = APIRouter()
        router.addVCPUResource(control)
        return try APIServer(socketPath: socketPath, router: router, limits: limits)
    }

    func client() -> APIClient { APIClient(socketPath: socketPath, timeoutSeconds: 10) }

    @Test func readsAndChangesTheSet() throws {
        let fake = FakeVCPUSet(boot: 1, present: 2, max: 4)
        let server = try start(fake)
        defer { server.shutdown() }

        let list = try client().send("GET", "/vcpus")
        #expect(list.status == .ok && list.headers["Content-Type"] == "application/json")
        #expect(String(decoding: list.body, as: UTF8.self)
            == #"{"boot_cpus":1,"max_cpus":4,"vcpus":[{"index":0,"apic_id":0,"state":"running"},{"index":1,"apic_id":1,"state":"running"}]}"#)

        #expect(try client().send("PUT", "/vcpus/3").status == .noContent)
        #expect(fake.vcpuSet().vcpus.map(\.index) == [0, 1, 3])
        #expect(try client().send("DELETE", "/vcpus/1").status == .noContent)
        #expect(fake.vcpuSet().vcpus.map(\.index) == [0, 3])
        let set = try client().send("PUT", "/vcpus", json: ["count": 4])
        #expect(set.status == .noContent && set.body.isEmpty)
        #expect(fake.vcpuSet().vcpus.count == 4)
        let parsed = try #require(try client().send("GET", "/vcpus").json().flatMap(VCPUSetDescription.init(json:)))
        #expect(parsed == fake.vcpuSet())
    }

    @Test(arguments: [
        ("DELETE", "/vcpus/0", nil, 400, "vCPU 0 is a boot CPU and cannot be removed"),
        ("PUT", "/vcpus/4", nil, 400, "vCPU index 4 is out of range: this VM has at most 4 vCPUs (indexes 0-3; see --max-cpus)"),
        ("PUT", "/vcpus", #"{"count": 5}"#, 400, "vCPU count 5 is out of range: it must be between 1 (the boot CPUs) and 4 (--max-cpus)"),
        ("PUT", "/vcpus/1", nil, 409, "vCPU 1 is already present"),
        ("DELETE", "/vcpus/3", nil, 409, "vCPU 3 is not present"),
        ("PUT", "/vcpus/x1", nil, 400, "'x1' is not a vCPU index (a whole number such as 1)"),
        ("PUT", "/vcpus/-1", nil, 400, "'-1' is not a vCPU index (a whole number such as 1)"),
        ("PUT", "/vcpus/99999999999", nil, 400, "'99999999999' is not a vCPU index (a whole number such as 1)"),
        ("PUT", "/vcpus/2", "[1]", 400, "this request takes no body (or {})"),
        ("PUT", "/vcpus", nil, 400, "the request needs a JSON body"),
        ("PUT", "/vcpus", "{\"count\": 2", 400, "the body is not valid JSON: invalid JSON at byte 11: unexpected end of input, expected ',' or '}'"),
        ("PUT", "/vcpus", "[2]", 400, "the body must be an object like {\"count\": 2}, not an array"),
        ("PUT", "/vcpus", #"{"count": "2"}"#, 400, "\"count\" must be an integer, not a string"),
        ("PUT", "/vcpus", #"{"count": 2.0}"#, 400, "\"count\" must be an integer, not a number with a fraction or exponent"),
        ("PUT", "/vcpus", #"{"count": 2, "force": true}"#, 400, "unknown field \"force\" (the body is {\"count\": N})"),
        ("PUT", "/vcpus", "{}", 400, "missing field \"count\""),
        ("GET", "/machine", nil, 404, "no resource at /machine"),
        ("GET", "/vcpus/1", nil, 405, "GET is not allowed on /vcpus/1 (allowed: PUT, DELETE)"),
        ("POST", "/vcpus", nil, 405, "POST is not allowed on /vcpus (allowed: GET, PUT)"),
    ] as [(String, String, String?, Int, String)])
    func refusals(_ method: String, _ path: String, _ body: String?, _ status: Int, _ message: String) throws {
        let server = try start(FakeVCPUSet(boot: 1, present: 2, max: 4))
        defer { server.shutdown() }
        var request = HTTPRequest(method: method, target: path, headers: ["Connection": "close"])
        if let body { request.body = Array(body.utf8) }
        let response = try client().send(request)
        #expect(response.status.code == status)
        #expect(response.faultMessage == message)
        if status == 405 { #expect(response.headers["Allow"] != nil) }
    }

    @Test func internalFailureIs500() throws {
        let fake = FakeVCPUSet()
        fake.state.withLock { $0.failAdds = true }
        let server = try start(fake)
        defer { server.shutdown() }
        let response = try client().send("PUT", "/vcpus/2")
        #expect(response.status.code == 500 && response.faultMessage == "KVM_CREATE_VCPU failed: out of memory")
    }

    /// While one change runs, another gets 409 at once and reads still work.
    @Test func concurrentMutationsConflict() throws {
        let fake = FakeVCPUSet(boot: 1, present: 2, max: 4, gated: true)
        let server = try start(fake)
        defer { server.shutdown() }
        let first = Locked<HTTPResponse?>(nil)
        let client = client()
        let background = try Background {
            first.withLock { $0 = try? client.send("DELETE", "/vcpus/1") }
        }
        #expect(fake.entered.wait(timeoutNanoseconds: 10_000_000_000))

        for (method, path, json) in [("PUT", "/vcpus/3", nil), ("PUT", "/vcpus", ["count": 1] as JSONValue?), ("DELETE", "/vcpus/1", nil)] {
            let racing = try client.send(method, path, json: json)
            #expect(racing.status.code == 409)
            #expect(racing.faultMessage == "another request that changes the VM is in progress; retry when it completes")
        }
        let read = try client.send("GET", "/vcpus")
        #expect(read.status == .ok)

        fake.gate.signal()
        background.join()
        #expect(first.withLock { $0?.status } == .noContent)
        // The worker is free again.
        #expect(try client.send("PUT", "/vcpus/1").status == .noContent)
    }

    /// Many clients at once: every answer is a success or a 409, never
    /// anything else, and the set ends consistent.
    @Test func manyClients() throws {
        let fake = FakeVCPUSet(boot: 1, present: 1, max: 8)
        let server = try start(fake)
        defer { server.shutdown() }
        let statuses = Locked<[Int: Int]>([:])
        let client = client()
        var threads: [Background] = []
        for t in 0..<4 {
            threads.append(try Background {
                for i in 0..<50 {
                    let response: HTTPResponse?
                    switch (t + i) % 3 {
                    case 0: response = try? client.send("GET", "/vcpus")
                    case 1: response = try? client.send("PUT", "/vcpus/\(1 + (t + i) % 7)")
                    default: response = try? client.send("DELETE", "/vcpus/\(1 + (t * i) % 7)")
                    }
                    statuses.withLock { $0[response?.status.code ?? 0, default: 0] += 1 }
                }
            })
        }
        for thread in threads { thread.join() }
        let seen = statuses.withLock { $0 }
        #expect(Set(seen.keys).isSubset(of: [200, 204, 409]), "\(seen)")
        #expect(seen.values.reduce(0, +) == 200)
        #expect(seen[200] ?? 0 > 0)
    }

    @Test func pipelinedRequestsAnswerInOrder() throws {
        let fake = FakeVCPUSet()
        let server = try start(fake)
        defer { server.shutdown() }
        let connection = try TestConnection(socketPath)
        try connection.send("GET /vcpus HTTP/1.1\r\n\r\nPUT /vcpus/2 HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
                            + "DELETE /vcpus/2 HTTP/1.1\r\n\r\nGET /vcpus HTTP/1.1\r\nConnection: close\r\n\r\n")
        #expect(try connection.response()?.status == .ok)
        // Pipelined changes on one connection run one after the other: no 409.
        #expect(try connection.response()?.status == .noContent)
        #expect(try connection.response()?.status == .noContent)
        let last = try #require(try connection.response())
        #expect(last.status == .ok && last.headers["Connection"] == "close")
        #expect(try connection.response() == nil)
    }

    @Test func keepAliveServesManyRequests() throws {
        let server = try start(FakeVCPUSet())
        defer { server.shutdown() }
        let connection = try TestConnection(socketPath)
        for _ in 0..<20 {
            try connection.send("GET /vcpus HTTP/1.1\r\nHost: localhost\r\n\r\n")
            #expect(try connection.response()?.status == .ok)
        }
        // HTTP/1.0 closes unless asked not to.
        try connection.send("GET /vcpus HTTP/1.0\r\n\r\n")
        #expect(try connection.response()?.status == .ok)
        #expect(connection.waitForClose())
    }

    @Test(arguments: [
        ("\u{16}\u{3}\u{1}\u{0}\u{a5}\u{1}\u{0}", 400),
        ("HELLO\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost localhost\r\n\r\n", 400),
        ("GET / HTTP/3.0\r\n\r\n", 505),
        ("PUT /vcpus HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n{\"count\r\n0\r\n\r\n", 501),
        ("PUT /vcpus HTTP/1.1\r\nContent-Length: 100000\r\n\r\n", 413),
        ("GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 9000), 431),
    ])
    func badInputGetsAnErrorAndAClose(_ input: String, _ status: Int) throws {
        let server = try start(FakeVCPUSet())
        defer { server.shutdown() }
        let connection = try TestConnection(socketPath)
        try connection.send(input)
        let response = try #require(try connection.response())
        #expect(response.status.code == status)
        #expect(response.headers["Connection"] == "close" && response.faultMessage != nil)
        #expect(connection.waitForClose())
        // The server is still there for others.
        #expect(try client().send("GET", "/vcpus").status == .ok)
    }

    @Test func clientsThatDisconnectMidRequest() throws {
        let fake = FakeVCPUSet()
        let server = try start(fake)
        defer { server.shutdown() }
        // Mid-head, mid-body, and right after a change was sent.
        for partial in ["GET /vcp", "PUT /vcpus HTTP/1.1\r\nContent-Length: 20\r\n\r\n{\"cou", "PUT /vcpus/3 HTTP/1.1\r\n\r\n"] {
            let connection = try TestConnection(socketPath)
            try connection.send(partial)
        }
        // The change from the last one still happens; its answer has nowhere to go.
        for _ in 0..<100 where fake.vcpuSet().vcpus.count != 3 { usleep(10_000) }
        #expect(fake.vcpuSet().vcpus.map(\.index) == [0, 1, 3])
        #expect(try client().send("DELETE", "/vcpus/3").status == .noContent)
    }

    @Test func halfClosedClientStillGetsItsAnswers() throws {
        let server = try start(FakeVCPUSet())
        defer { server.shutdown() }
        let connection = try TestConnection(socketPath)
        try connection.send("PUT /vcpus/2 HTTP/1.1\r\n\r\nGET /vcpus HTTP/1.1\r\n\r\n")
        connection.finishSending()
        #expect(try connection.response()?.status == .noContent)
        #expect(try connection.response()?.status == .ok)
        #expect(try connection.response() == nil)
    }

    @Test func expectContinue() throws {
        let server = try start(FakeVCPUSet())
        defer { server.shutdown() }
        let connection = try TestConnection(socketPath)
        try connection.send("PUT /vcpus HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n")
        #expect(try connection.response(interim: true)?.status == .continue)
        try connection.send("{\"count\":3}")
        #expect(try connection.response()?.status == .noContent)
    }

    @Test func shutdownWithAClientConnected() throws {
        let baseline = openDescriptorCount()
        let server = try start(FakeVCPUSet())
        let idle = try TestConnection(socketPath)
        #expect(try client().send("GET", "/vcpus").status == .ok)
        try idle.send("GET /vcpus HTTP/1.1\r\nHost: loc")
        server.shutdown()
        #expect(idle.waitForClose())
        #expect(access(socketPath, F_OK) != 0, "the socket file is removed")
        #expect(throws: APIClientError.self) { try client().send("GET", "/vcpus") }
        server.shutdown()  // again: nothing to do
        #expect(!server.isRunning)
        _ = consume idle
        #expect(openDescriptorCount() == baseline)
    }

    /// Shutting down waits for a change in progress rather than abandoning
    /// it halfway.
    @Test func shutdownWaitsForARunningChange() throws {
        let fake = FakeVCPUSet(gated: true)
        let server = try start(fake)
        let client = client()
        let answer = Locked<Result<HTTPResponse, APIClientError>?>(nil)
        let request = try Background {
            let result = Result { () throws(APIClientError) in try client.send("DELETE", "/vcpus/1") }
            answer.withLock { $0 = result }
        }
        #expect(fake.entered.wait(timeoutNanoseconds: 10_000_000_000))
        let stopped = Latch()
        let stopper = try Background {
            server.shutdown()
            stopped.signal()
        }
        #expect(!stopped.wait(timeoutNanoseconds: 200_000_000))
        fake.gate.signal()
        stopper.join()
        request.join()
        #expect(fake.vcpuSet().vcpus.map(\.index) == [0])
        // The connection was closed before the change finished.
        #expect(answer.withLock { $0.map { if case .failure = $0 { true } else { false } } } == true)
    }

    @Test func socketPathRules() throws {
        // A live server: refused, and its socket is left alone.
        let server = try start(FakeVCPUSet())
        #expect(throws: APIServerError.socketInUse(path: socketPath)) { try start(FakeVCPUSet()) }
        #expect(try client().send("GET", "/vcpus").status == .ok)
        server.shutdown()

        // A stale socket (bound, never removed, nobody listening): replaced.
        let stale = try UnixSocket.make(nonBlocking: false)
        _ = UnixSocket.withAddress(socketPath) { bind(stale.rawValue, $0, $1) }
        #expect(access(socketPath, F_OK) == 0)
        let second = try start(FakeVCPUSet())
        #expect(try client().send("GET", "/vcpus").status == .ok)
        second.shutdown()

        // Not a socket: left alone.
        let file = directory.file("file")
        close(open(file, O_CREAT | O_WRONLY, 0o600))
        var router = APIRouter()
        router.addVCPUResource(FakeVCPUSet())
        #expect(throws: APIServerError.notASocket(path: file)) { try APIServer(socketPath: file, router: router) }
        #expect(access(file, F_OK) == 0)

        let long = "/tmp/" + String(repeating: "x", count: 120)
        #expect(throws: APIServerError.pathTooLong(path: long, limit: 107)) { try APIServer(socketPath: long, router: router) }
        let missingDirectory = directory.file("no/such/dir.sock")
        #expect(throws: APIServerError.self) { try APIServer(socketPath: missingDirectory, router: router) }
    }

    @Test func theSocketIsTheOwnersOnly() throws {
        let server = try start(FakeVCPUSet())
        defer { server.shutdown() }
        var st = stat()
        #expect(lstat(socketPath, &st) == 0)
        #expect(st.st_mode & 0o777 == 0o600)
    }

    /// At the limit, a new client gets in by closing the least recently
    /// active idle connection.
    @Test func connectionLimit() throws {
        let server = try start(FakeVCPUSet(), limits: APIServerLimits(maximumConnections: 3))
        defer { server.shutdown() }
        var idle: [TestConnection] = []
        for _ in 0..<3 {
            let connection = try TestConnection(socketPath)
            try connection.send("GET /vcpus HTTP/1.1\r\n\r\n")
            #expect(try connection.response()?.status == .ok)
            idle.append(connection)
        }
        #expect(try client().send("GET", "/vcpus").status == .ok)
        #expect(idle[0].waitForClose())
        try idle[2].send("GET /vcpus HTTP/1.1\r\n\r\n")
        #expect(try idle[2].response()?.status == .ok)
    }

    @Test func noDescriptorsLeak() throws {
        let baseline = openDescriptorCount()
        for _ in 0..<3 {
            let server = try start(FakeVCPUSet())
            for _ in 0..<5 { _ = try client().send("PUT", "/vcpus/2"); _ = try client().send("DELETE", "/vcpus/2") }
            let connection = try TestConnection(socketPath)
            try connection.send("garbage\r\n\r\n")
            _ = try connection.response()
            server.shutdown()
        }
        #expect(openDescriptorCount() == baseline)
    }
}

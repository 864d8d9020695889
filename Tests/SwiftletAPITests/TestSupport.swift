import Glibc
import SwiftletSystem
@testable import SwiftletAPI

/// A test double for the machine: a vCPU set in memory, with a gate that
/// holds `removeVCPU` (and `addVCPU`) inside the handler until opened, so
/// tests can race requests against a change in progress.
final class FakeVCPUSet: VCPUSetControl {
    struct State {
        var present: Set<Int>
        var gated = false
        var failAdds = false
    }

    let bootCPUs: Int
    let maxCPUs: Int
    let state: Locked<State>
    /// Signalled when a gated change has entered; the change waits for `gate`.
    let entered = Latch()
    let gate = Latch()

    init(boot: Int = 1, present: Int = 2, max: Int = 4, gated: Bool = false) {
        bootCPUs = boot
        maxCPUs = max
        state = Locked(State(present: Set(0..<present), gated: gated))
    }

    func vcpuSet() -> VCPUSetDescription {
        let present = state.withLock { $0.present }.sorted()
        return VCPUSetDescription(bootCPUs: bootCPUs, maxCPUs: maxCPUs,
                                  vcpus: present.map { VCPUDescription(index: $0, apicID: $0, state: "running") })
    }

    private func waitAtGate() {
        guard state.withLock({ $0.gated }) else { return }
        entered.signal()
        gate.wait()
    }

    func setVCPUCount(_ count: Int) throws(VCPUControlError) {
        guard (bootCPUs...maxCPUs).contains(count) else { throw .invalidCount(count: count, min: bootCPUs, max: maxCPUs) }
        waitAtGate()
        state.withLock { $0.present = Set(0..<count) }
    }

    func addVCPU(_ index: Int) throws(VCPUControlError) {
        guard index < maxCPUs else { throw .outOfRange(index: index, max: maxCPUs) }
        if state.withLock({ $0.failAdds }) { throw .failed("KVM_CREATE_VCPU failed: out of memory") }
        waitAtGate()
        try state.withLock { (state: inout State) throws(VCPUControlError) in
            guard state.present.insert(index).inserted else { throw .alreadyPresent(index: index) }
        }
    }

    func removeVCPU(_ index: Int) throws(VCPUControlError) {
        guard index >= bootCPUs else { throw .bootCPU(index: index) }
        guard index < maxCPUs else { throw .outOfRange(index: index, max: maxCPUs) }
        waitAtGate()
        try state.withLock { (state: inout State) throws(VCPUControlError) in
            guard state.present.remove(index) != nil else { throw .notPresent(index: index) }
        }
    }
}

/// A directory under /tmp removed with everything in it when released.
final class TemporaryDirectory {
    let path: String

    init() {
        var template = Array("/tmp/swiftlet-api-XXXXXX".utf8CString)
        // Unsafe: mkdtemp rewrites the template's X's in place.
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func file(_ name: String) -> String { path + "/" + name }

    deinit {
        if let dir = opendir(path) {
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if name != "." && name != ".." { unlink(file(name)) }
            }
            closedir(dir)
        }
        rmdir(path)
    }
}

/// A raw client connection for tests that need to send exactly what they
/// choose: partial requests, garbage, pipelines.
final class TestConnection {
    let socket: FileDescriptor
    private var parser = HTTPResponseParser()
    private(set) var atEnd = false

    init(_ path: String, timeoutSeconds: Int = 10) throws {
        socket = try UnixSocket.make(nonBlocking: false)
        try UnixSocket.setTimeouts(socket, seconds: timeoutSeconds)
        try UnixSocket.connect(socket, to: path)
    }

    func send(_ text: String) throws { try send(Array(text.utf8)) }
    func send(_ bytes: [UInt8]) throws { try UnixSocket.sendAll(socket.rawValue, bytes) }

    /// Shuts down the sending side (the server sees end of stream).
    func finishSending() { shutdown(socket.rawValue, Int32(SHUT_WR)) }

    /// The next response; nil when the server closed the connection first.
    func response(interim: Bool = false) throws -> HTTPResponse? {
        while true {
            if let response = try parser.nextResponse(atEnd: atEnd, interim: interim) { return response }
            if atEnd { return nil }
            try receive()
        }
    }

    /// Reads until the server closes; true if it did within the timeout.
    func waitForClose() -> Bool {
        while !atEnd {
            do { try receive() } catch { return false }
        }
        return true
    }

    private func receive() throws {
        var chunk = [UInt8](repeating: 0, count: 4096)
        let n: Int
        do {
            n = try chunk.withUnsafeMutableBytes { raw in try UnixSocket.receive(socket.rawValue, into: raw) }
        } catch let error as SystemError where error.errno.rawValue == ECONNRESET {
            n = 0
        }
        if n == 0 { atEnd = true }
        parser.append(chunk[0..<n])
    }
}

extension HTTPResponseParser {
    /// Like `response(atEnd:)`, but an empty buffer at the end is no response rather than an error.
    mutating func nextResponse(atEnd: Bool, interim: Bool) throws -> HTTPResponse? {
        if atEnd && bufferedByteCount == 0 { return nil }
        return try response(atEnd: atEnd, interim: interim)
    }
}

/// The number of open descriptors of this process.
func openDescriptorCount() -> Int {
    guard let dir = opendir("/proc/self/fd") else { return -1 }
    defer { closedir(dir) }
    var count = 0
    while readdir(dir) != nil { count += 1 }
    return count - 3  // ".", ".." and the directory's own descriptor
}

/// Runs `body` on a new OS thread; `join()` waits for it.
final class Background: Sendable {
    private let thread: OSThread
    init(_ body: @escaping @Sendable () -> Void) throws {
        thread = try OSThread(name: "test-client", body)
    }
    func join() { thread.join() }
}

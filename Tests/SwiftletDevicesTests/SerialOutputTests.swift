import Glibc
import SwiftletSystem
import Testing
@testable import SwiftletDevices

@Suite struct ConsoleCaptureTests {
    @Test func keepsEverythingBelowTheLimit() {
        let capture = ConsoleCapture(limit: 16)
        for byte in "hello".utf8 { capture.write(byte) }
        #expect(capture.text == "hello")
        #expect(capture.totalCount == 5)
        #expect(capture.discardedCount == 0)
    }

    @Test func keepsTheNewestBytesOnceFull() {
        let capture = ConsoleCapture(limit: 4)
        for byte in "abcdefghij".utf8 { capture.write(byte) }
        #expect(capture.text == "ghij")
        #expect(capture.bytes.count == 4)
        #expect(capture.totalCount == 10)
        #expect(capture.discardedCount == 6)
    }

    @Test func clearStartsOver() {
        let capture = ConsoleCapture(limit: 3)
        for byte in "abcd".utf8 { capture.write(byte) }
        capture.clear()
        capture.write(0x7a)
        #expect(capture.text == "z")
        #expect(capture.totalCount == 1)
    }

    @Test func zeroOrNegativeLimitKeepsNothingButCounts() {
        for limit in [0, -5] {
            let capture = ConsoleCapture(limit: limit)
            capture.write(0x41)
            #expect(capture.bytes.isEmpty)
            #expect(capture.totalCount == 1)
            #expect(capture.discardedCount == 1)
        }
    }

    @Test func invalidUTF8IsReplacedNotFatal() {
        let capture = ConsoleCapture()
        for byte: UInt8 in [0x41, 0xff, 0xc3] { capture.write(byte) }
        #expect(capture.text.hasPrefix("A"))
        #expect(capture.text.unicodeScalars.contains("\u{fffd}"))
    }
}

/// A pipe whose ends close when the value goes away.
private struct Pipe {
    let readEnd: FileDescriptor
    let writeEnd: FileDescriptor

    init() {
        var fds: [Int32] = [-1, -1]
        let result = pipe(&fds)
        precondition(result == 0, "pipe2 failed")
        readEnd = FileDescriptor(owning: fds[0])
        writeEnd = FileDescriptor(owning: fds[1])
    }

    /// Reads whatever is in the pipe now (the read end is non-blocking).
    func drain() throws -> [UInt8] {
        try readEnd.setNonBlocking()
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(readEnd.rawValue, $0.baseAddress, $0.count) }
            if n <= 0 { return result }
            result += buffer[0..<n]
        }
    }
}

@Suite struct FileDescriptorOutputTests {
    @Test func writesEachByteToTheDescriptor() throws {
        let pipe = Pipe()
        let output = FileDescriptorOutput(pipe.writeEnd)
        for byte in "ok\n".utf8 { output.write(byte) }
        #expect(try pipe.drain() == Array("ok\n".utf8))
        #expect(output.bytesWritten == 3)
        #expect(output.bytesDropped == 0)
    }

    @Test func writeErrorsAreCountedNotFatal() {
        let output = FileDescriptorOutput(borrowing: -1)  // EBADF on every write
        for byte in "lost".utf8 { output.write(byte) }
        #expect(output.bytesDropped == 4)
        #expect(output.bytesWritten == 0)
    }

    @Test func aFullNonBlockingDescriptorWaitsOnceThenDrops() throws {
        let pipe = Pipe()
        try pipe.writeEnd.setNonBlocking()
        // Fill the pipe.
        let chunk = [UInt8](repeating: 0x2e, count: 4096)
        while chunk.withUnsafeBytes({ Glibc.write(pipe.writeEnd.rawValue, $0.baseAddress, $0.count) }) > 0 {}
        let output = FileDescriptorOutput(pipe.writeEnd, congestionWait: 10)
        let start = MonotonicClock.nanoseconds()
        for _ in 0..<100 { output.write(0x41) }
        let elapsed = MonotonicClock.nanoseconds() - start
        #expect(output.bytesDropped == 100)
        #expect(elapsed < 500_000_000, "only the first byte waited for room")
        // Room again: writes go through and the congestion is over.
        _ = try pipe.drain()
        output.write(0x42)
        #expect(output.bytesWritten == 1)
        #expect(try pipe.drain() == [0x42])
    }
}

import Glibc
import Testing
import SwiftletMemory
import SwiftletSystem
@testable import SwiftletBoot

@Suite struct ImageSourceTests {
    /// A file under /tmp with `bytes`, removed after `body`.
    func withTemporaryFile(_ bytes: [UInt8], _ body: (String) throws -> Void) throws {
        var template = Array("/tmp/swiftlet-boot-test-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        try #require(fd >= 0)
        let path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        defer { unlink(path) }
        let descriptor = FileDescriptor(owning: fd)
        try descriptor.writeAll(bytes)
        try body(path)
    }

    @Test func readsAndCopiesFromAFile() throws {
        let bytes = pattern(10_000, seed: 3)
        try withTemporaryFile(bytes) { path in
            let image = try FileImage(path: path)
            #expect(image.name == path)
            #expect(image.size == 10_000)
            #expect(try image.read(at: 9_990, count: 10) == Array(bytes[9_990...]))
            #expect(try image.read(at: 10_000, count: 0) == [])
            #expect(throws: BootError(path, .truncated(.bytes(offset: 9_995, count: 10), end: 10_005, fileSize: 10_000))) {
                try image.read(at: 9_995, count: 10)
            }
            #expect(throws: BootError(path, .offsetOverflow(.bytes(offset: .max, count: 1), offset: .max, size: 1))) {
                try image.read(at: .max, count: 1)
            }
            var copy = [UInt8](repeating: 0, count: 4096)
            try copy.withUnsafeMutableBytes { try image.copy(from: 100, into: $0) }
            #expect(copy == Array(bytes[100..<4196]))
        }
    }

    @Test func loadsAKernelFromAFile() throws {
        let kernel = ELFBuilder.kernel(size: 0x3000, bss: 0).build()
        try withTemporaryFile(kernel) { path in
            let memory = try testMemory()
            let result = try BootLoader.load(kernel: FileImage(path: path), initrd: nil, commandLine: "",
                                             protocol: .automatic, memory: memory)
            #expect(result.bootProtocol == .elf64)
            #expect(try memory.readBytes(at: GuestAddress(0x10_0000), count: 0x3000) == pattern(0x3000, seed: 1))
        }
    }

    @Test func refusesWhatIsNotARegularFile() {
        #expect(throws: BootError("/nonexistent/missing.elf", .cannotOpen(.noEntry))) {
            try FileImage(path: "/nonexistent/missing.elf")
        }
        #expect(BootError("missing.elf", .cannotOpen(.noEntry)).description == "missing.elf: cannot open: No such file or directory")
        #expect(throws: BootError("/tmp", .isDirectory)) { try FileImage(path: "/tmp") }
        #expect(throws: BootError("/dev/null", .notRegularFile)) { try FileImage(path: "/dev/null") }
    }

    @Test func byteImagesCheckBounds() throws {
        let image = ByteImage(name: "b", bytes: [1, 2, 3])
        #expect(try image.read(at: 1, count: 2) == [2, 3])
        #expect(throws: BootError("b", .truncated(.bytes(offset: 2, count: 2), end: 4, fileSize: 3))) {
            try image.read(at: 2, count: 2)
        }
    }
}

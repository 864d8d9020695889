import CSwiftlet
import Glibc

/// An open file descriptor that this object owns: it is closed exactly once,
/// when the object goes away. Shared by reference, so a vCPU fd can be held
/// by a registry and by its thread without either closing it under the other.
public final class FileDescriptor: Sendable, CustomStringConvertible {
    public let rawValue: Int32

    /// Takes ownership of `rawValue`.
    public init(owning rawValue: Int32) {
        precondition(rawValue >= 0, "negative file descriptor")
        self.rawValue = rawValue
    }

    deinit { _ = Glibc.close(rawValue) }

    public var description: String { "fd \(rawValue)" }

    /// `open(2)`; the error names the path.
    public static func open(_ path: String, flags: Int32, mode: mode_t = 0o644) throws(SystemError) -> FileDescriptor {
        let fd = try systemCall("open(\(path))") { Glibc.open(path, flags | O_CLOEXEC, mode) }
        return FileDescriptor(owning: fd)
    }

    /// `read(2)` once; returns the number of bytes read (0 at end of file).
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int {
        try systemCall("read(\(rawValue))") { Glibc.read(rawValue, buffer.baseAddress, buffer.count) }
    }

    /// `pread(2)` until `buffer` is full or the file ends; returns the byte count.
    public func readFully(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws(SystemError) -> Int {
        var done = 0
        while done < buffer.count {
            let n = try systemCall("pread(\(rawValue))") {
                Glibc.pread(rawValue, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// `write(2)` until all bytes are written.
    public func writeAll(_ bytes: UnsafeRawBufferPointer) throws(SystemError) {
        var done = 0
        while done < bytes.count {
            done += try systemCall("write(\(rawValue))") {
                Glibc.write(rawValue, bytes.baseAddress! + done, bytes.count - done)
            }
        }
    }

    public func writeAll(_ bytes: [UInt8]) throws(SystemError) {
        // Array.withUnsafeBytes is rethrows, which erases the error type.
        try bytes.withUnsafeBytes { raw in Result { () throws(SystemError) in try writeAll(raw) } }.get()
    }

    /// The file's size from `fstat(2)`.
    public func size() throws(SystemError) -> Int64 {
        var st = stat()
        _ = try systemCall("fstat(\(rawValue))") { fstat(rawValue, &st) }
        return Int64(st.st_size)
    }

    /// Whether the descriptor is a regular file (not a directory, device or pipe).
    public func isRegularFile() throws(SystemError) -> Bool {
        var st = stat()
        _ = try systemCall("fstat(\(rawValue))") { fstat(rawValue, &st) }
        return (st.st_mode & S_IFMT) == S_IFREG
    }

    public func setNonBlocking() throws(SystemError) {
        let flags = try systemCall("fcntl(F_GETFL)") { fcntl(rawValue, F_GETFL) }
        _ = try systemCall("fcntl(F_SETFL)") { fcntl(rawValue, F_SETFL, flags | O_NONBLOCK) }
    }
}

extension FileDescriptor {
    /// `memfd_create(2)` with close-on-exec: anonymous memory with a descriptor.
    public static func memfd(name: String) throws(SystemError) -> FileDescriptor {
        let fd = try systemCall("memfd_create(\(name))") { name.withCString { swl_memfd_create($0, 1 /* MFD_CLOEXEC */) } }
        return FileDescriptor(owning: fd)
    }
}

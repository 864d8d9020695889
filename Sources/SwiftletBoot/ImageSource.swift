import Glibc
import SwiftletSystem

/// Read-only access to a kernel or initrd image.
///
/// Parsers read headers with `read` and check every offset against `size`
/// first; segments go straight from the image into guest memory with
/// `copy`, so a large image is never held in the VMM's own memory.
public protocol ImageSource: Sendable {
    /// What errors call the image: the path it was opened from.
    var name: String { get }
    var size: UInt64 { get }

    /// Fills `buffer` with the bytes at `offset`; throws `.truncated` if the
    /// image ends first.
    func copy(from offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(BootError)
}

extension ImageSource {
    /// `count` bytes at `offset`, for headers and tables (callers bound `count`).
    public func read(at offset: UInt64, count: Int) throws(BootError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        try bytes.withUnsafeMutableBytes { raw in
            Result { () throws(BootError) in try copy(from: offset, into: raw) }
        }.get()
        return bytes
    }

    /// Throws unless `[offset, offset + count)` lies inside the image.
    func checkBounds(_ part: ImagePart, offset: UInt64, count: UInt64) throws(BootError) {
        let (end, overflow) = offset.addingReportingOverflow(count)
        if overflow { throw BootError(name, .offsetOverflow(part, offset: offset, size: count)) }
        if end > size { throw BootError(name, .truncated(part, end: end, fileSize: size)) }
    }
}

/// An image held in memory: the embedded default guest, tests, fuzzing.
public struct ByteImage: ImageSource {
    public let name: String
    public let bytes: [UInt8]

    public init(name: String, bytes: [UInt8]) {
        self.name = name
        self.bytes = bytes
    }

    public var size: UInt64 { UInt64(bytes.count) }

    public func copy(from offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(BootError) {
        try checkBounds(.bytes(offset: offset, count: UInt64(buffer.count)), offset: offset, count: UInt64(buffer.count))
        guard buffer.count > 0 else { return }
        let start = Int(offset)
        bytes.withUnsafeBytes { source in
            buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[start..<start + buffer.count]))
        }
    }
}

/// An image file, read with pread(2) as needed.
public final class FileImage: ImageSource {
    public let name: String
    public let size: UInt64
    private let descriptor: FileDescriptor

    /// Opens `path` read-only. Refuses anything but a regular file: a
    /// directory would read as an error later, and a FIFO or device has no
    /// size to check offsets against.
    public init(path: String) throws(BootError) {
        name = path
        do {
            // O_NONBLOCK so that opening a FIFO cannot hang waiting for a writer.
            descriptor = try FileDescriptor.open(path, flags: O_RDONLY | O_NONBLOCK | O_NOCTTY)
        } catch {
            throw BootError(path, .cannotOpen(error.errno))
        }
        var status = stat()
        guard fstat(descriptor.rawValue, &status) == 0 else { throw BootError(path, .readFailed(.current)) }
        switch status.st_mode & S_IFMT {
        case S_IFREG: break
        case S_IFDIR: throw BootError(path, .isDirectory)
        default: throw BootError(path, .notRegularFile)
        }
        size = UInt64(max(0, status.st_size))
    }

    public func copy(from offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(BootError) {
        let count = UInt64(buffer.count)
        try checkBounds(.bytes(offset: offset, count: count), offset: offset, count: count)
        guard buffer.count > 0 else { return }
        let done: Int
        do {
            done = try descriptor.readFully(into: buffer, at: Int64(offset))
        } catch {
            throw BootError(name, .readFailed(error.errno))
        }
        // The file shrank since it was opened.
        if done < buffer.count {
            throw BootError(name, .truncated(.bytes(offset: offset, count: count), end: offset + count,
                                             fileSize: offset + UInt64(done)))
        }
    }
}

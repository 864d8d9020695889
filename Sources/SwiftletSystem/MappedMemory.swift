import Glibc

/// A region of this process's address space from `mmap(2)`, unmapped when
/// the object goes away.
///
/// The pointer is shared between threads (vCPU threads, device threads);
/// what is stored there is guest-controlled raw memory, never Swift objects,
/// so concurrent access is the guest's business, not a Swift data race on
/// managed state. That is why this type is `@unchecked Sendable`.
public final class MappedMemory: @unchecked Sendable {
    public let pointer: UnsafeMutableRawPointer
    public let length: Int

    /// Maps `length` bytes; `fd` nil means anonymous memory.
    public init(length: Int, protection: Int32 = PROT_READ | PROT_WRITE, flags: Int32,
                fd: FileDescriptor? = nil, offset: Int64 = 0, what: String = "mmap") throws(SystemError) {
        let p = mmap(nil, length, protection, flags, fd?.rawValue ?? -1, off_t(offset))
        guard let p, p != MAP_FAILED else { throw SystemError("\(what) (\(length) bytes)") }
        self.pointer = p
        self.length = length
    }

    deinit { munmap(pointer, length) }

    public var buffer: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: pointer, count: length)
    }

    /// `madvise(2)` over the whole mapping.
    public func advise(_ advice: Int32) throws(SystemError) {
        _ = try systemCall("madvise") { madvise(pointer, length, advice) }
    }
}

import Glibc
import SwiftletSystem

/// How a region's host memory is provided.
public enum MemoryBacking: Sendable, Equatable, CustomStringConvertible {
    /// Private anonymous memory (the default).
    case anonymous
    /// A memfd shared mapping: the memory can be handed to another process
    /// (a snapshot writer, a vhost-user backend) by its descriptor.
    case sharedMemory

    public var description: String {
        switch self {
        case .anonymous: "anonymous"
        case .sharedMemory: "memfd"
        }
    }
}

/// One contiguous piece of guest-physical memory and the host mapping that
/// backs it. A region never moves while it exists: KVM holds its host address
/// in a memory slot and vCPU threads access it without locks.
public final class GuestMemoryRegion: Sendable, CustomStringConvertible {
    public let range: GuestRange
    public let backing: MemoryBacking
    /// The page size actually used for the host mapping.
    public let pageSize: Int
    /// The memfd behind a `.sharedMemory` region.
    public let descriptor: FileDescriptor?
    private let mapping: MappedMemory

    public var start: GuestAddress { range.start }
    public var size: UInt64 { range.length }

    /// Maps `size` bytes (a multiple of the host page size) for guest address
    /// `start`. Memory is reserved lazily (MAP_NORESERVE): a 64 GiB guest
    /// that touches 10 MiB costs the host 10 MiB.
    public init(start: GuestAddress, size: UInt64, backing: MemoryBacking = .anonymous) throws(GuestMemoryError) {
        let hostPage = UInt64(sysconf(Int32(_SC_PAGESIZE)))
        guard size > 0, size % hostPage == 0, start.rawValue % hostPage == 0 else {
            throw .misaligned(start: start, size: size, pageSize: hostPage)
        }
        guard start.adding(size) != nil || start.rawValue &+ size == 0, size <= UInt64(Int.max) else {
            throw .outOfBounds(start, length: size)
        }
        do {
            switch backing {
            case .anonymous:
                mapping = try MappedMemory(length: Int(size), flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                                           what: "mmap(guest memory)")
                descriptor = nil
            case .sharedMemory:
                let fd = try FileDescriptor.memfd(name: "swiftlet-guest-ram")
                _ = try systemCall("ftruncate(memfd)") { ftruncate(fd.rawValue, off_t(size)) }
                mapping = try MappedMemory(length: Int(size), flags: MAP_SHARED | MAP_NORESERVE, fd: fd,
                                           what: "mmap(guest memory memfd)")
                descriptor = fd
            }
        } catch {
            throw .hostMapping(error)
        }
        self.range = GuestRange(start: start, length: size)
        self.backing = backing
        self.pageSize = Int(hostPage)
    }

    /// The host address of the region's first byte (for KVM memory slots).
    public var hostAddress: UnsafeMutableRawPointer { mapping.pointer }

    /// Host bytes for `[address, address + count)`, which must lie inside
    /// this region (checked).
    public func hostBuffer(at address: GuestAddress, count: UInt64) throws(GuestMemoryError) -> UnsafeMutableRawBufferPointer {
        guard range.contains(address, count: count) else { throw .outOfBounds(address, length: count) }
        return UnsafeMutableRawBufferPointer(start: mapping.pointer + Int(address - start), count: Int(count))
    }

    public var description: String { "\(range) \(backing), \(pageSize / 1024) KiB pages" }
}

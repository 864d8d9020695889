import Glibc
import SwiftletSystem

/// Unix stream sockets, the API's transport: a listening socket at a path,
/// connections to one, and sends that cannot raise SIGPIPE.
enum UnixSocket {
    /// sun_path holds 108 bytes including the terminating NUL.
    static let maximumPathBytes = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    /// A new stream socket, close-on-exec, maybe non-blocking.
    static func make(nonBlocking: Bool) throws(SystemError) -> FileDescriptor {
        var type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        if nonBlocking { type |= Int32(SOCK_NONBLOCK.rawValue) }
        return FileDescriptor(owning: try systemCall("socket(AF_UNIX)") { socket(AF_UNIX, type, 0) })
    }

    /// Calls `body` with a `sockaddr_un` for `path` (which must fit; callers
    /// check `maximumPathBytes`).
    static func withAddress<R>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        precondition(bytes.count <= maximumPathBytes, "socket path too long")
        // Unsafe: copies the path into the fixed-size sun_path tuple; the
        // precondition above keeps it in bounds and the zeroed tail is the NUL.
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
        }
        // Unsafe: the socket calls take a generic sockaddr pointer; a
        // sockaddr_un is laid out to be read through one (sys/un.h).
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    /// `connect(2)`; EINTR is retried.
    static func connect(_ socket: FileDescriptor, to path: String) throws(SystemError) {
        _ = try systemCall("connect(\(path))") {
            withAddress(path) { Glibc.connect(socket.rawValue, $0, $1) }
        }
    }

    /// Whether something listens at `path`: a non-blocking connect succeeds
    /// or finds the backlog full. ECONNREFUSED means a stale socket file.
    static func isLive(_ path: String) -> Bool {
        guard let probe = try? make(nonBlocking: true) else { return false }
        do {
            try connect(probe, to: path)
            return true
        } catch {
            return error.errno == .tryAgain || error.errno.rawValue == EINPROGRESS
        }
    }

    /// `send(2)` with MSG_NOSIGNAL: a peer that went away is EPIPE, not a
    /// signal that would end the VMM. Returns the bytes sent.
    static func send(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws(SystemError) -> Int {
        try systemCall("send(\(fd))") { Glibc.send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Sends all of `bytes` on a blocking socket.
    static func sendAll(_ fd: Int32, _ bytes: [UInt8]) throws(SystemError) {
        var done = 0
        while done < bytes.count {
            // Unsafe: a view of the array's remaining bytes for this call only.
            let n = bytes.withUnsafeBytes { raw in
                Result { () throws(SystemError) in try send(fd, UnsafeRawBufferPointer(rebasing: raw[done...])) }
            }
            done += try n.get()
        }
    }

    /// `recv(2)` into `buffer`; 0 at end of stream.
    static func receive(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int {
        try systemCall("recv(\(fd))") { Glibc.recv(fd, buffer.baseAddress, buffer.count, 0) }
    }

    /// `SO_RCVTIMEO` and `SO_SNDTIMEO`, so a blocking client cannot hang.
    static func setTimeouts(_ socket: FileDescriptor, seconds: Int) throws(SystemError) {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        for option in [SO_RCVTIMEO, SO_SNDTIMEO] {
            _ = try systemCall("setsockopt(SO_RCVTIMEO/SO_SNDTIMEO)") {
                setsockopt(socket.rawValue, SOL_SOCKET, option, &timeout, socklen_t(MemoryLayout<timeval>.size))
            }
        }
    }

    /// The device and inode of the file at `path` (without following a
    /// symbolic link), or nil if there is none.
    static func identity(of path: String) -> (device: UInt64, inode: UInt64, isSocket: Bool)? {
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        return (UInt64(st.st_dev), UInt64(st.st_ino), (st.st_mode & S_IFMT) == S_IFSOCK)
    }
}

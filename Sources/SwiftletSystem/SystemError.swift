import Glibc

/// An errno value with a readable description.
public struct Errno: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// The calling thread's current errno.
    public static var current: Errno { Errno(rawValue: errno) }

    public static let notPermitted = Errno(rawValue: EPERM)
    public static let noEntry = Errno(rawValue: ENOENT)
    public static let interrupted = Errno(rawValue: EINTR)
    public static let ioError = Errno(rawValue: EIO)
    public static let badFileDescriptor = Errno(rawValue: EBADF)
    public static let tryAgain = Errno(rawValue: EAGAIN)
    public static let noMemory = Errno(rawValue: ENOMEM)
    public static let permissionDenied = Errno(rawValue: EACCES)
    public static let badAddress = Errno(rawValue: EFAULT)
    public static let busy = Errno(rawValue: EBUSY)
    public static let exists = Errno(rawValue: EEXIST)
    public static let noDevice = Errno(rawValue: ENODEV)
    public static let invalidArgument = Errno(rawValue: EINVAL)
    public static let notTTY = Errno(rawValue: ENOTTY)
    public static let timedOut = Errno(rawValue: ETIMEDOUT)
    public static let notSupported = Errno(rawValue: EOPNOTSUPP)
    public static let notImplemented = Errno(rawValue: ENOSYS)

    public var description: String {
        guard let message = strerror(rawValue) else { return "errno \(rawValue)" }
        return String(cString: message)
    }
}

/// A failed system call: which call failed and the errno it returned.
public struct SystemError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The call that failed, e.g. `"open(/dev/kvm)"` or `"KVM_CREATE_VM"`.
    public var call: String
    public var errno: Errno

    public init(_ call: String, _ errno: Errno = .current) {
        self.call = call
        self.errno = errno
    }

    public var description: String { "\(call) failed: \(errno) (errno \(errno.rawValue))" }
}

/// Turns a C-style `-1 and errno` result into a thrown `SystemError`.
///
/// EINTR is retried when `retryOnInterrupt` is set; callers that must see
/// EINTR (KVM_RUN, which is how a kicked vCPU gets out) pass `false`.
@inlinable
public func systemCall<R: BinaryInteger>(
    _ name: @autoclosure () -> String,
    retryOnInterrupt: Bool = true,
    _ body: () -> R
) throws(SystemError) -> R {
    while true {
        let result = body()
        if result != -1 { return result }
        let error = Errno.current
        if error == .interrupted && retryOnInterrupt { continue }
        throw SystemError(name(), error)
    }
}

/// QEMU's isa-debug-exit: a guest writes a value and the VM ends with it.
/// Register at 0xf4 with length `length`.
///
/// As in QEMU (hw/misc/debugexit.c), a write of 1, 2 or 4 bytes anywhere in
/// the range requests `.debugExit(code: value)` (the machine turns it into
/// exit status `(value << 1) | 1`), and reads return 0. Other sizes, and
/// accesses running past the range, are ignored.
public final class DebugExitDevice: BusDevice {
    public static let length: UInt64 = 4

    private let requests: any GuestRequestSink

    /// Requests go to `requests` on the writing vCPU's thread.
    public init(requests: any GuestRequestSink) {
        self.requests = requests
    }

    public func read(at offset: UInt64, size: Int) -> UInt64 { 0 }

    public func write(at offset: UInt64, size: Int, value: UInt64) {
        guard size == 1 || size == 2 || size == 4,
              offset < Self.length, UInt64(size) <= Self.length - offset
        else { return }
        requests.guestRequested(.debugExit(code: UInt32(truncatingIfNeeded: value & accessMask(size: size))))
    }
}

import Synchronization
import SwiftletSystem

/// Port 0x80, the POST code port. Firmware writes progress codes to it and
/// Linux writes to it for I/O delays (outb_p), so writes are frequent: they
/// are only remembered, never logged. Reads return the last byte written,
/// for diagnostics. Register at 0x80 with length 1.
///
/// Each write also records when it happened (CLOCK_MONOTONIC, one vDSO
/// call): `swiftlet-bench interrupts` times a guest handler's write here.
public final class PostCodePort: BusDevice {
    private let last = Atomic<UInt8>(0)
    private let writes = Atomic<UInt64>(0)
    private let lastWrite = Atomic<Int64>(0)

    public init() {}

    /// The last byte written.
    public var lastValue: UInt8 { last.load(ordering: .relaxed) }
    /// How many writes the port has taken. A change seen here is ordered
    /// after the `lastWriteTime` of that write (release/acquire).
    public var writeCount: UInt64 { writes.load(ordering: .acquiring) }
    /// `MonotonicClock.nanoseconds()` at the last write; 0 before any.
    public var lastWriteTime: Int64 { lastWrite.load(ordering: .relaxed) }

    public func read(at offset: UInt64, size: Int) -> UInt64 {
        readByteRegisters(at: offset, size: size) { $0 == 0 ? last.load(ordering: .relaxed) : 0xff }
    }

    public func write(at offset: UInt64, size: Int, value: UInt64) {
        guard offset == 0, size >= 1 else { return }
        lastWrite.store(MonotonicClock.nanoseconds(), ordering: .relaxed)
        last.store(UInt8(truncatingIfNeeded: value), ordering: .relaxed)
        writes.add(1, ordering: .releasing)
    }
}

import SwiftletSystem

/// The ACPI hardware-reduced sleep control, sleep status and reset registers
/// (ACPI 6.5, 4.8.3.7 and 4.8.3.8; FADT RESET_REG, 5.2.9), one byte each at
/// offsets 0, 1 and 2. Register at 0x600 with length `length`; the FADT the
/// machine describes must point SLEEP_CONTROL_REG, SLEEP_STATUS_REG and
/// RESET_REG here, with RESET_VALUE = `resetValue` and \_S5 = `softOffSleepType`.
///
/// - Sleep control: a write with SLP_EN (bit 5) set enters the sleep state
///   in SLP_TYP (bits 4:2). Only S5 (soft off) exists: it requests
///   `.powerOff`; other types are logged and ignored, as is any write
///   without SLP_EN. Reads return 0 (SLP_EN is write-only, and SLP_TYP has
///   no state here).
/// - Sleep status: reads 0. WAK_STS (bit 7) would report a wake from a sleep
///   state, and the machine never sleeps; writing 1 to clear it is harmless.
/// - Reset: writing `resetValue` requests `.reset`; other values do nothing.
///
/// Wider accesses reach consecutive registers byte by byte, lowest first.
public final class PowerControlDevice: BusDevice {
    public static let length: UInt64 = 3
    public static let sleepControlOffset: UInt64 = 0
    public static let sleepStatusOffset: UInt64 = 1
    public static let resetOffset: UInt64 = 2
    public static let resetValue: UInt8 = 1
    /// The SLP_TYP value the machine's \_S5 object names.
    public static let softOffSleepType: UInt8 = 5

    private static let sleepEnable: UInt8 = 0x20

    private let requests: any GuestRequestSink
    private let logLimiter = RateLimiter(burst: 3)

    /// Requests go to `requests` on the writing vCPU's thread.
    public init(requests: any GuestRequestSink) {
        self.requests = requests
    }

    public func read(at offset: UInt64, size: Int) -> UInt64 {
        readByteRegisters(at: offset, size: size) { $0 < Self.length ? 0 : 0xff }
    }

    public func write(at offset: UInt64, size: Int, value: UInt64) {
        writeByteRegisters(at: offset, size: size, value: value) { offset, byte in
            switch offset {
            case Self.sleepControlOffset:
                guard byte & Self.sleepEnable != 0 else { return }
                let sleepType = (byte >> 2) & 0x7
                if sleepType == Self.softOffSleepType {
                    requests.guestRequested(.powerOff)
                } else {
                    log("guest asked for sleep type \(sleepType) (control \(hexByte(byte))); only S5 (type 5) is implemented, ignored")
                }
            case Self.resetOffset:
                if byte == Self.resetValue { requests.guestRequested(.reset) }
            default:
                break
            }
        }
    }

    private func log(_ message: String) {
        guard let suppressed = logLimiter.admit() else { return }
        Log.warning("power control: " + message + (suppressed > 0 ? " (\(suppressed) similar messages suppressed)" : ""))
    }
}

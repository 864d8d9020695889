import SwiftletSystem
import SwiftletVCPU

/// How a VM ended.
public enum MachineExit: Sendable, Equatable, CustomStringConvertible {
    /// The guest powered off (ACPI S5).
    case poweredOff
    /// The guest asked for a reset (i8042, ACPI reset register).
    case resetRequested
    /// The guest wrote `code` to the debug-exit port.
    case debugExit(code: UInt32)
    /// The guest stopped in a way it cannot continue from.
    case crashed(CrashDiagnosis)
    /// The host stopped the VM (`stop()`, or a signal to `swiftlet`).
    case stopped(reason: String)
    /// Something on the host side failed while the VM ran.
    case hostFailure(String)

    /// The exit status `swiftlet run` uses (docs/boot-protocol.md).
    public var exitStatus: Int32 {
        switch self {
        case .poweredOff: 0
        case .debugExit(let code): Int32(((code << 1) | 1) & 0xff)
        case .resetRequested: ExitStatus.resetRequested
        case .hostFailure: ExitStatus.hostFailure
        case .stopped: ExitStatus.stopped
        case .crashed(let d):
            switch d.kind {
            case .tripleFault: ExitStatus.tripleFault
            case .internalError: ExitStatus.internalError
            case .failedEntry: ExitStatus.failedEntry
            case .unhandledExit: ExitStatus.unhandledExit
            }
        }
    }

    public var description: String {
        switch self {
        case .poweredOff: "the guest powered off"
        case .resetRequested: "the guest requested a reset (in-place reboot is not supported yet)"
        case .debugExit(let code): "the guest wrote 0x\(String(code, radix: 16)) to the debug-exit port"
        case .crashed(let d): d.description
        case .stopped(let reason): "stopped: \(reason)"
        case .hostFailure(let message): "host failure: \(message)"
        }
    }
}

/// The process exit statuses of `swiftlet` (docs/boot-protocol.md).
public enum ExitStatus {
    public static let success: Int32 = 0
    public static let usage: Int32 = 2
    public static let kvmUnavailable: Int32 = 3
    public static let resetRequested: Int32 = 4
    public static let hostFailure: Int32 = 6
    public static let tripleFault: Int32 = 8
    public static let internalError: Int32 = 10
    public static let failedEntry: Int32 = 12
    public static let unhandledExit: Int32 = 14
    /// Stopped by the host without a signal number to report.
    public static let stopped: Int32 = 16
}

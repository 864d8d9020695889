import SwiftletDevices
import SwiftletSystem
@testable import SwiftletInterrupts

/// A router stand-in that records messages and answers whether a local
/// APIC took them.
final class MessageRecorder: InterruptMessageSink {
    private let state = Locked<(messages: [InterruptMessage], accepting: Bool)>(([], true))

    func deliver(_ message: InterruptMessage) -> Bool {
        state.withLock { s in
            s.messages.append(message)
            return s.accepting
        }
    }

    var messages: [InterruptMessage] { state.withLock { $0.messages } }
    var accepting: Bool {
        get { state.withLock { $0.accepting } }
        set { state.withLock { $0.accepting = newValue } }
    }

    func clear() { state.withLock { $0.messages.removeAll() } }
}

/// An interrupt line that records every level it is driven to.
final class LineRecorder: InterruptLine {
    private let levels = Locked<[Bool]>([])
    func setLevel(_ asserted: Bool) { levels.withLock { $0.append(asserted) } }
    var history: [Bool] { levels.withLock { $0 } }
    var level: Bool { levels.withLock { $0.last ?? false } }
}

// xAPIC register offsets used by the tests (Intel SDM Vol. 3A table 10-1).
enum Reg {
    static let id: UInt64 = 0x20, version: UInt64 = 0x30, tpr: UInt64 = 0x80, apr: UInt64 = 0x90
    static let ppr: UInt64 = 0xA0, eoi: UInt64 = 0xB0, ldr: UInt64 = 0xD0, dfr: UInt64 = 0xE0
    static let svr: UInt64 = 0xF0, isr: UInt64 = 0x100, tmr: UInt64 = 0x180, irr: UInt64 = 0x200
    static let esr: UInt64 = 0x280, cmci: UInt64 = 0x2F0, icrLow: UInt64 = 0x300, icrHigh: UInt64 = 0x310
    static let timer: UInt64 = 0x320, thermal: UInt64 = 0x330, perf: UInt64 = 0x340
    static let lint0: UInt64 = 0x350, lint1: UInt64 = 0x360, error: UInt64 = 0x370
    static let initialCount: UInt64 = 0x380, currentCount: UInt64 = 0x390, divide: UInt64 = 0x3E0
}

let masked: UInt32 = 1 << 16

extension LocalAPIC {
    /// An APIC as Linux leaves it after setup: software-enabled, spurious
    /// vector 0xFF.
    static func enabled(id: UInt32 = 0, bsp: Bool = true,
                        configuration: Configuration = Configuration(minimumPeriodicInterval: 0)) -> LocalAPIC {
        var apic = LocalAPIC(apicID: id, isBootstrapProcessor: bsp, configuration: configuration)
        apic.set(Reg.svr, 0x1FF)
        return apic
    }

    /// A 32-bit xAPIC register read.
    mutating func reg(_ offset: UInt64, now: Int64 = 0) -> UInt32 {
        UInt32(truncatingIfNeeded: readMMIO(offset: offset, size: 4, now: now))
    }

    /// A 32-bit xAPIC register write.
    @discardableResult
    mutating func set(_ offset: UInt64, _ value: UInt32, now: Int64 = 0) -> [Effect] {
        writeMMIO(offset: offset, size: 4, value: UInt64(value), now: now)
    }

    /// The ESR after the write that latches it (§10.5.3).
    mutating func latchedErrors() -> UInt32 {
        set(Reg.esr, 0)
        return reg(Reg.esr)
    }

    /// Switches an xAPIC-mode APIC to x2APIC mode.
    mutating func enableX2APIC() throws {
        _ = try writeMSR(0x1B, value: apicBase | 0xC00, now: 0)
    }

    enum MSROutcome { case ok, gp }

    /// WRMSR as the vCPU layer would run it: done, or #GP.
    mutating func wrmsr(_ index: UInt32, _ value: UInt64) -> MSROutcome {
        do {
            _ = try writeMSR(index, value: value, now: 0)
            return .ok
        } catch {
            return .gp
        }
    }

    /// Whether RDMSR raises #GP.
    func readFaults(_ index: UInt32) -> Bool {
        (try? readMSR(index, now: 0)) == nil
    }

    /// Takes the next interrupt the way the vCPU layer does.
    mutating func take() -> UInt8? {
        guard case .vector(let vector)? = pendingInterrupt(), case .vector(let taken) = acknowledge() else {
            return nil
        }
        precondition(vector == taken)
        return taken
    }

    /// Writes EOI and returns the EOI effects.
    mutating func eoi() -> [Effect] {
        set(Reg.eoi, 0).filter { if case .endOfInterrupt = $0 { true } else { false } }
    }

    func sentIPIs(_ effects: [Effect]) -> [InterruptMessage] {
        effects.compactMap { if case .sendIPI(let message) = $0 { message } else { nil } }
    }
}

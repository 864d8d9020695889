import SwiftletACPI
import Synchronization
import SwiftletSystem

/// The CPU hot-plug register block behind the DSDT's processor methods and
/// its Generic Event Device (docs/acpi-cpu-hotplug.md): 16 bytes of MMIO,
/// little-endian, at `SwiftletACPI.CPUHotplugRegisters.defaultBase`, whose
/// event interrupt is an edge on GSI 23.
///
/// | offset | size | read | write |
/// |---|---|---|---|
/// | 0x00 | 4 | SELECTOR: the selected CPU | select a CPU |
/// | 0x04 | 1 | STATUS of the selected CPU | COMMAND for the selected CPU |
/// | 0x05 | 3 | 0 | ignored |
/// | 0x08 | 4 | EVENTS pending | write 1 to clear |
/// | 0x0C | 4 | 0 | ignored |
///
/// Every access is taken byte by byte, lowest address first, under the
/// device's lock, so any width at any offset works: a 1-byte write to the
/// selector changes that byte only, an 8-byte write at offset 0 selects a
/// CPU and then commands it. Offsets 0x10 and above (the rest of the page
/// the DSDT reserves, if the machine maps all of it) read 0 and ignore
/// writes.
///
/// The VMM side: `markAdded`, `requestRemoval`, `markRemoved`, `isEnabled`,
/// `status(of:)`. An EJECT command from the guest calls the eject handler
/// synchronously on the writing vCPU's thread, outside the device's lock;
/// when it returns `true` the CPU's ENABLED bit is clear before the write
/// returns, so the guest's next access (Linux evaluates `_STA` right after
/// `_EJ0`) reads 0.
///
/// The guest is untrusted: EJECT of CPU 0 (the boot processor), of a CPU
/// that is not ENABLED, with an out-of-range selector, or while another
/// eject is still being carried out, is ignored and counted
/// (`ignoredEjects`); an eject the handler refuses is counted
/// (`failedEjects`) and leaves ENABLED set.
///
/// The register layout repeats the constants of
/// `SwiftletACPI.CPUHotplugRegisters`, the layout the DSDT's AML uses.
public final class CPUHotplugController: BusDevice {
    /// The register layout and bits, as the ACPI tables describe them.
    public typealias Registers = CPUHotplugRegisters

    /// The boot processor: never ejected, never asked to leave.
    public static let bootCPU = 0

    /// Why a VMM-side request was refused.
    public enum Error: Swift.Error, Equatable, CustomStringConvertible {
        /// The index is not in `0 ..< maxCPUs`.
        case noSuchCPU(index: Int, maxCPUs: Int)
        /// CPU 0, the boot processor, cannot be removed.
        case bootCPU
        /// `markAdded` of a CPU that is already ENABLED.
        case alreadyPresent(index: Int)
        /// `requestRemoval` of a CPU that is not ENABLED.
        case notPresent(index: Int)
        /// The guest is ejecting this CPU right now (the eject handler is running).
        case ejectInProgress(index: Int)

        public var description: String {
            switch self {
            case .noSuchCPU(let index, let maxCPUs): "CPU \(index) does not exist (CPUs are 0 to \(maxCPUs - 1))"
            case .bootCPU: "CPU 0 is the boot processor and cannot be removed"
            case .alreadyPresent(let index): "CPU \(index) is already present"
            case .notPresent(let index): "CPU \(index) is not present"
            case .ejectInProgress(let index): "CPU \(index) is being ejected by the guest"
            }
        }
    }

    /// Called when the guest writes EJECT for CPU `index` (never 0, always
    /// ENABLED at the time of the write). It runs on the writing vCPU's
    /// thread — which may be vCPU `index` itself, if the guest ejects the
    /// CPU it runs on — without the device's lock, one call at a time.
    /// Return `true` once the CPU is removed (stopped and parked, or certain
    /// to be before it runs guest code again): ENABLED is then cleared, with
    /// INSERTING and REMOVING, before the guest's write completes. `false`
    /// leaves the CPU ENABLED.
    public typealias EjectHandler = @Sendable (_ index: Int) -> Bool

    private struct State {
        var selector: UInt32 = 0
        var events: UInt32 = 0
        /// STATUS byte per CPU.
        var status: [UInt8]
        /// The CPU whose eject handler is running, if any.
        var ejecting: Int?
        var onEject: EjectHandler?
    }

    /// What a write does after the lock is released.
    private struct Effects {
        /// EJECT accepted for this CPU: call the handler.
        var eject: Int?
        var log: String?
    }

    public let maxCPUs: Int
    private let interrupt: any InterruptLine
    private let state: Locked<State>
    private let ejectCount = Atomic<UInt64>(0)
    private let ignoredEjectCount = Atomic<UInt64>(0)
    private let failedEjectCount = Atomic<UInt64>(0)
    private let logLimiter = RateLimiter(burst: 5)

    /// A block for CPUs `0 ..< maxCPUs` of which `0 ..< bootCPUs` are
    /// ENABLED at power-on, with nothing INSERTING or REMOVING, EVENTS 0 and
    /// the selector 0. `interrupt` is the GSI (23 by default, edge-triggered,
    /// active-high): the device pulses it (`setLevel(true)` then
    /// `setLevel(false)`) after each VMM-side change, without its lock held,
    /// so the line may read the registers. `bootCPUs` is clamped to
    /// `1 ... maxCPUs`, `maxCPUs` to at least 1.
    public init(maxCPUs: Int, bootCPUs: Int, interrupt: any InterruptLine, onEject: EjectHandler? = nil) {
        let maxCPUs = max(1, maxCPUs)
        self.maxCPUs = maxCPUs
        self.interrupt = interrupt
        var status = [UInt8](repeating: 0, count: maxCPUs)
        for index in 0..<min(max(1, bootCPUs), maxCPUs) { status[index] = Registers.statusEnabled }
        state = Locked(State(status: status, onEject: onEject))
    }

    /// Sets (or removes) the eject handler; with none, every EJECT fails.
    public func setEjectHandler(_ handler: EjectHandler?) {
        state.withLock { $0.onEject = handler }
    }

    // MARK: The VMM's side

    /// Hot-add of CPU `index` (docs/acpi-cpu-hotplug.md, "The VMM's side"):
    /// call once its vCPU waits for INIT/SIPI. Sets ENABLED and INSERTING,
    /// then EVENTS.CPU_HOTPLUG, then pulses the interrupt.
    public func markAdded(_ index: Int) throws(Error) {
        try change(index) { s throws(Error) in
            guard s.status[index] & Registers.statusEnabled == 0 else { throw .alreadyPresent(index: index) }
            guard s.ejecting != index else { throw .ejectInProgress(index: index) }
            // A REMOVING left from an earlier life no longer applies.
            s.status[index] = Registers.statusEnabled | Registers.statusInserting
        }
    }

    /// Asks the guest to give CPU `index` up: sets REMOVING (ENABLED stays),
    /// then EVENTS.CPU_HOTPLUG, then pulses the interrupt. The CPU leaves when
    /// the guest writes EJECT, or never, if the guest refuses.
    public func requestRemoval(_ index: Int) throws(Error) {
        try change(index) { s throws(Error) in
            guard index != Self.bootCPU else { throw .bootCPU }
            guard s.status[index] & Registers.statusEnabled != 0 else { throw .notPresent(index: index) }
            guard s.ejecting != index else { throw .ejectInProgress(index: index) }
            s.status[index] |= Registers.statusRemoving
        }
    }

    /// Removal decided by the VMM alone (the guest is not asked and not
    /// told): clears ENABLED, INSERTING and REMOVING. Returns whether the CPU
    /// was ENABLED. CPU 0 is refused.
    @discardableResult
    public func markRemoved(_ index: Int) throws(Error) -> Bool {
        guard index >= 0 && index < maxCPUs else { throw .noSuchCPU(index: index, maxCPUs: maxCPUs) }
        guard index != Self.bootCPU else { throw .bootCPU }
        return state.withLock { s in
            let wasEnabled = s.status[index] & Registers.statusEnabled != 0
            s.status[index] = 0
            return wasEnabled
        }
    }

    /// Whether CPU `index` is ENABLED (false for indices out of range).
    public func isEnabled(_ index: Int) -> Bool {
        status(of: index) & Registers.statusEnabled != 0
    }

    /// The STATUS byte of CPU `index` as the guest would read it (0 out of range).
    public func status(of index: Int) -> UInt8 {
        guard index >= 0 && index < maxCPUs else { return 0 }
        return state.withLock { $0.status[index] }
    }

    /// The ENABLED CPUs, ascending.
    public var enabledCPUs: [Int] {
        state.withLock { s in s.status.indices.filter { s.status[$0] & Registers.statusEnabled != 0 } }
    }

    /// EVENTS as the guest would read it.
    public var pendingEvents: UInt32 { state.withLock { $0.events } }

    /// Ejects carried out (the handler returned true).
    public var ejects: UInt64 { ejectCount.load(ordering: .relaxed) }
    /// EJECT commands ignored: CPU 0, a CPU not ENABLED, an out-of-range
    /// selector, or another eject still in progress.
    public var ignoredEjects: UInt64 { ignoredEjectCount.load(ordering: .relaxed) }
    /// EJECT commands the handler refused (or no handler was set).
    public var failedEjects: UInt64 { failedEjectCount.load(ordering: .relaxed) }

    /// Validates `index`, applies `body` to the state, sets the event, then
    /// pulses the line outside the lock: per-CPU bits, EVENTS and the pulse
    /// in that order (bits and EVENTS together under the lock, so no guest
    /// access sees one without the other).
    private func change(_ index: Int, _ body: (inout State) throws(Error) -> Void) throws(Error) {
        guard index >= 0 && index < maxCPUs else { throw .noSuchCPU(index: index, maxCPUs: maxCPUs) }
        try state.withLock { s throws(Error) in
            try body(&s)
            s.events |= Registers.eventCPUHotplug
        }
        interrupt.setLevel(true)
        interrupt.setLevel(false)
    }

    // MARK: Guest accesses

    public func read(at offset: UInt64, size: Int) -> UInt64 {
        state.withLock { s in
            readByteRegisters(at: offset, size: size) { readRegister(s, $0) }
        }
    }

    public func write(at offset: UInt64, size: Int, value: UInt64) {
        var effects = Effects()
        state.withLock { s in
            writeByteRegisters(at: offset, size: size, value: value) { writeRegister(&s, $0, $1, &effects) }
        }
        if let message = effects.log { log(message) }
        if let index = effects.eject { eject(index) }
    }

    private func readRegister(_ s: State, _ offset: UInt64) -> UInt8 {
        switch offset {
        case 0..<4:
            return UInt8(truncatingIfNeeded: s.selector >> (offset * 8))
        case Registers.statusOffset:
            guard let index = selected(s) else { return 0 }
            return s.status[index]
        case 8..<12:
            return UInt8(truncatingIfNeeded: s.events >> ((offset - 8) * 8))
        default:
            // Reserved bytes (0x05-0x07, 0x0c-0x0f) and anything past the block.
            return 0
        }
    }

    private func writeRegister(_ s: inout State, _ offset: UInt64, _ byte: UInt8, _ effects: inout Effects) {
        switch offset {
        case 0..<4:
            let shift = offset * 8
            s.selector = s.selector & ~(UInt32(0xff) << shift) | UInt32(byte) << shift
        case Registers.statusOffset:
            command(&s, byte, &effects)
        case 8..<12:
            s.events &= ~(UInt32(byte) << ((offset - 8) * 8))
        default:
            break
        }
    }

    /// The CPU the selector names, if it is one.
    private func selected(_ s: State) -> Int? {
        let selector = UInt64(s.selector)
        return selector < UInt64(maxCPUs) ? Int(selector) : nil
    }

    private func command(_ s: inout State, _ byte: UInt8, _ effects: inout Effects) {
        guard let index = selected(s) else {
            if byte & Registers.commandEject != 0 {
                ignoredEjectCount.add(1, ordering: .relaxed)
                effects.log = "guest ejected CPU \(s.selector), which does not exist (CPUs are 0 to \(maxCPUs - 1)); ignored"
            }
            return
        }
        if byte & Registers.commandAcknowledgeInsert != 0 { s.status[index] &= ~Registers.statusInserting }
        if byte & Registers.commandAcknowledgeRemove != 0 { s.status[index] &= ~Registers.statusRemoving }
        guard byte & Registers.commandEject != 0 else { return }
        let reason: String? =
            if index == Self.bootCPU { "it is the boot processor" }
            else if s.status[index] & Registers.statusEnabled == 0 { "it is not present" }
            else if let other = s.ejecting { "CPU \(other) is being ejected" }
            else { nil }
        if let reason {
            ignoredEjectCount.add(1, ordering: .relaxed)
            effects.log = "guest ejected CPU \(index), but \(reason); ignored"
            return
        }
        // An access carries one COMMAND byte at most, so one eject.
        s.ejecting = index
        effects.eject = index
    }

    /// Runs the eject handler for `index` (marked ejecting) without the lock,
    /// then completes the state change before the guest's write returns.
    private func eject(_ index: Int) {
        let handler = state.withLock { $0.onEject }
        let removed = handler?(index) ?? false
        state.withLock { s in
            s.ejecting = nil
            if removed { s.status[index] = 0 }
        }
        if removed {
            ejectCount.add(1, ordering: .relaxed)
        } else {
            failedEjectCount.add(1, ordering: .relaxed)
            log(handler == nil ? "guest ejected CPU \(index), but the machine cannot remove CPUs; it stays"
                               : "guest ejected CPU \(index), but the machine could not remove it; it stays")
        }
    }

    private func log(_ message: String) {
        guard let suppressed = logLimiter.admit() else { return }
        Log.warning("CPU hot-plug: " + message + (suppressed > 0 ? " (\(suppressed) similar messages suppressed)" : ""))
    }
}

import SwiftletACPI
import Testing
import SwiftletTestSupport
import SwiftletSystem
@testable import SwiftletDevices

// The register semantics of docs/acpi-cpu-hotplug.md, without KVM.

private let SELECTOR: UInt64 = 0x0, STATUS: UInt64 = 0x4, COMMAND: UInt64 = 0x4, EVENTS: UInt64 = 0x8
private let ENABLED: UInt8 = 1, INSERTING: UInt8 = 2, REMOVING: UInt8 = 4
private let ACK_INSERT: UInt8 = 2, ACK_REMOVE: UInt8 = 4, EJECT: UInt8 = 8
private let CPU_HOTPLUG: UInt32 = 1

/// Records the eject handler's calls and answers with `result`.
private final class EjectRecorder: Sendable {
    private let state = Locked<(calls: [Int], result: Bool)>(([], true))
    var calls: [Int] { state.withLock { $0.calls } }
    func setResult(_ result: Bool) { state.withLock { $0.result = result } }
    func handle(_ index: Int) -> Bool {
        state.withLock { s in
            s.calls.append(index)
            return s.result
        }
    }
}

/// A controller for `maxCPUs` CPUs with a recorded line and eject handler;
/// the guest-side helpers do what the DSDT's AML does.
private struct Fixture {
    let irq = LevelRecorder()
    let ejects = EjectRecorder()
    let device: CPUHotplugController

    init(maxCPUs: Int = 4, bootCPUs: Int = 1) {
        let ejects = self.ejects
        device = CPUHotplugController(maxCPUs: maxCPUs, bootCPUs: bootCPUs, interrupt: irq,
                                      onEject: { ejects.handle($0) })
    }

    func read(_ offset: UInt64, size: Int = 4) -> UInt64 { device.read(at: offset, size: size) }
    func write(_ offset: UInt64, _ value: UInt64, size: Int = 4) { device.write(at: offset, size: size, value: value) }

    func select(_ cpu: UInt32) { write(SELECTOR, UInt64(cpu)) }
    func status(_ cpu: UInt32) -> UInt8 {
        select(cpu)
        return UInt8(read(STATUS, size: 1))
    }
    func command(_ cpu: UInt32, _ bits: UInt8) {
        select(cpu)
        write(COMMAND, UInt64(bits), size: 1)
    }
    var events: UInt32 { UInt32(read(EVENTS)) }
    func acknowledgeEvents(_ bits: UInt32 = CPU_HOTPLUG) { write(EVENTS, UInt64(bits)) }

    /// Rising then falling edge, `n` times.
    static func pulses(_ n: Int) -> [Bool] { (0..<n).flatMap { _ in [true, false] } }
}

@Suite struct CPUHotplugPowerOnTests {
    @Test func bootCPUsAreEnabledAndNothingIsPending() {
        let f = Fixture(maxCPUs: 4, bootCPUs: 2)
        #expect(f.read(SELECTOR) == 0, "selector resets to 0")
        #expect(f.status(0) == ENABLED)
        #expect(f.status(1) == ENABLED)
        #expect(f.status(2) == 0)
        #expect(f.status(3) == 0)
        #expect(f.events == 0)
        #expect(f.device.enabledCPUs == [0, 1])
        #expect(f.irq.history.isEmpty, "nothing pulses at power-on")
    }

    @Test func bootCPUCountIsClamped() {
        #expect(Fixture(maxCPUs: 4, bootCPUs: 0).device.enabledCPUs == [0], "CPU 0 always exists")
        #expect(Fixture(maxCPUs: 2, bootCPUs: 9).device.enabledCPUs == [0, 1])
        let tiny = CPUHotplugController(maxCPUs: 0, bootCPUs: 0, interrupt: LevelRecorder())
        #expect(tiny.maxCPUs == 1)
        #expect(tiny.isEnabled(0))
    }

    @Test func reservedBytesReadZero() {
        let f = Fixture()
        f.select(0)
        for offset: UInt64 in [5, 6, 7, 12, 13, 14, 15, 16, 0x100, 0xfff] {
            #expect(f.read(offset, size: 1) == 0, "offset \(offset)")
        }
        #expect(f.read(0xc, size: 4) == 0)
    }
}

@Suite struct CPUHotplugSelectorTests {
    @Test func selectorHoldsWhatWasWritten() {
        let f = Fixture()
        f.write(SELECTOR, 3)
        #expect(f.read(SELECTOR) == 3)
        f.write(SELECTOR, 0xdead_beef)
        #expect(f.read(SELECTOR) == 0xdead_beef, "out-of-range values are kept, as written")
        #expect(f.read(SELECTOR, size: 1) == 0xef)
        #expect(f.read(SELECTOR + 2, size: 2) == 0xdead)
    }

    @Test func byteAndWordWritesChangeOnlyTheirBytes() {
        let f = Fixture()
        f.write(SELECTOR, 0x1122_3344)
        f.write(SELECTOR + 1, 0xaa, size: 1)
        #expect(f.read(SELECTOR) == 0x1122_aa44)
        f.write(SELECTOR + 2, 0xbbcc, size: 2)
        #expect(f.read(SELECTOR) == 0xbbcc_aa44)
        f.write(SELECTOR, 0, size: 4)
        #expect(f.read(SELECTOR) == 0)
    }

    @Test func outOfRangeSelectorReadsZeroAndIgnoresCommands() throws {
        let f = Fixture(maxCPUs: 4)
        try f.device.markAdded(3)
        for selector: UInt32 in [4, 5, 0x100, 0xffff_ffff] {
            #expect(f.status(selector) == 0, "selector \(selector)")
            f.command(selector, ACK_INSERT | ACK_REMOVE | EJECT | ENABLED)
        }
        #expect(f.status(3) == ENABLED | INSERTING, "no command reached a real CPU")
        #expect(f.ejects.calls.isEmpty)
        #expect(f.device.ignoredEjects == 4)
    }

    @Test func selectorHighBytesMatter() throws {
        // 0x0000_0102 is not CPU 2: the whole 32-bit value selects.
        let f = Fixture(maxCPUs: 4)
        try f.device.markAdded(2)
        f.write(SELECTOR, 0x102)
        #expect(f.read(STATUS, size: 1) == 0)
    }
}

@Suite struct CPUHotplugStatusTests {
    @Test func markAddedSetsEnabledInsertingThenEventThenPulse() throws {
        let f = Fixture()
        try f.device.markAdded(2)
        #expect(f.status(2) == ENABLED | INSERTING)
        #expect(f.events == CPU_HOTPLUG)
        #expect(f.irq.history == [true, false], "an edge: assert, deassert")
        #expect(f.device.isEnabled(2))
        #expect(f.device.status(of: 2) == ENABLED | INSERTING)
    }

    @Test func acknowledgeInsertClearsOnlyInserting() throws {
        let f = Fixture()
        try f.device.markAdded(1)
        f.command(1, ACK_INSERT)
        #expect(f.status(1) == ENABLED)
        #expect(f.events == CPU_HOTPLUG, "the command does not touch EVENTS")
    }

    @Test func requestRemovalSetsRemovingAndKeepsEnabled() throws {
        let f = Fixture(maxCPUs: 4, bootCPUs: 2)
        try f.device.requestRemoval(1)
        #expect(f.status(1) == ENABLED | REMOVING)
        #expect(f.events == CPU_HOTPLUG)
        #expect(f.irq.history == [true, false])
        f.command(1, ACK_REMOVE)
        #expect(f.status(1) == ENABLED, "a guest that refuses: acknowledged, still present")
        #expect(f.ejects.calls.isEmpty)
    }

    @Test func zeroBitsDoNothingAndEnabledIsReadOnly() throws {
        let f = Fixture()
        try f.device.markAdded(1)
        try f.device.requestRemoval(1)
        f.command(1, 0)
        #expect(f.status(1) == ENABLED | INSERTING | REMOVING)
        f.command(1, ENABLED)  // bit 0: ignored
        #expect(f.status(1) == ENABLED | INSERTING | REMOVING)
        f.command(2, ENABLED)
        #expect(f.status(2) == 0, "writing bit 0 cannot enable a CPU")
        f.command(1, 0xf0)  // bits 7-4: ignored
        #expect(f.status(1) == ENABLED | INSERTING | REMOVING)
    }

    @Test func oneWriteMayCarrySeveralCommands() throws {
        let f = Fixture()
        try f.device.markAdded(1)
        try f.device.requestRemoval(1)
        f.command(1, ACK_INSERT | ACK_REMOVE)
        #expect(f.status(1) == ENABLED)
        try f.device.requestRemoval(1)
        f.command(1, ACK_REMOVE | EJECT)
        #expect(f.ejects.calls == [1])
        #expect(f.status(1) == 0)
    }

    @Test func vmmSideErrors() throws {
        let f = Fixture(maxCPUs: 4, bootCPUs: 2)
        #expect(throws: CPUHotplugController.Error.noSuchCPU(index: 4, maxCPUs: 4)) { try f.device.markAdded(4) }
        #expect(throws: CPUHotplugController.Error.noSuchCPU(index: -1, maxCPUs: 4)) { try f.device.markAdded(-1) }
        #expect(throws: CPUHotplugController.Error.alreadyPresent(index: 1)) { try f.device.markAdded(1) }
        #expect(throws: CPUHotplugController.Error.alreadyPresent(index: 0)) { try f.device.markAdded(0) }
        #expect(throws: CPUHotplugController.Error.bootCPU) { try f.device.requestRemoval(0) }
        #expect(throws: CPUHotplugController.Error.notPresent(index: 2)) { try f.device.requestRemoval(2) }
        #expect(throws: CPUHotplugController.Error.noSuchCPU(index: 9, maxCPUs: 4)) { try f.device.requestRemoval(9) }
        #expect(throws: CPUHotplugController.Error.bootCPU) { try f.device.markRemoved(0) }
        #expect(throws: CPUHotplugController.Error.noSuchCPU(index: 4, maxCPUs: 4)) { try f.device.markRemoved(4) }
        #expect(f.events == 0, "a refused request sets no event")
        #expect(f.irq.history.isEmpty, "and pulses nothing")
        #expect(f.device.enabledCPUs == [0, 1])
        #expect(!f.device.isEnabled(-1) && !f.device.isEnabled(4) && f.device.status(of: 99) == 0)
        #expect("\(CPUHotplugController.Error.bootCPU)".contains("boot processor"))
    }

    @Test func markRemovedClearsEverythingWithoutTellingTheGuest() throws {
        let f = Fixture()
        try f.device.markAdded(3)
        try f.device.requestRemoval(3)
        f.acknowledgeEvents()
        let pulses = f.irq.history.count
        #expect(try f.device.markRemoved(3) == true)
        #expect(f.status(3) == 0)
        #expect(f.events == 0, "no event")
        #expect(f.irq.history.count == pulses, "no pulse")
        #expect(try f.device.markRemoved(3) == false, "already gone")
        #expect(f.ejects.calls.isEmpty)
    }

    @Test func aCPUCanComeBackAfterEject() throws {
        let f = Fixture()
        try f.device.markAdded(2)
        f.command(2, ACK_INSERT)
        try f.device.requestRemoval(2)
        f.command(2, ACK_REMOVE)
        f.command(2, EJECT)
        #expect(f.status(2) == 0)
        try f.device.markAdded(2)
        #expect(f.status(2) == ENABLED | INSERTING)
        f.command(2, ACK_INSERT)
        #expect(f.status(2) == ENABLED)
        #expect(f.device.ejects == 1)
    }
}

@Suite struct CPUHotplugEventTests {
    @Test func eventsAreWriteOneToClearNotReadToClear() throws {
        let f = Fixture()
        try f.device.markAdded(1)
        #expect(f.events == CPU_HOTPLUG)
        #expect(f.events == CPU_HOTPLUG, "a read does not clear")
        f.write(EVENTS, 0)
        #expect(f.events == CPU_HOTPLUG, "writing 0 clears nothing")
        f.write(EVENTS, 0xffff_fffe)
        #expect(f.events == CPU_HOTPLUG, "other bits do not clear bit 0")
        f.write(EVENTS, 1)
        #expect(f.events == 0)
        #expect(f.status(1) == ENABLED | INSERTING, "acknowledging the event leaves the per-CPU bits")
    }

    @Test func eventsAcceptNarrowAccesses() throws {
        let f = Fixture()
        try f.device.markAdded(1)
        #expect(f.read(EVENTS, size: 1) == 1)
        #expect(f.read(EVENTS + 1, size: 1) == 0)
        #expect(f.read(EVENTS, size: 2) == 1)
        f.write(EVENTS + 1, 0xff, size: 1)
        #expect(f.events == CPU_HOTPLUG, "a write to byte 1 does not clear bit 0")
        f.write(EVENTS, 0x01, size: 1)
        #expect(f.events == 0)
    }

    @Test func changesCoalesceBehindOneEventBit() throws {
        let f = Fixture(maxCPUs: 8, bootCPUs: 2)
        try f.device.markAdded(2)
        try f.device.markAdded(5)
        try f.device.requestRemoval(1)
        #expect(f.events == CPU_HOTPLUG)
        #expect(f.irq.history == Fixture.pulses(3), "each change pulses")
        // The AML: acknowledge what was read, then scan every CPU.
        let pending = f.events
        f.acknowledgeEvents(pending)
        var inserting: [UInt32] = [], removing: [UInt32] = []
        for cpu in 0..<UInt32(8) {
            let status = f.status(cpu)
            if status & INSERTING != 0 { inserting.append(cpu); f.command(cpu, ACK_INSERT) }
            else if status & REMOVING != 0 { removing.append(cpu); f.command(cpu, ACK_REMOVE) }
        }
        #expect(inserting == [2, 5])
        #expect(removing == [1])
        #expect(f.events == 0)
    }

    @Test func aChangeDuringTheScanIsNotLost() throws {
        let f = Fixture()
        try f.device.markAdded(1)
        f.acknowledgeEvents()  // the guest acknowledges before it scans...
        #expect(f.status(1) & INSERTING != 0)
        try f.device.markAdded(2)  // ...and a change arrives mid-scan
        f.command(1, ACK_INSERT)
        #expect(f.events == CPU_HOTPLUG, "the event is pending again")
        #expect(f.irq.history == Fixture.pulses(2), "and a new edge was sent")
        #expect(f.status(2) == ENABLED | INSERTING)
    }

    @Test func bitsAreVisibleBeforeTheEventAndTheEventBeforeThePulse() throws {
        // The line reads the registers the moment it is asserted, as a
        // guest handler woken by the edge would.
        final class Probe: InterruptLine {
            let device = Locked<CPUHotplugController?>(nil)
            let seen = Locked<[(events: UInt64, status: UInt64)]>([])
            let cpu: UInt32
            init(cpu: UInt32) { self.cpu = cpu }
            func setLevel(_ asserted: Bool) {
                guard asserted, let device = device.withLock({ $0 }) else { return }
                // A fresh read of each register, as the guest's would be.
                let events = device.read(at: 8, size: 4)
                let saved = device.read(at: 0, size: 4)
                device.write(at: 0, size: 4, value: UInt64(cpu))
                let status = device.read(at: 4, size: 1)
                device.write(at: 0, size: 4, value: saved)
                seen.withLock { $0.append((events, status)) }
            }
        }
        let probe = Probe(cpu: 3)
        let device = CPUHotplugController(maxCPUs: 4, bootCPUs: 1, interrupt: probe, onEject: { _ in true })
        probe.device.withLock { $0 = device }
        try device.markAdded(3)
        try device.requestRemoval(3)
        let seen = probe.seen.withLock { $0 }
        #expect(seen.count == 2)
        #expect(seen.first?.events == 1 && seen.first?.status == UInt64(ENABLED | INSERTING))
        #expect(seen.last?.events == 1 && seen.last?.status == UInt64(ENABLED | INSERTING | REMOVING))
    }
}

@Suite struct CPUHotplugEjectTests {
    @Test func ejectCallsTheHandlerAndClearsEnabledBeforeTheWriteReturns() throws {
        let f = Fixture(maxCPUs: 4, bootCPUs: 3)
        try f.device.requestRemoval(2)
        f.command(2, ACK_REMOVE)
        f.write(COMMAND, UInt64(EJECT), size: 1)
        #expect(f.ejects.calls == [2])
        #expect(f.read(STATUS, size: 1) == 0, "the very next access reads ENABLED = 0 (_STA after _EJ0)")
        #expect(f.device.ejects == 1)
        #expect(f.device.enabledCPUs == [0, 1])
        #expect(f.events == CPU_HOTPLUG, "left from the request; the eject itself sets no event")
        #expect(f.irq.history == [true, false], "and sends no pulse")
    }

    @Test func ejectClearsPendingInsertingAndRemoving() throws {
        let f = Fixture()
        try f.device.markAdded(1)
        try f.device.requestRemoval(1)
        f.command(1, EJECT)
        #expect(f.status(1) == 0)
    }

    @Test func ejectWithoutARequestIsAllowed() throws {
        // Linux may offline and eject on its own (echo 1 > .../eject).
        let f = Fixture(maxCPUs: 4, bootCPUs: 2)
        f.command(1, EJECT)
        #expect(f.ejects.calls == [1])
        #expect(f.status(1) == 0)
    }

    @Test func ejectOfTheBootCPUIsIgnoredAndCounted() {
        let f = Fixture(maxCPUs: 4, bootCPUs: 2)
        f.command(0, EJECT)
        f.command(0, EJECT | ACK_REMOVE)
        #expect(f.ejects.calls.isEmpty)
        #expect(f.status(0) == ENABLED)
        #expect(f.device.ignoredEjects == 2)
        #expect(f.device.ejects == 0)
    }

    @Test func ejectOfAnAbsentCPUIsIgnoredAndCounted() throws {
        let f = Fixture(maxCPUs: 4, bootCPUs: 1)
        f.command(2, EJECT)
        try f.device.markAdded(3)
        f.command(3, EJECT)
        f.command(3, EJECT)  // already ejected
        #expect(f.ejects.calls == [3])
        #expect(f.device.ignoredEjects == 2)
        #expect(f.device.ejects == 1)
    }

    @Test func aRefusedEjectLeavesTheCPUEnabled() throws {
        let f = Fixture(maxCPUs: 4, bootCPUs: 2)
        f.ejects.setResult(false)
        try f.device.requestRemoval(1)
        f.command(1, ACK_REMOVE | EJECT)
        #expect(f.ejects.calls == [1])
        #expect(f.status(1) == ENABLED, "REMOVING was acknowledged; the CPU stays")
        #expect(f.device.failedEjects == 1)
        #expect(f.device.ejects == 0)
        f.ejects.setResult(true)
        f.command(1, EJECT)
        #expect(f.status(1) == 0, "a later eject can succeed")
    }

    @Test func withoutAHandlerEjectFails() {
        let device = CPUHotplugController(maxCPUs: 2, bootCPUs: 2, interrupt: LevelRecorder())
        device.write(at: SELECTOR, size: 4, value: 1)
        device.write(at: COMMAND, size: 1, value: UInt64(EJECT))
        #expect(device.isEnabled(1))
        #expect(device.failedEjects == 1)
        let calls = Locked<[Int]>([])
        device.setEjectHandler { index in calls.withLock { $0.append(index) }; return true }
        device.write(at: COMMAND, size: 1, value: UInt64(EJECT))
        #expect(!device.isEnabled(1))
        #expect(calls.withLock { $0 } == [1])
        device.setEjectHandler(nil)
    }

    @Test func theHandlerRunsWithoutTheDeviceLock() throws {
        // The machine's handler stops a vCPU that may itself be inside this
        // device; and the guest CPU being ejected may be the writer. The
        // handler (and anything it waits for) must be able to use the device.
        let box = Locked<CPUHotplugController?>(nil)
        let observed = Locked<[String]>([])
        let device = CPUHotplugController(maxCPUs: 4, bootCPUs: 3, interrupt: LevelRecorder(), onEject: { index in
            guard let device = box.withLock({ $0 }) else { return false }
            let guestSelector = device.read(at: 0, size: 4)  // another vCPU's access
            observed.withLock { $0.append("cpu \(index) enabled=\(device.isEnabled(index)) selector=\(guestSelector)") }
            #expect(throws: CPUHotplugController.Error.ejectInProgress(index: index)) { try device.requestRemoval(index) }
            #expect(throws: CPUHotplugController.Error.alreadyPresent(index: index)) { try device.markAdded(index) }
            return true
        })
        box.withLock { $0 = device }
        device.write(at: SELECTOR, size: 4, value: 2)
        device.write(at: COMMAND, size: 1, value: UInt64(EJECT))
        #expect(observed.withLock { $0 } == ["cpu 2 enabled=true selector=2"])
        #expect(!device.isEnabled(2))
        // Gone, so it can be added again.
        try device.markAdded(2)
        #expect(device.status(of: 2) == ENABLED | INSERTING)
    }

    @Test func aSecondEjectDuringAnEjectIsIgnored() {
        // vCPU 1 ejects CPU 2 while vCPU 2 ejects CPU 1: if both handlers ran,
        // each would wait for the other's thread. The second is refused.
        let box = Locked<CPUHotplugController?>(nil)
        let calls = Locked<[Int]>([])
        let device = CPUHotplugController(maxCPUs: 4, bootCPUs: 3, interrupt: LevelRecorder(), onEject: { index in
            calls.withLock { $0.append(index) }
            if index == 2, let device = box.withLock({ $0 }) {
                device.write(at: SELECTOR, size: 4, value: 1)
                device.write(at: COMMAND, size: 1, value: UInt64(EJECT))
                device.write(at: SELECTOR, size: 4, value: 2)
                device.write(at: COMMAND, size: 1, value: UInt64(EJECT))  // the same CPU again
            }
            return true
        })
        box.withLock { $0 = device }
        device.write(at: SELECTOR, size: 4, value: 2)
        device.write(at: COMMAND, size: 1, value: UInt64(EJECT))
        #expect(calls.withLock { $0 } == [2])
        #expect(device.ignoredEjects == 2)
        #expect(device.enabledCPUs == [0, 1])
    }

    @Test func markRemovedDuringAnEjectIsHarmless() {
        let box = Locked<CPUHotplugController?>(nil)
        let device = CPUHotplugController(maxCPUs: 4, bootCPUs: 3, interrupt: LevelRecorder(), onEject: { index in
            _ = try? box.withLock({ $0 })?.markRemoved(index)
            return false
        })
        box.withLock { $0 = device }
        device.write(at: SELECTOR, size: 4, value: 1)
        device.write(at: COMMAND, size: 1, value: UInt64(EJECT))
        #expect(!device.isEnabled(1), "the forced removal stands even though the eject failed")
        #expect(device.failedEjects == 1)
    }
}

@Suite struct CPUHotplugAccessWidthTests {
    @Test func wideReadsAssembleBytes() throws {
        let f = Fixture()
        try f.device.markAdded(2)
        f.select(2)
        #expect(f.read(STATUS, size: 4) == UInt64(ENABLED | INSERTING), "status with its three reserved bytes")
        #expect(f.read(STATUS, size: 2) == UInt64(ENABLED | INSERTING))
        #expect(f.read(SELECTOR, size: 8) == 2 | UInt64(ENABLED | INSERTING) << 32)
        #expect(f.read(SELECTOR + 3, size: 2) == UInt64(ENABLED | INSERTING) << 8, "unaligned: selector byte 3, status")
        #expect(f.read(EVENTS, size: 8) == 1)
        #expect(f.read(EVENTS - 1, size: 2) == 0x100, "reserved byte 7, events byte 0")
    }

    @Test func wideWritesGoByteByByteLowestFirst() throws {
        let f = Fixture()
        try f.device.markAdded(3)
        // Selector 3 and ACK_INSERT in one 8-byte write.
        f.write(SELECTOR, 3 | UInt64(ACK_INSERT) << 32, size: 8)
        #expect(f.read(SELECTOR) == 3)
        #expect(f.read(STATUS, size: 1) == UInt64(ENABLED))
        // A 4-byte COMMAND write: the command in the low byte, reserved bytes ignored.
        try f.device.requestRemoval(3)
        f.write(COMMAND, UInt64(ACK_REMOVE) | 0xffff_ff00, size: 4)
        #expect(f.read(STATUS, size: 1) == UInt64(ENABLED))
        #expect(f.read(SELECTOR) == 3, "the reserved bytes did not spill anywhere")
        // Status and events are not writable as data.
        f.write(EVENTS + 4, 0xffff_ffff)
        #expect(f.read(0xc) == 0)
        f.write(STATUS + 1, 0xffffff, size: 3)
        #expect(f.read(STATUS, size: 1) == UInt64(ENABLED))
        // An 8-byte write at offset 4: command, reserved, then EVENTS (W1C).
        f.write(STATUS, UInt64(EJECT) | UInt64(CPU_HOTPLUG) << 32, size: 8)
        #expect(f.ejects.calls == [3])
        #expect(f.read(STATUS, size: 1) == 0)
        #expect(f.events == 0)
    }

    @Test func oddSizesAndOffsetsNeverTrap() {
        let f = Fixture()
        for size in [-1, 0, 3, 5, 7, 9, 1000, Int.max, Int.min] {
            _ = f.read(SELECTOR, size: size)
            f.write(SELECTOR + 1, 0x1234_5678_9abc_def0, size: size)
        }
        for offset: UInt64 in [0x10, 0x11, 0xfff, 0x1000, .max - 8] {
            #expect(f.read(offset, size: 8) == 0, "offset \(offset)")
            f.write(offset, .max, size: 8)
        }
        // Bytes past UInt64.max wrap: they read as all ones and are not written.
        #expect(f.read(.max, size: 8) == 0xffff_ffff_ffff_ff00)
        #expect(f.read(.max - 3, size: 8) == 0xffff_ffff_0000_0000)
        f.write(.max - 3, .max, size: 8)
        #expect(f.read(.max, size: 1) == 0)
        #expect(f.status(0) == ENABLED)
        #expect(f.events == 0)
    }
}

@Suite struct CPUHotplugHostileGuestTests {

    @Test func randomAccessesKeepTheInvariants() throws {
        let f = Fixture(maxCPUs: 6, bootCPUs: 2)
        var random = SeededGenerator(seed: 42)
        let sizes = [1, 2, 4, 8, 0, 3, 16]
        for step in 0..<20_000 {
            let r = random.next()
            let offset = r & 0x1f
            let size = sizes[Int(r >> 8 & 0xff) % sizes.count]
            // Mostly plausible selectors, sometimes anything.
            let value = r >> 16 & 1 == 0 ? random.next() & 0xff_ff0f : random.next()
            if r >> 17 & 1 == 0 {
                _ = f.read(offset, size: size)
            } else {
                f.write(offset, value, size: size)
            }
            if step % 97 == 0 { _ = try? f.device.markAdded(Int(r >> 24 % 6)) }
            if step % 89 == 0 { _ = try? f.device.requestRemoval(Int(r >> 32 % 6)) }
        }
        #expect(f.device.isEnabled(0), "the boot CPU is never ejected")
        #expect(!f.ejects.calls.contains(0))
        for index in 0..<6 {
            let status = f.device.status(of: index)
            #expect(status & ~(ENABLED | INSERTING | REMOVING) == 0)
            #expect(status == 0 || status & ENABLED != 0, "INSERTING or REMOVING only on an ENABLED CPU")
        }
        #expect(f.events & ~CPU_HOTPLUG == 0, "reserved event bits stay 0")
    }

    @Test func concurrentGuestAndVMMAccessesDoNotDeadlock() async throws {
        let irq = LevelRecorder()
        let box = Locked<CPUHotplugController?>(nil)
        let device = CPUHotplugController(maxCPUs: 8, bootCPUs: 1, interrupt: irq, onEject: { index in
            // The machine's handler touches the device while other vCPUs do too.
            _ = box.withLock({ $0 })?.status(of: index)
            return index % 2 == 0
        })
        box.withLock { $0 = device }
        await withTaskGroup(of: Void.self) { group in
            for seed in 0..<4 {
                group.addTask {
                    var random = SeededGenerator(seed: UInt64(seed))
                    for _ in 0..<5_000 {
                        let r = random.next()
                        device.write(at: 0, size: 4, value: r & 7)
                        if r >> 8 & 1 == 0 {
                            device.write(at: 4, size: 1, value: r >> 16 & 0xe)
                        } else {
                            _ = device.read(at: r >> 24 & 0xf, size: 4)
                        }
                        if r >> 9 & 7 == 0 { device.write(at: 8, size: 4, value: 1) }
                    }
                }
            }
            group.addTask {
                var random = SeededGenerator(seed: 99)
                for _ in 0..<5_000 {
                    let index = Int(random.next() % 8)
                    switch random.next() % 3 {
                    case 0: _ = try? device.markAdded(index)
                    case 1: _ = try? device.requestRemoval(index)
                    default: _ = try? device.markRemoved(index)
                    }
                }
            }
        }
        #expect(device.isEnabled(0))
        #expect(irq.history.count % 2 == 0 && !irq.level, "every pulse came down again")
    }
}

import Synchronization
import SwiftletSystem

/// A 16550A UART, as COM1 on a PC: eight byte registers, a 16-byte receive
/// FIFO, and an interrupt wire gated by MCR.OUT2.
///
/// Register semantics follow the National/TI PC16550D datasheet (section
/// numbers below refer to its "Registers" chapter, 8.x). Two simplifications,
/// both invisible to a driver that follows the datasheet:
///
/// - The transmitter is instantaneous. A byte written to THR goes straight to
///   the `SerialOutput` sink, so THR and the transmitter are always empty
///   (LSR.THRE and LSR.TEMT always read 1) and the transmit FIFO never holds
///   anything. The divisor latch is stored but sets no line speed.
/// - There is no line clock, so the receive FIFO's character timeout (IIR ID
///   0b1100, "no characters in or out of the FIFO for four character times")
///   has already expired whenever data sits below the trigger level: such
///   data is reported at once with the timeout ID, and data at or above the
///   trigger level with the received-data-available ID. Either way the guest
///   learns about every byte without waiting.
///
/// Host input (the VMM's stdin) arrives through `receive(_:)`, which never
/// drops bytes: it accepts what fits in the FIFO and returns the count, so the
/// caller keeps the rest and stops reading its input. When the guest makes
/// room again, the handler set with `setInputReadyHandler(_:)` runs once.
///
/// Register the port at 0x3f8 with length `registerCount`; wire `interrupt`
/// to IRQ 4. Wider accesses are split into byte accesses at consecutive
/// offsets, as an 8-bit ISA device sees them.
public final class SerialPort: BusDevice {
    /// The port occupies eight consecutive I/O addresses.
    public static let registerCount: UInt64 = 8
    /// Depth of the receive FIFO in FIFO mode (1 in 16450 mode).
    public static let fifoCapacity = 16

    // Register offsets (datasheet table 2).
    private enum Register {
        static let data: UInt64 = 0                  // RBR / THR, DLL when LCR.DLAB
        static let interruptEnable: UInt64 = 1       // IER, DLM when LCR.DLAB
        static let interruptIdentification: UInt64 = 2  // IIR (read) / FCR (write)
        static let lineControl: UInt64 = 3
        static let modemControl: UInt64 = 4
        static let lineStatus: UInt64 = 5
        static let modemStatus: UInt64 = 6
        static let scratch: UInt64 = 7
    }

    // IER bits (8.3).
    private enum IER {
        static let receivedData: UInt8 = 0x01      // ERBFI
        static let transmitterEmpty: UInt8 = 0x02  // ETBEI
        static let lineStatus: UInt8 = 0x04        // ELSI
        static let modemStatus: UInt8 = 0x08       // EDSSI
        static let writable: UInt8 = 0x0f          // bits 4-7 are always 0
    }

    // IIR values (8.4, table 4), bits 3:0; bits 7:6 mirror FCR0.
    private enum IIR {
        static let none: UInt8 = 0x01
        static let lineStatus: UInt8 = 0x06
        static let receivedData: UInt8 = 0x04
        static let characterTimeout: UInt8 = 0x0c
        static let transmitterEmpty: UInt8 = 0x02
        static let modemStatus: UInt8 = 0x00
        static let fifosEnabled: UInt8 = 0xc0
    }

    // FCR bits (8.5).
    private enum FCR {
        static let enable: UInt8 = 0x01
        static let resetReceiver: UInt8 = 0x02
        static let resetTransmitter: UInt8 = 0x04
    }

    // LCR bit 7 (8.6).
    private static let divisorLatchAccess: UInt8 = 0x80

    // MCR bits (8.7); bits 5-7 are always 0 on a 16550A.
    private enum MCR {
        static let dtr: UInt8 = 0x01
        static let rts: UInt8 = 0x02
        static let out1: UInt8 = 0x04
        static let out2: UInt8 = 0x08
        static let loopback: UInt8 = 0x10
        static let writable: UInt8 = 0x1f
    }

    // LSR bits (8.8).
    private enum LSR {
        static let dataReady: UInt8 = 0x01
        static let overrun: UInt8 = 0x02
        static let transmitterHoldingEmpty: UInt8 = 0x20
        static let transmitterEmpty: UInt8 = 0x40
    }

    // MSR bits (8.9): deltas in 3:0, line states in 7:4.
    private enum MSR {
        static let deltaCTS: UInt8 = 0x01
        static let deltaDSR: UInt8 = 0x02
        static let trailingEdgeRI: UInt8 = 0x04
        static let deltaDCD: UInt8 = 0x08
        static let cts: UInt8 = 0x10
        static let dsr: UInt8 = 0x20
        static let ri: UInt8 = 0x40
        static let dcd: UInt8 = 0x80
    }

    /// What the host side of the line presents outside loopback: a terminal
    /// that is connected and ready (DCD, DSR, CTS), not ringing.
    private static let hostModemLines: UInt8 = MSR.dcd | MSR.dsr | MSR.cts

    private struct State {
        var interruptEnable: UInt8 = 0
        var lineControl: UInt8 = 0
        var modemControl: UInt8 = 0
        var scratch: UInt8 = 0
        // 115200 / 12 = 9600 baud, a conventional power-on value; the
        // datasheet leaves the latch undefined after reset.
        var divisorLow: UInt8 = 12
        var divisorHigh: UInt8 = 0
        var fifosEnabled = false
        var triggerLevel = 1
        var receiver = ByteRing(capacity: SerialPort.fifoCapacity)
        var overrun = false
        var transmitterEmptyPending = false
        var modemStatusDeltas: UInt8 = 0
        var irqAsserted = false
        /// A `receive` call came up short and the caller has not been told
        /// there is room again.
        var inputBlocked = false
        var inputReady: (@Sendable () -> Void)?

        var loopback: Bool { modemControl & MCR.loopback != 0 }
        var divisorLatch: Bool { lineControl & SerialPort.divisorLatchAccess != 0 }
        /// The receive buffer: the FIFO in FIFO mode, a single RBR otherwise.
        var receiverCapacity: Int { fifosEnabled ? SerialPort.fifoCapacity : 1 }
        /// How many bytes host input may add now. In loopback the serial
        /// input is disconnected from the receiver (8.7, bit 4), so none.
        var hostRoom: Int { loopback ? 0 : receiverCapacity - receiver.count }

        /// CTS, DSR, RI, DCD as the UART sees them. In loopback the modem
        /// control outputs are wired to the inputs (8.7, bit 4): RTS→CTS,
        /// DTR→DSR, OUT1→RI, OUT2→DCD.
        var modemLines: UInt8 {
            guard loopback else { return SerialPort.hostModemLines }
            var lines: UInt8 = 0
            if modemControl & MCR.rts != 0 { lines |= MSR.cts }
            if modemControl & MCR.dtr != 0 { lines |= MSR.dsr }
            if modemControl & MCR.out1 != 0 { lines |= MSR.ri }
            if modemControl & MCR.out2 != 0 { lines |= MSR.dcd }
            return lines
        }

        /// The highest-priority pending interrupt that IER enables (8.4,
        /// table 4): line status, then received data (or character timeout),
        /// then THR empty, then modem status.
        var pendingInterrupt: UInt8 {
            if interruptEnable & IER.lineStatus != 0 && overrun {
                return IIR.lineStatus
            }
            if interruptEnable & IER.receivedData != 0 && receiver.count > 0 {
                return fifosEnabled && receiver.count < triggerLevel ? IIR.characterTimeout : IIR.receivedData
            }
            if interruptEnable & IER.transmitterEmpty != 0 && transmitterEmptyPending {
                return IIR.transmitterEmpty
            }
            if interruptEnable & IER.modemStatus != 0 && modemStatusDeltas != 0 {
                return IIR.modemStatus
            }
            return IIR.none
        }

        /// Latches the MSR delta bits for a change of the modem inputs
        /// (8.9): DCTS, DDSR and DDCD on any change, TERI when RI turns off.
        mutating func noteModemLinesChange(from old: UInt8, to new: UInt8) {
            let changed = old ^ new
            if changed & MSR.cts != 0 { modemStatusDeltas |= MSR.deltaCTS }
            if changed & MSR.dsr != 0 { modemStatusDeltas |= MSR.deltaDSR }
            if old & MSR.ri != 0 && new & MSR.ri == 0 { modemStatusDeltas |= MSR.trailingEdgeRI }
            if changed & MSR.dcd != 0 { modemStatusDeltas |= MSR.deltaDCD }
        }
    }

    /// What an access does outside the lock.
    private struct Effects {
        var transmitted: UInt8?
        var inputReady: (@Sendable () -> Void)?
    }

    private let interrupt: any InterruptLine
    private let output: any SerialOutput
    private let state = Locked(State())

    /// `interrupt` is driven with the device lock held, so its `setLevel`
    /// must not call back into this port; it is called only when the level
    /// changes.
    public init(interrupt: any InterruptLine, output: any SerialOutput = DiscardingOutput()) {
        self.interrupt = interrupt
        self.output = output
    }

    // MARK: Host input

    /// Offers bytes from the host to the receiver; returns how many were
    /// taken, from the front of `bytes`. Fewer than `bytes.count` means the
    /// receiver is full (or in loopback): keep the rest, stop reading input,
    /// and offer it again after the input-ready handler runs (or when
    /// `receiveCapacity` is above 0).
    public func receive(_ bytes: some Collection<UInt8>) -> Int {
        state.withLock { s in
            guard !bytes.isEmpty else { return 0 }
            var accepted = 0
            if !s.loopback {
                for byte in bytes {
                    guard s.receiver.count < s.receiverCapacity else { break }
                    s.receiver.push(byte)
                    accepted += 1
                }
            }
            if accepted < bytes.count { s.inputBlocked = true }
            updateInterrupt(&s)
            return accepted
        }
    }

    /// How many bytes `receive` would accept right now.
    public var receiveCapacity: Int {
        state.withLock { $0.hostRoom }
    }

    /// Sets the closure that runs, once, when the receiver has room again
    /// after a `receive` call came up short. It runs on whichever thread made
    /// the room (usually a vCPU thread reading RBR), outside the port's lock,
    /// possibly before that `receive` call has returned to its caller; it
    /// should only wake the input loop (for example `EventNotifier.notify`).
    public func setInputReadyHandler(_ handler: (@Sendable () -> Void)?) {
        state.withLock { $0.inputReady = handler }
    }

    // MARK: Guest accesses

    public func read(at offset: UInt64, size: Int) -> UInt64 {
        var effects = Effects()
        let value = state.withLock { s in
            let value = readByteRegisters(at: offset, size: size) { readRegister(&s, $0) }
            finishAccess(&s, &effects)
            return value
        }
        perform(effects)
        return value
    }

    public func write(at offset: UInt64, size: Int, value: UInt64) {
        var effects = Effects()
        state.withLock { s in
            writeByteRegisters(at: offset, size: size, value: value) { writeRegister(&s, $0, $1, &effects) }
            finishAccess(&s, &effects)
        }
        perform(effects)
    }

    private func readRegister(_ s: inout State, _ offset: UInt64) -> UInt8 {
        switch offset {
        case Register.data:
            if s.divisorLatch { return s.divisorLow }
            // An empty receiver reads 0 rather than stale data.
            return s.receiver.pop() ?? 0
        case Register.interruptEnable:
            return s.divisorLatch ? s.divisorHigh : s.interruptEnable
        case Register.interruptIdentification:
            let pending = s.pendingInterrupt
            // Reading IIR while it reports THR empty clears that interrupt
            // (8.4, table 4, "reset control").
            if pending == IIR.transmitterEmpty { s.transmitterEmptyPending = false }
            return pending | (s.fifosEnabled ? IIR.fifosEnabled : 0)
        case Register.lineControl:
            return s.lineControl
        case Register.modemControl:
            return s.modemControl
        case Register.lineStatus:
            var status = LSR.transmitterHoldingEmpty | LSR.transmitterEmpty
            if s.receiver.count > 0 { status |= LSR.dataReady }
            if s.overrun { status |= LSR.overrun }
            // Reading LSR clears the error bits and with them the receiver
            // line status interrupt (8.8).
            s.overrun = false
            return status
        case Register.modemStatus:
            let status = s.modemLines | s.modemStatusDeltas
            // Reading MSR clears the delta bits and the modem status
            // interrupt (8.9).
            s.modemStatusDeltas = 0
            return status
        case Register.scratch:
            return s.scratch
        default:
            return 0xff
        }
    }

    private func writeRegister(_ s: inout State, _ offset: UInt64, _ value: UInt8, _ effects: inout Effects) {
        switch offset {
        case Register.data:
            if s.divisorLatch {
                s.divisorLow = value
            } else if s.loopback {
                // Transmitter output loops back into the receiver (8.7, bit 4).
                loopBack(&s, value)
                s.transmitterEmptyPending = true
            } else {
                effects.transmitted = value
                // Writing THR clears the THR-empty interrupt (table 4); the
                // instantaneous transmitter empties THR again at once, which
                // raises it anew.
                s.transmitterEmptyPending = true
            }
        case Register.interruptEnable:
            if s.divisorLatch {
                s.divisorHigh = value
                return
            }
            let old = s.interruptEnable
            s.interruptEnable = value & IER.writable
            // Enabling ETBEI while THR is empty raises the THR-empty
            // interrupt; drivers (Linux's serial8250 start_tx) count on it.
            // Disabling it forgets a pending one.
            if s.interruptEnable & IER.transmitterEmpty == 0 {
                s.transmitterEmptyPending = false
            } else if old & IER.transmitterEmpty == 0 {
                s.transmitterEmptyPending = true
            }
        case Register.interruptIdentification:
            writeFIFOControl(&s, value)
        case Register.lineControl:
            s.lineControl = value
        case Register.modemControl:
            let oldLines = s.modemLines
            s.modemControl = value & MCR.writable
            s.noteModemLinesChange(from: oldLines, to: s.modemLines)
        case Register.scratch:
            s.scratch = value
        default:
            // LSR is for factory test and MSR reflects inputs: writes to them,
            // and to offsets beyond the port, change nothing.
            break
        }
    }

    /// FCR (8.5): bit 0 enables the FIFOs, and the other bits are programmed
    /// only while it is 1. Changing the mode empties the FIFOs.
    private func writeFIFOControl(_ s: inout State, _ value: UInt8) {
        let enable = value & FCR.enable != 0
        if enable != s.fifosEnabled {
            s.receiver.removeAll()
            s.fifosEnabled = enable
        }
        guard enable else { return }
        if value & FCR.resetReceiver != 0 { s.receiver.removeAll() }
        // FCR.resetTransmitter: the transmit FIFO is always empty here.
        switch value >> 6 {
        case 0: s.triggerLevel = 1
        case 1: s.triggerLevel = 4
        case 2: s.triggerLevel = 8
        default: s.triggerLevel = 14
        }
    }

    /// A looped-back byte meeting a full receiver is an overrun (8.8, bit 1):
    /// in FIFO mode the FIFO keeps its contents and the new byte is lost; in
    /// 16450 mode it overwrites RBR.
    private func loopBack(_ s: inout State, _ byte: UInt8) {
        if s.receiver.count < s.receiverCapacity {
            s.receiver.push(byte)
            return
        }
        s.overrun = true
        if !s.fifosEnabled {
            s.receiver.removeAll()
            s.receiver.push(byte)
        }
    }

    private func finishAccess(_ s: inout State, _ effects: inout Effects) {
        updateInterrupt(&s)
        if s.inputBlocked && s.hostRoom > 0 {
            s.inputBlocked = false
            effects.inputReady = s.inputReady
        }
    }

    /// The PC wires INTRPT to the IRQ line through a buffer enabled by the
    /// OUT2 pin; in loopback that pin is forced inactive (8.7, bit 4), which
    /// on a PC disconnects the interrupt even though the UART still reports
    /// it in IIR.
    private func updateInterrupt(_ s: inout State) {
        let gateOpen = s.modemControl & MCR.out2 != 0 && !s.loopback
        let level = gateOpen && s.pendingInterrupt != IIR.none
        if level != s.irqAsserted {
            s.irqAsserted = level
            interrupt.setLevel(level)
        }
    }

    private func perform(_ effects: Effects) {
        if let byte = effects.transmitted { output.write(byte) }
        effects.inputReady?()
    }
}

/// A fixed-capacity FIFO of bytes; storage is allocated once.
struct ByteRing {
    private var storage: [UInt8]
    private var head = 0
    private(set) var count = 0

    init(capacity: Int) {
        storage = [UInt8](repeating: 0, count: max(1, capacity))
    }

    var capacity: Int { storage.count }

    /// Appends `byte`; a full ring ignores it (callers check `count`).
    mutating func push(_ byte: UInt8) {
        guard count < storage.count else { return }
        storage[(head + count) % storage.count] = byte
        count += 1
    }

    mutating func pop() -> UInt8? {
        guard count > 0 else { return nil }
        let byte = storage[head]
        head = (head + 1) % storage.count
        count -= 1
        return byte
    }

    mutating func removeAll() {
        head = 0
        count = 0
    }
}

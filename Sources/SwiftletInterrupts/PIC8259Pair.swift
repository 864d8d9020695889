import SwiftletDevices
import SwiftletSystem

/// The PC's two cascaded 8259As and their edge/level control registers:
/// the master at ports 0x20–0x21 (IRQ 0–7), the slave at 0xA0–0xA1
/// (IRQ 8–15) with its INT wired to the master's IR2, and the ELCR at
/// 0x4D0–0x4D1 (PIIX/ICH, one bit per IRQ).
///
/// Devices drive `setIRQ`; the master's INT output goes to `output`, which a
/// PC wires to the BSP's LINT0 (ExtINT in virtual-wire mode). The vCPU
/// layer runs the INTA cycle with `acknowledge()` when its local APIC
/// reports an external interrupt. Everything is behind one lock.
///
/// The state after creation or `reset()` is KVM's and QEMU's: nothing
/// masked, vectors from 0, until the guest's ICW sequence. (The datasheet
/// leaves the power-on state undefined; matching the in-kernel PIC keeps a
/// guest's view the same in both irqchip modes.)
public final class PIC8259Pair: Sendable {
    public static let masterPorts: UInt64 = 0x20
    public static let slavePorts: UInt64 = 0xA0
    public static let edgeLevelControlPorts: UInt64 = 0x4D0
    /// Each of the three port ranges is two ports long.
    public static let portCount: UInt64 = 2

    private let core: Core
    /// The three port ranges as bus devices: register each at its base with
    /// length `portCount`.
    public let master: any BusDevice
    public let slave: any BusDevice
    public let edgeLevelControl: any BusDevice

    /// `output` is driven with the lock held, only when the INT level
    /// changes; its `setLevel` must not call back into the pair.
    public init(output: any InterruptLine) {
        let core = Core(output: output)
        self.core = core
        master = Ports(core, .master)
        slave = Ports(core, .slave)
        edgeLevelControl = Ports(core, .edgeLevelControl)
    }

    /// Power-on state again; the IRQ line levels, which belong to the
    /// devices, stay.
    public func reset() {
        core.state.withLock { s in
            let (masterLines, slaveLines) = (s.master.lines, s.slave.lines)
            s.master = PIC8259(isMaster: true)
            s.slave = PIC8259(isMaster: false)
            s.master.lines = masterLines
            s.slave.lines = slaveLines
            core.update(&s)
        }
    }

    /// Drives ISA IRQ `line` (0–15). IRQ 2 is the cascade input, internal to
    /// the pair; ISA devices on IRQ 2 appear on IRQ 9 in a PC, so line 2 and
    /// lines out of range are ignored.
    public func setIRQ(_ line: Int, level: Bool) {
        guard (0..<16).contains(line), line != 2 else { return }
        core.state.withLock { s in
            if line < 8 {
                s.master.setLine(UInt8(line), level: level)
            } else {
                s.slave.setLine(UInt8(line - 8), level: level)
            }
            core.update(&s)
        }
    }

    /// The master's INT output.
    public var outputAsserted: Bool { core.state.withLock { $0.output } }

    /// The INTA cycle: the vector of the most urgent request, which goes in
    /// service. With nothing to give, the 8259 answers with IR7's vector and
    /// sets no ISR bit: the spurious IRQ 7, or IRQ 15 when the master gave
    /// IR2 but the slave then had nothing (datasheet, "Interrupt Sequence";
    /// the master's IR2 is then in service and wants an EOI). The slave
    /// answers for IR2 unless the master was initialized in single mode.
    public func acknowledge() -> UInt8 {
        core.state.withLock { s in
            defer { core.update(&s) }
            guard let input = s.master.requestedInput else {
                return s.master.vectorBase | 7
            }
            s.master.acknowledge(input)
            guard input == 2 && !s.master.singleMode else {
                return s.master.vectorBase | input
            }
            guard let slaveInput = s.slave.requestedInput else {
                return s.slave.vectorBase | 7
            }
            s.slave.acknowledge(slaveInput)
            return s.slave.vectorBase | slaveInput
        }
    }

    struct State {
        var master = PIC8259(isMaster: true)
        var slave = PIC8259(isMaster: false)
        var output = false
    }

    enum Chip {
        case master, slave, edgeLevelControl
    }

    /// The lock, the state and the output wire, shared by the pair and its
    /// port views.
    final class Core: Sendable {
        let state = Locked(State())
        let output: any InterruptLine

        init(output: any InterruptLine) {
            self.output = output
        }

        /// Re-evaluates the cascade and the INT output after any change. The
        /// slave's INT is sampled into the master's IR2 each time it is
        /// signalled, as KVM and QEMU do: a new slave request after the
        /// master acknowledged IR2 must be seen even if the slave's INT
        /// never fell.
        func update(_ s: inout State) {
            let slaveRequests = s.slave.requestedInput != nil
            if s.master.levelInputs & (1 << 2) != 0 {
                if slaveRequests { s.master.irr |= 1 << 2 } else { s.master.irr &= ~(1 << 2) }
            } else if slaveRequests {
                s.master.irr |= 1 << 2
            }
            let level = s.master.requestedInput != nil
            if level != s.output {
                s.output = level
                output.setLevel(level)
            }
        }

        func readPort(_ chip: Chip, _ port: UInt64) -> UInt8 {
            state.withLock { s in
                defer { update(&s) }
                switch chip {
                case .edgeLevelControl:
                    return port == 0 ? s.master.edgeLevel : s.slave.edgeLevel
                case .master:
                    return Self.read(&s.master, port)
                case .slave:
                    return Self.read(&s.slave, port)
                }
            }
        }

        /// Port 0 reads the IRR or ISR, port 1 the IMR; after a poll
        /// command either port reads the poll word.
        static func read(_ pic: inout PIC8259, _ port: UInt64) -> UInt8 {
            if pic.pollPending { return pic.poll() }
            return port == 0 ? pic.statusRegister : pic.imr
        }

        func writePort(_ chip: Chip, _ port: UInt64, _ value: UInt8) {
            state.withLock { s in
                switch chip {
                case .edgeLevelControl:
                    if port == 0 { s.master.setEdgeLevel(value) } else { s.slave.setEdgeLevel(value) }
                case .master:
                    if port == 0 { s.master.writeCommand(value) } else { s.master.writeData(value) }
                case .slave:
                    if port == 0 { s.slave.writeCommand(value) } else { s.slave.writeData(value) }
                }
                update(&s)
            }
        }
    }

    /// One port range. The registers are a byte wide: wider accesses are
    /// consecutive byte accesses at consecutive ports, lowest first, as an
    /// 8-bit ISA device sees them; ports beyond the range read 0xFF and
    /// ignore writes.
    final class Ports: BusDevice {
        let core: Core
        let chip: Chip

        init(_ core: Core, _ chip: Chip) {
            self.core = core
            self.chip = chip
        }

        func read(at offset: UInt64, size: Int) -> UInt64 {
            var value: UInt64 = 0
            for index in 0..<min(max(size, 0), 8) {
                let (port, wrapped) = offset.addingReportingOverflow(UInt64(index))
                let byte = !wrapped && port < PIC8259Pair.portCount ? core.readPort(chip, port) : 0xFF
                value |= UInt64(byte) << (UInt64(index) * 8)
            }
            return value
        }

        func write(at offset: UInt64, size: Int, value: UInt64) {
            for index in 0..<min(max(size, 0), 8) {
                let (port, wrapped) = offset.addingReportingOverflow(UInt64(index))
                guard !wrapped, port < PIC8259Pair.portCount else { return }
                core.writePort(chip, port, UInt8(truncatingIfNeeded: value >> (UInt64(index) * 8)))
            }
        }
    }
}

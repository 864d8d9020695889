import Synchronization
import SwiftletSystem

/// The PC's i8042 keyboard controller, as far as an OS needs it to find no
/// keyboard and to reset the machine: status, the command byte, the self
/// and interface tests, port enables, the output port and the reset pulse.
/// No keyboard or mouse is attached, so bytes for them are dropped and no
/// IRQ 1/12 is raised.
///
/// The controller answers at two I/O ports that are not adjacent (0x61 –
/// 0x63 belong to other devices), so it is not a `BusDevice` itself: register
/// `dataPort` at 0x60 and `commandPort` at 0x64, each with length 1, or call
/// `register(on:)`.
///
/// Command and bit meanings follow the IBM PC AT Technical Reference
/// ("Keyboard Controller") as QEMU's hw/input/pckbd.c implements it.
public final class I8042Controller: Sendable {
    public static let dataPortAddress: UInt64 = 0x60
    public static let commandPortAddress: UInt64 = 0x64

    // Status register bits.
    enum Status {
        static let outputFull: UInt8 = 0x01
        static let inputFull: UInt8 = 0x02      // never set: writes are taken at once
        static let system: UInt8 = 0x04
        static let lastWriteWasCommand: UInt8 = 0x08
        static let notInhibited: UInt8 = 0x10   // keyboard lock switch off
        static let auxOutputFull: UInt8 = 0x20
    }

    // Command byte (controller RAM byte 0) bits.
    enum CommandByte {
        static let keyboardInterrupt: UInt8 = 0x01
        static let system: UInt8 = 0x04
        static let keyboardDisabled: UInt8 = 0x10
        static let auxDisabled: UInt8 = 0x20
        static let translate: UInt8 = 0x40
    }

    // Output port bits.
    enum OutputPort {
        /// Drives the CPU reset line, active low.
        static let resetInactive: UInt8 = 0x01
        static let a20: UInt8 = 0x02
        static let outputFull: UInt8 = 0x10
        static let auxOutputFull: UInt8 = 0x20
    }

    private struct State {
        /// Controller RAM; byte 0 is the command byte. After POST a PC BIOS
        /// leaves the keyboard interrupt, system flag and translation on.
        var ram = [UInt8](repeating: 0, count: 32)
        var output: UInt8?
        var outputFromAux = false
        var lastOutput: UInt8 = 0
        /// A command waiting for its parameter byte on the data port.
        var pendingCommand: UInt8?
        var systemFlag = true
        var lastWriteWasCommand = true
        /// Reset inactive, A20 on, and the unused bits high as QEMU has them.
        var outputPort: UInt8 = 0xcf

        init() {
            ram[0] = CommandByte.keyboardInterrupt | CommandByte.system | CommandByte.translate
        }
    }

    private let requests: any GuestRequestSink
    private let state = Locked(State())
    private let logLimiter = RateLimiter(burst: 3)

    /// Resets are reported to `requests` on the vCPU thread that asked for
    /// them, outside the controller's lock.
    public init(requests: any GuestRequestSink) {
        self.requests = requests
    }

    /// Port 0x60: output buffer (read), parameters and device data (write).
    public var dataPort: any BusDevice { Port(controller: self, isCommandPort: false) }
    /// Port 0x64: status (read), controller commands (write).
    public var commandPort: any BusDevice { Port(controller: self, isCommandPort: true) }

    /// Registers both ports at their PC addresses.
    public func register(on builder: inout IOBusBuilder) throws(IOBusBuilder.Error) {
        try builder.register(dataPort, name: "i8042 data", base: Self.dataPortAddress, length: 1)
        try builder.register(commandPort, name: "i8042 command", base: Self.commandPortAddress, length: 1)
    }

    /// One of the controller's two ports. Each is one byte wide: other sizes
    /// and offsets read all ones and ignore writes.
    private final class Port: BusDevice {
        let controller: I8042Controller
        let isCommandPort: Bool

        init(controller: I8042Controller, isCommandPort: Bool) {
            self.controller = controller
            self.isCommandPort = isCommandPort
        }

        func read(at offset: UInt64, size: Int) -> UInt64 {
            guard offset == 0, size == 1 else { return accessMask(size: size) }
            return UInt64(isCommandPort ? controller.readStatus() : controller.readData())
        }

        func write(at offset: UInt64, size: Int, value: UInt64) {
            guard offset == 0, size == 1 else { return }
            let byte = UInt8(truncatingIfNeeded: value)
            if isCommandPort {
                controller.writeCommand(byte)
            } else {
                controller.writeData(byte)
            }
        }
    }

    func readStatus() -> UInt8 {
        state.withLock { s in
            var status = Status.notInhibited
            if s.output != nil { status |= Status.outputFull }
            if s.output != nil && s.outputFromAux { status |= Status.auxOutputFull }
            if s.systemFlag { status |= Status.system }
            if s.lastWriteWasCommand { status |= Status.lastWriteWasCommand }
            return status
        }
    }

    /// Takes the output buffer; with nothing in it, the port still returns
    /// the last byte it held, as the latch on the real part does.
    func readData() -> UInt8 {
        state.withLock { s in
            if let byte = s.output {
                s.lastOutput = byte
                s.output = nil
                s.outputFromAux = false
            }
            return s.lastOutput
        }
    }

    func writeCommand(_ command: UInt8) {
        let reset = state.withLock { s -> Bool in
            s.lastWriteWasCommand = true
            // A new command abandons one still waiting for its parameter.
            s.pendingCommand = nil
            switch command {
            case 0x20...0x3f:  // read controller RAM byte n (0x20: command byte)
                put(&s, s.ram[Int(command & 0x1f)])
            case 0x60...0x7f,  // write controller RAM byte n (0x60: command byte)
                 0xd1,         // write output port
                 0xd2,         // write keyboard output buffer
                 0xd3,         // write aux output buffer
                 0xd4:         // write to aux device
                s.pendingCommand = command
            case 0xa7:
                s.ram[0] |= CommandByte.auxDisabled
            case 0xa8:
                s.ram[0] &= ~CommandByte.auxDisabled
            case 0xa9, 0xab:  // aux / keyboard interface test: 0 means no error
                put(&s, 0x00)
            case 0xaa:  // controller self-test: 0x55 means passed, and sets SYS
                s.systemFlag = true
                put(&s, 0x55)
            case 0xad:
                s.ram[0] |= CommandByte.keyboardDisabled
            case 0xae:
                s.ram[0] &= ~CommandByte.keyboardDisabled
            case 0xd0:  // read output port
                var port = s.outputPort & ~(OutputPort.outputFull | OutputPort.auxOutputFull)
                if s.output != nil { port |= s.outputFromAux ? OutputPort.auxOutputFull : OutputPort.outputFull }
                put(&s, port)
            case 0xf0...0xff:
                // Pulse the output port bits that are 0 in the command's low
                // nibble; only bit 0, the CPU reset line, does anything. A line
                // already held low by 0xd1 has no edge to give.
                return command & 0x01 == 0 && s.outputPort & OutputPort.resetInactive != 0
            default:
                logIgnored("command \(hexByte(command))")
            }
            return false
        }
        if reset { requests.guestRequested(.reset) }
    }

    func writeData(_ value: UInt8) {
        let reset = state.withLock { s -> Bool in
            s.lastWriteWasCommand = false
            // Without a pending command the byte is for the keyboard, and
            // no keyboard is attached.
            guard let command = s.pendingCommand else { return false }
            s.pendingCommand = nil
            switch command {
            case 0x60...0x7f:
                let index = Int(command & 0x1f)
                s.ram[index] = value
                if index == 0 { s.systemFlag = value & CommandByte.system != 0 }
            case 0xd1:
                // Bit 0 drives reset, active low: asserting it resets the CPU,
                // once per assertion.
                let wasInactive = s.outputPort & OutputPort.resetInactive != 0
                s.outputPort = value
                return wasInactive && value & OutputPort.resetInactive == 0
            case 0xd2:
                put(&s, value)
            case 0xd3:
                put(&s, value, fromAux: true)
            default:
                break  // 0xd4: no mouse to receive it
            }
            return false
        }
        if reset { requests.guestRequested(.reset) }
    }

    /// The output buffer holds one byte; a response the guest has not read is
    /// replaced by the next one.
    private func put(_ s: inout State, _ byte: UInt8, fromAux: Bool = false) {
        s.output = byte
        s.outputFromAux = fromAux
    }

    private func logIgnored(_ what: String) {
        guard Log.enabled(.debug), let suppressed = logLimiter.admit() else { return }
        var message = "i8042: ignored \(what)"
        if suppressed > 0 { message += " (\(suppressed) similar messages suppressed)" }
        Log.debug(message)
    }
}

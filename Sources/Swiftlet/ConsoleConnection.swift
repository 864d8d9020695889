import Glibc
import Synchronization
import SwiftletDevices
import SwiftletSystem

/// Connects the host's stdin to COM1's receiver.
///
/// Runs on the machine's control thread. Input flows only as fast as the
/// guest drains the UART: when the receive FIFO is full the remainder is
/// held and stdin is not read again until the UART says it has room, so a
/// guest that never reads cannot make Swiftlet buffer without bound.
///
/// When stdin is a terminal it is switched to raw-ish mode (no line
/// buffering, echo or signals: Ctrl-C belongs to the guest), restored on
/// detach; `Ctrl-A x` ends the VM and `Ctrl-A Ctrl-A` sends one Ctrl-A.
final class ConsoleConnection: Sendable {
    private let serial: SerialPort
    private let loop: EventLoop
    private let onEscape: @Sendable () -> Void
    private let room: EventNotifier?
    private let state = Locked<State>(State())
    private static let stdin: Int32 = 0
    private static let escapeByte: UInt8 = 0x01  // Ctrl-A

    private enum Mode {
        /// stdin is a terminal, pipe or socket: epoll says when to read.
        case poll(registered: Bool)
        /// stdin is a regular file or /dev/null, which epoll refuses; it is
        /// always readable, so it is read whenever the UART has room.
        case pull
    }

    private struct State {
        var mode = Mode.poll(registered: false)
        var pending: [UInt8] = []
        var atEOF = false
        var sawEscape = false
        var savedTerminal: termios?
    }

    init(serial: SerialPort, loop: EventLoop, onEscape: @escaping @Sendable () -> Void) {
        self.serial = serial
        self.loop = loop
        self.onEscape = onEscape
        self.room = try? EventNotifier()
    }

    func attach() throws(SystemError) {
        guard let room else { return }
        enterRawModeIfTerminal()
        serial.setInputReadyHandler { room.notify() }
        try loop.add(room.descriptor.rawValue) { [self] _ in
            room.drain()
            flush()
        }
        do {
            try loop.add(ConsoleConnection.stdin, events: EventLoop.readable | EventLoop.hangup) { [self] _ in readInput() }
            state.withLock { $0.mode = .poll(registered: true) }
        } catch where error.errno == .notPermitted {
            state.withLock { $0.mode = .pull }
            readInput()
        }
    }

    /// Restores the terminal; safe to call more than once.
    func detach() {
        serial.setInputReadyHandler(nil)
        let saved = state.withLock { s in
            defer { s.savedTerminal = nil }
            return s.savedTerminal
        }
        if var saved { tcsetattr(ConsoleConnection.stdin, TCSANOW, &saved) }
    }

    private func enterRawModeIfTerminal() {
        guard isatty(ConsoleConnection.stdin) == 1 else { return }
        var saved = termios()
        guard tcgetattr(ConsoleConnection.stdin, &saved) == 0 else { return }
        var raw = saved
        raw.c_lflag &= ~tcflag_t(ICANON | ECHO | ISIG | IEXTEN)
        raw.c_iflag &= ~tcflag_t(IXON | ICRNL)
        if tcsetattr(ConsoleConnection.stdin, TCSANOW, &raw) == 0 {
            state.withLock { $0.savedTerminal = saved }
        }
    }

    private func setRegistered(_ wanted: Bool) {
        let change = state.withLock { s -> Bool in
            guard case .poll(let registered) = s.mode, registered != wanted, !s.atEOF || !wanted else { return false }
            s.mode = .poll(registered: wanted)
            return true
        }
        guard change else { return }
        if wanted {
            do {
                try loop.add(ConsoleConnection.stdin, events: EventLoop.readable | EventLoop.hangup) { [self] _ in readInput() }
            } catch {
                Log.warning("console input stops: \(error)")
            }
        } else {
            loop.remove(ConsoleConnection.stdin)
        }
    }

    private func readInput() {
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = buffer.withUnsafeMutableBytes { Glibc.read(ConsoleConnection.stdin, $0.baseAddress, $0.count) }
        if n < 0 && (errno == EINTR || errno == EAGAIN) { return }
        guard n > 0 else {
            // End of input (or an unreadable stdin): the guest gets no more.
            setRegistered(false)
            state.withLock { $0.atEOF = true }
            return
        }
        let bytes = filterEscapes(buffer[0..<n])
        state.withLock { $0.pending.append(contentsOf: bytes) }
        flush()
    }

    /// Handles Ctrl-A sequences when stdin is a terminal.
    private func filterEscapes(_ input: ArraySlice<UInt8>) -> [UInt8] {
        state.withLock { s in
            guard s.savedTerminal != nil else { return Array(input) }
            var out: [UInt8] = []
            for byte in input {
                if s.sawEscape {
                    s.sawEscape = false
                    if byte == UInt8(ascii: "x") {
                        onEscape()
                        return out
                    }
                    if byte == ConsoleConnection.escapeByte { out.append(byte) }
                } else if byte == ConsoleConnection.escapeByte {
                    s.sawEscape = true
                } else {
                    out.append(byte)
                }
            }
            return out
        }
    }

    /// Offers held input to the UART. With some left over, stdin is not read
    /// until the UART has room; with none, reading resumes.
    private func flush() {
        let bytes = state.withLock { $0.pending }
        let taken = bytes.isEmpty ? 0 : serial.receive(bytes)
        let (drained, pull, atEOF) = state.withLock { s -> (Bool, Bool, Bool) in
            s.pending.removeFirst(min(taken, s.pending.count))
            if case .pull = s.mode { return (s.pending.isEmpty, true, s.atEOF) }
            return (s.pending.isEmpty, false, s.atEOF)
        }
        if pull {
            if drained && !atEOF { readInput() }
        } else {
            setRegistered(drained)
        }
    }
}

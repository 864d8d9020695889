import SwiftletDevices
import SwiftletSystem

/// Where interrupt messages go: the router, which finds the destination
/// local APICs and posts to their vCPUs.
public protocol InterruptMessageSink: AnyObject, Sendable {
    /// Delivers `message`; returns whether at least one local APIC accepted
    /// it. An I/O APIC sets a level-triggered entry's remote IRR only then
    /// ("set to 1 when local APIC(s) accept the level interrupt", 82093AA
    /// §3.2.4), so a message nobody takes is sent again on the next chance
    /// instead of blocking the pin for good.
    ///
    /// Called with the sender's lock held: it must not call back into the
    /// sender. Posting to a vCPU and kicking it is what it is for.
    func deliver(_ message: InterruptMessage) -> Bool
}

/// An 82093AA I/O APIC with 24 pins (Intel 82093AA I/O Advanced Programmable
/// Interrupt Controller datasheet, 290566-001), at 0xFEC0_0000.
///
/// Shared by all vCPUs and devices, so its state sits behind a lock; its
/// messages go to the `InterruptMessageSink` given at creation.
///
/// - Version 0x11, as the datasheet (and KVM's model): the version register
///   reads 0x0017_0011 (maximum redirection entry 0x17). A version 0x20 part
///   adds an EOI register at offset 0x40; it is not offered because the
///   local APICs do not offer EOI-broadcast suppression, the only reason a
///   guest would use it. Linux ends a level interrupt on a 0x11 part by
///   broadcast EOI, and where it must by switching the entry to edge and
///   back, which clears remote IRR here (below).
/// - Pin levels are logical: `setIRQ(pin, level: true)` means "requesting".
///   The polarity bit describes the wire, which a virtual device does not
///   have; it is kept for the guest to read back, as KVM and QEMU do.
/// - IOREGSEL and IOWIN are 32-bit registers that "must be accessed as
///   dwords": reads of other sizes see their bytes, and only 32- and 64-bit
///   writes at their offsets (the low 32 bits) take effect (KVM drops the
///   others too). Other offsets in the page read 0 and ignore writes.
public final class IOAPIC: BusDevice {
    public static let pinCount = 24
    public static let defaultBase: UInt64 = 0xFEC0_0000
    public static let mmioLength: UInt64 = 0x1000
    /// Version register: maximum redirection entry 23 in bits 23:16,
    /// version 0x11 in bits 7:0 (datasheet §3.2.2).
    public static let versionRegister: UInt32 = UInt32(pinCount - 1) << 16 | 0x11

    static let registerSelectOffset: UInt64 = 0x00
    static let windowOffset: UInt64 = 0x10

    // Indirect register indices (datasheet §3.2).
    enum Index {
        static let id: UInt32 = 0x00
        static let version: UInt32 = 0x01
        static let arbitration: UInt32 = 0x02
        static let redirectionTable: UInt32 = 0x10
    }

    /// Redirection entry bits (datasheet §3.2.4).
    public enum Entry {
        public static let vectorMask: UInt64 = 0xFF
        public static let deliveryModeShift: UInt64 = 8
        public static let logicalDestination: UInt64 = 1 << 11
        public static let deliveryStatus: UInt64 = 1 << 12
        public static let polarityLow: UInt64 = 1 << 13
        public static let remoteIRR: UInt64 = 1 << 14
        public static let levelTriggered: UInt64 = 1 << 15
        public static let masked: UInt64 = 1 << 16
        public static let destinationShift: UInt64 = 56
        /// Bits software writes: 11:0 except the read-only delivery status,
        /// polarity, trigger mode, mask and the destination, 63:56. Bits
        /// 55:17 are reserved and read 0.
        static let writable: UInt64 = 0xFF00_0000_0001_AFFF
    }

    struct State {
        var registerSelect: UInt32 = 0
        var id: UInt32
        var entries = [UInt64](repeating: Entry.masked, count: IOAPIC.pinCount)
        /// The requesting pins, bit per pin.
        var lines: UInt32 = 0
    }

    private let sink: any InterruptMessageSink
    private let state: Locked<State>

    /// A reset I/O APIC: every entry masked (the datasheet's only defined
    /// reset bit), ID `id` (datasheet default 0).
    public init(sink: any InterruptMessageSink, id: UInt8 = 0) {
        self.sink = sink
        state = Locked(State(id: UInt32(id & 0xF)))
    }

    /// Power-on state again; the pin levels, which belong to the devices,
    /// stay.
    public func reset(id: UInt8 = 0) {
        state.withLock { s in
            let lines = s.lines
            s = State(id: UInt32(id & 0xF))
            s.lines = lines
        }
    }

    // MARK: - Pins and EOIs

    /// Drives pin `pin` (0–23; others are ignored).
    ///
    /// An edge-triggered entry sends a message on each rising edge; edges on
    /// a masked pin are lost ("not delivered or held pending", §3.2.4 bit
    /// 16). A level-triggered entry sends one while the pin requests, the
    /// entry is unmasked and remote IRR is clear, then waits for the EOI
    /// with its vector (`endOfInterrupt`).
    public func setIRQ(_ pin: Int, level: Bool) {
        guard (0..<Self.pinCount).contains(pin) else { return }
        state.withLock { s in
            let bit = UInt32(1) << UInt32(pin)
            let rising = level && s.lines & bit == 0
            if level { s.lines |= bit } else { s.lines &= ~bit }
            let entry = s.entries[pin]
            if entry & Entry.levelTriggered != 0 {
                serviceLevel(pin, &s)
            } else if rising && entry & Entry.masked == 0 {
                _ = send(entry)
            }
        }
    }

    /// An EOI broadcast for `vector` from a local APIC (the router sends
    /// those whose TMR bit was set): clears remote IRR on every entry with
    /// that vector — all of them, if several share it (datasheet §3.2.4
    /// bit 14) — and sends again for a pin that still requests.
    ///
    /// A guest that never quiets its device gets a message per EOI, as on
    /// hardware; KVM delays re-delivery after 10,000 in a row to let such a
    /// guest progress. That needs a clock and belongs to the router if it
    /// is ever wanted.
    public func endOfInterrupt(vector: UInt8) {
        state.withLock { s in
            for pin in 0..<Self.pinCount where s.entries[pin] & Entry.vectorMask == UInt64(vector)
                && s.entries[pin] & Entry.remoteIRR != 0 {
                s.entries[pin] &= ~Entry.remoteIRR
                serviceLevel(pin, &s)
            }
        }
    }

    /// Redirection entry `pin` as the guest would read it (0 for others).
    public func redirectionEntry(_ pin: Int) -> UInt64 {
        guard (0..<Self.pinCount).contains(pin) else { return 0 }
        return state.withLock { $0.entries[pin] }
    }

    /// A level-triggered pin that requests, unmasked, with remote IRR clear,
    /// sends; remote IRR is set if a local APIC took the message.
    private func serviceLevel(_ pin: Int, _ s: inout State) {
        let entry = s.entries[pin]
        guard entry & Entry.levelTriggered != 0, entry & (Entry.masked | Entry.remoteIRR) == 0,
              s.lines & (UInt32(1) << UInt32(pin)) != 0 else { return }
        if send(entry) { s.entries[pin] = entry | Entry.remoteIRR }
    }

    /// The message an entry describes. The reserved delivery modes (011,
    /// 110) send nothing. The destination is bits 63:56: an APIC ID or a
    /// logical destination; the 82093AA compared only 59:56 for physical
    /// IDs, later I/O APICs and KVM use all eight bits, and so does this.
    private func send(_ entry: UInt64) -> Bool {
        let deliveryMode: InterruptMessage.DeliveryMode
        switch (entry >> Entry.deliveryModeShift) & 7 {
        case 0: deliveryMode = .fixed
        case 1: deliveryMode = .lowestPriority
        case 2: deliveryMode = .smi
        case 4: deliveryMode = .nmi
        case 5: deliveryMode = .initialize
        case 7: deliveryMode = .extINT
        default: return false
        }
        return sink.deliver(InterruptMessage(
            vector: UInt8(truncatingIfNeeded: entry),
            deliveryMode: deliveryMode,
            destinationMode: entry & Entry.logicalDestination != 0 ? .logical : .physical,
            destination: UInt32(truncatingIfNeeded: entry >> Entry.destinationShift),
            triggerMode: entry & Entry.levelTriggered != 0 ? .level : .edge))
    }

    // MARK: - Registers

    private func readIndirect(_ s: State) -> UInt32 {
        switch s.registerSelect {
        case Index.id: return s.id << 24
        case Index.version: return Self.versionRegister
        // The arbitration ID is loaded with the ID whenever the ID is
        // written ("same data is loaded into both", §3.2.1), so it always
        // equals it here.
        case Index.arbitration: return s.id << 24
        case Index.redirectionTable..<(Index.redirectionTable + UInt32(2 * Self.pinCount)):
            let index = s.registerSelect - Index.redirectionTable
            let entry = s.entries[Int(index >> 1)]
            return UInt32(truncatingIfNeeded: index & 1 == 0 ? entry : entry >> 32)
        default: return 0
        }
    }

    private func writeIndirect(_ value: UInt32, _ s: inout State) {
        switch s.registerSelect {
        case Index.id:
            s.id = (value >> 24) & 0xF
        case Index.redirectionTable..<(Index.redirectionTable + UInt32(2 * Self.pinCount)):
            let index = s.registerSelect - Index.redirectionTable
            let pin = Int(index >> 1)
            let old = s.entries[pin]
            var new = index & 1 == 0
                ? (old & ~0xFFFF_FFFF) | UInt64(value)
                : (old & 0xFFFF_FFFF) | UInt64(value) << 32
            // Keep the read-only bits: delivery status (always idle, as a
            // message leaves at once) and remote IRR.
            new = new & Entry.writable | old & Entry.remoteIRR
            // Remote IRR means nothing for an edge entry; switching an entry
            // to edge clears it, which Linux relies on to end a level
            // interrupt on I/O APICs without an EOI register (KVM and QEMU
            // behave the same).
            if new & Entry.levelTriggered == 0 { new &= ~Entry.remoteIRR }
            s.entries[pin] = new
            // A pin still requesting is taken as soon as its entry lets it:
            // a level is sampled, not remembered.
            serviceLevel(pin, &s)
        default:
            break  // version and arbitration ID are read-only
        }
    }

    public func read(at offset: UInt64, size: Int) -> UInt64 {
        let base = offset & ~3
        let byte = offset & 3
        let value: UInt32
        switch base {
        case Self.registerSelectOffset: value = state.withLock { $0.registerSelect }
        case Self.windowOffset: value = state.withLock { readIndirect($0) }
        default: return 0
        }
        return (UInt64(value) >> (byte * 8)) & accessMask(size: size)
    }

    public func write(at offset: UInt64, size: Int, value: UInt64) {
        guard size == 4 || size == 8 else { return }
        let value = UInt32(truncatingIfNeeded: value)
        switch offset {
        case Self.registerSelectOffset:
            // Bits 7:0 select the register; 31:8 are reserved (§3.1.1).
            state.withLock { $0.registerSelect = value & 0xFF }
        case Self.windowOffset:
            state.withLock { writeIndirect(value, &$0) }
        default:
            break
        }
    }
}

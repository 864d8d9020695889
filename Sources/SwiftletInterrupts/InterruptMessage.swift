/// An interrupt message on the APIC bus: what an I/O APIC, an MSI or a
/// local APIC's interrupt command register sends to local APICs.
///
/// The fields are those of the ICR (Intel SDM Vol. 3A §10.6.1, figure 10-12),
/// which the I/O APIC redirection entries (82093AA datasheet §3.2.4) and MSI
/// data registers (SDM §10.11.2) share bit for bit.
public struct InterruptMessage: Hashable, Sendable, CustomStringConvertible {
    /// ICR bits 10:8. The encodings 011 and 110/111 differ between sources:
    /// the ICR has STARTUP at 110 and nothing at 111, the I/O APIC and MSI have
    /// ExtINT at 111 and nothing at 110.
    public enum DeliveryMode: UInt8, Hashable, Sendable {
        case fixed = 0
        case lowestPriority = 1
        case smi = 2
        case nmi = 4
        case initialize = 5
        case startup = 6
        case extINT = 7
    }

    public enum DestinationMode: Hashable, Sendable {
        case physical
        case logical
    }

    /// ICR bits 19:18 (SDM §10.6.1). Only IPIs use shorthands.
    public enum Shorthand: UInt8, Hashable, Sendable {
        case none = 0
        case `self` = 1
        case allIncludingSelf = 2
        case allExcludingSelf = 3
    }

    public enum TriggerMode: Hashable, Sendable {
        case edge
        case level
    }

    /// How wide the destination is, which decides what "broadcast" means.
    /// An I/O APIC, an MSI and an xAPIC-mode ICR address with 8 bits, where
    /// 0xFF is broadcast; an x2APIC-mode ICR addresses with 32 bits, where
    /// 0xFFFF_FFFF is (SDM §10.12.9, §10.6.2.1).
    public enum DestinationFormat: Hashable, Sendable {
        case xAPIC
        case x2APIC
    }

    public var vector: UInt8
    public var deliveryMode: DeliveryMode
    public var destinationMode: DestinationMode
    /// The destination field: an APIC ID (physical) or a message destination
    /// address matched against LDR (logical). Ignored with a shorthand.
    public var destination: UInt32
    public var destinationFormat: DestinationFormat
    public var shorthand: Shorthand
    public var triggerMode: TriggerMode
    /// The level bit: assert (true) or de-assert (false). Only an INIT with
    /// level trigger uses de-assert, and no processor since the Pentium 4
    /// acts on it (SDM §10.6.1, "Level").
    public var level: Bool
    /// The hardware (initial) APIC ID of the sending local APIC, for the
    /// self and all-excluding-self shorthands; nil for messages from an I/O
    /// APIC or an MSI.
    public var sourceAPICID: UInt32?

    public init(vector: UInt8,
                deliveryMode: DeliveryMode = .fixed,
                destinationMode: DestinationMode = .physical,
                destination: UInt32,
                destinationFormat: DestinationFormat = .xAPIC,
                shorthand: Shorthand = .none,
                triggerMode: TriggerMode = .edge,
                level: Bool = true,
                sourceAPICID: UInt32? = nil) {
        self.vector = vector
        self.deliveryMode = deliveryMode
        self.destinationMode = destinationMode
        self.destination = destination
        self.destinationFormat = destinationFormat
        self.shorthand = shorthand
        self.triggerMode = triggerMode
        self.level = level
        self.sourceAPICID = sourceAPICID
    }

    /// The broadcast destination for this message's format.
    public var broadcastDestination: UInt32 {
        destinationFormat == .x2APIC ? 0xFFFF_FFFF : 0xFF
    }

    /// Whether the destination field names every local APIC.
    public var isBroadcast: Bool { destination == broadcastDestination }

    public var description: String {
        var text = "\(deliveryMode) vector 0x\(hex(UInt64(vector), 2))"
        switch shorthand {
        case .none:
            text += " to \(destinationMode) 0x\(hex(UInt64(destination), destinationFormat == .x2APIC ? 8 : 2))"
        case .self: text += " to self"
        case .allIncludingSelf: text += " to all"
        case .allExcludingSelf: text += " to all but self"
        }
        if triggerMode == .level { text += level ? ", level assert" : ", level de-assert" }
        if let source = sourceAPICID { text += ", from APIC \(source)" }
        return text
    }
}

// MARK: - Message-signalled interrupts

extension InterruptMessage {
    /// The 1 MiB window an MSI address must fall in (SDM §10.11.1: address
    /// bits 31:20 are 0FEEH).
    public static let msiAddressWindow: ClosedRange<UInt64> = 0xFEE0_0000...0xFEEF_FFFF

    /// Decodes an MSI address/data pair (SDM §10.11.1, §10.11.2) into the
    /// message the chipset would put on the bus, or nil when the pair is not
    /// an interrupt message: an address outside 0xFEExxxxx, or a reserved
    /// delivery mode (011, 110).
    ///
    /// - Address bits 19:12 are the destination ID, bit 3 the redirection
    ///   hint, bit 2 the destination mode.
    /// - Data bits 7:0 are the vector, 10:8 the delivery mode, 14 the level
    ///   and 15 the trigger mode; bits 31:16 are reserved and ignored.
    /// - A redirection hint with logical destination mode lets the chipset
    ///   pick one processor of the set, which is lowest-priority delivery;
    ///   such a fixed message is decoded as `.lowestPriority` (KVM does the
    ///   same). With physical destination mode the hint changes nothing.
    /// - With `extendedDestinationID`, address bits 11:5 carry destination
    ///   bits 14:8, the convention KVM, Xen and Hyper-V offer to guests that
    ///   see the feature (Linux: "msi_ext_dest_id"); hardware leaves those
    ///   bits reserved, so it is off unless the vCPU layer advertises it.
    public static func decodeMSI(address: UInt64, data: UInt32,
                                 extendedDestinationID: Bool = false) -> InterruptMessage? {
        guard msiAddressWindow.contains(address) else { return nil }
        let mode: DeliveryMode
        switch (data >> 8) & 0x7 {
        case 0: mode = .fixed
        case 1: mode = .lowestPriority
        case 2: mode = .smi
        case 4: mode = .nmi
        case 5: mode = .initialize
        case 7: mode = .extINT
        default: return nil
        }
        var destination = UInt32(truncatingIfNeeded: (address >> 12) & 0xFF)
        if extendedDestinationID {
            destination |= UInt32(truncatingIfNeeded: (address >> 5) & 0x7F) << 8
        }
        let logical = address & (1 << 2) != 0
        let redirectionHint = address & (1 << 3) != 0
        let level = data & (1 << 15) != 0
        return InterruptMessage(
            vector: UInt8(truncatingIfNeeded: data),
            deliveryMode: mode == .fixed && redirectionHint && logical ? .lowestPriority : mode,
            destinationMode: logical ? .logical : .physical,
            destination: destination,
            destinationFormat: extendedDestinationID && destination > 0xFF ? .x2APIC : .xAPIC,
            triggerMode: level ? .level : .edge,
            // "If the trigger mode is edge, this bit is ignored" (§10.11.2):
            // an edge message always asserts.
            level: level ? data & (1 << 14) != 0 : true)
    }
}

/// Lower-case hexadecimal, zero-padded to `digits`.
func hex(_ value: UInt64, _ digits: Int) -> String {
    let text = String(value, radix: 16)
    return text.count >= digits ? text : String(repeating: "0", count: digits - text.count) + text
}

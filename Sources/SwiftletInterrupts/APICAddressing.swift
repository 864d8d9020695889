/// What a local APIC answers to on the APIC bus: a snapshot the owning vCPU
/// publishes (see `LocalAPIC.Effect.addressingChanged`) so the router can
/// match destinations without touching another thread's APIC.
public struct APICAddressing: Hashable, Sendable {
    public var mode: LocalAPIC.Mode
    /// The hardware ID: the x2APIC ID, and how IPI sources are named.
    public var initialAPICID: UInt32
    /// The xAPIC ID register's ID (writable by the guest in xAPIC mode).
    public var xapicID: UInt8
    /// The LDR: in xAPIC mode the logical ID is in bits 31:24; in x2APIC
    /// mode it is the derived 32-bit logical x2APIC ID.
    public var logicalDestination: UInt32
    /// DFR[31:28]: 0xF flat, 0x0 cluster (xAPIC mode only).
    public var destinationFormatModel: UInt8
    /// SVR bit 8. Destination matching ignores it — a software-disabled APIC
    /// still takes INIT, SIPI, NMI and SMI — but the router must not pick a
    /// software-disabled APIC for lowest-priority delivery.
    public var isSoftwareEnabled: Bool

    public init(mode: LocalAPIC.Mode, initialAPICID: UInt32, xapicID: UInt8, logicalDestination: UInt32,
                destinationFormatModel: UInt8, isSoftwareEnabled: Bool) {
        self.mode = mode
        self.initialAPICID = initialAPICID
        self.xapicID = xapicID
        self.logicalDestination = logicalDestination
        self.destinationFormatModel = destinationFormatModel
        self.isSoftwareEnabled = isSoftwareEnabled
    }

    /// The ID physical destinations are compared with.
    public var physicalID: UInt32 { mode == .x2APIC ? initialAPICID : UInt32(xapicID) }

    /// Whether an APIC with this address is a destination of `message`
    /// (Intel SDM Vol. 3A §10.6.2, §10.12.10). A globally disabled APIC is
    /// never one.
    ///
    /// - Shorthands name the sender, everyone, or everyone else; the sender
    ///   is `message.sourceAPICID`.
    /// - The broadcast destination of the message's format (0xFF for 8-bit
    ///   destinations, 0xFFFF_FFFF for x2APIC ones) reaches every APIC in
    ///   both destination modes. An 8-bit 0xFF reaching x2APIC-mode APICs is
    ///   what KVM does for I/O APIC and MSI messages, which have no wider
    ///   broadcast without interrupt remapping.
    /// - Physical: the destination equals the APIC ID. An xAPIC-mode APIC
    ///   also answers an x2APIC-format destination above 0xFF that equals
    ///   its hardware ID: an x2APIC-mode BSP can then start a hot-added vCPU
    ///   whose ID does not fit 8 bits before that vCPU switches to x2APIC
    ///   (KVM's rule, for the same reason).
    /// - Logical, xAPIC: the flat model takes any common bit between the
    ///   destination and LDR[31:24]; the cluster model needs the same
    ///   cluster (bits 7:4) and a common bit in 3:0 (§10.6.2.2). A DFR model
    ///   other than those two matches nothing.
    /// - Logical, x2APIC: the same cluster (bits 31:16) and a common bit in
    ///   15:0 (§10.12.10.1).
    public func accepts(_ message: InterruptMessage) -> Bool {
        guard mode != .disabled else { return false }
        switch message.shorthand {
        case .self: return message.sourceAPICID == initialAPICID
        case .allIncludingSelf: return true
        case .allExcludingSelf: return message.sourceAPICID != initialAPICID
        case .none: break
        }
        if message.isBroadcast { return true }
        let destination = message.destination
        switch message.destinationMode {
        case .physical:
            if mode == .x2APIC { return destination == initialAPICID }
            if message.destinationFormat == .x2APIC && destination > 0xFF { return destination == initialAPICID }
            return destination == UInt32(xapicID)
        case .logical:
            if mode == .x2APIC {
                return destination >> 16 == logicalDestination >> 16
                    && destination & logicalDestination & 0xFFFF != 0
            }
            guard destination <= 0xFF else { return false }
            let logicalID = logicalDestination >> 24
            switch destinationFormatModel {
            case 0xF: return logicalID & destination != 0
            case 0x0: return logicalID >> 4 == destination >> 4 && logicalID & destination & 0xF != 0
            default: return false
            }
        }
    }
}

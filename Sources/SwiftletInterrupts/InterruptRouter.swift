import SwiftletSystem

/// Where the router delivers: a vCPU, through its posted-interrupt
/// descriptor. Implementations notify the vCPU as the descriptor says.
public protocol InterruptTarget: AnyObject, Sendable {
    func post(vector: UInt8, levelTriggered: Bool)
    func post(_ event: PostedEvent)
    /// The target's arbitration priority (APR), published by its vCPU
    /// thread, for lowest-priority delivery.
    var arbitrationPriority: UInt8 { get }
}

/// Routes interrupt messages (IPIs from LAPICs, IOAPIC redirections, MSIs,
/// the VMM itself) to the vCPUs whose local APICs accept them.
///
/// The vCPU set and every LAPIC's addressing live in an immutable
/// `RoutingTable` published through read-copy-update: delivery takes no
/// lock, and a vCPU that publishes new addressing (LDR, DFR, APIC ID, mode)
/// or joins or leaves the set replaces the table. The table indexes targets
/// by physical ID and by logical cluster, so a message to a fixed
/// destination reaches its target by lookup, never by scanning the vCPUs;
/// only broadcasts and shorthands visit everyone, as they must.
public final class InterruptRouter: InterruptMessageSink {
    private let table: ReadCopyUpdate<RoutingTable>

    public init() {
        table = ReadCopyUpdate(RoutingTable(entries: []))
    }

    /// The current vCPU set and addressing (a snapshot).
    public var snapshot: RoutingTable { table.read { $0 } }

    /// Adds or replaces slot `slot` (the vCPU index).
    public func setTarget(_ target: any InterruptTarget, slot: Int, addressing: APICAddressing) {
        table.update { current in
            var entries = current.entries
            if entries.count <= slot { entries += Array(repeating: nil, count: slot + 1 - entries.count) }
            entries[slot] = RoutingTable.Entry(target: target, addressing: addressing)
            return RoutingTable(entries: entries)
        }
    }

    /// Removes slot `slot`; returns once no delivery can still reach it.
    public func removeTarget(slot: Int) {
        table.update { current in
            var entries = current.entries
            if slot < entries.count { entries[slot] = nil }
            return RoutingTable(entries: entries)
        }
    }

    /// Publishes new addressing for `slot` (an `addressingChanged` effect).
    public func updateAddressing(slot: Int, _ addressing: APICAddressing) {
        table.update { current in
            var entries = current.entries
            guard slot < entries.count, let entry = entries[slot], entry.addressing != addressing else { return current }
            entries[slot] = RoutingTable.Entry(target: entry.target, addressing: addressing)
            return RoutingTable(entries: entries)
        }
    }

    /// Delivers `message`; returns whether at least one local APIC took it.
    @discardableResult
    public func deliver(_ message: InterruptMessage) -> Bool {
        // INIT level de-assert is a no-op on anything newer than the 82489DX.
        if message.deliveryMode == .initialize && message.triggerMode == .level && !message.level { return true }
        return table.read { routing in
            if message.deliveryMode == .lowestPriority {
                guard let target = routing.lowestPriorityTarget(for: message) else { return false }
                target.post(vector: message.vector, levelTriggered: message.triggerMode == .level)
                return true
            }
            var accepted = false
            routing.forEachDestination(of: message) { target in
                accepted = true
                switch message.deliveryMode {
                case .fixed, .lowestPriority:
                    target.post(vector: message.vector, levelTriggered: message.triggerMode == .level)
                case .nmi: target.post(.nmi)
                case .smi: target.post(.smi)
                case .initialize: target.post(.initialize)
                case .startup: target.post(.startup(vector: message.vector))
                case .extINT: target.post(.externalInterrupt)
                }
            }
            return accepted
        }
    }
}

/// The vCPUs a router can reach and how each local APIC is addressed, with
/// lookup tables built once per snapshot.
public final class RoutingTable: Sendable {
    public struct Entry: Sendable {
        public let target: any InterruptTarget
        public let addressing: APICAddressing
    }

    /// By slot (vCPU index); nil for a slot without a vCPU.
    public let entries: [Entry?]
    /// Physical ID → slots: the ID an APIC answers to in its mode, and for
    /// an xAPIC-mode APIC also its hardware ID above 0xFF (see
    /// `APICAddressing.accepts`).
    private let physical: [UInt32: [Int]]
    /// x2APIC logical cluster (LDR[31:16]) → slots of x2APIC-mode APICs.
    private let x2apicClusters: [UInt32: [Int]]
    /// xAPIC flat model: logical ID bit → slots.
    private let flatBits: [[Int]]
    /// xAPIC cluster model: cluster (LDR[31:28]) → slots.
    private let xapicClusters: [UInt32: [Int]]
    private let present: [Int]

    init(entries: [Entry?]) {
        self.entries = entries
        var physical: [UInt32: [Int]] = [:]
        var x2apicClusters: [UInt32: [Int]] = [:]
        var flatBits = [[Int]](repeating: [], count: 8)
        var xapicClusters: [UInt32: [Int]] = [:]
        var present: [Int] = []
        for (slot, entry) in entries.enumerated() {
            guard let a = entry?.addressing else { continue }
            present.append(slot)
            physical[a.physicalID, default: []].append(slot)
            if a.mode != .x2APIC && a.initialAPICID > 0xFF { physical[a.initialAPICID, default: []].append(slot) }
            switch a.mode {
            case .x2APIC:
                x2apicClusters[a.logicalDestination >> 16, default: []].append(slot)
            case .xAPIC:
                let logicalID = a.logicalDestination >> 24
                if a.destinationFormatModel == 0xF {
                    for bit in 0..<8 where logicalID & (1 << UInt32(bit)) != 0 { flatBits[bit].append(slot) }
                } else if a.destinationFormatModel == 0 {
                    xapicClusters[logicalID >> 4, default: []].append(slot)
                }
            case .disabled:
                break
            }
        }
        self.physical = physical
        self.x2apicClusters = x2apicClusters
        self.flatBits = flatBits
        self.xapicClusters = xapicClusters
        self.present = present
    }

    /// Slots that could accept `message`; each is confirmed with
    /// `APICAddressing.accepts` before delivery.
    private func candidates(for message: InterruptMessage) -> [Int] {
        if message.shorthand != .none || message.isBroadcast { return present }
        switch message.destinationMode {
        case .physical:
            return physical[message.destination] ?? []
        case .logical:
            let d = message.destination
            var slots = x2apicClusters[d >> 16] ?? []
            if d <= 0xFF {
                for bit in 0..<8 where d & (1 << UInt32(bit)) != 0 { slots += flatBits[bit] }
                slots += xapicClusters[d >> 4] ?? []
            }
            return slots
        }
    }

    /// Calls `body` once for each target that accepts `message`.
    func forEachDestination(of message: InterruptMessage, _ body: (any InterruptTarget) -> Void) {
        // The common case, a fixed physical destination, is one dictionary
        // lookup and no allocation: a physical slot list has no duplicates.
        if message.shorthand == .none && !message.isBroadcast && message.destinationMode == .physical {
            for slot in physical[message.destination] ?? [] {
                if let entry = entries[slot], entry.addressing.accepts(message) { body(entry.target) }
            }
            return
        }
        var seen = Set<Int>()
        for slot in candidates(for: message) where seen.insert(slot).inserted {
            guard let entry = entries[slot], entry.addressing.accepts(message) else { continue }
            body(entry.target)
        }
    }

    /// Lowest-priority delivery (SDM Vol. 3A §10.6.2.4): the accepting,
    /// software-enabled APIC with the lowest arbitration priority; the
    /// first such slot on ties.
    func lowestPriorityTarget(for message: InterruptMessage) -> (any InterruptTarget)? {
        var best: (priority: UInt8, target: any InterruptTarget)?
        var seen = Set<Int>()
        for slot in candidates(for: message) where seen.insert(slot).inserted {
            guard let entry = entries[slot], entry.addressing.isSoftwareEnabled, entry.addressing.accepts(message) else { continue }
            let priority = entry.target.arbitrationPriority
            if best == nil || priority < best!.priority { best = (priority, entry.target) }
        }
        return best?.target
    }
}

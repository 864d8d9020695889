import Testing
import SwiftletSystem
@testable import SwiftletInterrupts

/// A target that records what reached it.
final class RecordingTarget: InterruptTarget, @unchecked Sendable {
    let name: Int
    let log = Locked<[String]>([])
    let priority: UInt8
    init(_ name: Int, priority: UInt8 = 0) { self.name = name; self.priority = priority }
    func post(vector: UInt8, levelTriggered: Bool) { log.withLock { $0.append("v\(vector)\(levelTriggered ? "L" : "")") } }
    func post(_ event: PostedEvent) { log.withLock { $0.append("\(event)") } }
    var arbitrationPriority: UInt8 { priority }
    var received: [String] { log.withLock { $0 } }
}

@Suite struct InterruptRouterTests {
    func xapic(_ id: UInt8, ldr: UInt8 = 0, flat: Bool = true, enabled: Bool = true) -> APICAddressing {
        APICAddressing(mode: .xAPIC, initialAPICID: UInt32(id), xapicID: id, logicalDestination: UInt32(ldr) << 24,
                       destinationFormatModel: flat ? 0xF : 0x0, isSoftwareEnabled: enabled)
    }

    func x2apic(_ id: UInt32) -> APICAddressing {
        APICAddressing(mode: .x2APIC, initialAPICID: id, xapicID: 0, logicalDestination: LocalAPIC.x2APICLogicalID(id),
                       destinationFormatModel: 0, isSoftwareEnabled: true)
    }

    func message(_ vector: UInt8, to destination: UInt32, logical: Bool = false, mode: InterruptMessage.DeliveryMode = .fixed,
                 shorthand: InterruptMessage.Shorthand = .none, format: InterruptMessage.DestinationFormat = .xAPIC,
                 source: UInt32? = nil, level: InterruptMessage.TriggerMode = .edge) -> InterruptMessage {
        InterruptMessage(vector: vector, deliveryMode: mode, destinationMode: logical ? .logical : .physical,
                         destination: destination, destinationFormat: format, shorthand: shorthand,
                         triggerMode: level, level: true, sourceAPICID: source)
    }

    func router(_ targets: [(RecordingTarget, APICAddressing)]) -> InterruptRouter {
        let r = InterruptRouter()
        for (slot, (t, a)) in targets.enumerated() { r.setTarget(t, slot: slot, addressing: a) }
        return r
    }

    @Test func physicalDestinationsReachExactlyOneVCPU() {
        let t = (0..<4).map { RecordingTarget($0) }
        let r = router(t.enumerated().map { ($1, xapic(UInt8($0))) })
        #expect(r.deliver(message(0x40, to: 2)))
        #expect(t.map(\.received) == [[], [], ["v64"], []])
        #expect(!r.deliver(message(0x41, to: 9)), "nobody has APIC ID 9")
        #expect(r.deliver(message(0x42, to: 3, level: .level)))
        #expect(t[3].received == ["v66L"])
    }

    @Test func broadcastAndShorthands() {
        let t = (0..<3).map { RecordingTarget($0) }
        let r = router(t.enumerated().map { ($1, xapic(UInt8($0))) })
        r.deliver(message(0x50, to: 0xFF))
        #expect(t.allSatisfy { $0.received == ["v80"] })
        r.deliver(message(0x51, to: 0, shorthand: .allExcludingSelf, source: 1))
        #expect(t.map(\.received.last) == ["v81", "v80", "v81"])
        r.deliver(message(0x52, to: 0, shorthand: .self, source: 2))
        #expect(t[2].received.last == "v82" && t[0].received.count == 2)
    }

    @Test func logicalFlatAndCluster() {
        let flat = (0..<4).map { RecordingTarget($0) }
        let r = router(flat.enumerated().map { ($1, xapic(UInt8($0), ldr: 1 << UInt8($0))) })
        r.deliver(message(0x60, to: 0b0101, logical: true))
        #expect(flat.map(\.received.count) == [1, 0, 1, 0])

        let cluster = (0..<4).map { RecordingTarget($0) }
        // Clusters 1 and 2, two members each.
        let ldrs: [UInt8] = [0x11, 0x12, 0x21, 0x22]
        let r2 = router(cluster.enumerated().map { ($1, xapic(UInt8($0), ldr: ldrs[$0], flat: false)) })
        r2.deliver(message(0x61, to: 0x23, logical: true))
        #expect(cluster.map(\.received.count) == [0, 0, 1, 1])
    }

    @Test func x2apicClusters() {
        let t = (0..<40).map { RecordingTarget($0) }
        let r = router(t.enumerated().map { ($1, x2apic(UInt32($0))) })
        // x2APIC ID 17 is cluster 1, bit 1; 18 is cluster 1, bit 2.
        r.deliver(message(0x70, to: (1 << 16) | 0b110, logical: true, format: .x2APIC))
        #expect(t.enumerated().filter { !$1.received.isEmpty }.map(\.offset) == [17, 18])
        r.deliver(message(0x71, to: 33, format: .x2APIC))
        #expect(t[33].received == ["v113"])
    }

    @Test func lowestPriorityPicksOneAcceptingAPIC() {
        let t = [RecordingTarget(0, priority: 0x40), RecordingTarget(1, priority: 0x10), RecordingTarget(2, priority: 0x00)]
        let r = router([(t[0], xapic(0, ldr: 1)), (t[1], xapic(1, ldr: 2)), (t[2], xapic(2, ldr: 4, enabled: false))])
        #expect(r.deliver(message(0x80, to: 0b111, logical: true, mode: .lowestPriority)))
        #expect(t.map(\.received.count) == [0, 1, 0], "lowest APR among software-enabled APICs")
    }

    @Test func nonVectorMessagesBecomeEvents() {
        let t = [RecordingTarget(0), RecordingTarget(1)]
        let r = router([(t[0], xapic(0)), (t[1], xapic(1))])
        r.deliver(message(0, to: 1, mode: .initialize, level: .level))
        r.deliver(InterruptMessage(vector: 0, deliveryMode: .initialize, destinationMode: .physical, destination: 1,
                                   destinationFormat: .xAPIC, shorthand: .none, triggerMode: .level, level: false, sourceAPICID: 0))
        r.deliver(message(0x08, to: 1, mode: .startup))
        r.deliver(message(0, to: 1, mode: .nmi))
        #expect(t[1].received == ["initialize", "startup(vector: 8)", "nmi"], "INIT de-assert is ignored")
        #expect(t[0].received.isEmpty)
    }

    @Test func addressingUpdatesAndRemovals() {
        let t = [RecordingTarget(0), RecordingTarget(1)]
        let r = router([(t[0], xapic(0)), (t[1], xapic(1))])
        r.updateAddressing(slot: 1, xapic(7))
        #expect(!r.deliver(message(0x90, to: 1)))
        #expect(r.deliver(message(0x91, to: 7)))
        r.removeTarget(slot: 1)
        #expect(!r.deliver(message(0x92, to: 7)))
        #expect(t[1].received == ["v145"])
    }
}

import Testing
import SwiftletSystem
@testable import SwiftletInterrupts

/// The I/O APIC and the PIC pair are shared by every vCPU and device thread.
/// These drive them from several OS threads at once, for the thread
/// sanitizer to judge (`swift test --sanitize=thread`), and check that the
/// models end in a state the interleaving cannot explain away.
@Suite struct ConcurrencyTests {
    static func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) throws {
        let threads = try (0..<count).map { index throws(SystemError) in
            try OSThread(name: "irq-test-\(index)") { body(index) }
        }
        for thread in threads { thread.join() }
    }

    @Test func ioapicUnderConcurrentPinsEOIsAndRegisterAccess() throws {
        let sink = MessageRecorder()
        let ioapic = IOAPIC(sink: sink)
        // Pins 0-3 level-triggered, vector 0x40 + pin; pins 4-7 edge.
        for pin in 0..<8 {
            ioapic.write(at: 0, size: 4, value: UInt64(0x10 + 2 * pin))
            ioapic.write(at: 0x10, size: 4, value: UInt64((pin < 4 ? 1 << 15 : 0) | 0x40 + pin))
        }
        try Self.onThreads(4) { index in
            for round in 0..<2_000 {
                switch index {
                case 0, 1:
                    // Devices toggle their lines.
                    let pin = (round + index) % 8
                    ioapic.setIRQ(pin, level: true)
                    ioapic.setIRQ(pin, level: false)
                case 2:
                    // A vCPU ending level interrupts.
                    ioapic.endOfInterrupt(vector: UInt8(0x40 + round % 4))
                default:
                    // A guest reading the table through IOREGSEL/IOWIN.
                    ioapic.write(at: 0, size: 4, value: UInt64(0x10 + 2 * (round % 8)))
                    _ = ioapic.read(at: 0x10, size: 4)
                }
            }
        }
        // Every line ended low; one EOI per level vector then clears every
        // remote IRR, and nothing is sent again.
        for vector: UInt8 in 0x40...0x43 { ioapic.endOfInterrupt(vector: vector) }
        let sent = sink.messages.count
        for pin in 0..<4 { #expect(ioapic.redirectionEntry(pin) & 1 << 14 == 0) }
        ioapic.endOfInterrupt(vector: 0x40)
        #expect(sink.messages.count == sent)
        #expect(sent >= 1000, "edge pins 4-7 alone were raised 1000 times")
    }

    @Test func picUnderConcurrentDevicesAndINTA() throws {
        let line = LineRecorder()
        let pic = PIC8259Pair(output: line)
        for (port, value) in [(0, 0x11), (1, 0x30), (1, 0x04), (1, 0x01)] as [(UInt64, UInt64)] {
            pic.master.write(at: port, size: 1, value: value)
        }
        for (port, value) in [(0, 0x11), (1, 0x38), (1, 0x02), (1, 0x01)] as [(UInt64, UInt64)] {
            pic.slave.write(at: port, size: 1, value: value)
        }
        try Self.onThreads(3) { index in
            for round in 0..<2_000 {
                switch index {
                case 0:
                    let irq = [1, 3, 4, 8, 12][round % 5]
                    pic.setIRQ(irq, level: true)
                    pic.setIRQ(irq, level: false)
                case 1:
                    // The BSP: INTA, then the EOIs Linux sends.
                    let vector = pic.acknowledge()
                    if vector >= 0x38 { pic.slave.write(at: 0, size: 1, value: 0x20) }
                    pic.master.write(at: 0, size: 1, value: 0x20)
                default:
                    _ = pic.master.read(at: 0, size: 2)
                }
            }
        }
        #expect(line.level == pic.outputAsserted)
        let history = line.history
        #expect(zip(history, history.dropFirst()).allSatisfy { $0 != $1 }, "reports alternate: none lost or doubled")
    }
}

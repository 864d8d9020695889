import Testing
import SwiftletTestSupport
@testable import SwiftletInterrupts

/// The guest is untrusted: random offsets, sizes, values, MSRs, pins and
/// times must never trap, and the models' invariants must hold throughout.
/// Fixed seeds make every run the same.
@Suite struct HostileInputTests {
    static let sizes = [-1, 0, 1, 2, 3, 4, 5, 8, 16, Int.max, Int.min]

    /// Biased toward values that matter: small ones, all ones, single bits.
    static func value(_ rng: inout SeededGenerator) -> UInt64 {
        switch rng.next() % 4 {
        case 0: rng.next() & 0xFFFF
        case 1: UInt64.max >> (rng.next() % 64)
        case 2: 1 << (rng.next() % 64)
        default: rng.next()
        }
    }

    static func time(_ rng: inout SeededGenerator, _ clock: inout Int64) -> Int64 {
        switch rng.next() % 8 {
        case 0: return Int64(bitPattern: rng.next())
        case 1: return Int64.max
        case 2: return Int64.min
        default:
            clock &+= Int64(rng.next() % 5_000)
            return clock
        }
    }

    @Test func randomLocalAPICTrafficNeverTraps() {
        var rng = SeededGenerator(seed: 0x5EED_A91C)
        var clock: Int64 = 0
        var apics = [LocalAPIC.enabled(id: 0), LocalAPIC(apicID: 0xFFFF_FFFF, isBootstrapProcessor: false),
                     LocalAPIC(apicID: 7, isBootstrapProcessor: false,
                               configuration: .init(timerFrequency: 0, minimumPeriodicInterval: -5,
                                                    physicalAddressWidth: 1000))]
        var operations = 0
        for round in 0..<30_000 {
            let index = round % apics.count
            var apic = apics[index]
            let now = Self.time(&rng, &clock)
            switch rng.next() % 12 {
            case 0:
                // Mostly inside the page, sometimes anywhere.
                let offset = rng.next() % 3 == 0 ? rng.next() : rng.next() % 0x1010
                _ = apic.readMMIO(offset: offset, size: Self.sizes.randomElement(using: &rng)!, now: now)
            case 1, 2:
                let offset = rng.next() % 2 == 0 ? (rng.next() % 0x400) & ~0xF : rng.next() % 0x1010
                let size = rng.next() % 2 == 0 ? 4 : Self.sizes.randomElement(using: &rng)!
                _ = apic.writeMMIO(offset: offset, size: size, value: Self.value(&rng), now: now)
            case 3:
                let msr = rng.next() % 4 == 0 ? 0x1B : UInt32(0x7F0 + rng.next() % 0x120)
                _ = try? apic.readMSR(msr, now: now)
            case 4:
                let msr = rng.next() % 4 == 0 ? 0x1B : UInt32(0x7F0 + rng.next() % 0x120)
                _ = try? apic.writeMSR(msr, value: Self.value(&rng), now: now)
            case 5:
                apic.accept(vector: UInt8(truncatingIfNeeded: rng.next()), levelTriggered: rng.next() % 2 == 0)
            case 6:
                _ = apic.acknowledge()
            case 7:
                let message = InterruptMessage(
                    vector: UInt8(truncatingIfNeeded: rng.next()),
                    deliveryMode: [.fixed, .lowestPriority, .smi, .nmi, .initialize, .startup, .extINT]
                        .randomElement(using: &rng)!,
                    destinationMode: rng.next() % 2 == 0 ? .physical : .logical,
                    destination: UInt32(truncatingIfNeeded: Self.value(&rng)),
                    destinationFormat: rng.next() % 2 == 0 ? .xAPIC : .x2APIC,
                    shorthand: InterruptMessage.Shorthand(rawValue: UInt8(rng.next() % 4))!,
                    triggerMode: rng.next() % 2 == 0 ? .edge : .level,
                    level: rng.next() % 2 == 0,
                    sourceAPICID: rng.next() % 2 == 0 ? nil : UInt32(truncatingIfNeeded: rng.next()))
                _ = apic.accepts(message)
                _ = apic.deliver(message)
            case 8:
                _ = apic.setLocalInterruptPin(Int(truncatingIfNeeded: rng.next() % 4) - 1, asserted: rng.next() % 2 == 0)
            case 9:
                _ = apic.timerFired(now: now)
            case 10:
                apic.acceptPosted(VectorSet(words: (Self.value(&rng), rng.next(), 0, rng.next())),
                                  levelTriggered: VectorSet(words: (rng.next(), 0, rng.next(), 0)))
                _ = apic.raiseLocalInterrupt(LVTEntry.allCases.randomElement(using: &rng)!)
            default:
                apic.setCR8(Self.value(&rng))
                apic.signalError(LocalAPIC.Errors(rawValue: UInt32(truncatingIfNeeded: rng.next())))
            }
            // Invariants: no illegal vector is ever pending or in service;
            // PPR is what §10.8.3.1 says; a pending vector beats PPR.
            #expect(apic.irr.words.0 & 0xFFFF == 0 && apic.isr.words.0 & 0xFFFF == 0)
            let tpr = apic.taskPriority, isrv = apic.isr.highest ?? 0
            #expect(apic.processorPriority == (tpr & 0xF0 >= isrv & 0xF0 ? tpr : isrv & 0xF0))
            if case .vector(let vector)? = apic.pendingInterrupt() {
                #expect(vector & 0xF0 > apic.processorPriority & 0xF0 && apic.irr.contains(vector))
            }
            // A deadline is announced only for a timer that can interrupt.
            if apic.nextTimerDeadline != nil {
                #expect(apic.lvt[.timer] & LVTFile.masked == 0 && apic.mode != .disabled)
            }
            apics[index] = apic
            operations += 1
        }
        #expect(operations == 30_000)
    }

    @Test func randomIOAPICTrafficNeverTraps() {
        var rng = SeededGenerator(seed: 0x10A_91C)
        let sink = MessageRecorder()
        let ioapic = IOAPIC(sink: sink, id: 0xFF)
        for _ in 0..<40_000 {
            switch rng.next() % 6 {
            case 0:
                ioapic.write(at: rng.next() % 4 == 0 ? rng.next() : rng.next() % 0x50,
                             size: Self.sizes.randomElement(using: &rng)!, value: Self.value(&rng))
            case 1:
                // Select an existing register more often than not.
                ioapic.write(at: 0, size: 4, value: rng.next() % 0x48)
                ioapic.write(at: 0x10, size: 4, value: Self.value(&rng))
            case 2:
                _ = ioapic.read(at: rng.next() % 4 == 0 ? rng.next() : rng.next() % 0x50,
                                size: Self.sizes.randomElement(using: &rng)!)
            case 3:
                ioapic.setIRQ(Int(truncatingIfNeeded: rng.next() % 30) - 3, level: rng.next() % 2 == 0)
            case 4:
                ioapic.endOfInterrupt(vector: UInt8(truncatingIfNeeded: rng.next()))
            default:
                sink.accepting = rng.next() % 4 != 0
            }
            if sink.messages.count > 1000 { sink.clear() }
        }
        // Reserved bits never become visible.
        for pin in 0..<IOAPIC.pinCount {
            #expect(ioapic.redirectionEntry(pin) & 0x00FF_FFFF_FFFE_1000 == 0)
        }
    }

    @Test func randomPICTrafficNeverTraps() {
        var rng = SeededGenerator(seed: 0x8259)
        let line = LineRecorder()
        let pic = PIC8259Pair(output: line)
        let devices = [pic.master, pic.slave, pic.edgeLevelControl]
        for _ in 0..<40_000 {
            let device = devices.randomElement(using: &rng)!
            switch rng.next() % 5 {
            case 0:
                device.write(at: rng.next() % 3 == 0 ? rng.next() : rng.next() % 3,
                             size: Self.sizes.randomElement(using: &rng)!, value: Self.value(&rng))
            case 1:
                _ = device.read(at: rng.next() % 3 == 0 ? rng.next() : rng.next() % 3,
                                size: Self.sizes.randomElement(using: &rng)!)
            case 2, 3:
                pic.setIRQ(Int(truncatingIfNeeded: rng.next() % 20) - 2, level: rng.next() % 2 == 0)
            default:
                _ = pic.acknowledge()
            }
            #expect(line.level == pic.outputAsserted, "the wire always shows the output")
        }
        // Consecutive reports always change the level.
        let history = line.history
        #expect(zip(history, history.dropFirst()).allSatisfy { $0 != $1 })
    }

    @Test func randomMSIsNeverTrap() {
        var rng = SeededGenerator(seed: 0x4D51)
        var decoded = 0
        for _ in 0..<20_000 {
            let address = rng.next() % 2 == 0 ? 0xFEE0_0000 | rng.next() & 0xF_FFFF : rng.next()
            let data = UInt32(truncatingIfNeeded: rng.next())
            if let message = InterruptMessage.decodeMSI(address: address, data: data,
                                                        extendedDestinationID: rng.next() % 2 == 0) {
                decoded += 1
                #expect(message.destination <= 0x7FFF)
            }
        }
        #expect(decoded > 5_000, "about three in four in-window pairs have a valid delivery mode")
    }
}

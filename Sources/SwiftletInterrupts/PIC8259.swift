/// One 8259A programmable interrupt controller (Intel 8259A datasheet,
/// 231468): its registers, initialization sequence, commands and priority
/// resolver. `PIC8259Pair` wires two of them as a PC does and guards them.
struct PIC8259: Sendable {
    enum InitializationStep: Sendable {
        case ready
        case expectingICW2
        case expectingICW3
        case expectingICW4
    }

    let isMaster: Bool
    /// ELCR bits that exist: IRQ 0, 1 and 2 on the master and IRQ 8 and 13 on
    /// the slave are always edge-triggered on a PC (PIIX/ICH ELCR; KVM and
    /// QEMU use the same masks).
    let edgeLevelMask: UInt8

    var irr: UInt8 = 0
    var isr: UInt8 = 0
    var imr: UInt8 = 0
    /// The IR input levels.
    var lines: UInt8 = 0
    /// ELCR: 1 = level-triggered input.
    var edgeLevel: UInt8 = 0
    /// ICW2 bits 7:3: the vector of IR0 (80x86 mode).
    var vectorBase: UInt8 = 0
    var step = InitializationStep.ready
    var expectsICW4 = false
    var singleMode = false
    /// ICW1 LTIM: every input level-triggered.
    var levelTriggeredMode = false
    var autoEOI = false
    var rotateOnAutoEOI = false
    var specialFullyNested = false
    var specialMask = false
    /// OCW3 RR/RIS: the register port 0 reads (ISR when set, else IRR).
    var readsInService = false
    /// OCW3 P: the next read is a poll.
    var pollPending = false
    /// The IR with the lowest priority, plus one: IR `lowestPriority + 1`
    /// (mod 8) has the highest. 0 after ICW1 (IR0 highest, IR7 lowest);
    /// the rotation commands move it.
    var priorityBase: UInt8 = 0

    init(isMaster: Bool) {
        self.isMaster = isMaster
        edgeLevelMask = isMaster ? 0xF8 : 0xDE
    }

    /// Inputs that are level-triggered, by ICW1 LTIM or the ELCR.
    var levelInputs: UInt8 { levelTriggeredMode ? 0xFF : edgeLevel }

    // MARK: - Priority resolution

    /// The priority (0 highest ... 7 lowest) of the most urgent IR in `mask`,
    /// or nil for an empty mask.
    func highestPriority(in mask: UInt8) -> UInt8? {
        guard mask != 0 else { return nil }
        var priority: UInt8 = 0
        while mask & (1 << ((priority &+ priorityBase) & 7)) == 0 { priority += 1 }
        return priority
    }

    func input(atPriority priority: UInt8) -> UInt8 { (priority &+ priorityBase) & 7 }

    /// The IR the priority resolver would signal INT for: the most urgent
    /// unmasked request that outranks every level in service (fully nested
    /// mode). In special mask mode an in-service level that is masked does
    /// not block others; in special fully nested mode the master lets the
    /// slave's IR interrupt while it is in service, so higher-priority slave
    /// requests can nest (datasheet, "Special Mask Mode", "Special Fully
    /// Nested Mode").
    var requestedInput: UInt8? {
        guard let priority = highestPriority(in: irr & ~imr) else { return nil }
        var inService = isr
        if specialMask { inService &= ~imr }
        if specialFullyNested && isMaster { inService &= ~(1 << 2) }
        if let current = highestPriority(in: inService), current <= priority { return nil }
        return input(atPriority: priority)
    }

    /// The INTA (or poll) of IR `input`: it goes in service (unless in
    /// automatic EOI mode, where the second INTA pulse ends it at once), and
    /// an edge request is consumed; a level request stays while the input
    /// is high.
    mutating func acknowledge(_ input: UInt8) {
        let bit: UInt8 = 1 << (input & 7)
        if levelInputs & bit == 0 { irr &= ~bit }
        if autoEOI {
            if rotateOnAutoEOI { priorityBase = (input &+ 1) & 7 }
        } else {
            isr |= bit
        }
    }

    // MARK: - Inputs

    /// Edge inputs latch a request on a rising edge and keep it until the
    /// INTA, even if the line falls first; level inputs request while high.
    /// On a real 8259A an edge request that falls before INTA turns into a
    /// spurious IR7. KVM and QEMU latch instead, because an emulated device
    /// can pulse its line with zero width, and so does this model.
    mutating func setLine(_ input: UInt8, level: Bool) {
        let bit: UInt8 = 1 << (input & 7)
        if levelInputs & bit != 0 {
            if level { irr |= bit } else { irr &= ~bit }
        } else if level && lines & bit == 0 {
            irr |= bit
        }
        if level { lines |= bit } else { lines &= ~bit }
    }

    /// An ELCR write. An input that becomes level-triggered requests
    /// exactly while its line is high from now on.
    mutating func setEdgeLevel(_ value: UInt8) {
        edgeLevel = value & edgeLevelMask
        let level = levelInputs
        irr = irr & ~level | lines & level
    }

    // MARK: - Port writes

    /// A write to the command port (A0 = 0): ICW1, OCW2 or OCW3.
    mutating func writeCommand(_ value: UInt8) {
        if value & 0x10 != 0 {
            initialize(icw1: value)
        } else if value & 0x08 == 0 {
            operationCommand2(value)
        } else {
            // OCW3: ESMM/SMM (bits 6, 5), P (bit 2), RR/RIS (bits 1, 0).
            if value & 0x40 != 0 { specialMask = value & 0x20 != 0 }
            if value & 0x04 != 0 { pollPending = true }
            if value & 0x02 != 0 { readsInService = value & 0x01 != 0 }
        }
    }

    /// ICW1 starts the initialization sequence. The datasheet lists what it
    /// does: the edge-sense circuit is reset (an edge input must go low and
    /// high again), IMR is cleared, IR7 gets the lowest priority, special
    /// mask mode is cleared and status reads select the IRR, and without
    /// IC4 the ICW4 functions are cleared. This also clears the ISR, as KVM
    /// and QEMU do, so that a guest re-initializing in the middle of a
    /// handler does not leave a level in service forever.
    mutating func initialize(icw1: UInt8) {
        expectsICW4 = icw1 & 0x01 != 0
        singleMode = icw1 & 0x02 != 0
        levelTriggeredMode = icw1 & 0x08 != 0
        irr &= levelInputs & lines
        isr = 0
        imr = 0
        priorityBase = 0
        specialMask = false
        readsInService = false
        pollPending = false
        if !expectsICW4 {
            autoEOI = false
            specialFullyNested = false
        }
        step = .expectingICW2
    }

    /// OCW2 (datasheet table "Operation Command Word 2"): bits 7:5 are R,
    /// SL, EOI and bits 2:0 the level.
    mutating func operationCommand2(_ value: UInt8) {
        let level = value & 7
        switch value >> 5 {
        case 0b001, 0b101:
            // Non-specific EOI: the highest-priority level in service, the
            // last one acknowledged in fully nested mode. In special mask
            // mode a level masked in the IMR is not cleared this way.
            let candidates = specialMask ? isr & ~imr : isr
            guard let priority = highestPriority(in: candidates) else { return }
            let input = input(atPriority: priority)
            isr &= ~(1 << input)
            if value >> 5 == 0b101 { priorityBase = (input &+ 1) & 7 }  // rotate on non-specific EOI
        case 0b011:
            isr &= ~(1 << level)  // specific EOI
        case 0b111:
            isr &= ~(1 << level)  // rotate on specific EOI: that level becomes lowest
            priorityBase = (level &+ 1) & 7
        case 0b110:
            priorityBase = (level &+ 1) & 7  // set priority: `level` becomes lowest
        case 0b100:
            rotateOnAutoEOI = true
        case 0b000:
            rotateOnAutoEOI = false
        default:
            break  // 010: no operation
        }
    }

    /// A write to the data port (A0 = 1): the next ICW of the sequence, or
    /// OCW1 (the IMR). ICW3 comes only in cascade mode and ICW4 only when
    /// ICW1 asked for it. ICW2 gives the vector base (80x86 mode; MCS-80/85
    /// call sequences are not modelled, so ICW4's µPM bit changes nothing).
    mutating func writeData(_ value: UInt8) {
        switch step {
        case .ready:
            imr = value
        case .expectingICW2:
            vectorBase = value & 0xF8
            step = !singleMode ? .expectingICW3 : expectsICW4 ? .expectingICW4 : .ready
        case .expectingICW3:
            // Which IR has a slave is the board's wiring (IR2 on a PC), so
            // the cascade follows that rather than this word.
            step = expectsICW4 ? .expectingICW4 : .ready
        case .expectingICW4:
            autoEOI = value & 0x02 != 0
            specialFullyNested = value & 0x10 != 0
            step = .ready
        }
    }

    /// A read of the command port without a poll pending: the IRR or ISR.
    var statusRegister: UInt8 { readsInService ? isr : irr }

    /// A poll (OCW3 P, then a read): the read acts as INTA and returns
    /// 0x80 | level of the most urgent request, or 0 when none (bit 7, I,
    /// says whether there was one). Polling the master while the slave
    /// requests gives its IR2; software polls the slave next.
    mutating func poll() -> UInt8 {
        pollPending = false
        guard let input = requestedInput else { return 0 }
        acknowledge(input)
        return 0x80 | input
    }
}

/// Interrupt acceptance, priority, INTA and EOI (Intel SDM Vol. 3A §10.8),
/// messages from the bus, and the local interrupt pins.
extension LocalAPIC {
    // MARK: - Acceptance

    /// A fixed or lowest-priority interrupt arrives for this APIC (§10.8.2):
    /// sets its IRR bit, and its TMR bit for a level-triggered interrupt
    /// (clears it for an edge). Vectors 0–15 are illegal: they set "received
    /// illegal vector" in the ESR (raising the LVT error interrupt) and are
    /// not accepted. A software-disabled APIC accepts no new fixed
    /// interrupts — what it already holds stays (§10.4.7.2) — and a globally
    /// disabled one accepts nothing. Returns whether the IRR took it; a
    /// repeat of a pending vector collapses into its IRR bit (§10.8.4).
    @discardableResult
    public mutating func accept(vector: UInt8, levelTriggered: Bool) -> Bool {
        acceptLocal(vector: vector, levelTriggered: levelTriggered)
    }

    /// Applies a batch of fixed interrupts posted by other threads (a
    /// posted-interrupt descriptor's request bitmap): each vector of
    /// `vectors` is accepted as `accept` would, level-triggered if it is also
    /// in `levelTriggered`.
    public mutating func acceptPosted(_ vectors: VectorSet, levelTriggered: VectorSet = VectorSet()) {
        guard !vectors.isEmpty else { return }
        var legal = vectors
        legal.words.0 &= ~0xFFFF
        if legal != vectors { signalError(.receivedIllegalVector) }
        guard mode != .disabled, isSoftwareEnabled, !legal.isEmpty else { return }
        irr.formUnion(legal)
        tmr.subtract(legal)
        tmr.formUnion(legal.intersection(levelTriggered))
    }

    /// Acceptance for every source; returns whether the IRR took it.
    @discardableResult
    mutating func acceptLocal(vector: UInt8, levelTriggered: Bool) -> Bool {
        guard mode != .disabled else { return false }
        guard vector >= 16 else {
            signalError(.receivedIllegalVector)
            return false
        }
        guard isSoftwareEnabled else { return false }
        irr.insert(vector)
        if levelTriggered { tmr.insert(vector) } else { tmr.remove(vector) }
        return true
    }

    /// Records errors in the ESR's accumulator and raises the LVT error
    /// interrupt (§10.5.3). The router reports what only it can see, such as
    /// an IPI nobody accepted (`.sendAccept`).
    public mutating func signalError(_ errors: Errors) {
        guard mode != .disabled else { return }
        pendingErrors |= errors.rawValue
        let entry = lvt[.error]
        guard entry & LVTFile.masked == 0 else { return }
        let vector = UInt8(truncatingIfNeeded: entry)
        // An illegal error vector is itself an error, but one that raises no
        // further interrupt: the recursion stops here.
        guard vector >= 16 else {
            pendingErrors |= Errors.receivedIllegalVector.rawValue
            return
        }
        acceptLocal(vector: vector, levelTriggered: false)
    }

    // MARK: - Dispatch

    /// The interrupt the vCPU should take next, if any; the vCPU layer
    /// injects it when the guest can take interrupts (RFLAGS.IF and no
    /// interrupt shadow) and otherwise asks KVM for an interrupt window.
    ///
    /// - ExtINT first: the 8259's request through LINT0 programmed as ExtINT
    ///   (a level-sensitive mode, §10.5.1 "Trigger Mode"), through LINT0 as
    ///   the plain INTR pin when the APIC is globally disabled (§10.4.3), or
    ///   from an ExtINT message. The PIC's vector bypasses the IRR and the
    ///   PPR; KVM gives it the same precedence.
    /// - Then the highest IRR vector whose priority class (vector[7:4]) is
    ///   above the processor-priority class PPR[7:4] (§10.8.3.1). Held
    ///   vectors are still dispatched while the APIC is software-disabled:
    ///   "pending interrupts in the IRR and ISR registers are held and
    ///   require masking or handling by the CPU" (§10.4.7.2).
    /// - Nothing while the processor waits for a SIPI: that state blocks
    ///   interrupts (§8.4.2); accepted vectors wait in the IRR.
    public func pendingInterrupt() -> PendingInterrupt? {
        guard activity == .running else { return nil }
        if externalInterruptPending { return .external }
        return deliverableVector.map { .vector($0) }
    }

    var externalInterruptPending: Bool {
        if externalInterruptMessagePending { return true }
        guard lint0Asserted else { return false }
        if mode == .disabled { return true }
        let entry = lvt[.lint0]
        return entry & LVTFile.masked == 0 && (entry >> 8) & 7 == LVTFile.deliveryModeExtINT
    }

    var deliverableVector: UInt8? {
        guard mode != .disabled, let vector = irr.highest else { return nil }
        return vector & 0xF0 > processorPriority & 0xF0 ? vector : nil
    }

    /// The interrupt-acknowledge cycle, when the vCPU layer injects: moves
    /// the highest deliverable vector from IRR to ISR and returns it. If
    /// nothing is deliverable any more — the guest raised its TPR since
    /// `pendingInterrupt()` — the APIC answers with the spurious vector and
    /// leaves the ISR alone (§10.9). An ExtINT is answered by the PIC.
    public mutating func acknowledge() -> Acknowledgement {
        guard activity == .running else { return .spurious(UInt8(truncatingIfNeeded: svr)) }
        if externalInterruptPending {
            externalInterruptMessagePending = false
            return .external
        }
        guard let vector = deliverableVector else {
            return .spurious(UInt8(truncatingIfNeeded: svr))
        }
        irr.remove(vector)
        isr.insert(vector)
        return .vector(vector)
    }

    /// A write to the EOI register (§10.8.5): retires the highest in-service
    /// vector, the one being handled under the fully nested discipline. If
    /// its TMR bit is set the EOI goes to the I/O APICs too. With LINT0
    /// level-triggered on that vector, its remote IRR clears and a line
    /// still asserted is taken again.
    mutating func endOfInterrupt(_ effects: inout [Effect]) {
        guard let vector = isr.highest else { return }
        isr.remove(vector)
        let level = tmr.contains(vector)
        effects.append(.endOfInterrupt(vector: vector, levelTriggered: level))
        let lint0 = lvt[.lint0]
        if level, lint0 & LVTFile.remoteIRR != 0, UInt8(truncatingIfNeeded: lint0) == vector {
            lvt[.lint0] = lint0 & ~LVTFile.remoteIRR
            sampleLevelTriggeredLINT0()
        }
    }

    // MARK: - Messages from the bus

    /// A message the router found this APIC to be a destination of
    /// (see `accepts(_:)`), handled by its delivery mode (§10.6.1).
    public mutating func deliver(_ message: InterruptMessage) -> [Effect] {
        recordingEffects { apic, effects in
            guard apic.mode != .disabled else { return }
            switch message.deliveryMode {
            case .fixed, .lowestPriority:
                // A level de-assert carries no interrupt (KVM drops it too).
                guard message.triggerMode == .edge || message.level else { return }
                apic.acceptLocal(vector: message.vector, levelTriggered: message.triggerMode == .level)
            case .smi:
                effects.append(.smi)
            case .nmi:
                effects.append(.nmi)
            case .initialize:
                // INIT level de-assert is a P6-era synchronization message;
                // later processors ignore it (§10.4.7.4, §10.6.1).
                guard message.triggerMode == .edge || message.level else { return }
                apic.receiveINIT(&effects)
            case .startup:
                // A SIPI outside the wait-for-SIPI state is ignored (§8.4.2).
                guard apic.activity == .waitingForSIPI else { return }
                apic.activity = .running
                effects.append(.startup(vector: message.vector))
            case .extINT:
                apic.externalInterruptMessagePending = true
            }
        }
    }

    // MARK: - Local interrupt pins

    /// Drives the LINT0 (pin 0, the 8259's INTR in a PC) or LINT1 (pin 1,
    /// NMI) input. What a level change means is the LVT entry's business
    /// (§10.5.1): fixed edge-triggered takes rising edges; fixed
    /// level-triggered (LINT0 only: "level-sensitive interrupts are not
    /// supported for LINT1") is taken while asserted and its remote IRR is
    /// clear; NMI, SMI and INIT are always edge-triggered; ExtINT is a level
    /// that `pendingInterrupt()` samples. Masked entries ignore the pin. The
    /// level is the logical request: the polarity bit describes the wire
    /// and is kept only for the guest to read back.
    public mutating func setLocalInterruptPin(_ pin: Int, asserted: Bool) -> [Effect] {
        recordingEffects { apic, effects in
            guard pin == 0 || pin == 1 else { return }
            let rising: Bool
            if pin == 0 {
                rising = asserted && !apic.lint0Asserted
                apic.lint0Asserted = asserted
            } else {
                rising = asserted && !apic.lint1Asserted
                apic.lint1Asserted = asserted
            }
            // Globally disabled, the pins are the processor's INTR and NMI:
            // INTR is sampled by pendingInterrupt(), NMI is edge-triggered.
            guard apic.mode != .disabled else {
                if pin == 1 && rising { effects.append(.nmi) }
                return
            }
            let entry = apic.lvt[pin == 0 ? .lint0 : .lint1]
            guard entry & LVTFile.masked == 0 else { return }
            switch (entry >> 8) & 7 {
            case LVTFile.deliveryModeFixed:
                if pin == 0 && entry & LVTFile.levelTriggered != 0 {
                    apic.sampleLevelTriggeredLINT0()
                } else if rising {
                    apic.acceptLocal(vector: UInt8(truncatingIfNeeded: entry), levelTriggered: false)
                }
            case LVTFile.deliveryModeSMI where rising: effects.append(.smi)
            case LVTFile.deliveryModeNMI where rising: effects.append(.nmi)
            case LVTFile.deliveryModeINIT where rising: apic.receiveINIT(&effects)
            default: break
            }
        }
    }

    /// LINT0 as fixed and level-triggered: while the pin is asserted and
    /// remote IRR is clear, the interrupt is accepted (level, so its EOI
    /// reaches `endOfInterrupt`) and remote IRR is set until that EOI.
    /// Called on pin changes, LVT writes (unmasking a pending line takes it)
    /// and EOIs.
    mutating func sampleLevelTriggeredLINT0() {
        let entry = lvt[.lint0]
        guard lint0Asserted, mode != .disabled,
              entry & (LVTFile.masked | LVTFile.remoteIRR | LVTFile.deliveryModeMask) == 0,
              entry & LVTFile.levelTriggered != 0 else { return }
        if acceptLocal(vector: UInt8(truncatingIfNeeded: entry), levelTriggered: true) {
            lvt[.lint0] = entry | LVTFile.remoteIRR
        }
    }

    /// A local event for the thermal-sensor, performance-counter or CMCI
    /// entry (the timer, error and LINT entries have their own sources):
    /// delivered as the entry says — fixed, SMI or NMI; INIT and ExtINT are
    /// not supported for these entries (figure 10-8) and deliver nothing.
    /// A performance-counter interrupt masks its entry, as Pentium 4 and
    /// later processors do, until software unmasks it (§10.5.1 "Mask").
    public mutating func raiseLocalInterrupt(_ entry: LVTEntry) -> [Effect] {
        recordingEffects { apic, effects in
            guard entry == .thermal || entry == .performanceCounter || entry == .cmci,
                  apic.mode != .disabled else { return }
            let value = apic.lvt[entry]
            guard value & LVTFile.masked == 0 else { return }
            switch (value >> 8) & 7 {
            case LVTFile.deliveryModeFixed:
                apic.acceptLocal(vector: UInt8(truncatingIfNeeded: value), levelTriggered: false)
            case LVTFile.deliveryModeSMI: effects.append(.smi)
            case LVTFile.deliveryModeNMI: effects.append(.nmi)
            default: return
            }
            if entry == .performanceCounter { apic.lvt[entry] = value | LVTFile.masked }
        }
    }
}

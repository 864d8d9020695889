import Synchronization
import SwiftletDevices
import SwiftletInterrupts
import SwiftletKVM
import SwiftletSystem

/// The interrupt controllers the vCPUs share when Swiftlet emulates them
/// (`--irqchip userspace`): the router every message goes through, the
/// IOAPIC and the 8259 pair.
public struct UserspaceIRQChip: Sendable {
    public let router: InterruptRouter
    public let ioapic: IOAPIC
    public let pic: PIC8259Pair
    /// Upper bound of adaptive halt polling in nanoseconds (0: never poll),
    /// as KVM's halt_poll_ns.
    public let haltPollLimit: Int64

    public init(router: InterruptRouter, ioapic: IOAPIC, pic: PIC8259Pair, haltPollLimit: Int64) {
        self.router = router
        self.ioapic = ioapic
        self.pic = pic
        self.haltPollLimit = haltPollLimit
    }
}

/// The architectural reset state of a vCPU's registers, as KVM creates a
/// vCPU. Captured from a freshly created descriptor: a parked descriptor
/// that is reused for a hot-added CPU still holds its previous life's state.
public struct VCPUResetState: Sendable {
    public let registers: Registers
    public let specialRegisters: SpecialRegisters

    /// Reads the state of `descriptor`, which must not have run or been set up.
    public init(capturingFrom descriptor: VCPUDescriptor) throws(SystemError) {
        registers = try descriptor.registers()
        specialRegisters = try descriptor.specialRegisters()
    }
}

/// One vCPU's side of the userspace interrupt controller: its local APIC,
/// and what the vCPU's run loop does with it around each KVM_RUN.
///
/// Confined to the vCPU's thread: created before the thread starts and only
/// touched by it afterwards (other threads reach the vCPU through its
/// posted-interrupt descriptor), hence `@unchecked Sendable`.
final class LocalInterruptController: @unchecked Sendable {
    enum Decision {
        /// Enter the guest.
        case enter
        /// Do not enter: sleep on the descriptor until a post, a request or
        /// `deadline` (CLOCK_MONOTONIC ns).
        case block(deadline: Int64?)
    }

    private(set) var lapic: LocalAPIC
    let chip: UserspaceIRQChip
    let slot: Int
    private var timer: ThreadTimer?
    private(set) var halted = false
    /// RFLAGS.IF when the guest halted: whether interrupts can end the halt.
    private var haltedWithInterruptsEnabled = true
    /// A vector went to KVM_INTERRUPT and no KVM_RUN has returned since.
    /// kvm_run.ready_for_interrupt_injection still describes the last exit
    /// then, so it cannot be trusted for a second injection: when entry is
    /// retried without running (a post landed first), a second vector would
    /// replace or be refused beside the queued one while the APIC model has
    /// both in service — one of them never EOId, its priority class and all
    /// below blocked for good.
    private var injectionQueued = false
    private var nmiPending = false
    private let resetRegisters: Registers
    private let resetSpecialRegisters: SpecialRegisters
    /// The APIC's arbitration priority, as last published for the router.
    private(set) var publishedPriority: UInt8 = 0
    /// Interrupts injected so far (read by other threads for statistics).
    let injections = Atomic<UInt64>(0)

    init(slot: Int, apicID: UInt32, bootstrap: Bool, chip: UserspaceIRQChip, resetState: VCPUResetState) {
        self.slot = slot
        self.chip = chip
        var lapic = LocalAPIC(apicID: apicID, isBootstrapProcessor: bootstrap)
        // LINT0 ExtINT, LINT1 NMI: what firmware leaves (boot-protocol.md).
        lapic.applyVirtualWireMode()
        self.lapic = lapic
        // A STARTUP IPI starts from the reset state with CS set to the
        // start page.
        resetRegisters = resetState.registers
        resetSpecialRegisters = resetState.specialRegisters
    }

    var addressing: APICAddressing { lapic.addressing }

    /// On the vCPU's thread, before its first entry.
    func threadStarted() throws(SystemError) {
        timer = try ThreadTimer()
    }

    // MARK: Around KVM_RUN

    /// Folds posted work into the APIC, fires a due timer, injects what the
    /// guest can take now (or asks for an interrupt window), and says
    /// whether the vCPU may enter the guest.
    func prepareEntry(_ vcpu: VCPUDescriptor, posted: PostedInterruptDescriptor) throws(SystemError) -> Decision {
        let now = MonotonicClock.nanoseconds()
        if posted.hasPostedWork {
            let work = posted.takePosted()
            if !work.vectors.isEmpty { lapic.acceptPosted(work.vectors, levelTriggered: work.levelTriggered) }
            for event in work.events { try apply(event, vcpu: vcpu, now: now) }
        }
        if let deadline = lapic.nextTimerDeadline, deadline <= now {
            try apply(lapic.timerFired(now: now), vcpu: vcpu)
        }
        if lapic.activity == .waitingForSIPI {
            timer?.arm(at: nil)
            return .block(deadline: nil)
        }
        if nmiPending {
            try vcpu.injectNMI()
            nmiPending = false
            halted = false
        }
        // With IF clear, a halted CPU wakes only for NMI, INIT or SMI.
        let canTakeInterrupts = !halted || haltedWithInterruptsEnabled
        if canTakeInterrupts, lapic.pendingInterrupt() != nil {
            halted = false
            if vcpu.readyForInterruptInjection && !injectionQueued {
                let vector: UInt8 = switch lapic.acknowledge() {
                case .vector(let v), .spurious(let v): v
                case .external: chip.pic.acknowledge()
                }
                try vcpu.injectInterrupt(vector)
                injectionQueued = true
                injections.add(1, ordering: .relaxed)
                // Exit as soon as the next one can be taken, if there is one.
                vcpu.requestInterruptWindow = lapic.pendingInterrupt() != nil
            } else {
                vcpu.requestInterruptWindow = true
            }
        } else {
            vcpu.requestInterruptWindow = false
        }
        publishPriority()
        if halted { return .block(deadline: lapic.nextTimerDeadline) }
        timer?.arm(at: lapic.nextTimerDeadline)
        vcpu.cr8 = lapic.cr8
        return .enter
    }

    /// After every exit: the guest may have changed CR8 or IA32_APIC_BASE,
    /// which KVM handles itself and mirrors into kvm_run.
    func afterExit(_ vcpu: VCPUDescriptor) throws(SystemError) {
        // KVM_RUN ran: a queued vector was delivered, or the exit's
        // ready_for_interrupt_injection says it is still queued (0).
        injectionQueued = false
        lapic.setCR8(vcpu.cr8)
        let base = vcpu.apicBase
        if base != lapic.apicBase {
            do {
                try apply(lapic.writeMSR(0x1b, value: base, now: MonotonicClock.nanoseconds()), vcpu: vcpu)
            } catch {
                // KVM accepted a transition the model refuses; the model's
                // view stays and the guest sees its APIC unchanged.
                Log.warning("vCPU \(slot): IA32_APIC_BASE 0x\(String(base, radix: 16)) refused by the APIC model")
            }
        }
    }

    /// HLT exit (RIP is already past the HLT).
    /// HLT. IF is read from the registers, not from kvm_run.if_flag: on a
    /// PVM host if_flag can read 0 for a `sti; hlt` (seen in a 10,000-cycle
    /// soak, where the CPU then never woke), and a halt with IF believed
    /// clear waits for NMI or INIT only.
    func halt(_ vcpu: VCPUDescriptor) throws(SystemError) {
        haltedWithInterruptsEnabled = try vcpu.registers().rflags & (1 << 9) != 0
        halted = true
    }

    /// Local APIC page accesses; false when the access is not for it.
    func handleMMIO(_ access: MMIOAccess, vcpu: VCPUDescriptor) throws(SystemError) -> Bool {
        guard let base = lapic.mmioBase, access.address >= base, access.address - base < 0x1000 else { return false }
        let now = MonotonicClock.nanoseconds()
        if access.isWrite {
            try apply(lapic.writeMMIO(offset: access.address - base, size: access.size, value: access.value, now: now), vcpu: vcpu)
        } else {
            access.complete(with: lapic.readMMIO(offset: access.address - base, size: access.size, now: now))
        }
        return true
    }

    /// MSRs KVM passed up: the x2APIC registers and IA32_APIC_BASE are the
    /// APIC's; anything else gets #GP(0), as KVM does for unknown MSRs.
    func handleMSR(_ access: MSRAccess, vcpu: VCPUDescriptor) throws(SystemError) {
        guard LocalAPIC.handlesMSR(access.index) else {
            access.fail()
            return
        }
        let now = MonotonicClock.nanoseconds()
        let effects: [LocalAPIC.Effect]
        do throws(LocalAPIC.MSRFault) {
            if access.isWrite {
                effects = try lapic.writeMSR(access.index, value: access.value, now: now)
                access.complete()
            } else {
                access.complete(with: try lapic.readMSR(access.index, now: now))
                effects = []
            }
        } catch {
            access.fail()  // KVM injects #GP(0)
            return
        }
        try apply(effects, vcpu: vcpu)
    }

    // MARK: Effects and events

    private func apply(_ event: PostedEvent, vcpu: VCPUDescriptor, now: Int64) throws(SystemError) {
        let message: InterruptMessage.DeliveryMode
        var vector: UInt8 = 0
        switch event {
        case .nmi: message = .nmi
        case .smi: message = .smi
        case .initialize: message = .initialize
        case .startup(let v):
            message = .startup
            vector = v
        case .externalInterrupt:
            // The 8259's output changed: LINT0 follows it.
            try apply(lapic.setLocalInterruptPin(0, asserted: chip.pic.outputAsserted), vcpu: vcpu)
            return
        }
        let delivered = InterruptMessage(vector: vector, deliveryMode: message, destinationMode: .physical,
                                         destination: lapic.apicID, destinationFormat: .x2APIC, shorthand: .none,
                                         triggerMode: .edge, level: true, sourceAPICID: nil)
        try apply(lapic.deliver(delivered), vcpu: vcpu)
    }

    private func apply(_ effects: [LocalAPIC.Effect], vcpu: VCPUDescriptor) throws(SystemError) {
        for effect in effects {
            switch effect {
            case .sendIPI(let message):
                chip.router.deliver(message)
            case .endOfInterrupt(let vector, let levelTriggered):
                if levelTriggered { chip.ioapic.endOfInterrupt(vector: vector) }
            case .timerDeadlineChanged:
                break  // armed before each entry from nextTimerDeadline
            case .nmi:
                nmiPending = true
            case .smi:
                Log.debug("vCPU \(slot): SMI ignored (no SMM)")
            case .initReset:
                halted = false
                nmiPending = false
            case .startup(let vector):
                try start(vcpu, atPage: vector)
            case .addressingChanged(let addressing):
                chip.router.updateAddressing(slot: slot, addressing)
            case .apicBaseChanged:
                break  // mode and MMIO base are read from the APIC when used
            }
        }
    }

    /// A STARTUP IPI: real mode at CS = vector << 8, IP = 0, everything else
    /// as after INIT (SDM Vol. 3A §8.4.4).
    private func start(_ vcpu: VCPUDescriptor, atPage vector: UInt8) throws(SystemError) {
        var sregs = resetSpecialRegisters
        sregs.cs.selector = UInt16(vector) << 8
        sregs.cs.base = UInt64(vector) << 12
        var regs = resetRegisters
        regs.rip = 0
        try vcpu.setSpecialRegisters(sregs)
        try vcpu.setRegisters(regs)
        halted = false
    }

    private func publishPriority() {
        publishedPriority = lapic.arbitrationPriority
    }
}

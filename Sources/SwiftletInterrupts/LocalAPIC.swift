/// One vCPU's local APIC, xAPIC and x2APIC (Intel SDM Vol. 3A chapter 10,
/// "Advanced Programmable Interrupt Controller"; chapter 11 in newer
/// editions — section numbers below are chapter 10's).
///
/// A value type owned by its vCPU's thread: nothing in it locks, and every
/// method runs on that thread. Other threads reach it only through the
/// delivery engine, which posts vectors and messages for the owner to apply
/// (`accept`, `acceptPosted`, `deliver`). Time is an argument (nanoseconds
/// of a monotonic clock), so the model is deterministic and knows nothing
/// of threads, timers or KVM.
///
/// Entry points that change state return `Effect`s: what the caller must do
/// outside the APIC (send an IPI, broadcast an EOI to the I/O APIC, re-arm
/// the host timer, reset the vCPU, rebuild routing tables).
///
/// Model choices (each explained where it is implemented):
/// - version 0x14 with seven LVT entries (CMCI included): 0x0006_0014; no
///   EOI-broadcast suppression (the I/O APIC has no EOI register);
/// - the timer runs at `Configuration.timerFrequency` before its divider,
///   1 GHz by default like KVM; TSC-deadline mode is not offered: the mode
///   field keeps only bit 17, so the vCPU layer must keep CPUID.01H:ECX[24]
///   clear and treat IA32_TSC_DEADLINE (0x6E0) as it treats absent MSRs;
/// - accesses through MMIO are 32-bit and 16-byte aligned: narrower or
///   misaligned reads see the register's bytes, other writes are dropped;
/// - x2APIC MSR writes with reserved bits set raise #GP (§10.12.1.3).
public struct LocalAPIC: Sendable {
    public struct Configuration: Sendable, Hashable {
        /// Timer input clock in Hz before the divide configuration. The
        /// architecture leaves it to the platform and Linux calibrates it,
        /// so any stable rate works; KVM uses 1 GHz (one bus cycle per
        /// nanosecond, its default APIC_BUS_CYCLE_NS).
        public var timerFrequency: UInt64
        /// The shortest interval between two periodic-timer interrupts, in
        /// nanoseconds; expiries closer together are coalesced. KVM limits
        /// periodic timers the same way (its min_timer_period_us, 200 µs by
        /// default; 500 µs in older kernels) so that a guest cannot make
        /// the host spin on a one-tick period. 0 disables the limit.
        public var minimumPeriodicInterval: Int64
        /// Whether IA32_APIC_BASE.EXTD may be set (CPUID.01H:ECX[21]).
        public var supportsX2APIC: Bool
        /// MAXPHYADDR: IA32_APIC_BASE bits at and above it are reserved.
        public var physicalAddressWidth: Int

        public init(timerFrequency: UInt64 = 1_000_000_000, minimumPeriodicInterval: Int64 = 200_000,
                    supportsX2APIC: Bool = true, physicalAddressWidth: Int = 52) {
            self.timerFrequency = timerFrequency
            self.minimumPeriodicInterval = minimumPeriodicInterval
            self.supportsX2APIC = supportsX2APIC
            self.physicalAddressWidth = physicalAddressWidth
        }
    }

    /// IA32_APIC_BASE EN/EXTD (§10.12.5, figure 10-27).
    public enum Mode: Hashable, Sendable {
        /// EN = 0: the processor behaves as if it had no APIC; LINT0 and
        /// LINT1 act as the INTR and NMI pins.
        case disabled
        case xAPIC
        case x2APIC
    }

    /// Whether the processor runs or waits for a STARTUP IPI (§8.4.1, §10.4.7.3).
    public enum ActivityState: Hashable, Sendable {
        case running
        case waitingForSIPI
    }

    /// What the caller must do after a call.
    public enum Effect: Hashable, Sendable {
        /// Deliver this IPI (from a write to ICR or SELF IPI) on the APIC bus.
        /// Self-directed messages come back through the router too.
        case sendIPI(InterruptMessage)
        /// An EOI cleared this in-service vector. If `levelTriggered` (its TMR
        /// bit was set), broadcast the EOI to the I/O APICs (§10.8.5).
        case endOfInterrupt(vector: UInt8, levelTriggered: Bool)
        /// Arm the host timer for this absolute time (nanoseconds, the clock
        /// `now` comes from) and call `timerFired(now:)` then, or disarm it.
        case timerDeadlineChanged(Int64?)
        /// Inject an NMI (KVM_NMI).
        case nmi
        /// An SMI was signalled. Swiftlet offers no SMM; the vCPU layer
        /// decides (drop it or KVM_SMI).
        case smi
        /// An INIT was received: the APIC has reset itself; reset the vCPU's
        /// registers to the INIT state. With `waitForSIPI` the vCPU must not
        /// run until a `.startup` effect.
        case initReset(waitForSIPI: Bool)
        /// A STARTUP IPI arrived in the wait-for-SIPI state: start the vCPU
        /// in real mode at CS = vector << 8, IP = 0.
        case startup(vector: UInt8)
        /// The APIC's address (ID, LDR, DFR, mode, software enable) changed:
        /// the router's tables must use this snapshot.
        case addressingChanged(APICAddressing)
        /// IA32_APIC_BASE changed (mode or MMIO base): see `mode` and `mmioBase`.
        case apicBaseChanged(UInt64)
    }

    /// What `pendingInterrupt()` reports.
    public enum PendingInterrupt: Hashable, Sendable {
        /// An APIC vector, deliverable now.
        case vector(UInt8)
        /// The 8259 is asking through LINT0 (ExtINT) or an ExtINT message:
        /// the vector comes from the PIC's INTA cycle.
        case external
    }

    /// What the INTA cycle (`acknowledge()`) produced.
    public enum Acknowledgement: Hashable, Sendable {
        /// Inject this vector; it is now in service.
        case vector(UInt8)
        /// Nothing was deliverable any more: inject the spurious vector
        /// (SVR[7:0]); nothing is in service, so the guest sends no EOI (§10.9).
        case spurious(UInt8)
        /// Run the PIC's INTA cycle and inject the vector it returns.
        case external
    }

    /// A RDMSR/WRMSR the APIC refuses: the vCPU layer injects #GP(0).
    public struct MSRFault: Error, Hashable, Sendable {
        public let msr: UInt32
        public let write: Bool
    }

    /// The ESR error bits (§10.5.3, figure 10-9).
    public struct Errors: OptionSet, Hashable, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let sendChecksum = Errors(rawValue: 1 << 0)
        public static let receiveChecksum = Errors(rawValue: 1 << 1)
        public static let sendAccept = Errors(rawValue: 1 << 2)
        public static let receiveAccept = Errors(rawValue: 1 << 3)
        public static let redirectableIPI = Errors(rawValue: 1 << 4)
        public static let sendIllegalVector = Errors(rawValue: 1 << 5)
        public static let receivedIllegalVector = Errors(rawValue: 1 << 6)
        public static let illegalRegisterAddress = Errors(rawValue: 1 << 7)
    }

    /// The default MMIO base (§10.4.1) and the page it decodes.
    public static let defaultBase: UInt64 = 0xFEE0_0000
    public static let mmioLength: UInt64 = 0x1000
    /// Version 0x14 (an integrated APIC, §10.4.8, what KVM reports) with
    /// max LVT entry 6: seven entries, CMCI included. Bit 24 (EOI-broadcast
    /// suppression) is clear: without an I/O APIC EOI register a guest that
    /// suppressed broadcasts would never end a level-triggered interrupt.
    public static let version: UInt32 = 0x0006_0014
    public static let apicBaseMSR: UInt32 = 0x1B
    /// x2APIC registers live at MSR 0x800 + (xAPIC offset >> 4) (§10.12.1.2).
    public static let x2APICMSRs: ClosedRange<UInt32> = 0x800...0x8FF

    // IA32_APIC_BASE bits (§10.4.4, figure 10-5; §10.12.1).
    static let baseBSP: UInt64 = 1 << 8
    static let baseEXTD: UInt64 = 1 << 10
    static let baseEN: UInt64 = 1 << 11

    /// The hardware APIC ID (the initial x2APIC ID, CPUID.0BH:EDX): the ID
    /// in x2APIC mode, the source of IPIs, and the default xAPIC ID.
    public let initialAPICID: UInt32
    public let configuration: Configuration
    public internal(set) var apicBase: UInt64
    public internal(set) var activity: ActivityState

    // The 8-bit xAPIC ID (bits 31:24 of the ID register), writable in xAPIC
    // mode (§10.4.6).
    var xapicID: UInt8
    var tpr: UInt8 = 0
    var ldr: UInt32 = 0
    var dfr: UInt32 = 0xFFFF_FFFF
    var svr: UInt32 = 0xFF
    public internal(set) var irr = VectorSet()
    public internal(set) var isr = VectorSet()
    public internal(set) var tmr = VectorSet()
    // The ESR shows what was latched at the last ESR write; errors found
    // since then accumulate here until the next write (§10.5.3).
    var esr: UInt32 = 0
    var pendingErrors: UInt32 = 0
    var icrLow: UInt32 = 0
    var icrHigh: UInt32 = 0
    var lvt = LVTFile()
    var timer = APICTimer()
    // Input pin levels, which belong to the wires, not the APIC: resets
    // leave them alone.
    var lint0Asserted = false
    var lint1Asserted = false
    // An ExtINT message (from an I/O APIC pin in ExtINT mode or an MSI),
    // latched until the INTA cycle.
    var externalInterruptMessagePending = false

    /// A local APIC in its power-up state (§10.4.7.1, §10.12.5.1): enabled in
    /// xAPIC mode at the default base, software-disabled (SVR = 0xFF), all
    /// LVT entries masked. The BSP runs; an AP waits for a STARTUP IPI, as
    /// an AP does after RESET (§8.4.1). (KVM additionally wants an INIT
    /// before the SIPI; so does every OS's MP start-up sequence.)
    public init(apicID: UInt32, isBootstrapProcessor: Bool, configuration: Configuration = Configuration()) {
        initialAPICID = apicID
        var configuration = configuration
        configuration.timerFrequency = max(1, configuration.timerFrequency)
        configuration.minimumPeriodicInterval = max(0, configuration.minimumPeriodicInterval)
        configuration.physicalAddressWidth = min(max(configuration.physicalAddressWidth, 32), 63)
        self.configuration = configuration
        apicBase = Self.defaultBase | Self.baseEN | (isBootstrapProcessor ? Self.baseBSP : 0)
        activity = isBootstrapProcessor ? .running : .waitingForSIPI
        // IDs of 255 and above do not fit xAPIC mode; such a vCPU is only
        // reachable once its guest switches it to x2APIC (or through the
        // x2APIC-destination rule in `APICAddressing.accepts`).
        xapicID = UInt8(truncatingIfNeeded: apicID)
    }

    /// Programs LINT0 as ExtINT and LINT1 as NMI, both unmasked: the
    /// "virtual wire" mode firmware leaves for an OS that starts on the
    /// 8259 (MultiProcessor Specification 1.4 §3.6.2.2). Unlike a guest
    /// write, this unmasks the pins even while SVR still has the APIC
    /// software-disabled, as KVM's reset quirk and a BIOS hand-off do.
    public mutating func applyVirtualWireMode() {
        lvt[.lint0] = LVTFile.deliveryModeExtINT << 8
        lvt[.lint1] = LVTFile.deliveryModeNMI << 8
    }

    // MARK: - State the vCPU layer reads

    public var mode: Mode {
        switch (apicBase & Self.baseEN != 0, apicBase & Self.baseEXTD != 0) {
        case (false, _): .disabled
        case (true, false): .xAPIC
        case (true, true): .x2APIC
        }
    }

    public var isBootstrapProcessor: Bool { apicBase & Self.baseBSP != 0 }

    /// SVR bit 8 (§10.4.7.2).
    public var isSoftwareEnabled: Bool { svr & 0x100 != 0 }

    /// Where the xAPIC register page is decoded; nil when MMIO does not
    /// reach this APIC (globally disabled, or in x2APIC mode where the page
    /// behaves as a disabled APIC's, §10.12.2).
    public var mmioBase: UInt64? {
        mode == .xAPIC ? apicBase & ~UInt64(0xFFF) & physicalAddressMask : nil
    }

    var physicalAddressMask: UInt64 { (1 << UInt64(configuration.physicalAddressWidth)) - 1 }

    /// The current ID: the 32-bit x2APIC ID or the 8-bit xAPIC ID.
    public var apicID: UInt32 { mode == .x2APIC ? initialAPICID : UInt32(xapicID) }

    /// The logical x2APIC ID, derived from the x2APIC ID (§10.12.10.2):
    /// cluster ID[19:4] in bits 31:16, one bit for ID[3:0] in bits 15:0.
    public static func x2APICLogicalID(_ id: UInt32) -> UInt32 {
        ((id >> 4) << 16) | (1 << (id & 0xF))
    }

    /// The destination-matching view of this APIC, for the router.
    public var addressing: APICAddressing {
        APICAddressing(mode: mode, initialAPICID: initialAPICID, xapicID: xapicID,
                       logicalDestination: mode == .x2APIC ? Self.x2APICLogicalID(initialAPICID) : ldr,
                       destinationFormatModel: UInt8(truncatingIfNeeded: dfr >> 28),
                       isSoftwareEnabled: isSoftwareEnabled)
    }

    /// Whether this APIC is a destination of `message` (§10.6.2).
    public func accepts(_ message: InterruptMessage) -> Bool { addressing.accepts(message) }

    /// The task priority (TPR[7:0]).
    public var taskPriority: UInt8 { tpr }

    /// CR8 is TPR[7:4] (§10.8.6.1). Without an in-kernel APIC, KVM hands
    /// CR8 to userspace in kvm_run on every exit and takes it back on entry.
    public var cr8: UInt64 { UInt64(tpr >> 4) }

    /// MOV to CR8: TPR[7:4] = CR8[3:0], TPR[3:0] = 0 (§10.8.6.1).
    public mutating func setCR8(_ value: UInt64) {
        tpr = UInt8(truncatingIfNeeded: value & 0xF) << 4
    }

    /// The PPR (§10.8.3.1): the higher of the task priority and the class of
    /// the highest in-service vector. When the classes are equal the SDM
    /// leaves PPR[3:0] model-specific; this keeps TPR[3:0], as KVM does.
    public var processorPriority: UInt8 {
        let isrv = isr.highest ?? 0
        return tpr & 0xF0 >= isrv & 0xF0 ? tpr : isrv & 0xF0
    }

    /// The APR (§10.6.2.4, P6-family lowest-priority arbitration): the TPR if
    /// its class is at least the highest pending class and above the highest
    /// in-service class, otherwise the highest of the three classes. (The
    /// SDM's pseudo-code writes "max(TPR[7:4] AND ISRV[7:4], IRRV[7:4])";
    /// the maximum of the classes is what the prose around it describes.)
    public var arbitrationPriority: UInt8 {
        let isrv = isr.highest ?? 0, irrv = irr.highest ?? 0
        if tpr & 0xF0 >= irrv & 0xF0 && tpr & 0xF0 > isrv & 0xF0 { return tpr }
        return max(tpr & 0xF0, isrv & 0xF0, irrv & 0xF0)
    }

    /// The current count of the timer at `now`.
    public func timerCurrentCount(now: Int64) -> UInt32 {
        timer.currentCount(at: now, periodic: lvt.timerIsPeriodic, frequency: configuration.timerFrequency)
    }

    // MARK: - Resets

    /// The register state after power-up, RESET or INIT (§10.4.7.1): IRR,
    /// ISR, TMR, ICR, LDR, TPR, the timer counts and divider cleared, DFR
    /// all ones, LVT entries masked, SVR 0xFF. The ID, the version and
    /// IA32_APIC_BASE are not registers this touches.
    mutating func resetRegisters() {
        tpr = 0
        ldr = 0
        dfr = 0xFFFF_FFFF
        svr = 0xFF
        irr = VectorSet()
        isr = VectorSet()
        tmr = VectorSet()
        esr = 0
        pendingErrors = 0
        icrLow = 0
        icrHigh = 0
        lvt = LVTFile()
        timer = APICTimer()
        externalInterruptMessagePending = false
    }

    /// INIT (pin, LVT or message): "the same as after a power-up or hardware
    /// reset, except that the APIC ID and arbitration ID registers are not
    /// affected" (§10.4.7.3); IA32_APIC_BASE keeps its mode too, x2APIC
    /// included (§10.12.5.1). The BSP restarts at the reset vector; an AP
    /// waits for a SIPI.
    mutating func receiveINIT(_ effects: inout [Effect]) {
        resetRegisters()
        activity = isBootstrapProcessor ? .running : .waitingForSIPI
        effects.append(.initReset(waitForSIPI: activity == .waitingForSIPI))
    }

    /// Runs `body` and appends the effects every entry point shares: a
    /// changed timer deadline and a changed address.
    mutating func recordingEffects(_ body: (inout LocalAPIC, inout [Effect]) -> Void) -> [Effect] {
        let deadline = nextTimerDeadline
        let address = addressing
        var effects: [Effect] = []
        body(&self, &effects)
        let newAddress = addressing
        if newAddress != address { effects.append(.addressingChanged(newAddress)) }
        let newDeadline = nextTimerDeadline
        if newDeadline != deadline { effects.append(.timerDeadlineChanged(newDeadline)) }
        return effects
    }
}

/// The seven LVT registers (§10.5.1, figure 10-8), with the bits each keeps.
struct LVTFile: Sendable {
    static let vectorMask: UInt32 = 0xFF
    static let deliveryModeMask: UInt32 = 0x700
    static let deliveryStatus: UInt32 = 1 << 12
    static let polarity: UInt32 = 1 << 13
    static let remoteIRR: UInt32 = 1 << 14
    static let levelTriggered: UInt32 = 1 << 15
    static let masked: UInt32 = 1 << 16
    static let timerPeriodic: UInt32 = 1 << 17
    static let deliveryModeFixed: UInt32 = 0
    static let deliveryModeSMI: UInt32 = 2
    static let deliveryModeNMI: UInt32 = 4
    static let deliveryModeINIT: UInt32 = 5
    static let deliveryModeExtINT: UInt32 = 7

    var values: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32) =
        (masked, masked, masked, masked, masked, masked, masked)

    subscript(entry: LVTEntry) -> UInt32 {
        get {
            switch entry {
            case .cmci: values.0
            case .timer: values.1
            case .thermal: values.2
            case .performanceCounter: values.3
            case .lint0: values.4
            case .lint1: values.5
            case .error: values.6
            }
        }
        set {
            switch entry {
            case .cmci: values.0 = newValue
            case .timer: values.1 = newValue
            case .thermal: values.2 = newValue
            case .performanceCounter: values.3 = newValue
            case .lint0: values.4 = newValue
            case .lint1: values.5 = newValue
            case .error: values.6 = newValue
            }
        }
    }

    var timerIsPeriodic: Bool { self[.timer] & Self.timerPeriodic != 0 }
}

/// The LVT entries (§10.5.1) with their xAPIC offsets.
public enum LVTEntry: Int, CaseIterable, Hashable, Sendable {
    case cmci, timer, thermal, performanceCounter, lint0, lint1, error

    public var offset: UInt64 {
        switch self {
        case .cmci: 0x2F0
        case .timer: 0x320
        case .thermal: 0x330
        case .performanceCounter: 0x340
        case .lint0: 0x350
        case .lint1: 0x360
        case .error: 0x370
        }
    }

    /// The bits software can change (figure 10-8). The timer keeps only
    /// bit 17 of its mode field: bit 18 would select TSC-deadline mode,
    /// which is not offered, so it stays 0 as on a CPU without it (KVM masks
    /// it the same way). The delivery status (bit 12) and remote IRR
    /// (bit 14) are read-only.
    var writableBits: UInt32 {
        let common = LVTFile.vectorMask | LVTFile.masked
        switch self {
        case .timer: return common | LVTFile.timerPeriodic
        case .cmci, .thermal, .performanceCounter: return common | LVTFile.deliveryModeMask
        case .lint0, .lint1: return common | LVTFile.deliveryModeMask | LVTFile.polarity | LVTFile.levelTriggered
        case .error: return common
        }
    }

    /// Bits that are not reserved: the writable ones and the read-only
    /// status bits. An x2APIC WRMSR setting any other bit raises #GP.
    var definedBits: UInt32 {
        var bits = writableBits | LVTFile.deliveryStatus
        if self == .lint0 || self == .lint1 { bits |= LVTFile.remoteIRR }
        return bits
    }
}

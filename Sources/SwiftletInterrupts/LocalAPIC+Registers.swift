import SwiftletDevices

/// The register interfaces: the xAPIC page (Intel SDM Vol. 3A §10.4.1,
/// table 10-1), the x2APIC MSRs (§10.12.1.2, table 10-6) and
/// IA32_APIC_BASE (§10.4.4, §10.12.5).
extension LocalAPIC {
    /// xAPIC register offsets (table 10-1); x2APIC MSR = 0x800 + offset >> 4.
    enum Register {
        static let id = 0x020
        static let version = 0x030
        static let taskPriority = 0x080
        static let arbitrationPriority = 0x090
        static let processorPriority = 0x0A0
        static let endOfInterrupt = 0x0B0
        static let remoteRead = 0x0C0
        static let logicalDestination = 0x0D0
        static let destinationFormat = 0x0E0
        static let spuriousVector = 0x0F0
        static let inService = 0x100        // ... 0x170
        static let triggerMode = 0x180      // ... 0x1F0
        static let interruptRequest = 0x200 // ... 0x270
        static let errorStatus = 0x280
        static let commandLow = 0x300
        static let commandHigh = 0x310
        static let initialCount = 0x380
        static let currentCount = 0x390
        static let divideConfiguration = 0x3E0
        static let selfIPI = 0x3F0           // x2APIC only
    }

    enum RegisterRead: Equatable {
        case value(UInt32)
        case writeOnly
        case reserved
    }

    enum RegisterWrite: Equatable {
        case done
        case readOnly
        case reserved
    }

    static let spuriousVectorWritable: UInt32 = 0x3FF  // vector, APIC enable, focus check; no bit 12
    // ICR bits kept in xAPIC mode: vector, delivery mode, destination mode,
    // level, trigger mode, shorthand. Delivery status (12) always reads idle:
    // an IPI leaves at once.
    static let commandLowWritable: UInt32 = 0x000C_CFFF
    // x2APIC ICR bits 31:20, 17:16 and 13 are reserved; bit 12 (delivery
    // status) is gone in x2APIC mode (§10.12.9) and, as on Intel parts and
    // in KVM, a 1 there is ignored rather than refused.
    static let x2APICCommandReserved: UInt64 = 0xFFF3_2000

    static func lvtEntry(at offset: Int) -> LVTEntry? {
        LVTEntry.allCases.first { Int($0.offset) == offset }
    }

    /// The register at a 16-byte-aligned offset, as the current mode shows it.
    func readRegister(_ offset: Int, now: Int64) -> RegisterRead {
        let x2APIC = mode == .x2APIC
        switch offset {
        case Register.id: return .value(x2APIC ? initialAPICID : UInt32(xapicID) << 24)
        case Register.version: return .value(Self.version)
        case Register.taskPriority: return .value(UInt32(tpr))
        case Register.arbitrationPriority: return x2APIC ? .reserved : .value(UInt32(arbitrationPriority))
        case Register.processorPriority: return .value(UInt32(processorPriority))
        case Register.endOfInterrupt: return .writeOnly
        // The remote read register was the 82489DX/P6 answer to a remote
        // read IPI, which later processors do not support: it reads 0.
        case Register.remoteRead: return x2APIC ? .reserved : .value(0)
        case Register.logicalDestination: return .value(x2APIC ? Self.x2APICLogicalID(initialAPICID) : ldr)
        case Register.destinationFormat: return x2APIC ? .reserved : .value(dfr)
        case Register.spuriousVector: return .value(svr)
        case Register.inService...(Register.inService + 0x70): return .value(isr.register((offset - Register.inService) >> 4))
        case Register.triggerMode...(Register.triggerMode + 0x70): return .value(tmr.register((offset - Register.triggerMode) >> 4))
        case Register.interruptRequest...(Register.interruptRequest + 0x70):
            return .value(irr.register((offset - Register.interruptRequest) >> 4))
        case Register.errorStatus: return .value(esr)
        case Register.commandLow: return .value(icrLow)
        case Register.commandHigh: return x2APIC ? .reserved : .value(icrHigh)
        case Register.initialCount: return .value(timer.initialCount)
        case Register.currentCount: return .value(timerCurrentCount(now: now))
        case Register.divideConfiguration: return .value(timer.divideConfiguration)
        case Register.selfIPI: return x2APIC ? .writeOnly : .reserved
        default:
            if let entry = Self.lvtEntry(at: offset) { return .value(lvt[entry]) }
            return .reserved
        }
    }

    /// Writes the register at a 16-byte-aligned offset with the semantics
    /// both interfaces share; the x2APIC checks on values come first, in
    /// `writeMSR`.
    mutating func writeRegister(_ offset: Int, _ value: UInt32, now: Int64, _ effects: inout [Effect]) -> RegisterWrite {
        let x2APIC = mode == .x2APIC
        switch offset {
        case Register.id:
            // Writable in xAPIC mode (§10.4.6); read-only in x2APIC mode.
            if x2APIC { return .readOnly }
            xapicID = UInt8(truncatingIfNeeded: value >> 24)
        case Register.version, Register.processorPriority, Register.currentCount,
             Register.inService...(Register.interruptRequest + 0x70):
            return .readOnly
        case Register.arbitrationPriority, Register.remoteRead:
            return x2APIC ? .reserved : .readOnly
        case Register.taskPriority:
            tpr = UInt8(truncatingIfNeeded: value)
        case Register.endOfInterrupt:
            endOfInterrupt(&effects)
        case Register.logicalDestination:
            // Bits 31:24 in xAPIC mode (§10.6.2.2); derived and read-only in
            // x2APIC mode (§10.12.10.2).
            if x2APIC { return .readOnly }
            ldr = value & 0xFF00_0000
        case Register.destinationFormat:
            // Only the model (bits 31:28) is writable; 27:0 read as ones.
            if x2APIC { return .reserved }
            dfr = value | 0x0FFF_FFFF
        case Register.spuriousVector:
            svr = value & Self.spuriousVectorWritable
            // While software-disabled every LVT entry is masked, and stays
            // masked through writes (§10.4.7.2).
            if !isSoftwareEnabled {
                expireTimer(at: now)
                for entry in LVTEntry.allCases { lvt[entry] |= LVTFile.masked }
            }
        case Register.errorStatus:
            // A write latches the errors found since the previous write and
            // starts collecting anew; the value written does not matter
            // (§10.5.3).
            esr = pendingErrors
            pendingErrors = 0
        case Register.commandLow:
            icrLow = value & Self.commandLowWritable
            sendIPI(destination: icrHigh >> 24, format: .xAPIC, &effects)
        case Register.commandHigh:
            if x2APIC { return .reserved }
            icrHigh = value & 0xFF00_0000
        case Register.initialCount:
            writeInitialCount(value, now: now)
        case Register.divideConfiguration:
            writeDivideConfiguration(value, now: now)
        case Register.selfIPI:
            // The SELF IPI register (§10.12.11): a fixed, edge-triggered
            // interrupt to this APIC, vector in bits 7:0.
            if !x2APIC { return .reserved }
            let vector = UInt8(truncatingIfNeeded: value)
            guard vector >= 16 else {
                signalError(.sendIllegalVector)
                break
            }
            effects.append(.sendIPI(InterruptMessage(vector: vector, destination: initialAPICID,
                                                     destinationFormat: .x2APIC, shorthand: .self,
                                                     sourceAPICID: initialAPICID)))
        default:
            guard let entry = Self.lvtEntry(at: offset) else { return .reserved }
            writeLVT(entry, value, now: now)
        }
        return .done
    }

    mutating func writeLVT(_ entry: LVTEntry, _ value: UInt32, now: Int64) {
        if entry == .timer { expireTimer(at: now) }
        let old = lvt[entry]
        var new = value & entry.writableBits
        if !isSoftwareEnabled { new |= LVTFile.masked }
        // Remote IRR is read-only, and means something only for a fixed,
        // level-triggered LINT entry (§10.5.1); another setting drops it.
        if new & (LVTFile.deliveryModeMask | LVTFile.levelTriggered) == LVTFile.levelTriggered {
            new |= old & LVTFile.remoteIRR
        }
        // Changing the timer mode does not restart the timer (§10.5.4): the
        // count goes on, and the new mode decides what happens at zero.
        if entry == .timer, (old ^ new) & LVTFile.timerPeriodic != 0 {
            timer.reanchor(at: now, periodic: old & LVTFile.timerPeriodic != 0,
                           frequency: configuration.timerFrequency)
        }
        lvt[entry] = new
        if entry == .lint0 { sampleLevelTriggeredLINT0() }
    }

    /// Sends what ICR low describes (§10.6.1): to `destination` (ICR[63:56]
    /// in xAPIC mode, ICR[63:32] in x2APIC mode) unless a shorthand says
    /// otherwise. The reserved delivery modes (011, 111) send nothing, and a
    /// fixed or lowest-priority IPI with an illegal vector is not sent but
    /// sets "send illegal vector" (§10.5.3).
    mutating func sendIPI(destination: UInt32, format: InterruptMessage.DestinationFormat, _ effects: inout [Effect]) {
        let deliveryMode: InterruptMessage.DeliveryMode
        switch (icrLow >> 8) & 7 {
        case 0: deliveryMode = .fixed
        case 1: deliveryMode = .lowestPriority
        case 2: deliveryMode = .smi
        case 4: deliveryMode = .nmi
        case 5: deliveryMode = .initialize
        case 6: deliveryMode = .startup
        default: return
        }
        let vector = UInt8(truncatingIfNeeded: icrLow)
        if vector < 16 && (deliveryMode == .fixed || deliveryMode == .lowestPriority) {
            signalError(.sendIllegalVector)
            return
        }
        effects.append(.sendIPI(InterruptMessage(
            vector: vector,
            deliveryMode: deliveryMode,
            destinationMode: icrLow & (1 << 11) != 0 ? .logical : .physical,
            destination: destination,
            destinationFormat: format,
            shorthand: InterruptMessage.Shorthand(rawValue: UInt8(truncatingIfNeeded: (icrLow >> 18) & 3)) ?? .none,
            triggerMode: icrLow & (1 << 15) != 0 ? .level : .edge,
            level: icrLow & (1 << 14) != 0,
            sourceAPICID: initialAPICID)))
    }

    // MARK: - xAPIC MMIO

    /// A guest read of the xAPIC page at `offset` from `mmioBase`.
    ///
    /// Registers are 32 bits wide on 16-byte boundaries, and the SDM asks
    /// for aligned 32-bit accesses (§10.4.1). Other reads are answered
    /// without side effects: bytes 0–3 of each 16-byte slot hold the
    /// register, the rest of the slot reads 0, and no read spans into the
    /// next slot. Reading a reserved slot sets "illegal register address"
    /// (§10.5.3). Outside xAPIC mode the page reads as all ones, as an
    /// unclaimed address does (§10.12.2: "similar to ... globally disabled").
    public mutating func readMMIO(offset: UInt64, size: Int, now: Int64) -> UInt64 {
        guard mode == .xAPIC else { return accessMask(size: size) }
        guard offset < Self.mmioLength else { return 0 }
        let byte = offset & 0xF
        switch readRegister(Int(offset & 0xFF0), now: now) {
        case .value(let value):
            return byte < 4 ? (UInt64(value) >> (byte * 8)) & accessMask(size: size) : 0
        case .writeOnly:
            return 0
        case .reserved:
            signalError(.illegalRegisterAddress)
            return 0
        }
    }

    /// A guest write to the xAPIC page. Only aligned 32-bit writes reach a
    /// register, as KVM does too; narrower, wider or misaligned writes are
    /// dropped. Writes to read-only registers are ignored; to reserved
    /// slots, they set "illegal register address".
    public mutating func writeMMIO(offset: UInt64, size: Int, value: UInt64, now: Int64) -> [Effect] {
        guard mode == .xAPIC, offset < Self.mmioLength, size == 4, offset & 0xF == 0 else { return [] }
        return recordingEffects { apic, effects in
            if apic.writeRegister(Int(offset), UInt32(truncatingIfNeeded: value), now: now, &effects) == .reserved {
                apic.signalError(.illegalRegisterAddress)
            }
        }
    }

    // MARK: - MSRs

    /// Whether RDMSR/WRMSR of `index` belongs to the local APIC.
    public static func handlesMSR(_ index: UInt32) -> Bool {
        index == apicBaseMSR || x2APICMSRs.contains(index)
    }

    /// RDMSR of IA32_APIC_BASE or an x2APIC register. x2APIC registers exist
    /// only in x2APIC mode (§10.12.2); write-only (EOI, SELF IPI) and absent
    /// ones (APR, RRD, DFR, ICR high, the gaps) raise #GP.
    public func readMSR(_ index: UInt32, now: Int64) throws(MSRFault) -> UInt64 {
        if index == Self.apicBaseMSR { return apicBase }
        guard Self.x2APICMSRs.contains(index), mode == .x2APIC else { throw MSRFault(msr: index, write: false) }
        let offset = Int(index - Self.x2APICMSRs.lowerBound) << 4
        if offset == Register.commandLow { return UInt64(icrHigh) << 32 | UInt64(icrLow) }
        guard case .value(let value) = readRegister(offset, now: now) else { throw MSRFault(msr: index, write: false) }
        return UInt64(value)
    }

    /// WRMSR of IA32_APIC_BASE or an x2APIC register. Beyond the mode and
    /// existence checks of `readMSR`, x2APIC registers refuse read-only
    /// targets and any reserved bit set (§10.12.1.3: "non-zero writes to
    /// reserved bits ... will raise a general protection fault"): bits 63:32
    /// of all but the ICR, a non-zero EOI or ESR write (table 10-6), and the
    /// reserved bits of each register.
    public mutating func writeMSR(_ index: UInt32, value: UInt64, now: Int64) throws(MSRFault) -> [Effect] {
        let fault = MSRFault(msr: index, write: true)
        if index == Self.apicBaseMSR { return try writeAPICBase(value) }
        guard Self.x2APICMSRs.contains(index), mode == .x2APIC else { throw fault }
        let offset = Int(index - Self.x2APICMSRs.lowerBound) << 4
        if offset == Register.commandLow {
            guard value & Self.x2APICCommandReserved == 0 else { throw fault }
            return recordingEffects { apic, effects in
                apic.icrLow = UInt32(truncatingIfNeeded: value) & ~(1 << 12)
                apic.icrHigh = UInt32(truncatingIfNeeded: value >> 32)
                apic.sendIPI(destination: apic.icrHigh, format: .x2APIC, &effects)
            }
        }
        let low = UInt32(truncatingIfNeeded: value)
        guard value >> 32 == 0, low & ~Self.x2APICDefinedBits(offset) == 0 else { throw fault }
        var outcome = RegisterWrite.done
        let effects = recordingEffects { apic, effects in
            outcome = apic.writeRegister(offset, low, now: now, &effects)
        }
        guard outcome == .done else { throw fault }
        return effects
    }

    /// The bits of an x2APIC register that are not reserved.
    static func x2APICDefinedBits(_ offset: Int) -> UInt32 {
        switch offset {
        case Register.taskPriority: return 0xFF
        case Register.endOfInterrupt, Register.errorStatus: return 0
        case Register.spuriousVector: return spuriousVectorWritable
        case Register.divideConfiguration: return APICTimer.divideConfigurationMask
        case Register.selfIPI: return 0xFF
        default: return lvtEntry(at: offset)?.definedBits ?? 0xFFFF_FFFF
        }
    }

    /// IA32_APIC_BASE (§10.4.4, §10.12.5). Reserved bits — 7:0, 9, those at
    /// and above MAXPHYADDR, and EXTD without x2APIC support — raise #GP, as
    /// do the invalid state (EN = 0, EXTD = 1) and the two illegal
    /// transitions of figure 10-27: x2APIC to xAPIC, and disabled to x2APIC.
    /// The BSP flag is the hardware's and ignores writes. Clearing EN
    /// returns the APIC to its power-up register state, keeping the IDs
    /// (§10.4.3: "prior initialization ... may be lost"; §10.12.5.1: "the
    /// x2APIC ID and the legacy local xAPIC ID are preserved").
    mutating func writeAPICBase(_ value: UInt64) throws(MSRFault) -> [Effect] {
        let fault = MSRFault(msr: Self.apicBaseMSR, write: true)
        var reserved: UInt64 = 0x2FF | ~physicalAddressMask
        if !configuration.supportsX2APIC { reserved |= Self.baseEXTD }
        guard value & reserved == 0 else { throw fault }
        let enabled = value & Self.baseEN != 0, extended = value & Self.baseEXTD != 0
        guard enabled || !extended else { throw fault }
        let newMode: Mode = !enabled ? .disabled : extended ? .x2APIC : .xAPIC
        switch (mode, newMode) {
        case (.x2APIC, .xAPIC), (.disabled, .x2APIC): throw fault
        default: break
        }
        let newValue = value & ~Self.baseBSP | apicBase & Self.baseBSP
        guard newValue != apicBase else { return [] }
        return recordingEffects { apic, effects in
            if newMode == .disabled && apic.mode != .disabled { apic.resetRegisters() }
            apic.apicBase = newValue
            effects.append(.apicBaseChanged(newValue))
        }
    }
}

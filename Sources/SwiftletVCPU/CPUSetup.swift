import CSwiftlet
import SwiftletKVM

/// The vCPU state Swiftlet programs before a vCPU first runs.
public enum CPUSetup {
    /// The CPUID a vCPU reports: what KVM supports (including its hypervisor
    /// leaves 0x40000000–0x40000001: the "KVMKVMKVM" signature, kvmclock and
    /// the PV features), minus the features `hidden` removes, with this
    /// vCPU's APIC ID, the CPU count and a flat topology (one thread per
    /// core, all cores in one package) in leaves 1 and 0xB, and the
    /// hypervisor bit set.
    ///
    /// Our PVM hosts honour little of KVM_SET_CPUID2 (the guest sees the
    /// host's feature bits whatever is set); what is set here is still what
    /// a guest on a hardware host reads.
    public static func cpuid(from supported: CPUIDTable, apicID: UInt32, cpuCount: UInt32,
                             hiding features: CPUFeatureSelection = CPUFeatureSelection()) -> CPUIDTable {
        var table = features.apply(to: supported)
        table.update(0x1) { e in
            // EBX[31:24] initial APIC ID, EBX[23:16] logical processors per package.
            e.ebx = (e.ebx & 0x0000_ffff) | ((apicID & 0xff) << 24) | ((min(cpuCount, 255) & 0xff) << 16)
            e.edx |= 1 << 28   // HTT: EBX[23:16] is valid
            e.ecx |= 1 << 31   // running under a hypervisor
        }
        // Leaf 0xB (extended topology): rebuilt, since KVM leaves it empty.
        // Sub-leaf 0 is the SMT level (one thread per core), sub-leaf 1 the
        // core level (all CPUs), sub-leaf 2 ends the list; EDX is the x2APIC
        // ID in every sub-leaf (SDM Vol. 2A, CPUID leaf 0BH).
        let maxBasic = table.entry(0)?.eax ?? 0
        table.entries.removeAll { $0.function == 0xb }
        if maxBasic >= 0xb {
            let significant = UInt32(KVM_CPUID_FLAG_SIGNIFCANT_INDEX)
            let coreBits = UInt32(32 - max(1, cpuCount - 1).leadingZeroBitCount)
            table.entries += [
                CPUIDEntry(function: 0xb, index: 0, flags: significant, eax: 0, ebx: 1, ecx: (1 << 8) | 0, edx: apicID),
                CPUIDEntry(function: 0xb, index: 1, flags: significant, eax: coreBits, ebx: cpuCount, ecx: (2 << 8) | 1, edx: apicID),
                CPUIDEntry(function: 0xb, index: 2, flags: significant, eax: 0, ebx: 0, ecx: 2, edx: apicID),
            ]
        }
        return table
    }

    /// Features only an in-kernel local APIC provides, hidden when Swiftlet
    /// emulates the APIC: the TSC-deadline timer (the APIC model refuses
    /// that mode) and KVM's paravirtual EOI, unhalt and send-IPI.
    public static let needingInKernelAPIC: [CPUFeature] = [
        CPUFeature.named("tsc_deadline_timer")!,
        CPUFeature(name: "kvm_pv_eoi", leaf: 0x4000_0001, subleaf: 0, register: .eax, bit: 6),
        CPUFeature(name: "kvm_pv_unhalt", leaf: 0x4000_0001, subleaf: 0, register: .eax, bit: 7),
        CPUFeature(name: "kvm_pv_send_ipi", leaf: 0x4000_0001, subleaf: 0, register: .eax, bit: 11),
    ]

    /// FPU state at power-on per the SDM: x87 control word 0x37f, MXCSR 0x1f80.
    public static func initialFPU() -> FPUState {
        var fpu = FPUState()
        fpu.fcw = 0x37f
        fpu.mxcsr = 0x1f80
        return fpu
    }

    /// MSRs a booting kernel expects at their reset values, plus fast
    /// strings enabled and write-back as the default memory type (as
    /// firmware would leave them).
    public static func bootMSRs() -> [(index: UInt32, value: UInt64)] {
        [
            (0x174, 0),            // IA32_SYSENTER_CS
            (0x175, 0),            // IA32_SYSENTER_ESP
            (0x176, 0),            // IA32_SYSENTER_EIP
            (0xc000_0081, 0),      // STAR
            (0xc000_0082, 0),      // LSTAR
            (0xc000_0083, 0),      // CSTAR
            (0xc000_0084, 0),      // SFMASK
            (0xc000_0102, 0),      // KERNEL_GS_BASE
            (0x1a0, 1),            // IA32_MISC_ENABLE: fast strings
            (0x2ff, (1 << 11) | 6),  // IA32_MTRR_DEF_TYPE: enabled, write-back
        ]
    }

    /// A KVM segment register from an 8-byte GDT descriptor and its selector.
    public static func segment(selector: UInt16, descriptor raw: UInt64) -> Segment {
        var s = Segment()
        s.selector = selector
        s.base = ((raw >> 16) & 0xff_ffff) | (((raw >> 56) & 0xff) << 24)
        let limit = UInt32((raw & 0xffff) | (((raw >> 48) & 0xf) << 16))
        let granular = (raw >> 55) & 1 == 1
        // With G set the limit counts 4 KiB pages; KVM wants it in bytes.
        s.limit = granular ? (limit << 12) | 0xfff : limit
        s.type = UInt8((raw >> 40) & 0xf)
        s.s = UInt8((raw >> 44) & 1)
        s.dpl = UInt8((raw >> 45) & 3)
        s.present = UInt8((raw >> 47) & 1)
        s.avl = UInt8((raw >> 52) & 1)
        s.l = UInt8((raw >> 53) & 1)
        s.db = UInt8((raw >> 54) & 1)
        s.g = granular ? 1 : 0
        s.unusable = s.present == 0 ? 1 : 0
        return s
    }
}

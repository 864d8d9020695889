import SwiftletKVM

/// A CPUID feature flag by the name Linux gives it in /proc/cpuinfo.
public struct CPUFeature: Hashable, Sendable, CustomStringConvertible {
    public enum Register: Sendable { case eax, ebx, ecx, edx }

    public let name: String
    public let leaf: UInt32
    public let subleaf: UInt32
    public let register: Register
    public let bit: UInt32

    public var description: String { name }

    /// The flags `--cpu-features` knows, with their CPUID locations (Intel SDM
    /// Vol. 2A, CPUID; AMD APM Vol. 3, appendix E).
    public static let all: [CPUFeature] = {
        func f(_ name: String, _ leaf: UInt32, _ sub: UInt32, _ reg: Register, _ bit: UInt32) -> CPUFeature {
            CPUFeature(name: name, leaf: leaf, subleaf: sub, register: reg, bit: bit)
        }
        return [
            // Leaf 1 ECX.
            f("sse3", 1, 0, .ecx, 0), f("pclmulqdq", 1, 0, .ecx, 1), f("monitor", 1, 0, .ecx, 3),
            f("vmx", 1, 0, .ecx, 5), f("ssse3", 1, 0, .ecx, 9), f("fma", 1, 0, .ecx, 12),
            f("cx16", 1, 0, .ecx, 13), f("pcid", 1, 0, .ecx, 17), f("sse4_1", 1, 0, .ecx, 19),
            f("sse4_2", 1, 0, .ecx, 20), f("x2apic", 1, 0, .ecx, 21), f("movbe", 1, 0, .ecx, 22),
            f("popcnt", 1, 0, .ecx, 23), f("tsc_deadline_timer", 1, 0, .ecx, 24), f("aes", 1, 0, .ecx, 25),
            f("xsave", 1, 0, .ecx, 26), f("avx", 1, 0, .ecx, 28), f("f16c", 1, 0, .ecx, 29),
            f("rdrand", 1, 0, .ecx, 30), f("hypervisor", 1, 0, .ecx, 31),
            // Leaf 1 EDX.
            f("fpu", 1, 0, .edx, 0), f("vme", 1, 0, .edx, 1), f("de", 1, 0, .edx, 2), f("pse", 1, 0, .edx, 3),
            f("tsc", 1, 0, .edx, 4), f("msr", 1, 0, .edx, 5), f("pae", 1, 0, .edx, 6), f("mce", 1, 0, .edx, 7),
            f("cx8", 1, 0, .edx, 8), f("apic", 1, 0, .edx, 9), f("sep", 1, 0, .edx, 11), f("mtrr", 1, 0, .edx, 12),
            f("pge", 1, 0, .edx, 13), f("mca", 1, 0, .edx, 14), f("cmov", 1, 0, .edx, 15), f("pat", 1, 0, .edx, 16),
            f("pse36", 1, 0, .edx, 17), f("clflush", 1, 0, .edx, 19), f("mmx", 1, 0, .edx, 23),
            f("fxsr", 1, 0, .edx, 24), f("sse", 1, 0, .edx, 25), f("sse2", 1, 0, .edx, 26), f("ht", 1, 0, .edx, 28),
            // Leaf 7 sub-leaf 0.
            f("fsgsbase", 7, 0, .ebx, 0), f("bmi1", 7, 0, .ebx, 3), f("hle", 7, 0, .ebx, 4), f("avx2", 7, 0, .ebx, 5),
            f("smep", 7, 0, .ebx, 7), f("bmi2", 7, 0, .ebx, 8), f("erms", 7, 0, .ebx, 9), f("invpcid", 7, 0, .ebx, 10),
            f("rtm", 7, 0, .ebx, 11), f("avx512f", 7, 0, .ebx, 16), f("avx512dq", 7, 0, .ebx, 17),
            f("rdseed", 7, 0, .ebx, 18), f("adx", 7, 0, .ebx, 19), f("smap", 7, 0, .ebx, 20),
            f("avx512ifma", 7, 0, .ebx, 21), f("clflushopt", 7, 0, .ebx, 23), f("clwb", 7, 0, .ebx, 24),
            f("avx512cd", 7, 0, .ebx, 28), f("sha_ni", 7, 0, .ebx, 29), f("avx512bw", 7, 0, .ebx, 30),
            f("avx512vl", 7, 0, .ebx, 31),
            f("avx512vbmi", 7, 0, .ecx, 1), f("umip", 7, 0, .ecx, 2), f("pku", 7, 0, .ecx, 3),
            f("avx512_vbmi2", 7, 0, .ecx, 6), f("gfni", 7, 0, .ecx, 8), f("vaes", 7, 0, .ecx, 9),
            f("vpclmulqdq", 7, 0, .ecx, 10), f("avx512_vnni", 7, 0, .ecx, 11), f("avx512_bitalg", 7, 0, .ecx, 12),
            f("avx512_vpopcntdq", 7, 0, .ecx, 14), f("la57", 7, 0, .ecx, 16), f("rdpid", 7, 0, .ecx, 22),
            f("fsrm", 7, 0, .edx, 4), f("md_clear", 7, 0, .edx, 10), f("serialize", 7, 0, .edx, 14),
            f("arch_capabilities", 7, 0, .edx, 29),
            // Leaf 0xD sub-leaf 1.
            f("xsaveopt", 0xd, 1, .eax, 0), f("xsavec", 0xd, 1, .eax, 1), f("xgetbv1", 0xd, 1, .eax, 2),
            f("xsaves", 0xd, 1, .eax, 3),
            // Extended leaf 0x80000001.
            f("lahf_lm", 0x8000_0001, 0, .ecx, 0), f("cmp_legacy", 0x8000_0001, 0, .ecx, 1),
            f("svm", 0x8000_0001, 0, .ecx, 2), f("abm", 0x8000_0001, 0, .ecx, 5), f("sse4a", 0x8000_0001, 0, .ecx, 6),
            f("misalignsse", 0x8000_0001, 0, .ecx, 7), f("3dnowprefetch", 0x8000_0001, 0, .ecx, 8),
            f("topoext", 0x8000_0001, 0, .ecx, 22),
            f("syscall", 0x8000_0001, 0, .edx, 11), f("nx", 0x8000_0001, 0, .edx, 20),
            f("mmxext", 0x8000_0001, 0, .edx, 22), f("fxsr_opt", 0x8000_0001, 0, .edx, 25),
            f("pdpe1gb", 0x8000_0001, 0, .edx, 26), f("rdtscp", 0x8000_0001, 0, .edx, 27),
            f("lm", 0x8000_0001, 0, .edx, 29),
        ]
    }()

    public static func named(_ name: String) -> CPUFeature? { all.first { $0.name == name } }

    func isSet(in entry: CPUIDEntry) -> Bool { value(in: entry) & (1 << bit) != 0 }

    func value(in entry: CPUIDEntry) -> UInt32 {
        switch register {
        case .eax: entry.eax
        case .ebx: entry.ebx
        case .ecx: entry.ecx
        case .edx: entry.edx
        }
    }

    func clear(in entry: inout CPUIDEntry) {
        let mask = ~(UInt32(1) << bit)
        switch register {
        case .eax: entry.eax &= mask
        case .ebx: entry.ebx &= mask
        case .ecx: entry.ecx &= mask
        case .edx: entry.edx &= mask
        }
    }
}

/// `--cpu-features`: a comma-separated list of features to hide, each
/// written `-name` (e.g. `-cx16,-xsave,-avx512f`).
///
/// Only removal is offered: advertising a feature KVM does not support would
/// lie to the guest. Removal cannot fail, but on hosts that honour
/// KVM_SET_CPUID2 only partly (PVM) the guest may still see the host's bit;
/// `swiftlet kvm-info` says so, and a Linux guest's `clearcpuid=` is the
/// dependable switch there.
public struct CPUFeatureSelection: Sendable, Equatable {
    public var hidden: [CPUFeature]

    public init(hidden: [CPUFeature] = []) { self.hidden = hidden }

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case unknownFeature(String)
        case notARemoval(String)

        public var description: String {
            switch self {
            case .unknownFeature(let name):
                "unknown CPU feature '\(name)' (names as in /proc/cpuinfo, e.g. cx16, xsave, avx2)"
            case .notARemoval(let item):
                "'\(item)': features can only be hidden, written -name"
            }
        }
    }

    public static func parse(_ text: String) throws(ParseError) -> CPUFeatureSelection {
        var hidden: [CPUFeature] = []
        for item in text.split(separator: ",", omittingEmptySubsequences: true) {
            let trimmed = item.trimmingSpaces
            guard trimmed.hasPrefix("-") else { throw .notARemoval(trimmed) }
            let name = String(trimmed.dropFirst())
            guard let feature = CPUFeature.named(name) else { throw .unknownFeature(name) }
            if !hidden.contains(feature) { hidden.append(feature) }
        }
        return CPUFeatureSelection(hidden: hidden)
    }

    /// `table` with the hidden features cleared.
    public func apply(to table: CPUIDTable) -> CPUIDTable {
        var result = table
        for feature in hidden {
            for i in result.entries.indices
            where result.entries[i].function == feature.leaf
                && (!result.entries[i].hasSubleaves || result.entries[i].index == feature.subleaf) {
                feature.clear(in: &result.entries[i])
            }
        }
        return result
    }
}

extension Substring {
    var trimmingSpaces: String {
        String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}

/// A walk of the guest's 4- or 5-level page tables for one supervisor-mode
/// data access, as the processor does it (Intel SDM Vol. 3, 4.5–4.8).
///
/// KVM_TRANSLATE gives the physical address but not the permissions (the
/// kernel reports every mapping writable) and does not set accessed or
/// dirty bits. The assist translates with KVM_TRANSLATE and then walks the
/// tables itself, so that a write to a read-only page (a copy-on-write user
/// page under CR0.WP, say) or a SMAP violation raises #PF as it would on
/// the processor, and so that completed accesses set A and D bits. The two
/// must agree on the physical address, or the access is refused.
struct GuestPageWalk {
    /// One paging-structure entry the walk used.
    struct Entry: Equatable {
        var address: UInt64
        var value: UInt64
        var isLeaf: Bool
    }

    enum Result: Equatable {
        case mapped(physical: UInt64, entries: [Entry])
        /// #PF with this error code.
        case fault(errorCode: UInt32)
        case refused(String)
    }

    static let present: UInt64 = 1 << 0
    static let writable: UInt64 = 1 << 1
    static let user: UInt64 = 1 << 2
    static let accessed: UInt64 = 1 << 5
    static let dirty: UInt64 = 1 << 6
    static let pageSize: UInt64 = 1 << 7
    /// Bits 51:12, the physical address of the next table or of a 4 KiB page.
    static let addressMask: UInt64 = 0x000f_ffff_ffff_f000

    let system: X86SystemRegisters
    /// RFLAGS.AC, which lifts SMAP for explicit supervisor accesses.
    let alignmentCheckFlag: Bool

    /// Walks for a supervisor (CPL 0) data access to `linear`.
    func walk(_ linear: UInt64, write: Bool, memory: some InstructionAssistMemory) -> Result {
        let levels = system.cr4 & X86SystemRegisters.cr4LA57 != 0 ? 5 : 4
        var table = system.cr3 & Self.addressMask
        var entries: [Entry] = []
        var userPage = true, writablePage = true
        let accessBit: UInt32 = write ? X86Exception.pageFaultWrite : 0
        for level in stride(from: levels, through: 1, by: -1) {
            let index = (linear >> UInt64(12 + 9 * (level - 1))) & 0x1ff
            let address = table + index * 8
            guard let bytes = memory.read(physical: address, count: 8) else {
                return .refused("a level-\(level) page-table entry at 0x\(String(address, radix: 16)) is not in RAM")
            }
            let entry = bytes.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
            guard entry & Self.present != 0 else { return .fault(errorCode: accessBit) }
            userPage = userPage && entry & Self.user != 0
            writablePage = writablePage && entry & Self.writable != 0
            var physical: UInt64?
            if level == 1 {
                physical = (entry & Self.addressMask) | (linear & 0xfff)
            } else if entry & Self.pageSize != 0 {
                switch level {
                case 3: physical = (entry & 0x000f_ffff_c000_0000) | (linear & 0x3fff_ffff)   // 1 GiB
                case 2: physical = (entry & 0x000f_ffff_ffe0_0000) | (linear & 0x1f_ffff)     // 2 MiB
                default: return .refused("PS set in a level-\(level) entry (reserved)")
                }
            }
            entries.append(Entry(address: address, value: entry, isLeaf: physical != nil))
            guard let physical else {
                table = entry & Self.addressMask
                continue
            }
            // Supervisor data access: writes need R/W at every level when
            // CR0.WP is set; SMAP forbids user pages unless RFLAGS.AC.
            if write && !writablePage && system.cr0 & X86SystemRegisters.cr0WP != 0 {
                return .fault(errorCode: X86Exception.pageFaultPresent | accessBit)
            }
            if userPage && system.cr4 & X86SystemRegisters.cr4SMAP != 0 && !alignmentCheckFlag {
                return .fault(errorCode: X86Exception.pageFaultPresent | accessBit)
            }
            // Protection keys depend on PKRU/PKRS, which the assist does not read.
            if userPage && system.cr4 & X86SystemRegisters.cr4PKE != 0 {
                return .refused("protection keys (CR4.PKE) on a user page")
            }
            if !userPage && system.cr4 & X86SystemRegisters.cr4PKS != 0 {
                return .refused("supervisor protection keys (CR4.PKS)")
            }
            return .mapped(physical: physical, entries: entries)
        }
        preconditionFailure("a page walk ends at level 1")
    }

    /// Sets the accessed bit in every entry the walk used, and the dirty bit
    /// in the leaf for a write, each with a compare-and-exchange as the
    /// processor does; false when an entry changed meanwhile.
    static func markAccessed(_ entries: [Entry], write: Bool, memory: some InstructionAssistMemory) -> Bool {
        for entry in entries {
            var wanted = entry.value | accessed
            if entry.isLeaf && write { wanted |= dirty }
            if wanted == entry.value { continue }
            guard memory.compareExchange64(physical: entry.address, expected: entry.value, desired: wanted) else { return false }
        }
        return true
    }
}

import SwiftletMemory

/// The boot CPU's registers at the kernel's first instruction, independent
/// of KVM: the vCPU layer turns this into KVM_SET_REGS/SREGS, building
/// segment registers from `BootGDT.descriptor(for:)` and the selectors.
public struct CPUBootState: Hashable, Sendable {
    public enum Mode: Hashable, Sendable {
        /// 32-bit protected mode, paging off (Multiboot).
        case protected32
        /// 64-bit long mode with the identity page tables (direct ELF64 entry).
        case long64
    }

    /// GDTR or IDTR.
    public struct DescriptorTable: Hashable, Sendable {
        public var base: UInt64
        public var limit: UInt16

        public init(base: UInt64, limit: UInt16) {
            self.base = base
            self.limit = limit
        }
    }

    /// Control register bits used at boot (SDM vol. 3A, 2.5; EFER: 2.2.1).
    public enum CR0 {
        public static let protectionEnable: UInt64 = 1 << 0
        public static let monitorCoprocessor: UInt64 = 1 << 1
        public static let extensionType: UInt64 = 1 << 4
        public static let numericError: UInt64 = 1 << 5
        public static let writeProtect: UInt64 = 1 << 16
        public static let paging: UInt64 = 1 << 31
    }

    public enum CR4 {
        public static let physicalAddressExtension: UInt64 = 1 << 5
        public static let osFXSR: UInt64 = 1 << 9
        public static let osXMMExceptions: UInt64 = 1 << 10
    }

    public enum EFER {
        public static let longModeEnable: UInt64 = 1 << 8
        public static let longModeActive: UInt64 = 1 << 10
    }

    /// RFLAGS with only the always-one bit 1: interrupts disabled.
    public static let initialFlags: UInt64 = 0x2

    public var mode: Mode
    public var rip: UInt64
    public var rsp: UInt64 = 0
    public var rflags: UInt64 = initialFlags
    public var rax: UInt64 = 0
    public var rbx: UInt64 = 0
    public var rsi: UInt64 = 0
    public var rdi: UInt64 = 0
    public var cr0: UInt64
    public var cr3: UInt64 = 0
    public var cr4: UInt64 = 0
    public var efer: UInt64 = 0
    public var gdt = DescriptorTable(base: X86Layout.gdtAddress.rawValue, limit: BootGDT.limit)
    /// Empty: the guest installs an IDT before it enables interrupts.
    public var idt = DescriptorTable(base: 0, limit: 0)
    /// CS.
    public var codeSelector: UInt16
    /// DS, ES, FS, GS and SS.
    public var dataSelector: UInt16 = BootGDT.kernelData

    public init(mode: Mode, rip: UInt64, cr0: UInt64, codeSelector: UInt16) {
        self.mode = mode
        self.rip = rip
        self.cr0 = cr0
        self.codeSelector = codeSelector
    }

    /// Direct 64-bit entry (boot-protocol.md): long mode on the identity
    /// page tables, CPL 0, stack at 0x80000, everything else zero.
    public static func longMode(entry: UInt64) -> CPUBootState {
        var state = CPUBootState(
            mode: .long64, rip: entry,
            cr0: CR0.protectionEnable | CR0.monitorCoprocessor | CR0.extensionType | CR0.numericError
                | CR0.writeProtect | CR0.paging,
            codeSelector: BootGDT.kernelCode64)
        state.cr3 = X86Layout.pml4Address.rawValue
        state.cr4 = CR4.physicalAddressExtension | CR4.osFXSR | CR4.osXMMExceptions
        state.efer = EFER.longModeEnable | EFER.longModeActive
        state.rsp = X86Layout.bootStackTop.rawValue
        return state
    }

    /// The Linux 64-bit boot protocol (boot.rst, "64-bit Boot Protocol"):
    /// the direct 64-bit entry's state, with RSI pointing at the zero page.
    ///
    /// boot.rst asks for CS = __BOOT_CS (0x10) and DS = __BOOT_DS (0x18);
    /// Swiftlet's GDT has its 64-bit code at 0x08 and data at 0x10, as
    /// Firecracker's and Cloud Hypervisor's do. Every 64-bit entry
    /// (startup_64 of the decompressor and of vmlinux) zeroes or reloads
    /// the data segments and loads its own GDT before it relies on a
    /// selector.
    public static func linux64(entry: UInt64, bootParams: GuestAddress) -> CPUBootState {
        var state = longMode(entry: entry)
        state.rsi = bootParams.rawValue
        return state
    }

    /// PVH entry (Xen docs/misc/pvh.pandoc): 32-bit protected mode, paging
    /// off, CR0 = PE (ET reads as one), CR4 = 0, flat 32-bit code and data
    /// segments, interrupts off, EBX the hvm_start_info. The stack, GDT and
    /// IDT are the kernel's job, so ESP is 0.
    public static func pvh(entry: UInt64, startInfo: GuestAddress) -> CPUBootState {
        var state = CPUBootState(mode: .protected32, rip: entry,
                                 cr0: CR0.protectionEnable | CR0.extensionType,
                                 codeSelector: BootGDT.kernelCode32)
        state.rbx = startInfo.rawValue
        return state
    }

    /// Multiboot entry (section 3.2): protected mode, paging off, EAX the
    /// boot loader magic and EBX the information structure. ESP is left 0,
    /// as the specification makes the stack the kernel's job.
    public static func multiboot(entry: UInt64) -> CPUBootState {
        var state = CPUBootState(mode: .protected32, rip: entry,
                                 cr0: CR0.protectionEnable | CR0.extensionType,
                                 codeSelector: BootGDT.kernelCode32)
        state.rax = UInt64(MultibootHeader.bootloaderMagic)
        state.rbx = X86Layout.bootInfoAddress.rawValue
        return state
    }
}

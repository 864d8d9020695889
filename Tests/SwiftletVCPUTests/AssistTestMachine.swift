import SwiftletVCPU

/// Guest-physical memory for assist tests: sparse 4 KiB pages, RAM below
/// `ramEnd`, nothing (as MMIO would be) above it.
final class TestMemory: InstructionAssistMemory {
    private var pages: [UInt64: [UInt8]] = [:]
    let ramEnd: UInt64
    /// Every successful write, in order (physical address, byte count).
    private(set) var writes: [(address: UInt64, count: Int)] = []
    /// Makes the next compare-and-exchange fail once, as if another vCPU
    /// had changed the entry.
    var failNextCompareExchange = false

    init(ramEnd: UInt64 = 64 << 20) { self.ramEnd = ramEnd }

    func isRAM(physical address: UInt64, count: Int) -> Bool {
        let (end, overflow) = address.addingReportingOverflow(UInt64(count))
        return !overflow && end <= ramEnd
    }

    func byte(_ address: UInt64) -> UInt8 { pages[address >> 12]?[Int(address & 0xfff)] ?? 0 }

    func setByte(_ address: UInt64, _ value: UInt8) {
        pages[address >> 12, default: [UInt8](repeating: 0, count: 4096)][Int(address & 0xfff)] = value
    }

    func read(physical address: UInt64, count: Int) -> [UInt8]? {
        guard isRAM(physical: address, count: count) else { return nil }
        return (0..<UInt64(count)).map { byte(address + $0) }
    }

    func write(_ bytes: [UInt8], physical address: UInt64) -> Bool {
        guard isRAM(physical: address, count: bytes.count) else { return false }
        for (i, b) in bytes.enumerated() { setByte(address + UInt64(i), b) }
        writes.append((address, bytes.count))
        return true
    }

    func compareExchange64(physical address: UInt64, expected: UInt64, desired: UInt64) -> Bool {
        if failNextCompareExchange {
            failNextCompareExchange = false
            return false
        }
        guard address % 8 == 0, load64(address) == expected, isRAM(physical: address, count: 8) else { return false }
        store64(address, desired)
        return true
    }

    func load64(_ address: UInt64) -> UInt64 {
        (0..<UInt64(8)).reduce(UInt64(0)) { $0 | UInt64(byte(address + $1)) << (8 * $1) }
    }

    func store64(_ address: UInt64, _ value: UInt64) {
        for i in 0..<UInt64(8) { setByte(address + i, UInt8(truncatingIfNeeded: value >> (8 * i))) }
    }

    func store(_ bytes: [UInt8], at address: UInt64) {
        for (i, b) in bytes.enumerated() { setByte(address + UInt64(i), b) }
    }

    func bytes(at address: UInt64, count: Int) -> [UInt8] { (0..<UInt64(count)).map { byte(address + $0) } }
}

/// Page tables built in a `TestMemory`: 4-level (or 5-level) paging, tables
/// allocated from `tablePool` upward.
struct TestPageTables {
    static let present: UInt64 = 1, writable: UInt64 = 2, user: UInt64 = 4
    static let accessed: UInt64 = 0x20, dirty: UInt64 = 0x40, large: UInt64 = 0x80

    let memory: TestMemory
    let levels: Int
    let root: UInt64
    private var next: UInt64

    init(memory: TestMemory, levels: Int = 4, tablePool: UInt64 = 0x10_0000) {
        self.memory = memory
        self.levels = levels
        self.root = tablePool
        self.next = tablePool + 0x1000
    }

    /// Maps the page of `size` (4 KiB, 2 MiB or 1 GiB) at `linear` to
    /// `physical` with `flags` (present is added unless `present: false`).
    /// Intermediate entries get present | writable | user.
    mutating func map(_ linear: UInt64, to physical: UInt64, flags: UInt64 = writable,
                      size: UInt64 = 0x1000, present: Bool = true) {
        let leafLevel = size == 0x1000 ? 1 : size == 0x20_0000 ? 2 : 3
        var table = root
        for level in stride(from: levels, to: leafLevel, by: -1) {
            let address = table + ((linear >> UInt64(12 + 9 * (level - 1))) & 0x1ff) * 8
            var entry = memory.load64(address)
            if entry & Self.present == 0 {
                entry = next | Self.present | Self.writable | Self.user
                next += 0x1000
                memory.store64(address, entry)
            }
            table = entry & 0x000f_ffff_ffff_f000
        }
        let address = table + ((linear >> UInt64(12 + 9 * (leafLevel - 1))) & 0x1ff) * 8
        var entry = physical | flags | (present ? Self.present : 0)
        if leafLevel > 1 { entry |= Self.large }
        memory.store64(address, entry)
    }

    /// The address of the entry mapping `linear` at `level` (1 = PTE).
    func entryAddress(_ linear: UInt64, level: Int) -> UInt64 {
        var table = root
        for l in stride(from: levels, through: level, by: -1) {
            let address = table + ((linear >> UInt64(12 + 9 * (l - 1))) & 0x1ff) * 8
            if l == level { return address }
            table = memory.load64(address) & 0x000f_ffff_ffff_f000
        }
        preconditionFailure()
    }

    /// What KVM_TRANSLATE reports: present bits only, no permissions.
    func translate(_ linear: UInt64) -> UInt64? {
        var table = root
        for level in stride(from: levels, through: 1, by: -1) {
            let entry = memory.load64(table + ((linear >> UInt64(12 + 9 * (level - 1))) & 0x1ff) * 8)
            guard entry & Self.present != 0 else { return nil }
            if level == 1 { return (entry & 0x000f_ffff_ffff_f000) | (linear & 0xfff) }
            if entry & Self.large != 0 {
                let mask: UInt64 = level == 2 ? 0x1f_ffff : 0x3fff_ffff
                return (entry & 0x000f_ffff_ffff_f000 & ~mask) | (linear & mask)
            }
            table = entry & 0x000f_ffff_ffff_f000
        }
        return nil
    }
}

struct TestStateError: Error, CustomStringConvertible {
    let what: String
    var description: String { "\(what) failed (test)" }
}

/// A vCPU's state in memory, implementing what the assist needs; tests set
/// it up, run the assist, and inspect it.
final class TestCPU: InstructionAssistCPU {
    var registers = X86GeneralRegisters(rip: 0x40_0000)
    var system: X86SystemRegisters
    var fpu = FXSaveImage.initial(mxcsrMask: 0x2ffff)
    var events = X86EventState()
    var tables: TestPageTables
    /// Overrides what `translate` reports (KVM_TRANSLATE disagreeing with the tables).
    var translateOverride: ((UInt64) -> UInt64?)?
    /// Accessors that throw, by name.
    var failing: Set<String> = []

    private(set) var injected: [X86Exception] = []
    private(set) var shadowCleared = false
    private(set) var registerWrites = 0
    private(set) var fpuWrites = 0

    init(memory: TestMemory, levels: Int = 4) {
        tables = TestPageTables(memory: memory, levels: levels)
        system = X86SystemRegisters(cr3: tables.root, cr4: 0x620 | (levels == 5 ? X86SystemRegisters.cr4LA57 : 0))
    }

    private func check(_ name: String) throws {
        if failing.contains(name) { throw TestStateError(what: name) }
    }

    func assistRegisters() throws -> X86GeneralRegisters {
        try check("registers")
        return registers
    }

    func setAssistRegisters(_ r: X86GeneralRegisters) throws {
        try check("setRegisters")
        registers = r
        registerWrites += 1
    }

    func assistSystemRegisters() throws -> X86SystemRegisters {
        try check("systemRegisters")
        return system
    }

    func fxsaveImage() throws -> FXSaveImage {
        try check("fpu")
        return fpu
    }

    func setFXSaveImage(_ image: FXSaveImage) throws {
        try check("setFPU")
        fpu = image
        fpuWrites += 1
    }

    func translate(_ linearAddress: UInt64) throws -> UInt64? {
        try check("translate")
        if let translateOverride { return translateOverride(linearAddress) }
        return tables.translate(linearAddress)
    }

    func assistEventState() throws -> X86EventState {
        try check("events")
        return events
    }

    func clearInterruptShadow() throws {
        try check("clearShadow")
        events.interruptShadow = false
        shadowCleared = true
    }

    func injectException(_ exception: X86Exception) throws {
        try check("inject")
        injected.append(exception)
    }
}

/// A test machine: memory with page tables, a CPU, and the assist.
struct AssistFixture {
    let memory = TestMemory()
    let cpu: TestCPU
    let assist: InstructionAssist
    /// Where `place` puts instruction bytes (identity-mapped code page).
    static let code: UInt64 = 0x40_0000

    init(levels: Int = 4, completesBreakpoints: Bool = true) {
        cpu = TestCPU(memory: memory, levels: levels)
        assist = InstructionAssist(completesBreakpoints: completesBreakpoints)
        cpu.tables.map(Self.code, to: Self.code)
    }

    /// Maps `[linear, linear + size)` onto the same physical addresses, 4 KiB pages.
    func identityMap(_ linear: UInt64, size: UInt64 = 0x1000, flags: UInt64 = TestPageTables.writable) {
        var page = linear & ~0xfff
        while page < linear + size {
            cpu.tables.map(page, to: page, flags: flags)
            page += 0x1000
        }
    }

    /// Runs the assist on `bytes` as KVM reports them (the instruction at RIP).
    @discardableResult
    func run(_ bytes: [UInt8]) -> InstructionAssistOutcome {
        memory.store(bytes, at: cpu.registers.rip)   // also readable, for fetch tests
        return assist.complete(reportedBytes: bytes, cpu: cpu, memory: memory)
    }

    var counts: InstructionAssistCounts { assist.statistics.snapshot }
}

extension FixedWidthInteger {
    var bytes: [UInt8] { (0..<(Self.bitWidth / 8)).map { UInt8(truncatingIfNeeded: self >> (8 * $0)) } }
}

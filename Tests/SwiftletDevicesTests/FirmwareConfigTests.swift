import Glibc
import Synchronization
import SwiftletSystem
import Testing
@testable import SwiftletDevices

private typealias Key = FirmwareConfig.Key

extension FirmwareConfig {
    /// Selects `key` the way a guest does: a 16-bit write to the selector.
    fileprivate func select(_ key: UInt16) {
        write(at: 0, size: 2, value: UInt64(key))
    }

    /// Reads `count` bytes from the data register, one `inb` each.
    fileprivate func readData(_ count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8(truncatingIfNeeded: read(at: 1, size: 1)) }
    }

    fileprivate func item(_ key: UInt16, count: Int) -> [UInt8] {
        select(key)
        return readData(count)
    }

    fileprivate func integer(_ key: UInt16, bytes: Int) -> UInt64 {
        item(key, count: bytes).reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }
}

/// Lazy content that serves `pattern(offset)` and counts its reads.
private final class PatternContent: FirmwareConfigContent {
    let count: Int
    private let reads = Atomic<Int>(0)

    init(count: Int) { self.count = count }

    static func pattern(_ offset: Int) -> UInt8 { UInt8(truncatingIfNeeded: offset &* 7 &+ offset >> 8) }

    var readCalls: Int { reads.load(ordering: .relaxed) }

    func read(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        reads.add(1, ordering: .relaxed)
        let n = min(buffer.count, count - offset)
        for i in 0..<n { buffer[i] = Self.pattern(offset + i) }
        return n
    }
}

/// Lazy content whose reads fail.
private final class FailingContent: FirmwareConfigContent {
    struct Failure: Error {}
    let count: Int
    private let reads = Atomic<Int>(0)
    init(count: Int) { self.count = count }
    var readCalls: Int { reads.load(ordering: .relaxed) }
    func read(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        reads.add(1, ordering: .relaxed)
        buffer[0] = 0xee  // partial garbage before failing must not leak through
        throw Failure()
    }
}

/// Lazy content claiming more than fw_cfg can describe.
private struct HugeContent: FirmwareConfigContent {
    var count: Int { Int(UInt32.max) + 1 }
    func read(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws -> Int { 0 }
}

@Suite struct FirmwareConfigItemTests {
    private func standardDevice() throws -> FirmwareConfig {
        var builder = FirmwareConfigBuilder(ramSize: 0x1_2345_6000, bootCPUs: 3, maxCPUs: 8)
        builder.setCommandLine("console=ttyS0 quiet")
        try builder.setInitrd(Array("INITRD".utf8))
        return builder.build()
    }

    @Test func signatureIsQEMU() throws {
        let device = try standardDevice()
        #expect(device.item(Key.signature, count: 4) == Array("QEMU".utf8))
    }

    @Test func signatureIsSelectedAtPowerOn() throws {
        let device = try standardDevice()
        #expect(device.readData(4) == Array("QEMU".utf8))
    }

    @Test func idSaysTraditionalInterfaceWithoutDMA() throws {
        let device = try standardDevice()
        #expect(device.item(Key.id, count: 5) == [1, 0, 0, 0, 0])
    }

    @Test func ramSizeIsU64LittleEndian() throws {
        let device = try standardDevice()
        #expect(device.item(Key.ramSize, count: 9) == [0x00, 0x60, 0x45, 0x23, 0x01, 0, 0, 0, 0])
    }

    @Test func cpuCountsAreU16() throws {
        let device = try standardDevice()
        #expect(device.item(Key.cpuCount, count: 3) == [3, 0, 0])
        #expect(device.item(Key.maxCPUs, count: 3) == [8, 0, 0])
    }

    @Test func maxCPUsDefaultsToBootCPUsAndIsNeverBelowIt() {
        #expect(FirmwareConfigBuilder(ramSize: 0, bootCPUs: 4).build().integer(Key.maxCPUs, bytes: 2) == 4)
        #expect(FirmwareConfigBuilder(ramSize: 0, bootCPUs: 4, maxCPUs: 2).build().integer(Key.maxCPUs, bytes: 2) == 4)
    }

    @Test func commandLineSizeCountsTheNUL() throws {
        let device = try standardDevice()
        let text = "console=ttyS0 quiet"
        #expect(device.integer(Key.commandLineSize, bytes: 4) == UInt64(text.utf8.count + 1))
        #expect(device.item(Key.commandLineData, count: text.utf8.count + 1) == Array(text.utf8) + [0])
    }

    @Test func missingCommandLineIsTheEmptyString() {
        let device = FirmwareConfigBuilder(ramSize: 1 << 20, bootCPUs: 1).build()
        #expect(device.integer(Key.commandLineSize, bytes: 4) == 1)
        #expect(device.item(Key.commandLineData, count: 2) == [0, 0])
    }

    @Test func initrdSizeAndData() throws {
        let device = try standardDevice()
        #expect(device.item(Key.initrdSize, count: 4) == [6, 0, 0, 0])
        #expect(device.item(Key.initrdData, count: 8) == Array("INITRD".utf8) + [0, 0])
    }

    @Test func missingInitrdHasSizeZero() {
        let device = FirmwareConfigBuilder(ramSize: 1 << 20, bootCPUs: 1).build()
        #expect(device.integer(Key.initrdSize, bytes: 4) == 0)
        #expect(device.item(Key.initrdData, count: 4) == [0, 0, 0, 0])
    }

    @Test func readsPastTheEndReturnZeroAndSelectingRewinds() throws {
        let device = try standardDevice()
        #expect(device.item(Key.signature, count: 10) == Array("QEMU".utf8) + [0, 0, 0, 0, 0, 0])
        #expect(device.readData(2) == [0, 0])
        device.select(Key.signature)
        #expect(device.readData(2) == Array("QE".utf8))
        device.select(Key.signature)
        #expect(device.readData(1) == Array("Q".utf8), "reselecting the same key rewinds too")
    }

    @Test func unknownKeysAreEmpty() throws {
        let device = try standardDevice()
        for key: UInt16 in [0x02, 0x18, 0x1f, 0x20, 0x3fff, 0x8000, 0x8003, 0xffff] {
            #expect(device.item(key, count: 3) == [0, 0, 0], "key \(key)")
        }
    }

    @Test func theWriteBitIsIgnoredWhenSelecting() throws {
        let device = try standardDevice()
        #expect(device.item(Key.writeBit | Key.signature, count: 4) == Array("QEMU".utf8))
    }

    @Test func extraAndArchLocalItems() throws {
        var builder = FirmwareConfigBuilder(ramSize: 0, bootCPUs: 1)
        try builder.setItem(Key.uuid, [UInt8](repeating: 0xab, count: 16))
        try builder.setItem(Key.archLocalBit | 3, [1, 2, 3])
        let device = builder.build()
        #expect(device.item(Key.uuid, count: 17) == [UInt8](repeating: 0xab, count: 16) + [0])
        #expect(device.item(0x8003, count: 4) == [1, 2, 3, 0])
        #expect(device.item(0x0003, count: 1) == [0], "arch-local 3 is not RAM size 3")
    }
}

@Suite struct FirmwareConfigFileTests {
    @Test func fileDirectoryIsBigEndianAndSortedByName() throws {
        var builder = FirmwareConfigBuilder(ramSize: 0, bootCPUs: 1)
        try builder.addFile(named: "etc/e820", [UInt8](repeating: 0x11, count: 40))
        try builder.addFile(named: "etc/boot-fail-wait", [5, 0, 0, 0])
        let device = builder.build()

        let directory = device.item(Key.fileDirectory, count: 4 + 2 * 64 + 1)
        #expect(directory[0..<4] == [0, 0, 0, 2], "count, big-endian")

        func entry(_ index: Int) -> (size: [UInt8], select: [UInt8], reserved: [UInt8], name: [UInt8]) {
            let base = 4 + index * 64
            return (Array(directory[base..<base + 4]), Array(directory[base + 4..<base + 6]),
                    Array(directory[base + 6..<base + 8]), Array(directory[base + 8..<base + 64]))
        }
        let first = entry(0), second = entry(1)
        #expect(first.size == [0, 0, 0, 4])
        #expect(first.select == [0x00, 0x20])
        #expect(first.reserved == [0, 0])
        #expect(first.name == Array("etc/boot-fail-wait".utf8) + [UInt8](repeating: 0, count: 56 - 18))
        #expect(second.size == [0, 0, 0, 40])
        #expect(second.select == [0x00, 0x21])
        #expect(second.name == Array("etc/e820".utf8) + [UInt8](repeating: 0, count: 48))
        #expect(directory.last == 0, "nothing after the last entry")

        #expect(device.fileNames == ["etc/boot-fail-wait", "etc/e820"])
        #expect(device.selector(forFile: "etc/e820") == 0x21)
        #expect(device.selector(forFile: "etc/none") == nil)
        #expect(device.item(0x20, count: 5) == [5, 0, 0, 0, 0])
        #expect(device.item(0x21, count: 41) == [UInt8](repeating: 0x11, count: 40) + [0])
    }

    @Test func emptyDirectoryHasCountZero() {
        let device = FirmwareConfigBuilder(ramSize: 0, bootCPUs: 1).build()
        #expect(device.item(Key.fileDirectory, count: 5) == [0, 0, 0, 0, 0])
    }

    @Test func fileNamesAreChecked() throws {
        var builder = FirmwareConfigBuilder(ramSize: 0, bootCPUs: 1)
        let longest = String(repeating: "n", count: 55)
        try builder.addFile(named: longest, [1])
        for bad in ["", String(repeating: "n", count: 56), "bad\u{0}name"] {
            #expect(throws: FirmwareConfigError.invalidFileName(bad)) { try builder.addFile(named: bad, [1]) }
        }
        #expect(throws: FirmwareConfigError.duplicateFileName(longest)) { try builder.addFile(named: longest, [2]) }
        let device = builder.build()
        let entry = device.item(Key.fileDirectory, count: 68)
        #expect(entry[12..<67] == ArraySlice(longest.utf8))
        #expect(entry[67] == 0, "a 55-byte name still ends with a NUL")
    }

    @Test func fileSelectorsStopBelowTheWriteBit() throws {
        var builder = FirmwareConfigBuilder(ramSize: 0, bootCPUs: 1)
        let limit = Int(Key.writeBit - Key.firstFile)
        for index in 0..<limit { try builder.addFile(named: "f\(index)", []) }
        #expect(throws: FirmwareConfigError.tooManyFiles) { try builder.addFile(named: "one-too-many", []) }
        let device = builder.build()
        #expect(device.item(Key.fileDirectory, count: 4) == [0, 0, 0x3f, 0xe0], "0x3fe0 files, big-endian")
        #expect(device.fileNames.count == limit)
    }

    @Test func reservedKeysCannotBeSet() {
        var builder = FirmwareConfigBuilder(ramSize: 0, bootCPUs: 1)
        for key: UInt16 in [Key.signature, Key.id, Key.ramSize, Key.cpuCount, Key.maxCPUs, Key.initrdSize,
                            Key.initrdData, Key.commandLineSize, Key.commandLineData, Key.fileDirectory,
                            0x20, 0x3fff, 0x4002, 0x8020] {
            #expect(throws: FirmwareConfigError.reservedKey(key)) { try builder.setItem(key, [1]) }
        }
    }

    @Test func itemsOver4GiBAreRefused() {
        var builder = FirmwareConfigBuilder(ramSize: 0, bootCPUs: 1)
        #expect(throws: FirmwareConfigError.self) { try builder.setInitrd(HugeContent()) }
        #expect(throws: FirmwareConfigError.self) { try builder.addFile(named: "big", HugeContent()) }
    }
}

@Suite struct FirmwareConfigLazyContentTests {
    @Test func lazyContentIsReadInWindowsNotPerByte() throws {
        let content = PatternContent(count: 10_000)
        var builder = FirmwareConfigBuilder(ramSize: 0, bootCPUs: 1)
        try builder.setInitrd(content)
        let device = builder.build()
        #expect(content.readCalls == 0, "nothing is read before the guest asks")
        #expect(device.integer(Key.initrdSize, bytes: 4) == 10_000)
        let data = device.item(Key.initrdData, count: 10_002)
        #expect(data[..<10_000] == ArraySlice((0..<10_000).map(PatternContent.pattern)))
        #expect(data[10_000...] == [0, 0])
        #expect(content.readCalls == 3, "4 KiB per read")
    }

    @Test func reselectingRereadsFromTheStart() throws {
        let content = PatternContent(count: 100)
        var builder = FirmwareConfigBuilder(ramSize: 0, bootCPUs: 1)
        try builder.addFile(named: "blob", content)
        let device = builder.build()
        let first = device.item(0x20, count: 50)
        device.select(Key.signature)
        _ = device.readData(4)
        #expect(device.item(0x20, count: 50) == first)
        #expect(first == (0..<50).map(PatternContent.pattern))
    }

    @Test func failingContentReadsAsZerosWithoutRetryingEachByte() throws {
        let content = FailingContent(count: 100)
        var builder = FirmwareConfigBuilder(ramSize: 0, bootCPUs: 1)
        try builder.setInitrd(content)
        let device = builder.build()
        #expect(device.item(Key.initrdData, count: 100) == [UInt8](repeating: 0, count: 100))
        #expect(content.readCalls == 1)
    }

    @Test func fileContentReadsLazilyWithPread() throws {
        let memfd = try FileDescriptor.memfd(name: "fw_cfg-test")
        let bytes = (0..<9000).map { UInt8(truncatingIfNeeded: $0 * 31) }
        try memfd.writeAll(bytes)

        var builder = FirmwareConfigBuilder(ramSize: 0, bootCPUs: 1)
        try builder.setInitrd(try FileContent(memfd))
        try builder.addFile(named: "window", FileContent(memfd, offset: 100, count: 10))
        let device = builder.build()
        #expect(device.integer(Key.initrdSize, bytes: 4) == 9000)
        #expect(device.item(Key.initrdData, count: 9000) == bytes)
        #expect(device.item(0x20, count: 11) == Array(bytes[100..<110]) + [0])
    }

    @Test func aFileThatShrinksReadsZerosPastItsNewEnd() throws {
        let memfd = try FileDescriptor.memfd(name: "fw_cfg-shrink")
        try memfd.writeAll([UInt8](repeating: 0x77, count: 64))
        let content = try FileContent(memfd)
        #expect(ftruncate(memfd.rawValue, 16) == 0)
        var builder = FirmwareConfigBuilder(ramSize: 0, bootCPUs: 1)
        try builder.setInitrd(content)
        let device = builder.build()
        #expect(device.item(Key.initrdData, count: 64) == [UInt8](repeating: 0x77, count: 16) + [UInt8](repeating: 0, count: 48))
    }
}

@Suite struct FirmwareConfigHostileAccessTests {
    private let device = FirmwareConfigBuilder(ramSize: 1 << 30, bootCPUs: 2).build()

    @Test func onlyA16BitWriteAtOffsetZeroSelects() {
        device.select(Key.cpuCount)
        device.write(at: 0, size: 1, value: UInt64(Key.signature))
        device.write(at: 0, size: 4, value: UInt64(Key.signature))
        device.write(at: 0, size: 8, value: UInt64(Key.signature))
        device.write(at: 1, size: 2, value: UInt64(Key.signature))
        #expect(device.readData(2) == [2, 0], "still the CPU count, from its start")
    }

    @Test func selectorValuesAreTruncatedTo16Bits() {
        device.write(at: 0, size: 2, value: 0xdead_0000_0000_0005)
        #expect(device.readData(2) == [2, 0])
    }

    @Test func dataWritesAreIgnored() {
        device.select(Key.signature)
        device.write(at: 1, size: 1, value: 0x58)
        #expect(device.readData(4) == Array("QEMU".utf8), "neither the item nor the offset changed")
    }

    @Test func wideOrMisplacedReadsAreAllOnesAndDoNotAdvance() {
        device.select(Key.signature)
        #expect(device.read(at: 1, size: 2) == 0xffff)
        #expect(device.read(at: 1, size: 4) == 0xffff_ffff)
        #expect(device.read(at: 0, size: 1) == 0xff, "the selector is write-only")
        #expect(device.read(at: 0, size: 2) == 0xffff)
        #expect(device.read(at: 2, size: 1) == 0xff)
        #expect(device.read(at: UInt64.max, size: 1) == 0xff)
        #expect(device.read(at: 1, size: 0) == 0)
        #expect(device.read(at: 1, size: -3) == 0)
        #expect(device.readData(1) == Array("Q".utf8))
    }
}

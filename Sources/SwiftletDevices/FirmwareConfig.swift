import Synchronization
import SwiftletSystem

/// The bytes of a fw_cfg item that are read only when the guest asks for
/// them, so a large item (an initrd of tens of MiB) need not be held in the
/// VMM's memory.
///
/// `count` must not change after the item is added. `read` fills `buffer`
/// from `offset` (which is below `count`) and returns how many bytes it
/// wrote; bytes it does not provide, and everything after an error, read as
/// 0 to the guest. It is called with the device's lock held, on a vCPU
/// thread, and must not call back into the device.
public protocol FirmwareConfigContent: Sendable {
    var count: Int { get }
    func read(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws -> Int
}

/// A window of a file, read with pread(2) when the guest gets to it.
public final class FileContent: FirmwareConfigContent {
    public let count: Int
    private let descriptor: FileDescriptor
    private let start: Int64

    /// `count` bytes of `descriptor` from byte `offset`. Bytes past the end
    /// of the file, should it shrink, read as 0.
    public init(_ descriptor: FileDescriptor, offset: Int64 = 0, count: Int) {
        self.descriptor = descriptor
        self.start = max(0, offset)
        self.count = max(0, count)
    }

    /// The whole file, as long as it is now.
    public convenience init(_ descriptor: FileDescriptor) throws(SystemError) {
        let size = try descriptor.size()
        self.init(descriptor, offset: 0, count: Int(clamping: size))
    }

    public func read(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard offset >= 0, offset < count, !buffer.isEmpty else { return 0 }
        let wanted = UnsafeMutableRawBufferPointer(rebasing: buffer[..<min(buffer.count, count - offset)])
        return try descriptor.readFully(into: wanted, at: start + Int64(offset))
    }
}

public enum FirmwareConfigError: Error, Equatable, CustomStringConvertible {
    /// The key is one the builder fills in itself, or lies in the file range
    /// or has the write bit (0x4000) set.
    case reservedKey(UInt16)
    /// fw_cfg sizes are 32-bit.
    case itemTooLarge(what: String, count: Int)
    /// Names are at most 55 bytes of UTF-8 (56 with the NUL), and not empty.
    case invalidFileName(String)
    case duplicateFileName(String)
    /// Selectors for files run from 0x20 up to 0x3fff.
    case tooManyFiles

    public var description: String {
        switch self {
        case .reservedKey(let key): "fw_cfg key 0x\(String(key, radix: 16)) cannot be set directly"
        case .itemTooLarge(let what, let count): "fw_cfg item \(what) is \(count) bytes; items are limited to 4 GiB - 1"
        case .invalidFileName(let name): "fw_cfg file name \"\(name)\" is empty or longer than 55 bytes"
        case .duplicateFileName(let name): "fw_cfg file \"\(name)\" was added twice"
        case .tooManyFiles: "too many fw_cfg files"
        }
    }
}

/// QEMU's firmware configuration device (fw_cfg), traditional I/O-port
/// interface only: no DMA, and items are read-only.
///
/// Register it at 0x510 with length `portCount`. Offset 0 is the selector
/// register, offset 1 the data register (QEMU docs/specs/fw_cfg.rst):
///
/// - A 16-bit write to the selector selects an item and rewinds the data
///   offset. Other writes to it are ignored: QEMU would take an 8-bit write
///   there as a data write, and data writes are ignored anyway.
/// - An 8-bit read of the data register returns the byte at the data offset
///   and advances it; past the end of the item it returns 0 and stays put.
///   The legacy data register is one byte wide: QEMU refuses wider reads, and
///   here they read all ones without advancing, like an unclaimed port.
/// - Reading the selector register reads all ones (it is write-only; QEMU's
///   combined I/O region would return a data byte instead).
/// - Bit 14 of a key (0x4000) asks for write access and is ignored; bit 15
///   (0x8000) selects the architecture-local items, which exist only if the
///   machine adds them. An unknown key selects an empty item.
public final class FirmwareConfig: BusDevice {
    /// The selector (offset 0) and data (offset 1) registers.
    public static let portCount: UInt64 = 2

    /// Well-known keys (QEMU include/standard-headers/linux/qemu_fw_cfg.h).
    public enum Key {
        public static let signature: UInt16 = 0x00
        public static let id: UInt16 = 0x01
        public static let uuid: UInt16 = 0x02
        public static let ramSize: UInt16 = 0x03
        public static let noGraphic: UInt16 = 0x04
        public static let cpuCount: UInt16 = 0x05
        public static let machineID: UInt16 = 0x06
        /// Guest-physical address where the VMM loaded the initrd (u32).
        public static let initrdAddress: UInt16 = 0x0a
        public static let initrdSize: UInt16 = 0x0b
        public static let bootMenu: UInt16 = 0x0e
        public static let maxCPUs: UInt16 = 0x0f
        public static let initrdData: UInt16 = 0x12
        public static let commandLineSize: UInt16 = 0x14
        public static let commandLineData: UInt16 = 0x15
        public static let fileDirectory: UInt16 = 0x19
        public static let firstFile: UInt16 = 0x20
        /// Requests write access; stripped when selecting.
        public static let writeBit: UInt16 = 0x4000
        /// Architecture-local items (x86: ACPI tables, e820, ...).
        public static let archLocalBit: UInt16 = 0x8000
    }

    /// FW_CFG_ID bit 0: the traditional interface; bit 1 (DMA) stays clear.
    static let features: UInt32 = 1
    /// Size of a name in a file directory entry, NUL included.
    static let fileNameSize = 56
    /// How much of a lazy item one refill reads: one pread per 4 KiB of
    /// guest reads rather than one per byte.
    static let readAheadSize = 4096

    enum Storage: Sendable {
        case bytes([UInt8])
        case lazy(any FirmwareConfigContent)
    }

    struct Item: Sendable {
        let storage: Storage
        let count: Int
    }

    private struct State {
        var item: Item?
        var offset = 0
        var window: [UInt8] = []
        var windowStart = 0
        var windowValid = false
    }

    private let items: [UInt16: Item]
    private let files: [(name: String, selector: UInt16)]
    private let state: Locked<State>
    private let logLimiter = RateLimiter(burst: 3)

    init(items: [UInt16: Item], files: [(name: String, selector: UInt16)]) {
        self.items = items
        self.files = files
        // Selecting the signature is QEMU's reset state.
        self.state = Locked(State(item: items[Key.signature]))
    }

    /// The file names in directory order (sorted by name, as QEMU sorts).
    public var fileNames: [String] { files.map(\.name) }

    /// The key the guest selects to read file `name`.
    public func selector(forFile name: String) -> UInt16? {
        files.first { $0.name == name }?.selector
    }

    public func read(at offset: UInt64, size: Int) -> UInt64 {
        guard offset == 1, size == 1 else { return accessMask(size: size) }
        return state.withLock { s in UInt64(readDataByte(&s)) }
    }

    public func write(at offset: UInt64, size: Int, value: UInt64) {
        guard offset == 0, size == 2 else { return }
        let key = UInt16(truncatingIfNeeded: value) & ~Key.writeBit
        let item = items[key]
        state.withLock { s in
            s.item = item
            s.offset = 0
            s.windowValid = false
        }
    }

    private func readDataByte(_ s: inout State) -> UInt8 {
        guard let item = s.item, s.offset < item.count else { return 0 }
        let byte: UInt8
        switch item.storage {
        case .bytes(let bytes):
            byte = bytes[s.offset]
        case .lazy(let content):
            if !s.windowValid || s.offset < s.windowStart || s.offset - s.windowStart >= s.window.count {
                fillWindow(&s, from: content, count: item.count)
            }
            byte = s.window[s.offset - s.windowStart]
        }
        s.offset += 1
        return byte
    }

    private func fillWindow(_ s: inout State, from content: any FirmwareConfigContent, count: Int) {
        let length = min(Self.readAheadSize, count - s.offset)
        s.window.removeAll(keepingCapacity: true)
        s.window.append(contentsOf: repeatElement(0, count: length))
        s.windowStart = s.offset
        s.windowValid = true
        let start = s.offset
        var valid = 0
        do {
            let n = try s.window.withUnsafeMutableBytes { try content.read(at: start, into: $0) }
            valid = min(max(n, 0), length)
            if valid < length { logReadProblem("returned \(max(n, 0)) of \(length) bytes at offset \(start)") }
        } catch {
            logReadProblem("failed at offset \(start): \(error)")
        }
        // Whatever the content left past what it vouched for reads as 0, and
        // stays in the window so the source is not retried for each byte.
        for index in valid..<length { s.window[index] = 0 }
    }

    private func logReadProblem(_ what: String) {
        guard let suppressed = logLimiter.admit() else { return }
        var message = "fw_cfg: reading item content \(what); the guest reads zeros there"
        if suppressed > 0 { message += " (\(suppressed) similar messages suppressed)" }
        Log.warning(message)
    }
}

/// Assembles the items of a `FirmwareConfig` as boot-protocol.md lists them.
///
/// The signature, ID, file directory, and the RAM, CPU, command line and
/// initrd items are always present (an absent initrd has size 0, an absent
/// command line is the empty string); anything else is added by key or as a
/// named file.
public struct FirmwareConfigBuilder: Sendable {
    private var ramSize: UInt64
    private var bootCPUs: UInt16
    private var maxCPUs: UInt16
    private var commandLine: [UInt8] = [0]
    private var initrd: FirmwareConfig.Item?
    private var extraItems: [UInt16: FirmwareConfig.Item] = [:]
    private var files: [(name: String, item: FirmwareConfig.Item)] = []
    private var fileNames: Set<String> = []

    /// Keys the builder fills in itself.
    private static let generatedKeys: Set<UInt16> = [
        FirmwareConfig.Key.signature, FirmwareConfig.Key.id, FirmwareConfig.Key.ramSize,
        FirmwareConfig.Key.cpuCount, FirmwareConfig.Key.initrdSize, FirmwareConfig.Key.maxCPUs,
        FirmwareConfig.Key.initrdData, FirmwareConfig.Key.commandLineSize,
        FirmwareConfig.Key.commandLineData, FirmwareConfig.Key.fileDirectory,
    ]

    /// `maxCPUs` defaults to `bootCPUs` (no CPU hotplug).
    public init(ramSize: UInt64, bootCPUs: UInt16, maxCPUs: UInt16? = nil) {
        self.ramSize = ramSize
        self.bootCPUs = bootCPUs
        self.maxCPUs = max(maxCPUs ?? bootCPUs, bootCPUs)
    }

    /// The kernel command line; the guest reads it NUL-terminated, and its
    /// size item counts the NUL.
    public mutating func setCommandLine(_ commandLine: String) {
        self.commandLine = Array(commandLine.utf8) + [0]
    }

    public mutating func setInitrd(_ bytes: [UInt8]) throws(FirmwareConfigError) {
        initrd = try Self.item(.bytes(bytes), count: bytes.count, what: "initrd")
    }

    /// An initrd read from `content` as the guest reads it.
    public mutating func setInitrd(_ content: some FirmwareConfigContent) throws(FirmwareConfigError) {
        initrd = try Self.item(.lazy(content), count: content.count, what: "initrd")
    }

    /// Sets a keyed item other than the ones the builder generates, such as
    /// `Key.uuid`, or an architecture-local one (`Key.archLocalBit | n`).
    /// Keys 0x20 and up belong to files.
    public mutating func setItem(_ key: UInt16, _ bytes: [UInt8]) throws(FirmwareConfigError) {
        try setItem(key, .bytes(bytes), count: bytes.count)
    }

    public mutating func setItem(_ key: UInt16, _ content: some FirmwareConfigContent) throws(FirmwareConfigError) {
        try setItem(key, .lazy(content), count: content.count)
    }

    /// Adds a named file (such as "etc/e820"). Selectors are assigned when
    /// the device is built: 0x20 upward in name order.
    public mutating func addFile(named name: String, _ bytes: [UInt8]) throws(FirmwareConfigError) {
        try addFile(named: name, .bytes(bytes), count: bytes.count)
    }

    public mutating func addFile(named name: String, _ content: some FirmwareConfigContent) throws(FirmwareConfigError) {
        try addFile(named: name, .lazy(content), count: content.count)
    }

    public func build() -> FirmwareConfig {
        typealias Key = FirmwareConfig.Key
        var items = extraItems
        func put(_ key: UInt16, _ bytes: [UInt8]) {
            items[key] = FirmwareConfig.Item(storage: .bytes(bytes), count: bytes.count)
        }
        put(Key.signature, Array("QEMU".utf8))
        put(Key.id, littleEndian(FirmwareConfig.features))
        put(Key.ramSize, littleEndian(ramSize))
        put(Key.cpuCount, littleEndian(bootCPUs))
        put(Key.maxCPUs, littleEndian(maxCPUs))
        put(Key.commandLineSize, littleEndian(UInt32(commandLine.count)))
        put(Key.commandLineData, commandLine)
        let initrd = initrd ?? FirmwareConfig.Item(storage: .bytes([]), count: 0)
        put(Key.initrdSize, littleEndian(UInt32(initrd.count)))
        items[Key.initrdData] = initrd

        // Modern QEMU keeps the directory sorted by name (strcmp order) and
        // numbers the selectors in that order.
        let sorted = files.sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
        var directory = bigEndian(UInt32(sorted.count))
        var named: [(name: String, selector: UInt16)] = []
        for (index, file) in sorted.enumerated() {
            let selector = Key.firstFile + UInt16(index)
            items[selector] = file.item
            named.append((file.name, selector))
            directory += bigEndian(UInt32(file.item.count))
            directory += bigEndian(selector)
            directory += [0, 0]
            var name = Array(file.name.utf8)
            name += repeatElement(0, count: FirmwareConfig.fileNameSize - name.count)
            directory += name
        }
        put(Key.fileDirectory, directory)
        return FirmwareConfig(items: items, files: named)
    }

    private mutating func setItem(_ key: UInt16, _ storage: FirmwareConfig.Storage, count: Int) throws(FirmwareConfigError) {
        let index = key & ~FirmwareConfig.Key.archLocalBit
        guard key & FirmwareConfig.Key.writeBit == 0, index < FirmwareConfig.Key.firstFile,
              !Self.generatedKeys.contains(key)
        else { throw .reservedKey(key) }
        extraItems[key] = try Self.item(storage, count: count, what: "0x\(String(key, radix: 16))")
    }

    private mutating func addFile(named name: String, _ storage: FirmwareConfig.Storage, count: Int) throws(FirmwareConfigError) {
        let length = name.utf8.count
        guard length > 0, length < FirmwareConfig.fileNameSize, !name.utf8.contains(0) else {
            throw .invalidFileName(name)
        }
        guard !fileNames.contains(name) else { throw .duplicateFileName(name) }
        guard files.count < Int(FirmwareConfig.Key.writeBit - FirmwareConfig.Key.firstFile) else {
            throw .tooManyFiles
        }
        files.append((name, try Self.item(storage, count: count, what: "\"\(name)\"")))
        fileNames.insert(name)
    }

    private static func item(_ storage: FirmwareConfig.Storage, count: Int, what: String) throws(FirmwareConfigError) -> FirmwareConfig.Item {
        guard count >= 0, count <= Int(UInt32.max) else { throw .itemTooLarge(what: what, count: count) }
        return FirmwareConfig.Item(storage: storage, count: count)
    }
}

private func littleEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    (0..<(T.bitWidth / 8)).map { UInt8(truncatingIfNeeded: value >> ($0 * 8)) }
}

private func bigEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    littleEndian(value).reversed()
}

import SwiftletMemory

/// A Multiboot 0.6.96 header (section 3.1): magic, flags and checksum,
/// 4-byte aligned in the first 8192 bytes of the image, and the address
/// fields when flag 16 is set.
public struct MultibootHeader: Hashable, Sendable {
    public static let magic: UInt32 = 0x1BAD_B002
    /// What the boot loader leaves in EAX (section 3.2).
    public static let bootloaderMagic: UInt32 = 0x2BAD_B002
    public static let searchLimit = 8192

    /// Flag bits (section 3.1.2). Bits 0–15 are requirements the boot
    /// loader must refuse if it cannot meet them; 16–31 are optional.
    public static let pageAlignModules: UInt32 = 1 << 0
    public static let memoryInformation: UInt32 = 1 << 1
    public static let videoMode: UInt32 = 1 << 2
    public static let addressFields: UInt32 = 1 << 16
    static let supportedRequirements = pageAlignModules | memoryInformation | videoMode

    /// The header address fields (section 3.1.3): physical addresses that
    /// replace the executable format's own headers (the "a.out kludge").
    public struct Addresses: Hashable, Sendable {
        /// Where the header's first byte is loaded; ties file offsets to addresses.
        public var header: UInt32
        /// Where loading starts; the file offset is the header's minus (header - load).
        public var load: UInt32
        /// End of the loaded bytes; 0 loads to the end of the file.
        public var loadEnd: UInt32
        /// End of the zeroed bss; 0 means no bss.
        public var bssEnd: UInt32
        public var entry: UInt32

        public init(header: UInt32, load: UInt32, loadEnd: UInt32, bssEnd: UInt32, entry: UInt32) {
            self.header = header
            self.load = load
            self.loadEnd = loadEnd
            self.bssEnd = bssEnd
            self.entry = entry
        }
    }

    /// Byte offset of the header in the image.
    public var offset: Int
    public var flags: UInt32
    public var addresses: Addresses?

    public init(offset: Int, flags: UInt32, addresses: Addresses?) {
        self.offset = offset
        self.flags = flags
        self.addresses = addresses
    }

    public var wantsVideoMode: Bool { flags & Self.videoMode != 0 }

    /// What a search of an image's first bytes found.
    public enum Search: Hashable, Sendable {
        case found(MultibootHeader)
        /// The magic without a valid checksum (and no valid header after it):
        /// where it was and what magic + flags + checksum came to.
        case badChecksum(offset: Int, sum: UInt32)
        case notFound
    }

    /// Looks for the first valid header in `head`, the image's first bytes
    /// (at most `searchLimit` are looked at). A valid header that requires
    /// something Swiftlet cannot do throws: the specification says to refuse
    /// the image then, not to boot it some other way.
    public static func search(_ head: [UInt8]) throws(BootProblem) -> Search {
        let limit = min(head.count, searchLimit)
        var firstBadChecksum: (offset: Int, sum: UInt32)?
        var offset = 0
        while offset + 12 <= limit {
            let fields = LittleEndianReader(head, at: offset)
            if fields.u32(0) == magic {
                let flags = fields.u32(4)
                let sum = magic &+ flags &+ fields.u32(8)
                if sum == 0 {
                    return .found(try MultibootHeader(head, at: offset, limit: limit, flags: flags))
                }
                if firstBadChecksum == nil { firstBadChecksum = (offset, sum) }
            }
            offset += 4
        }
        if let bad = firstBadChecksum { return .badChecksum(offset: bad.offset, sum: bad.sum) }
        return .notFound
    }

    private init(_ head: [UInt8], at offset: Int, limit: Int, flags: UInt32) throws(BootProblem) {
        let unsupported = flags & 0xFFFF & ~Self.supportedRequirements
        if unsupported != 0 { throw .unsupportedMultibootFlag(bit: unsupported.trailingZeroBitCount) }
        self.offset = offset
        self.flags = flags
        guard flags & Self.addressFields != 0 else { return }
        // Only the fields Swiftlet reads must be there; the video fields
        // (offsets 32–47) are ignored, so an image may end before them.
        let end = offset + 32
        guard end <= limit else {
            if limit < Self.searchLimit {
                throw .truncated(.multibootHeader(offset: offset), end: UInt64(end), fileSize: UInt64(limit))
            }
            throw .multibootFieldsBeyondSearchLimit(offset: offset, end: end)
        }
        let fields = LittleEndianReader(head, at: offset)
        addresses = Addresses(header: fields.u32(12), load: fields.u32(16), loadEnd: fields.u32(20),
                              bssEnd: fields.u32(24), entry: fields.u32(28))
    }
}

/// Where the address fields of a Multiboot header put the image: `fileSize`
/// bytes from `fileOffset` at `loadAddress`, zeroed up to `memorySize`.
public struct MultibootLoadLayout: Hashable, Sendable {
    public var fileOffset: UInt64
    public var loadAddress: UInt64
    public var fileSize: UInt64
    public var memorySize: UInt64
    public var entry: UInt64

    public init(fileOffset: UInt64, loadAddress: UInt64, fileSize: UInt64, memorySize: UInt64, entry: UInt64) {
        self.fileOffset = fileOffset
        self.loadAddress = loadAddress
        self.fileSize = fileSize
        self.memorySize = memorySize
        self.entry = entry
    }

    public var range: GuestRange { GuestRange(start: GuestAddress(loadAddress), length: memorySize) }

    /// Applies section 3.1.3 to a header found `headerOffset` bytes into an
    /// image of `imageSize` bytes.
    public init(_ addresses: MultibootHeader.Addresses, headerOffset: Int, imageSize: UInt64) throws(BootProblem) {
        guard addresses.load <= addresses.header else {
            throw .multibootHeaderBelowLoadAddress(header: addresses.header, load: addresses.load)
        }
        let lead = UInt64(addresses.header - addresses.load)
        guard lead <= UInt64(headerOffset) else {
            throw .multibootLoadBeforeFileStart(offset: headerOffset, header: addresses.header, load: addresses.load)
        }
        fileOffset = UInt64(headerOffset) - lead
        loadAddress = UInt64(addresses.load)
        if addresses.loadEnd == 0 {
            guard fileOffset <= imageSize else {
                throw .truncated(.multibootImage, end: fileOffset, fileSize: imageSize)
            }
            fileSize = imageSize - fileOffset
        } else {
            guard addresses.loadEnd >= addresses.load else {
                throw .multibootLoadEndBelowLoadAddress(loadEnd: addresses.loadEnd, load: addresses.load)
            }
            fileSize = UInt64(addresses.loadEnd - addresses.load)
            guard fileOffset + fileSize <= imageSize else {
                throw .truncated(.multibootImage, end: fileOffset + fileSize, fileSize: imageSize)
            }
        }
        // Only "to the end of the file" can make this large; refuse before
        // any sum can overflow.
        guard fileSize <= X86Layout.fourGiB else {
            throw .above4GiB(.multibootImage, address: loadAddress, size: fileSize)
        }
        let loadEnd = loadAddress + fileSize
        if addresses.bssEnd == 0 {
            memorySize = fileSize
        } else {
            guard UInt64(addresses.bssEnd) >= loadEnd else {
                throw .multibootBSSEndBelowLoadEnd(bssEnd: addresses.bssEnd, loadEnd: loadEnd)
            }
            memorySize = UInt64(addresses.bssEnd) - loadAddress
        }
        guard loadAddress + memorySize <= X86Layout.fourGiB else {
            throw .above4GiB(.multibootImage, address: loadAddress, size: memorySize)
        }
        entry = UInt64(addresses.entry)
        guard entry >= loadAddress, entry - loadAddress < memorySize else {
            throw .multibootEntryOutsideImage(entry: addresses.entry, image: range)
        }
    }
}

import Testing
@testable import SwiftletACPI

/// Little-endian field access into a table, for reading tables back.
struct TableReader {
    let bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    init(_ bytes: ArraySlice<UInt8>) { self.bytes = Array(bytes) }

    func u8(_ offset: Int) -> UInt8 { bytes[offset] }
    func u16(_ offset: Int) -> UInt16 { UInt16(integer(offset, 2)) }
    func u32(_ offset: Int) -> UInt32 { UInt32(integer(offset, 4)) }
    func u64(_ offset: Int) -> UInt64 { integer(offset, 8) }
    func integer(_ offset: Int, _ count: Int) -> UInt64 {
        (0..<count).reversed().reduce(0) { $0 << 8 | UInt64(bytes[offset + $1]) }
    }
    func ascii(_ offset: Int, _ count: Int) -> String { String(decoding: bytes[offset..<offset + count], as: UTF8.self) }
    func gas(_ offset: Int) -> GenericAddress {
        GenericAddress(space: GenericAddress.Space(rawValue: u8(offset))!, bitWidth: u8(offset + 1),
                       bitOffset: u8(offset + 2), accessSize: GenericAddress.AccessSize(rawValue: u8(offset + 3))!,
                       address: u64(offset + 4))
    }
}

/// A decoded system description table header (ACPI 6.5, 5.2.6).
struct DecodedHeader: Equatable {
    var signature: String, length: UInt32, revision: UInt8, checksumOK: Bool
    var oemID: String, oemTableID: String, oemRevision: UInt32, creatorID: String, creatorRevision: UInt32

    init(_ bytes: [UInt8]) {
        let r = TableReader(bytes)
        signature = r.ascii(0, 4)
        length = r.u32(4)
        revision = r.u8(8)
        checksumOK = ACPIChecksum.sum(bytes) == 0
        oemID = r.ascii(10, 6)
        oemTableID = r.ascii(16, 8)
        oemRevision = r.u32(24)
        creatorID = r.ascii(28, 4)
        creatorRevision = r.u32(32)
    }
}

/// Checks the header every Swiftlet table must have and returns it.
@discardableResult
func expectValidHeader(_ table: [UInt8], signature: String, revision: UInt8,
                       sourceLocation: SourceLocation = #_sourceLocation) -> DecodedHeader {
    let header = DecodedHeader(table)
    #expect(header.signature == signature, sourceLocation: sourceLocation)
    #expect(Int(header.length) == table.count, "length field", sourceLocation: sourceLocation)
    #expect(header.revision == revision, sourceLocation: sourceLocation)
    #expect(header.checksumOK, "checksum", sourceLocation: sourceLocation)
    #expect(header.oemID == "SWIFTL", sourceLocation: sourceLocation)
    #expect(header.oemTableID == "SWLT" + signature, sourceLocation: sourceLocation)
    #expect(header.oemRevision == 1, sourceLocation: sourceLocation)
    #expect(header.creatorID == "SWFT", sourceLocation: sourceLocation)
    #expect(header.creatorRevision == 1, sourceLocation: sourceLocation)
    return header
}

/// MADT interrupt controller structures read back (type, bytes).
func madtEntries(_ table: [UInt8]) -> [[UInt8]] {
    var entries: [[UInt8]] = []
    var offset = 44
    while offset < table.count {
        let length = Int(table[offset + 1])
        precondition(length >= 2 && offset + length <= table.count, "MADT entry overruns the table")
        entries.append(Array(table[offset..<offset + length]))
        offset += length
    }
    return entries
}

/// What a resource template holds: its descriptors (each with its header
/// bytes) up to and including the End Tag.
func resourceDescriptors(_ template: [UInt8]) throws -> [[UInt8]] {
    struct Malformed: Error {}
    var descriptors: [[UInt8]] = []
    var offset = 0
    while offset < template.count {
        let tag = template[offset]
        let length = tag & 0x80 != 0
            ? 3 + (Int(template[offset + 1]) | Int(template[offset + 2]) << 8)
            : 1 + Int(tag & 0x07)
        guard offset + length <= template.count else { throw Malformed() }
        descriptors.append(Array(template[offset..<offset + length]))
        offset += length
        if tag == 0x79 {
            guard offset == template.count else { throw Malformed() }
            return descriptors
        }
    }
    throw Malformed()
}

/// A minimal AML reader: walks the object-defining terms of a definition
/// block (Scope, Device, Name, Method, OperationRegion, Field, Mutex) and
/// records every object under its absolute path. Method bodies are kept as
/// bytes, not parsed; anything else at object level is an error.
struct AMLNamespace {
    enum Object: Equatable {
        case device
        case name(Value)
        case method(arguments: Int, serialized: Bool, body: [UInt8])
        case region(space: UInt8, offset: UInt64, length: UInt64)
        case field(region: String, flags: UInt8, bitOffset: Int, bits: Int)
        case mutex(syncLevel: UInt8)
    }

    enum Value: Equatable {
        case integer(UInt64)
        case string(String)
        case buffer([UInt8])
        case package([Value])
    }

    struct ParseError: Error, CustomStringConvertible {
        let description: String
    }

    private(set) var objects: [String: Object] = [:]
    /// Paths in the order they were defined.
    private(set) var order: [String] = []

    init(aml: [UInt8]) throws {
        var reader = Reader(bytes: aml, position: 0)
        try parseTermList(&reader, end: aml.count, scope: [])
    }

    subscript(path: String) -> Object? { objects[path] }

    func value(_ path: String) -> Value? {
        if case .name(let value) = objects[path] { return value }
        return nil
    }

    /// Paths of the devices directly inside `scope` ("\\_SB_.CPUS" → its children).
    func devices(in scope: String) -> [String] {
        order.filter { path in
            guard objects[path] == .device, path.hasPrefix(scope + ".") else { return false }
            return !path.dropFirst(scope.count + 1).contains(".")
        }
    }

    struct Reader {
        let bytes: [UInt8]
        var position: Int
        mutating func byte() throws -> UInt8 {
            guard position < bytes.count else { throw ParseError(description: "unexpected end of AML") }
            defer { position += 1 }
            return bytes[position]
        }
        mutating func take(_ count: Int) throws -> [UInt8] {
            guard position + count <= bytes.count else { throw ParseError(description: "unexpected end of AML") }
            defer { position += count }
            return Array(bytes[position..<position + count])
        }
        mutating func littleEndian(_ count: Int) throws -> UInt64 {
            try take(count).reversed().reduce(0) { $0 << 8 | UInt64($1) }
        }
        /// A PkgLength; returns the end offset of the package it starts.
        mutating func packageEnd() throws -> Int {
            let start = position
            let length = try Self.pkgLength(&self)
            let end = start + length
            guard end <= bytes.count else { throw ParseError(description: "package runs past the end at \(start)") }
            return end
        }
        /// A raw PkgLength value (also the form of field widths).
        static func pkgLength(_ reader: inout Reader) throws -> Int {
            let lead = try reader.byte()
            let follow = Int(lead >> 6)
            if follow == 0 { return Int(lead & 0x3f) }
            guard lead & 0x30 == 0 else { throw ParseError(description: "PkgLength bits 5-4 set in a multi-byte length") }
            var value = Int(lead & 0x0f)
            for index in 0..<follow { value |= Int(try reader.byte()) << (4 + 8 * index) }
            return value
        }
    }

    private mutating func define(_ path: String, _ object: Object) throws {
        guard objects[path] == nil else { throw ParseError(description: "\(path) defined twice") }
        objects[path] = object
        order.append(path)
    }

    private static func path(_ segments: [String]) -> String { "\\" + segments.joined(separator: ".") }

    /// Reads a NameString and resolves it against `scope`.
    private func nameString(_ reader: inout Reader, scope: [String]) throws -> [String] {
        var base = scope
        if reader.bytes[reader.position] == 0x5c {
            base = []
            reader.position += 1
        } else {
            while reader.bytes[reader.position] == 0x5e {
                guard !base.isEmpty else { throw ParseError(description: "^ above the root") }
                base.removeLast()
                reader.position += 1
            }
        }
        let count: Int
        switch reader.bytes[reader.position] {
        case 0x00: reader.position += 1; count = 0
        case 0x2e: reader.position += 1; count = 2
        case 0x2f: reader.position += 1; count = Int(try reader.byte())
        default: count = 1
        }
        for _ in 0..<count {
            let segment = try reader.take(4)
            let valid = segment.enumerated().allSatisfy { index, c in
                (0x41...0x5a).contains(c) || c == 0x5f || (index > 0 && (0x30...0x39).contains(c))
            }
            guard valid else { throw ParseError(description: "invalid NameSeg \(segment)") }
            base.append(String(decoding: segment, as: UTF8.self))
        }
        return base
    }

    private func integerTerm(_ reader: inout Reader) throws -> UInt64 {
        switch try reader.byte() {
        case 0x00: 0
        case 0x01: 1
        case 0xff: .max
        case 0x0a: try reader.littleEndian(1)
        case 0x0b: try reader.littleEndian(2)
        case 0x0c: try reader.littleEndian(4)
        case 0x0e: try reader.littleEndian(8)
        case let op: throw ParseError(description: "expected an integer, found opcode \(op)")
        }
    }

    private func dataObject(_ reader: inout Reader) throws -> Value {
        switch reader.bytes[reader.position] {
        case 0x0d:
            reader.position += 1
            var characters: [UInt8] = []
            while case let c = try reader.byte(), c != 0 { characters.append(c) }
            return .string(String(decoding: characters, as: UTF8.self))
        case 0x11:
            reader.position += 1
            let end = try reader.packageEnd()
            let size = Int(try integerTerm(&reader))
            let contents = try reader.take(end - reader.position)
            guard contents.count == size else { throw ParseError(description: "buffer size \(size) != \(contents.count) bytes") }
            return .buffer(contents)
        case 0x12:
            reader.position += 1
            let end = try reader.packageEnd()
            let count = Int(try reader.byte())
            var elements: [Value] = []
            while reader.position < end { elements.append(try dataObject(&reader)) }
            guard elements.count == count, reader.position == end else {
                throw ParseError(description: "package of \(count) elements holds \(elements.count)")
            }
            return .package(elements)
        default:
            return .integer(try integerTerm(&reader))
        }
    }

    private mutating func parseTermList(_ reader: inout Reader, end: Int, scope: [String]) throws {
        while reader.position < end {
            let opcode = try reader.byte()
            switch opcode {
            case 0x08:  // Name
                let name = try nameString(&reader, scope: scope)
                try define(Self.path(name), .name(try dataObject(&reader)))
            case 0x10:  // Scope
                let packageEnd = try reader.packageEnd()
                let name = try nameString(&reader, scope: scope)
                try parseTermList(&reader, end: packageEnd, scope: name)
            case 0x14:  // Method
                let packageEnd = try reader.packageEnd()
                let name = try nameString(&reader, scope: scope)
                let flags = try reader.byte()
                let body = try reader.take(packageEnd - reader.position)
                try define(Self.path(name), .method(arguments: Int(flags & 7), serialized: flags & 8 != 0, body: body))
            case 0x5b:
                let extended = try reader.byte()
                switch extended {
                case 0x82:  // Device
                    let packageEnd = try reader.packageEnd()
                    let name = try nameString(&reader, scope: scope)
                    try define(Self.path(name), .device)
                    try parseTermList(&reader, end: packageEnd, scope: name)
                case 0x80:  // OperationRegion
                    let name = try nameString(&reader, scope: scope)
                    let space = try reader.byte()
                    let offset = try integerTerm(&reader)
                    let length = try integerTerm(&reader)
                    try define(Self.path(name), .region(space: space, offset: offset, length: length))
                case 0x81:  // Field
                    let packageEnd = try reader.packageEnd()
                    let region = Self.path(try nameString(&reader, scope: scope))
                    let flags = try reader.byte()
                    var bit = 0
                    while reader.position < packageEnd {
                        if reader.bytes[reader.position] == 0x00 {
                            reader.position += 1
                            bit += try Reader.pkgLength(&reader)
                        } else {
                            let unit = String(decoding: try reader.take(4), as: UTF8.self)
                            let bits = try Reader.pkgLength(&reader)
                            try define(Self.path(scope + [unit]),
                                       .field(region: region, flags: flags, bitOffset: bit, bits: bits))
                            bit += bits
                        }
                    }
                case 0x01:  // Mutex
                    let name = try nameString(&reader, scope: scope)
                    try define(Self.path(name), .mutex(syncLevel: try reader.byte()))
                default:
                    throw ParseError(description: "unexpected extended opcode 0x5B \(extended) at \(reader.position - 2)")
                }
            default:
                throw ParseError(description: "unexpected opcode \(opcode) at \(reader.position - 1)")
            }
        }
        guard reader.position == end else { throw ParseError(description: "term list overruns its package") }
    }
}

/// The bytes of one table of a blob.
func tableBytes(_ blob: ACPIBlob, _ signature: String) -> [UInt8] {
    let table = blob.table(signature)!
    let start = Int(table.address - blob.address)
    return Array(blob.bytes[start..<start + table.length])
}

/// One four-character AML name segment (ACPI 6.5, 20.2.2: NameSeg).
///
/// The first character is `A`–`Z` or `_`, the others `A`–`Z`, `0`–`9` or
/// `_`. Shorter names are padded with `_`, as ASL compilers do: `"SB"` is
/// `SB__` and `"_SB"` is `_SB_`.
public struct AMLNameSegment: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    /// The four ASCII bytes.
    public let bytes: [UInt8]

    public init(validating text: String) throws(ACPIError) {
        let characters = Array(text.utf8)
        guard (1...4).contains(characters.count) else {
            throw .invalidName(text, reason: "a name segment has 1 to 4 characters")
        }
        for (index, character) in characters.enumerated() {
            let isLead = (0x41...0x5a).contains(character) || character == 0x5f
            let isDigit = (0x30...0x39).contains(character)
            guard isLead || (index > 0 && isDigit) else {
                throw .invalidName(text, reason: index == 0
                    ? "a name segment starts with A-Z or _"
                    : "name segments hold A-Z, 0-9 and _ only")
            }
        }
        bytes = characters + Array(repeating: 0x5f, count: 4 - characters.count)
    }

    /// A segment written in the source; an invalid one stops the program.
    public init(stringLiteral text: String) {
        do { try self.init(validating: text) } catch { preconditionFailure(error.description) }
    }

    public var description: String { String(decoding: bytes, as: UTF8.self) }
}

/// An AML NameString (ACPI 6.5, 20.2.2): an optional root (`\`) or parent
/// (`^`, repeatable) prefix and zero or more segments separated by dots,
/// such as `"\_SB.PCI0"`, `"^^CSTA"` or `"COM1"`.
public struct AMLName: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let isRooted: Bool
    public let parentPrefixes: Int
    public let segments: [AMLNameSegment]

    public init(validating text: String) throws(ACPIError) {
        var rest = Substring(text)
        isRooted = rest.first == "\\"
        if isRooted { rest = rest.dropFirst() }
        var parents = 0
        while rest.first == "^" {
            parents += 1
            rest = rest.dropFirst()
        }
        if isRooted && parents > 0 {
            throw .invalidName(text, reason: "a name has a root prefix or parent prefixes, not both")
        }
        parentPrefixes = parents
        if rest.isEmpty {
            // `\` alone is the root; a name that is only `^` prefixes names nothing useful.
            guard isRooted else { throw .invalidName(text, reason: "empty name") }
            segments = []
        } else {
            var parsed: [AMLNameSegment] = []
            for part in rest.split(separator: ".", omittingEmptySubsequences: false) {
                do {
                    parsed.append(try AMLNameSegment(validating: String(part)))
                } catch {
                    throw .invalidName(text, reason: error.reasonText)
                }
            }
            guard parsed.count <= 255 else { throw .invalidName(text, reason: "more than 255 segments") }
            segments = parsed
        }
    }

    /// A name written in the source; an invalid one stops the program.
    public init(stringLiteral text: String) {
        do { try self.init(validating: text) } catch { preconditionFailure(error.description) }
    }

    public init(segment: AMLNameSegment) {
        isRooted = false
        parentPrefixes = 0
        segments = [segment]
    }

    /// The NameString bytes: prefixes, then NullName (no segment), a NameSeg,
    /// DualNamePrefix with two, or MultiNamePrefix, a count and the segments.
    public var encoded: [UInt8] {
        var bytes: [UInt8] = isRooted ? [AMLEncoding.Opcode.rootChar] : []
        bytes += Array(repeating: AMLEncoding.Opcode.parentPrefixChar, count: parentPrefixes)
        switch segments.count {
        case 0: bytes.append(0x00)
        case 1: break
        case 2: bytes.append(AMLEncoding.Opcode.dualNamePrefix)
        default: bytes += [AMLEncoding.Opcode.multiNamePrefix, UInt8(segments.count)]
        }
        for segment in segments { bytes += segment.bytes }
        return bytes
    }

    /// The name as ASL writes it, with every segment padded to four characters.
    public var description: String {
        (isRooted ? "\\" : "") + String(repeating: "^", count: parentPrefixes)
            + segments.map(\.description).joined(separator: ".")
    }
}

extension ACPIError {
    fileprivate var reasonText: String {
        if case .invalidName(let name, let reason) = self { return "segment \"\(name)\": \(reason)" }
        return description
    }
}

/// What can go wrong when building ACPI tables or AML from values that
/// come from outside the program (a configuration, a name built at run
/// time). Mistakes in literals written in the source (`"COM1"`,
/// `.eisaID("PNP0501")`) are programming errors and stop the program
/// instead, the way an out-of-range array index does.
public enum ACPIError: Error, Hashable, Sendable, CustomStringConvertible {
    /// An AML name that is not a valid NameString (ACPI 6.5, 20.2.2).
    case invalidName(String, reason: String)
    /// An EISA ID that is not three capital letters and four hex digits.
    case invalidEISAID(String)
    /// A string that AML cannot hold (ASCII 0x01–0x7F only).
    case invalidString(String)
    /// A table identifier (signature, OEM ID, ...) of the wrong length or
    /// with non-ASCII characters.
    case invalidIdentifier(String, field: String, length: Int)
    /// The machine description makes no sense (no CPUs, more boot CPUs
    /// than possible ones, ...).
    case invalidConfiguration(String)
    /// The tables need more room than the space they were given.
    case doesNotFit(needed: UInt64, available: UInt64)

    public var description: String {
        switch self {
        case .invalidName(let name, let reason): "invalid AML name \"\(name)\": \(reason)"
        case .invalidEISAID(let id): "invalid EISA ID \"\(id)\": expected three capital letters and four hex digits"
        case .invalidString(let string): "AML strings hold ASCII 0x01-0x7F only: \"\(string)\""
        case .invalidIdentifier(let value, let field, let length):
            "\(field) must be \(length) ASCII characters at most: \"\(value)\""
        case .invalidConfiguration(let reason): "invalid ACPI configuration: \(reason)"
        case .doesNotFit(let needed, let available):
            "the ACPI tables need \(needed) bytes but only \(available) are available"
        }
    }
}

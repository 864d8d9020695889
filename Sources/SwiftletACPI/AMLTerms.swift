/// An AML term that stands in a term list: a named object (Name, Device,
/// Method, OperationRegion, ...), a namespace modifier (Scope) or a
/// statement (If, While, Store, Notify, Return, ...). Built with the
/// functions of `AML`; its bytes are final once built.
public struct AMLTerm: Hashable, Sendable {
    public let bytes: [UInt8]
    public init(rawBytes: [UInt8]) { bytes = rawBytes }
}

/// An AML expression (a TermArg, ACPI 6.5, 20.2.5): a constant, a local or
/// argument, a named object's value, a method call, or an operator applied
/// to expressions. Integer and string literals are constants.
///
/// An expression can also stand alone in a term list (a method call, an
/// `Acquire`, an `Increment`): the AML grammar allows any Type 2 opcode
/// there, its result discarded.
public struct AMLExpression: Hashable, Sendable, ExpressibleByIntegerLiteral, ExpressibleByStringLiteral {
    public let bytes: [UInt8]
    public init(rawBytes: [UInt8]) { bytes = rawBytes }

    public init(integerLiteral value: UInt64) { bytes = AMLEncoding.integer(value) }
    public init(stringLiteral text: String) { bytes = AMLData.string(text).bytes }

    /// A constant data object.
    public static func data(_ data: AMLData) -> AMLExpression { AMLExpression(rawBytes: data.bytes) }
    public static func integer(_ value: UInt64) -> AMLExpression { .data(.integer(value)) }
    public static func string(_ text: String) -> AMLExpression { .data(.string(text)) }
    public static func buffer(_ contents: [UInt8]) -> AMLExpression { .data(.buffer(contents)) }
    public static func package(_ elements: [AMLData]) -> AMLExpression { .data(.package(elements)) }
    public static func eisaID(_ id: EISAID) -> AMLExpression { .data(.eisaID(id)) }

    /// LocalN (0–7), a method's scratch variables.
    public static func local(_ index: Int) -> AMLExpression { AMLExpression(rawBytes: AMLTarget.local(index).bytes) }
    /// ArgN (0–6), a method's arguments.
    public static func arg(_ index: Int) -> AMLExpression { AMLExpression(rawBytes: AMLTarget.arg(index).bytes) }
    /// The value of the named object `name` (a Name, a field unit, ...). A
    /// method is evaluated with no arguments; use `call` to pass some.
    public static func name(_ name: AMLName) -> AMLExpression { AMLExpression(rawBytes: name.encoded) }

    /// A method invocation: the method's name followed by its arguments.
    /// The argument count must match the method's declaration, which AML
    /// readers look up to parse the call.
    public static func call(_ method: AMLName, _ arguments: AMLExpression...) -> AMLExpression {
        call(method, arguments: arguments)
    }

    public static func call(_ method: AMLName, arguments: [AMLExpression]) -> AMLExpression {
        precondition(arguments.count <= 7, "AML methods take at most 7 arguments")
        return AMLExpression(rawBytes: method.encoded + arguments.flatMap(\.bytes))
    }

    // Logical operators (20.2.5.4, Type 2 opcodes). They return Ones (true) or Zero.

    public static func lEqual(_ a: AMLExpression, _ b: AMLExpression) -> AMLExpression {
        op(AMLEncoding.Opcode.logicalEqual, a, b)
    }
    public static func lNotEqual(_ a: AMLExpression, _ b: AMLExpression) -> AMLExpression { lNot(lEqual(a, b)) }
    public static func lLess(_ a: AMLExpression, _ b: AMLExpression) -> AMLExpression {
        op(AMLEncoding.Opcode.logicalLess, a, b)
    }
    public static func lLessEqual(_ a: AMLExpression, _ b: AMLExpression) -> AMLExpression { lNot(lGreater(a, b)) }
    public static func lGreater(_ a: AMLExpression, _ b: AMLExpression) -> AMLExpression {
        op(AMLEncoding.Opcode.logicalGreater, a, b)
    }
    public static func lGreaterEqual(_ a: AMLExpression, _ b: AMLExpression) -> AMLExpression { lNot(lLess(a, b)) }
    public static func lAnd(_ a: AMLExpression, _ b: AMLExpression) -> AMLExpression {
        op(AMLEncoding.Opcode.logicalAnd, a, b)
    }
    public static func lOr(_ a: AMLExpression, _ b: AMLExpression) -> AMLExpression {
        op(AMLEncoding.Opcode.logicalOr, a, b)
    }
    public static func lNot(_ a: AMLExpression) -> AMLExpression { op(AMLEncoding.Opcode.logicalNot, a) }

    // Integer operators: Operand Operand Target. The result also goes to
    // `target` unless it is `.none`.

    public static func add(_ a: AMLExpression, _ b: AMLExpression, into target: AMLTarget = .none) -> AMLExpression {
        op(AMLEncoding.Opcode.add, a, b, target)
    }
    public static func subtract(_ a: AMLExpression, _ b: AMLExpression, into target: AMLTarget = .none) -> AMLExpression {
        op(AMLEncoding.Opcode.subtract, a, b, target)
    }
    public static func and(_ a: AMLExpression, _ b: AMLExpression, into target: AMLTarget = .none) -> AMLExpression {
        op(AMLEncoding.Opcode.and, a, b, target)
    }
    public static func or(_ a: AMLExpression, _ b: AMLExpression, into target: AMLTarget = .none) -> AMLExpression {
        op(AMLEncoding.Opcode.or, a, b, target)
    }
    public static func xor(_ a: AMLExpression, _ b: AMLExpression, into target: AMLTarget = .none) -> AMLExpression {
        op(AMLEncoding.Opcode.xor, a, b, target)
    }
    public static func shiftLeft(_ a: AMLExpression, _ count: AMLExpression, into target: AMLTarget = .none) -> AMLExpression {
        op(AMLEncoding.Opcode.shiftLeft, a, count, target)
    }
    public static func shiftRight(_ a: AMLExpression, _ count: AMLExpression, into target: AMLTarget = .none) -> AMLExpression {
        op(AMLEncoding.Opcode.shiftRight, a, count, target)
    }
    public static func not(_ a: AMLExpression, into target: AMLTarget = .none) -> AMLExpression {
        AMLExpression(rawBytes: [AMLEncoding.Opcode.not] + a.bytes + target.bytes)
    }

    /// Increment/Decrement a local, argument or named integer in place.
    public static func increment(_ target: AMLTarget) -> AMLExpression {
        AMLExpression(rawBytes: [AMLEncoding.Opcode.increment] + target.bytes)
    }
    public static func decrement(_ target: AMLTarget) -> AMLExpression {
        AMLExpression(rawBytes: [AMLEncoding.Opcode.decrement] + target.bytes)
    }

    public static func sizeOf(_ object: AMLTarget) -> AMLExpression {
        AMLExpression(rawBytes: [AMLEncoding.Opcode.sizeOf] + object.bytes)
    }

    /// `DerefOf (Index (source, index))`: element `index` of a package,
    /// buffer or string.
    public static func element(_ source: AMLExpression, _ index: AMLExpression) -> AMLExpression {
        AMLExpression(rawBytes: [AMLEncoding.Opcode.derefOf, AMLEncoding.Opcode.index]
            + source.bytes + index.bytes + AMLTarget.none.bytes)
    }

    /// `Acquire (mutex, timeout)`: waits up to `timeout` ms (0xFFFF: forever)
    /// and returns true (Ones) if it timed out.
    public static func acquire(_ mutex: AMLName, timeout: UInt16 = 0xffff) -> AMLExpression {
        AMLExpression(rawBytes: [AMLEncoding.Opcode.extendedPrefix, AMLEncoding.ExtendedOpcode.acquire]
            + mutex.encoded + AMLEncoding.littleEndian(UInt64(timeout), bytes: 2))
    }

    /// `Store (value, target)` as an expression (it returns the value).
    public static func store(_ value: AMLExpression, into target: AMLTarget) -> AMLExpression {
        AMLExpression(rawBytes: [AMLEncoding.Opcode.store] + value.bytes + target.bytes)
    }

    private static func op(_ opcode: UInt8, _ operands: AMLExpression...) -> AMLExpression {
        AMLExpression(rawBytes: [opcode] + operands.flatMap(\.bytes))
    }

    private static func op(_ opcode: UInt8, _ a: AMLExpression, _ b: AMLExpression, _ target: AMLTarget) -> AMLExpression {
        AMLExpression(rawBytes: [opcode] + a.bytes + b.bytes + target.bytes)
    }
}

/// Where a result goes (20.2.5: SuperName, Target): a local, an argument, a
/// named object (a Name or field unit), `Debug`, or nowhere. A string
/// literal is a name.
public struct AMLTarget: Hashable, Sendable, ExpressibleByStringLiteral {
    public let bytes: [UInt8]
    private init(bytes: [UInt8]) { self.bytes = bytes }

    public static func local(_ index: Int) -> AMLTarget {
        precondition((0...7).contains(index), "AML has Local0 to Local7")
        return AMLTarget(bytes: [AMLEncoding.Opcode.local0 + UInt8(index)])
    }
    public static func arg(_ index: Int) -> AMLTarget {
        precondition((0...6).contains(index), "AML has Arg0 to Arg6")
        return AMLTarget(bytes: [AMLEncoding.Opcode.arg0 + UInt8(index)])
    }
    public static func name(_ name: AMLName) -> AMLTarget { AMLTarget(bytes: name.encoded) }
    /// The debug object: a store to it goes to the OS's ACPI debug output.
    public static let debug = AMLTarget(bytes: [AMLEncoding.Opcode.extendedPrefix, AMLEncoding.ExtendedOpcode.debug])
    /// NullName: discard the result.
    public static let none = AMLTarget(bytes: [0x00])

    public init(stringLiteral text: String) { self = .name(AMLName(stringLiteral: text)) }
}

/// Collects the terms of a Scope, Device, Method, If, Else or While body,
/// and of a whole definition block. Plain Swift `if`, `if/else`, `for` and
/// optionals choose which terms are emitted at build time.
@resultBuilder
public enum AMLTermListBuilder {
    public static func buildExpression(_ term: AMLTerm) -> [AMLTerm] { [term] }
    public static func buildExpression(_ terms: [AMLTerm]) -> [AMLTerm] { terms }
    public static func buildExpression(_ expression: AMLExpression) -> [AMLTerm] { [AMLTerm(rawBytes: expression.bytes)] }
    public static func buildBlock(_ parts: [AMLTerm]...) -> [AMLTerm] { parts.flatMap { $0 } }
    public static func buildOptional(_ part: [AMLTerm]?) -> [AMLTerm] { part ?? [] }
    public static func buildEither(first part: [AMLTerm]) -> [AMLTerm] { part }
    public static func buildEither(second part: [AMLTerm]) -> [AMLTerm] { part }
    public static func buildArray(_ parts: [[AMLTerm]]) -> [AMLTerm] { parts.flatMap { $0 } }
    public static func buildLimitedAvailability(_ part: [AMLTerm]) -> [AMLTerm] { part }
}

/// The ASL-shaped constructors of AML terms. Each function is named after
/// its ASL operator and produces the AML bytes of ACPI 6.5, chapter 20.
///
///     AML.Scope("\\_SB_") {
///         AML.Device("COM1") {
///             AML.Name("_HID", .eisaID("PNP0501"))
///             AML.Name("_CRS", .resourceTemplate([.io(min: 0x3f8, max: 0x3f8, alignment: 1, length: 8),
///                                                 .irqNoFlags([4])]))
///         }
///     }
public enum AML {
    /// The bytes of a term list.
    public static func encode(@AMLTermListBuilder _ terms: () -> [AMLTerm]) -> [UInt8] {
        terms().flatMap(\.bytes)
    }

    /// `Name (name, value)`: NameOp NameString DataRefObject.
    public static func Name(_ name: AMLName, _ value: AMLData) -> AMLTerm {
        AMLTerm(rawBytes: [AMLEncoding.Opcode.name] + name.encoded + value.bytes)
    }

    /// `Scope (name) {...}`: ScopeOp PkgLength NameString TermList.
    public static func Scope(_ name: AMLName, @AMLTermListBuilder _ body: () -> [AMLTerm]) -> AMLTerm {
        AMLTerm(rawBytes: [AMLEncoding.Opcode.scope] + AMLEncoding.package(name.encoded + body().flatMap(\.bytes)))
    }

    /// `Device (name) {...}`: ExtOpPrefix DeviceOp (5B 82) PkgLength NameString TermList.
    public static func Device(_ name: AMLName, @AMLTermListBuilder _ body: () -> [AMLTerm]) -> AMLTerm {
        AMLTerm(rawBytes: [AMLEncoding.Opcode.extendedPrefix, AMLEncoding.ExtendedOpcode.device]
            + AMLEncoding.package(name.encoded + body().flatMap(\.bytes)))
    }

    /// `Method (name, arguments, Serialized|NotSerialized, syncLevel) {...}`:
    /// MethodOp PkgLength NameString MethodFlags TermList, where MethodFlags
    /// holds the argument count in bits 2–0, SerializeFlag in bit 3 and the
    /// sync level in bits 7–4.
    public static func Method(_ name: AMLName, arguments: Int = 0, serialized: Bool = false, syncLevel: Int = 0,
                              @AMLTermListBuilder _ body: () -> [AMLTerm]) -> AMLTerm {
        precondition((0...7).contains(arguments), "AML methods take 0 to 7 arguments")
        precondition((0...15).contains(syncLevel), "sync levels are 0 to 15")
        let flags = UInt8(arguments) | (serialized ? 0x08 : 0) | UInt8(syncLevel) << 4
        return AMLTerm(rawBytes: [AMLEncoding.Opcode.method]
            + AMLEncoding.package(name.encoded + [flags] + body().flatMap(\.bytes)))
    }

    /// `If (predicate) {...}`: IfOp PkgLength Predicate TermList.
    public static func If(_ predicate: AMLExpression, @AMLTermListBuilder _ body: () -> [AMLTerm]) -> AMLTerm {
        AMLTerm(rawBytes: [AMLEncoding.Opcode.if] + AMLEncoding.package(predicate.bytes + body().flatMap(\.bytes)))
    }

    /// `If (predicate) {...} Else {...}`: the If followed by ElseOp PkgLength
    /// TermList. An `ElseIf` is an If inside the else body.
    public static func If(_ predicate: AMLExpression, @AMLTermListBuilder _ body: () -> [AMLTerm],
                          @AMLTermListBuilder else elseBody: () -> [AMLTerm]) -> AMLTerm {
        AMLTerm(rawBytes: If(predicate, body).bytes
            + [AMLEncoding.Opcode.else] + AMLEncoding.package(elseBody().flatMap(\.bytes)))
    }

    /// `While (predicate) {...}`: WhileOp PkgLength Predicate TermList.
    public static func While(_ predicate: AMLExpression, @AMLTermListBuilder _ body: () -> [AMLTerm]) -> AMLTerm {
        AMLTerm(rawBytes: [AMLEncoding.Opcode.while] + AMLEncoding.package(predicate.bytes + body().flatMap(\.bytes)))
    }

    /// `Store (value, target)`, ASL+ `target = value`.
    public static func Store(_ value: AMLExpression, _ target: AMLTarget) -> AMLTerm {
        AMLTerm(rawBytes: AMLExpression.store(value, into: target).bytes)
    }

    /// `Return (value)`.
    public static func Return(_ value: AMLExpression) -> AMLTerm {
        AMLTerm(rawBytes: [AMLEncoding.Opcode.return] + value.bytes)
    }

    /// `Notify (object, value)`: sends notification `value` to a device,
    /// processor or thermal zone (0x01 Device Check, 0x03 Eject Request, ...).
    public static func Notify(_ object: AMLName, _ value: AMLExpression) -> AMLTerm {
        AMLTerm(rawBytes: [AMLEncoding.Opcode.notify] + object.encoded + value.bytes)
    }

    /// `Increment (target)`, ASL+ `target++`.
    public static func Increment(_ target: AMLTarget) -> AMLTerm {
        AMLTerm(rawBytes: AMLExpression.increment(target).bytes)
    }

    /// `Decrement (target)`, ASL+ `target--`.
    public static func Decrement(_ target: AMLTarget) -> AMLTerm {
        AMLTerm(rawBytes: AMLExpression.decrement(target).bytes)
    }

    public static func Break() -> AMLTerm { AMLTerm(rawBytes: [AMLEncoding.Opcode.break]) }
    public static func Noop() -> AMLTerm { AMLTerm(rawBytes: [AMLEncoding.Opcode.noop]) }

    /// `Mutex (name, syncLevel)`: ExtOpPrefix MutexOp NameString SyncFlags.
    public static func Mutex(_ name: AMLName, syncLevel: Int = 0) -> AMLTerm {
        precondition((0...15).contains(syncLevel), "sync levels are 0 to 15")
        return AMLTerm(rawBytes: [AMLEncoding.Opcode.extendedPrefix, AMLEncoding.ExtendedOpcode.mutex]
            + name.encoded + [UInt8(syncLevel)])
    }

    /// `Acquire (mutex, timeout)` as a statement (the timed-out result is
    /// dropped; with the default timeout 0xFFFF it waits forever).
    public static func Acquire(_ mutex: AMLName, timeout: UInt16 = 0xffff) -> AMLTerm {
        AMLTerm(rawBytes: AMLExpression.acquire(mutex, timeout: timeout).bytes)
    }

    /// `Release (mutex)`.
    public static func Release(_ mutex: AMLName) -> AMLTerm {
        AMLTerm(rawBytes: [AMLEncoding.Opcode.extendedPrefix, AMLEncoding.ExtendedOpcode.release] + mutex.encoded)
    }

    /// A method call as a statement, its result dropped.
    public static func Call(_ method: AMLName, _ arguments: AMLExpression...) -> AMLTerm {
        AMLTerm(rawBytes: AMLExpression.call(method, arguments: arguments).bytes)
    }

    /// `OperationRegion (name, space, offset, length)`: ExtOpPrefix OpRegionOp
    /// NameString RegionSpace RegionOffset RegionLen.
    public static func OperationRegion(_ name: AMLName, _ space: AMLRegionSpace,
                                       offset: AMLExpression, length: AMLExpression) -> AMLTerm {
        AMLTerm(rawBytes: [AMLEncoding.Opcode.extendedPrefix, AMLEncoding.ExtendedOpcode.operationRegion]
            + name.encoded + [space.rawValue] + offset.bytes + length.bytes)
    }

    /// `Field (region, access, lock, update) {...}`: ExtOpPrefix FieldOp
    /// PkgLength NameString FieldFlags FieldList. FieldFlags holds the access
    /// type in bits 3–0, the lock rule in bit 4 and the update rule in
    /// bits 6–5. Elements are laid out from bit 0 of the region in order;
    /// `.offset` skips forward to a byte offset.
    public static func Field(_ region: AMLName, access: AMLFieldAccess = .any, lock: Bool = false,
                             update: AMLFieldUpdate = .preserve, _ elements: [AMLFieldElement]) -> AMLTerm {
        let flags = access.rawValue | (lock ? 0x10 : 0) | update.rawValue << 5
        var list: [UInt8] = []
        var bit = 0
        for element in elements {
            switch element {
            case .named(let name, let bits):
                list += name.bytes + AMLEncoding.fieldLength(bits)
                bit += bits
            case .reserved(let bits):
                list += [0x00] + AMLEncoding.fieldLength(bits)
                bit += bits
            case .offset(let byte):
                precondition(byte * 8 >= bit, "Field offset \(byte) lies before the current bit \(bit)")
                if byte * 8 > bit { list += [0x00] + AMLEncoding.fieldLength(byte * 8 - bit) }
                bit = byte * 8
            }
        }
        return AMLTerm(rawBytes: [AMLEncoding.Opcode.extendedPrefix, AMLEncoding.ExtendedOpcode.field]
            + AMLEncoding.package(region.encoded + [flags] + list))
    }
}

/// Address spaces of an OperationRegion (ACPI 6.5, 19.6.100, RegionSpace).
public enum AMLRegionSpace: UInt8, Hashable, Sendable {
    case systemMemory = 0x00
    case systemIO = 0x01
    case pciConfig = 0x02
    case embeddedControl = 0x03
    case smbus = 0x04
    case systemCMOS = 0x05
    case pciBarTarget = 0x06
}

/// The access width of a Field (19.6.48, AccessType).
public enum AMLFieldAccess: UInt8, Hashable, Sendable {
    case any = 0, byte = 1, word = 2, dword = 3, qword = 4, buffer = 5
}

/// What a write to a field narrower than its access width puts in the other
/// bits (19.6.48, UpdateRule).
public enum AMLFieldUpdate: UInt8, Hashable, Sendable {
    case preserve = 0, writeAsOnes = 1, writeAsZeros = 2
}

/// One element of a Field's list.
public enum AMLFieldElement: Hashable, Sendable {
    /// A named field unit of `bits` bits: NameSeg PkgLength.
    case named(AMLNameSegment, bits: Int)
    /// `bits` unnamed bits: 0x00 PkgLength.
    case reserved(bits: Int)
    /// ASL `Offset (byte)`: skip forward to a byte offset in the region.
    case offset(Int)
}

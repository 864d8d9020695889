import SwiftletSystem

/// How many instructions the PVM assist completed, per kind, for a whole
/// machine (every vCPU records here). An instruction that raised its
/// exception instead of completing (a #GP for a misaligned fxsave, a #PF)
/// counts under its kind too, and in `exceptionsRaised`.
public final class InstructionAssistStatistics: Sendable {
    private let counts = Locked(InstructionAssistCounts())

    public init() {}

    public func record(_ kind: AssistedInstruction, raisedException: Bool) {
        counts.withLock { c in
            c.byKind[kind, default: 0] += 1
            if raisedException { c.exceptionsRaised += 1 }
        }
    }

    /// A consistent snapshot of every counter.
    public var snapshot: InstructionAssistCounts { counts.withLock { $0 } }
}

public struct InstructionAssistCounts: Sendable, Equatable, CustomStringConvertible {
    public var byKind: [AssistedInstruction: UInt64] = [:]
    public var exceptionsRaised: UInt64 = 0

    public init(byKind: [AssistedInstruction: UInt64] = [:], exceptionsRaised: UInt64 = 0) {
        self.byKind = byKind.filter { $0.value != 0 }
        self.exceptionsRaised = exceptionsRaised
    }

    public subscript(kind: AssistedInstruction) -> UInt64 { byKind[kind] ?? 0 }

    public var total: UInt64 { byKind.values.reduce(0, +) }

    /// E.g. `int3 3, clac 4, stac 4, popcnt 1`, kinds in a fixed order.
    public var description: String {
        var parts = AssistedInstruction.allCases.compactMap { kind in self[kind] == 0 ? nil : "\(kind) \(self[kind])" }
        if exceptionsRaised > 0 { parts.append("\(exceptionsRaised) raised an exception") }
        return parts.isEmpty ? "none" : parts.joined(separator: ", ")
    }

    /// The line `swiftlet run` prints at exit.
    public var summary: String {
        "PVM assist completed \(total) instruction\(total == 1 ? "" : "s"): \(description)"
    }
}

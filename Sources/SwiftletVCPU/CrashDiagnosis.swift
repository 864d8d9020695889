import SwiftletKVM
import SwiftletMemory

/// What Swiftlet reports when a guest stops in a way it cannot continue
/// from: which exit, and the CPU state at that moment.
public struct CrashDiagnosis: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case tripleFault = "triple fault"
        case internalError = "KVM internal error"
        case failedEntry = "VM entry failed"
        case unhandledExit = "unhandled exit"
    }

    public var kind: Kind
    public var vcpu: UInt32
    /// The exit and its details, e.g. "KVM_EXIT_INTERNAL_ERROR: instruction emulation failed (suberror 1)".
    public var exit: String
    public var rip: UInt64
    public var rsp: UInt64
    public var cs: UInt16
    public var cpl: UInt8
    public var cr0: UInt64
    public var cr3: UInt64
    public var cr4: UInt64
    public var efer: UInt64
    /// Bytes at RIP, from KVM's report or read from guest memory; nil when
    /// neither was possible (RIP not mapped, or outside RAM).
    public var instructionBytes: [UInt8]?
    /// Registers could not be read (the vCPU is unusable); the fields above are zero.
    public var registersUnavailable = false

    /// Captures the state of `vcpu` after `exit`; call on the vCPU's thread.
    public static func capture(kind: Kind, exit: VCPUExit, vcpu: VCPUDescriptor, memory: GuestMemory) -> CrashDiagnosis {
        var detail = exit.name
        var reportedBytes: [UInt8]?
        switch exit {
        case .internalError:
            let e = vcpu.internalError()
            detail += ": \(e)"
            reportedBytes = e.instructionBytes
        case .failedEntry(let reason, let cpu):
            detail += ": hardware entry failure reason 0x\(String(reason, radix: 16)) on host CPU \(cpu)"
        default:
            break
        }
        var d = CrashDiagnosis(kind: kind, vcpu: vcpu.id, exit: detail, rip: 0, rsp: 0, cs: 0, cpl: 0,
                               cr0: 0, cr3: 0, cr4: 0, efer: 0, instructionBytes: reportedBytes)
        guard let regs = try? vcpu.registers(), let sregs = try? vcpu.specialRegisters() else {
            d.registersUnavailable = true
            return d
        }
        d.rip = regs.rip
        d.rsp = regs.rsp
        d.cs = sregs.cs.selector
        // KVM (like VMX) takes the CPL from SS.DPL; in real mode it is 0.
        d.cpl = sregs.cr0 & 1 == 0 ? 0 : sregs.ss.dpl
        d.cr0 = sregs.cr0
        d.cr3 = sregs.cr3
        d.cr4 = sregs.cr4
        d.efer = sregs.efer
        if d.instructionBytes == nil {
            d.instructionBytes = bytesAtRIP(vcpu: vcpu, sregs: sregs, rip: regs.rip, memory: memory)
        }
        return d
    }

    private static func bytesAtRIP(vcpu: VCPUDescriptor, sregs: SpecialRegisters, rip: UInt64, memory: GuestMemory) -> [UInt8]? {
        // In long mode CS.base is ignored; elsewhere it is added to RIP.
        let longMode = sregs.efer & (1 << 10) != 0 && sregs.cs.l == 1
        let linear = longMode ? rip : (sregs.cs.base &+ rip) & 0xffff_ffff
        let physical: UInt64
        if sregs.cr0 & (1 << 31) != 0 {
            guard let p = try? vcpu.translate(linear) else { return nil }
            physical = p
        } else {
            physical = linear
        }
        // Up to 15 bytes (the longest x86 instruction), stopping where RAM ends.
        var bytes: [UInt8] = []
        for i in 0..<UInt64(15) {
            guard let b = try? memory.load(UInt8.self, from: GuestAddress(physical &+ i)) else { break }
            bytes.append(b)
        }
        return bytes.isEmpty ? nil : bytes
    }

    public var description: String {
        var lines = ["guest \(kind.rawValue) on vCPU \(vcpu): \(exit)"]
        if registersUnavailable {
            lines.append("  registers unavailable")
        } else {
            lines.append("  RIP=\(hex16(rip)) RSP=\(hex16(rsp)) CS=\(hex(UInt64(cs), 4)) CPL=\(cpl)")
            lines.append("  CR0=\(hex16(cr0)) CR3=\(hex16(cr3)) CR4=\(hex16(cr4)) EFER=\(hex16(efer))")
        }
        if let bytes = instructionBytes {
            lines.append("  bytes at RIP: " + bytes.map { hex(UInt64($0), 2) }.joined(separator: " "))
        } else {
            lines.append("  bytes at RIP: unavailable")
        }
        return lines.joined(separator: "\n")
    }
}

private func hex(_ v: UInt64, _ width: Int) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: max(0, width - s.count)) + s
}

private func hex16(_ v: UInt64) -> String { hex(v, 16) }

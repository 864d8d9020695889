import SwiftletACPI
import SwiftletDevices
import SwiftletKVM
import SwiftletSystem
import SwiftletVCPU

/// Why a vCPU could not be added or removed.
public enum VCPUHotplugError: Error, Equatable, Sendable, CustomStringConvertible {
    /// CPU 0 starts the VM and cannot be removed.
    case bootCPU
    case outOfRange(index: Int, maxCPUs: Int)
    case alreadyPresent(index: Int)
    case notPresent(index: Int)
    /// Another add, remove, pause or resume is in progress.
    case busy
    /// The machine is not running (not started yet, paused, or ended).
    case notRunning(String)
    /// The guest has no way to learn about the change (`maxCPUs == cpus`,
    /// so no ACPI hot-plug registers).
    case noHotplugInterface
    case kvm(SystemError)

    public var description: String {
        switch self {
        case .bootCPU: "CPU 0 is the boot CPU and cannot be removed"
        case .outOfRange(let index, let maxCPUs): "CPU \(index) is out of range: this VM has CPUs 0 to \(maxCPUs - 1) (--max-cpus \(maxCPUs))"
        case .alreadyPresent(let index): "CPU \(index) is already present"
        case .notPresent(let index): "CPU \(index) is not present"
        case .busy: "another vCPU change, pause or resume is in progress; try again"
        case .notRunning(let why): "the VM is \(why)"
        case .noHotplugInterface: "CPU hot-plug needs --max-cpus above --cpus"
        case .kvm(let error): "cannot create the vCPU: \(error)"
        }
    }
}

/// One possible CPU of the machine and where it is in its life.
public struct VCPUSlot: Sendable, Equatable {
    /// The CPU index, which is also its APIC ID and ACPI processor UID.
    public var index: Int
    /// `.absent` (never created), `.parked` (removed; its KVM vCPU is kept
    /// for reuse), or the present vCPU's state.
    public var state: VCPUState
    /// A removal was requested from the guest and not yet completed.
    public var removalRequested: Bool
}

/// Hot-add and hot-remove (MISSION.md §3).
///
/// All changes hold `control`, the lock pause and resume take, so the set
/// of vCPUs never changes under a pause; requests that find it taken fail
/// with `.busy` instead of queueing (a racing request gets a clear answer,
/// and a guest's eject can never wait for a pause that waits for it).
///
/// Removal order: suppress the vCPU's notifications and take it out of the
/// interrupt router (no new delivery targets it), publish a registry
/// snapshot without it and wait for a grace period (no reader still holds
/// it), stop and join its thread, park its KVM descriptor. What remains of
/// the `VCPU` object — kvm_run mapping, local APIC state, its timer — is
/// freed with the last reference, which the caller drops.
extension Machine {
    /// Every possible CPU, in index order.
    public var vcpuSlots: [VCPUSlot] {
        let parked = vcpuFactory.parkedIndices
        return vcpuRegistry.read { snapshot in
            (0..<vcpuRegistry.capacity).map { index in
                let state: VCPUState = snapshot[index]?.state ?? (parked.contains(UInt32(index)) ? .parked : .absent)
                let removing = cpuHotplug.map { $0.status(of: index) & CPUHotplugRegisters.statusRemoving != 0 } ?? false
                return VCPUSlot(index: index, state: state, removalRequested: removing)
            }
        }
    }

    /// Adds CPU `index`: creates its vCPU (or reuses the parked one), starts
    /// its thread in wait-for-SIPI, and tells the guest through the ACPI
    /// hot-plug registers unless `notifyGuest` is false. Returns once the
    /// vCPU's thread was started.
    public func hotAddVCPU(_ index: Int, notifyGuest: Bool = true) throws(VCPUHotplugError) {
        try changingVCPUs { () throws(VCPUHotplugError) in
            try checkRange(index)
            guard vcpuRegistry.read({ $0[index] }) == nil else { throw .alreadyPresent(index: index) }
            let vcpu: VCPU
            do throws(SystemError) {
                vcpu = try vcpuFactory.make(index: UInt32(index), boot: nil)
            } catch {
                throw .kvm(error)
            }
            do {
                try vcpuRegistry.insert(vcpu, at: index)
                try vcpu.start()
            } catch let error as SystemError {
                retire(index)
                throw .kvm(error)
            } catch {
                preconditionFailure("vCPU \(index) was absent under the control lock: \(error)")
            }
            if notifyGuest { _ = try? cpuHotplug?.markAdded(index) }
        }
    }

    /// Removes CPU `index` at once, whatever its guest is doing with it (the
    /// guest is told nothing; use `requestVCPUEject` for a guest that
    /// should give the CPU up first).
    public func hotRemoveVCPU(_ index: Int) throws(VCPUHotplugError) {
        try changingVCPUs { () throws(VCPUHotplugError) in
            try checkRange(index)
            guard index != 0 else { throw .bootCPU }
            guard retire(index) else { throw .notPresent(index: index) }
            _ = try? cpuHotplug?.markRemoved(index)
        }
    }

    /// Asks the guest to give up CPU `index` (ACPI Eject Request). The vCPU
    /// is removed when the guest ejects it; a guest may also refuse.
    public func requestVCPUEject(_ index: Int) throws(VCPUHotplugError) {
        try changingVCPUs { () throws(VCPUHotplugError) in
            try checkRange(index)
            guard index != 0 else { throw .bootCPU }
            guard vcpuRegistry.read({ $0[index] }) != nil else { throw .notPresent(index: index) }
            guard let cpuHotplug else { throw .noHotplugInterface }
            do {
                try cpuHotplug.requestRemoval(index)
            } catch {
                throw .notPresent(index: index)
            }
        }
    }

    /// Adds the lowest absent CPUs or asks the guest to give up the highest
    /// present ones until `count` are present or requested. Returns the
    /// indices added and those whose removal was requested.
    @discardableResult
    public func resizeVCPUs(to count: Int) throws(VCPUHotplugError) -> (added: [Int], removalRequested: [Int]) {
        guard (1...vcpuRegistry.capacity).contains(count) else {
            throw .outOfRange(index: count - 1, maxCPUs: vcpuRegistry.capacity)
        }
        let present = vcpuRegistry.read { $0.indices }
        var added: [Int] = [], removing: [Int] = []
        if count > present.count {
            for index in 0..<vcpuRegistry.capacity where added.count < count - present.count && !present.contains(index) {
                try hotAddVCPU(index)
                added.append(index)
            }
        } else if count < present.count {
            for index in present.reversed().prefix(present.count - count) {
                try requestVCPUEject(index)
                removing.append(index)
            }
        }
        return (added, removing)
    }

    // MARK: Guest side

    /// The guest wrote EJECT for CPU `index` (on some vCPU's thread, without
    /// the device's lock). True when the CPU is gone.
    func guestEjected(_ index: Int) -> Bool {
        guard let vcpu = vcpuRegistry.read({ $0[index] }), !vcpu.isOnOwnThread else {
            // A CPU cannot eject itself: its thread would wait for itself.
            Log.warning("guest: CPU \(index) ejected itself or is not present; ignored")
            return false
        }
        let done = control.withLockIfAvailable { () -> Bool in
            guard !lifecycle.hasEnded else { return false }
            return retire(index)
        }
        if done == nil { Log.warning("guest: eject of CPU \(index) raced a pause, resume or vCPU change; refused") }
        return done ?? false
    }

    // MARK: Helpers

    private func changingVCPUs<R>(_ body: () throws(VCPUHotplugError) -> R) throws(VCPUHotplugError) -> R {
        let result = try control.withLockIfAvailable { () throws(VCPUHotplugError) -> R in
            guard state.withLock({ $0 == .started }), !lifecycle.hasEnded else {
                throw .notRunning(lifecycle.hasEnded ? "ending" : "not running")
            }
            guard !isPaused else { throw .notRunning("paused") }
            return try body()
        }
        guard let result else { throw .busy }
        return result
    }

    private func checkRange(_ index: Int) throws(VCPUHotplugError) {
        guard (0..<vcpuRegistry.capacity).contains(index) else {
            throw .outOfRange(index: index, maxCPUs: vcpuRegistry.capacity)
        }
    }

    /// Takes vCPU `index` out of the machine and parks its descriptor (see
    /// the extension's discussion). Holds `control`. False if not present.
    @discardableResult
    private func retire(_ index: Int) -> Bool {
        guard let vcpu = vcpuRegistry.read({ $0[index] }) else { return false }
        vcpu.detachFromRouter()
        _ = vcpuRegistry.remove(at: index)
        vcpu.requestStop()
        vcpu.join()
        vcpuFactory.park(vcpu.descriptor)
        return true
    }
}

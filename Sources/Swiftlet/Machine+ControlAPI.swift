import SwiftletAPI

/// The machine behind the control API's `/vcpus` resource.
///
/// Removal through the API is the guest-cooperative kind: it asks the guest
/// to give the CPU up (ACPI Eject Request), and the vCPU goes when the guest
/// ejects it — as on a physical machine, the OS decides when a CPU can go.
extension Machine: VCPUSetControl {
    public func vcpuSet() -> VCPUSetDescription {
        VCPUSetDescription(bootCPUs: configuration.cpus, maxCPUs: configuration.possibleCPUs, vcpus: vcpuSlots.map { slot in
            VCPUDescription(index: slot.index, apicID: slot.index,
                            state: slot.removalRequested && slot.state != .parked ? "removing" : slot.state.description)
        })
    }

    public func setVCPUCount(_ count: Int) throws(VCPUControlError) {
        guard (1...configuration.possibleCPUs).contains(count) else {
            throw .invalidCount(count: count, min: 1, max: configuration.possibleCPUs)
        }
        do {
            try resizeVCPUs(to: count)
        } catch {
            throw error.controlError
        }
    }

    public func addVCPU(_ index: Int) throws(VCPUControlError) {
        do {
            try hotAddVCPU(index)
        } catch {
            throw error.controlError
        }
    }

    public func removeVCPU(_ index: Int) throws(VCPUControlError) {
        do {
            try requestVCPUEject(index)
        } catch {
            throw error.controlError
        }
    }
}

extension VCPUHotplugError {
    var controlError: VCPUControlError {
        switch self {
        case .bootCPU: .bootCPU(index: 0)
        case .outOfRange(let index, let maxCPUs): .outOfRange(index: index, max: maxCPUs)
        case .alreadyPresent(let index): .alreadyPresent(index: index)
        case .notPresent(let index): .notPresent(index: index)
        case .busy, .notRunning: .busy(description)
        case .noHotplugInterface, .kvm: .failed(description)
        }
    }
}

import CSwiftlet
import Synchronization
import SwiftletDevices
import SwiftletInterrupts
import SwiftletKVM
import SwiftletMemory
import SwiftletSystem
import SwiftletVCPU

/// Decides how and when a machine ends, from whichever thread notices first:
/// a device handling a guest write (power off, reset, debug exit), a vCPU
/// thread after an exit it cannot continue from, or the host (`stop`).
///
/// The first outcome wins; later ones are ignored. Ending only *requests*
/// that vCPUs stop and never waits for them, because it is often called on
/// a vCPU thread; `Machine.waitForExit()` does the joining.
final class MachineLifecycle: GuestRequestSink, VCPUExitHandler {
    private let outcome = Locked<MachineExit?>(nil)
    private let vcpus = Locked<VCPURegistry<VCPU>?>(nil)
    private let endedLatch = Latch()
    private let memory: GuestMemory
    /// Completes instructions a PVM host's emulator cannot; nil when off.
    private let instructionAssist: InstructionAssist?
    private let onEnd: @Sendable () -> Void

    init(memory: GuestMemory, instructionAssist: InstructionAssist? = nil, onEnd: @escaping @Sendable () -> Void) {
        self.memory = memory
        self.instructionAssist = instructionAssist
        self.onEnd = onEnd
    }

    /// The vCPUs to stop when the machine ends.
    func attach(_ registry: VCPURegistry<VCPU>) {
        vcpus.withLock { $0 = registry }
    }

    /// Forgets the vCPUs, which hold this lifecycle as their exit handler;
    /// called when the machine is released.
    func detachVCPUs() {
        vcpus.withLock { $0 = nil }
    }

    var result: MachineExit? { outcome.withLock { $0 } }
    var hasEnded: Bool { endedLatch.isSignalled }

    func waitUntilEnded() { endedLatch.wait() }

    /// Records `exit` if it is the first, then asks every vCPU to stop.
    func end(_ exit: MachineExit) {
        let first = outcome.withLock { current -> Bool in
            guard current == nil else { return false }
            current = exit
            return true
        }
        guard first else { return }
        // A vCPU added after this walk sees `hasEnded` and is stopped by
        // `Machine.waitForExit`.
        vcpus.withLock({ $0 })?.forEach { $0.requestStop() }
        onEnd()
        endedLatch.signal()
    }

    // MARK: GuestRequestSink

    func guestRequested(_ request: GuestRequest) {
        switch request {
        case .powerOff: end(.poweredOff)
        case .reset: end(.resetRequested)
        case .debugExit(let code): end(.debugExit(code: code))
        }
    }

    // MARK: VCPUExitHandler

    func handleExit(_ exit: VCPUExit, on vcpu: VCPU) -> VCPUExitAction {
        switch exit {
        case .shutdown:
            end(.crashed(.capture(kind: .tripleFault, exit: exit, vcpu: vcpu.descriptor, memory: memory)))
        case .internalError:
            // On PVM hosts, an instruction the host's emulator lacks may be
            // one the assist completes; the guest then simply goes on.
            if let instructionAssist,
               instructionAssist.complete(vcpu.descriptor.internalError(), on: vcpu.descriptor, memory: memory).resumesGuest {
                return .resume
            }
            end(.crashed(.capture(kind: .internalError, exit: exit, vcpu: vcpu.descriptor, memory: memory)))
        case .failedEntry:
            end(.crashed(.capture(kind: .failedEntry, exit: exit, vcpu: vcpu.descriptor, memory: memory)))
        case .systemEvent(let type) where type == UInt32(KVM_SYSTEM_EVENT_SHUTDOWN):
            end(.poweredOff)
        case .systemEvent(let type) where type == UInt32(KVM_SYSTEM_EVENT_RESET):
            end(.resetRequested)
        default:
            // HLT and interrupt-window exits cannot happen with the in-kernel
            // irqchip; anything else is a guest or host state we do not know.
            end(.crashed(.capture(kind: .unhandledExit, exit: exit, vcpu: vcpu.descriptor, memory: memory)))
        }
        return .stop
    }

    func runFailed(_ error: SystemError, on vcpu: VCPU) {
        end(.hostFailure("\(vcpu): \(error)"))
    }
}

/// An interrupt wire into the in-kernel irqchip: a GSI driven with KVM_IRQ_LINE.
struct KernelInterruptLine: InterruptLine {
    let vm: VirtualMachine
    let gsi: UInt32

    func setLevel(_ asserted: Bool) {
        do {
            try vm.setInterruptLine(gsi, level: asserted)
        } catch {
            Log.error("cannot drive GSI \(gsi): \(error)")
        }
    }
}

/// An ISA interrupt line with the emulated controllers: IRQ n drives IOAPIC
/// pin n and 8259 input n, as KVM's default routing does.
struct ISAInterruptLine: InterruptLine {
    let irq: Int
    let ioapic: IOAPIC
    let pic: PIC8259Pair

    func setLevel(_ asserted: Bool) {
        ioapic.setIRQ(irq, level: asserted)
        pic.setIRQ(irq, level: asserted)
    }
}

/// One IOAPIC input pin with no ISA IRQ behind it (the 8259s do not see it).
struct IOAPICPinLine: InterruptLine {
    let pin: Int
    let ioapic: IOAPIC

    func setLevel(_ asserted: Bool) {
        ioapic.setIRQ(pin, level: asserted)
    }
}

/// The 8259 pair's INTR output: an ExtINT message to the bootstrap
/// processor, whose LINT0 (virtual-wire mode) follows the pin.
struct ExternalInterruptLine: InterruptLine {
    let router: InterruptRouter

    func setLevel(_ asserted: Bool) {
        router.deliver(InterruptMessage(vector: 0, deliveryMode: .extINT, destinationMode: .physical, destination: 0,
                                        destinationFormat: .x2APIC, shorthand: .none, triggerMode: .level,
                                        level: asserted, sourceAPICID: nil))
    }
}

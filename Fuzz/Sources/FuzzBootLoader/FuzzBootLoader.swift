import SwiftletBoot
import SwiftletMemory

/// 4 MiB of low RAM and 1 MiB above 4 GiB: small enough to reuse for every
/// input, with a region above the 32-bit limit to reach those paths.
let memory = try! GuestMemory(ranges: [
    GuestRange(start: GuestAddress(0), length: 4 << 20),
    GuestRange(start: GuestAddress(1 << 32), length: 1 << 20),
])
let initrd = ByteImage(name: "initrd.img", bytes: [UInt8](repeating: 0x5A, count: 3000))

/// The whole loader, every protocol (Multiboot, direct ELF64, Linux, PVH and
/// the automatic choice among them), with and without an initrd: it either
/// loads an image inside guest RAM or refuses it in one line.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzBootLoader(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    let kernel = ByteImage(name: "fuzz.img", bytes: bytes)
    for bootProtocol in BootProtocol.allCases {
        for module in [nil, initrd] {
            do {
                let result = try BootLoader.load(kernel: kernel, initrd: module, commandLine: "console=ttyS0",
                                                 protocol: bootProtocol, memory: memory)
                check(result)
            } catch {
                let text = error.description
                precondition(!text.isEmpty && !text.contains("\n"), "error is not one line: \(text)")
            }
        }
    }
    return 0
}

func check(_ result: BootResult) {
    precondition(result.bootProtocol != .automatic)
    precondition(result.cpu.rip < 1 << 32)
    for segment in result.kernelSegments {
        precondition(segment.start >= X86Layout.highMemoryStart && memory.contains(segment.start, count: segment.length))
    }
    let segments = result.kernelSegments
    for i in segments.indices {
        for j in segments.indices where j > i { precondition(!segments[i].overlaps(segments[j]), "segments overlap") }
    }
    if let range = result.initrd {
        precondition(range.start.rawValue % X86Layout.pageSize == 0)
        precondition(range.length == 0 || memory.contains(range.start, count: range.length))
        for segment in result.kernelSegments { precondition(!segment.overlaps(range)) }
        if result.bootProtocol == .multiboot || result.bootProtocol == .pvh { precondition(range.end <= 1 << 32) }
    }
    switch result.bootProtocol {
    case .linux:
        precondition(result.cpu.mode == .long64 && result.cpu.rsi == X86Layout.linuxZeroPageAddress.rawValue)
    case .pvh:
        precondition(result.cpu.mode == .protected32 && result.cpu.rbx == X86Layout.pvhStartInfoAddress.rawValue)
        precondition(result.kernelSegments.allSatisfy { $0.end <= 1 << 32 })
        precondition(result.kernelSegments.contains { $0.contains(GuestAddress(result.cpu.rip)) }, "PVH entry outside the kernel")
        precondition((try? memory.load(UInt32.self, from: X86Layout.pvhStartInfoAddress)) == PVHBoot.startInfoMagic)
    case .elf64:
        precondition(result.cpu.mode == .long64 && result.cpu.rsi == 0)
    case .multiboot:
        precondition(result.cpu.mode == .protected32)
    case .automatic:
        preconditionFailure("the loader reported .automatic")
    }
}

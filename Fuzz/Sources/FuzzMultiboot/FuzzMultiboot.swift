import SwiftletBoot
import SwiftletMemory

/// The Multiboot header search, the address-field rules and the
/// information builder: what they accept must satisfy the specification's
/// invariants; everything else is a one-line error.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMultiboot(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    let head = Array(bytes.prefix(MultibootHeader.searchLimit))
    do {
        switch try MultibootHeader.search(head) {
        case .found(let header):
            precondition(header.offset % 4 == 0 && header.offset + 12 <= head.count)
            precondition(header.flags & 0xFFF8 == 0, "accepted unsupported required flags")
            if let addresses = header.addresses {
                precondition(header.offset + 32 <= head.count)
                do {
                    let layout = try MultibootLoadLayout(addresses, headerOffset: header.offset, imageSize: UInt64(bytes.count))
                    precondition(layout.fileOffset + layout.fileSize <= UInt64(bytes.count))
                    precondition(layout.fileSize <= layout.memorySize)
                    precondition(layout.loadAddress + layout.memorySize <= 1 << 32)
                    precondition(layout.range.contains(GuestAddress(layout.entry)))
                } catch {
                    checkOneLine(error)
                }
            }
        case .badChecksum(let offset, let sum):
            precondition(offset % 4 == 0 && sum != 0)
        case .notFound:
            break
        }
    } catch {
        checkOneLine(error)
    }

    // The information page with a module string taken from the input.
    let builder = MultibootInfoBuilder(memoryMap: MemoryMap(ram: X86Layout.ramRanges(size: UInt64(size) << 20)),
                                       commandLine: X86Layout.commandLineAddress,
                                       modules: [MultibootModule(range: GuestRange(start: GuestAddress(0x10_0000), length: UInt64(size)),
                                                                 string: String(decoding: bytes.prefix(5000), as: UTF8.self))])
    do {
        let page = try builder.build()
        precondition(page.count == Int(X86Layout.bootInfoSize))
    } catch {
        checkOneLine(error)
    }
    return 0
}

func checkOneLine(_ problem: BootProblem) {
    let text = problem.description
    precondition(!text.isEmpty && !text.contains("\n"), "error is not one line: \(text)")
}

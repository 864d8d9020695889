import SwiftletAPI

/// The strict JSON parser on arbitrary bytes: never a trap; what it accepts
/// serializes to text it accepts again as the same value, and serializing is
/// then stable; what it refuses gets a one-line error at an offset inside
/// the input. The vCPU-set decoder gets every accepted value.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSON(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    do {
        let value = try JSONValue(parsing: bytes, maximumDepth: 32)
        let text = value.serializedBytes
        let again = try! JSONValue(parsing: text, maximumDepth: 32)
        precondition(again == value, "serializing changed the value")
        precondition(again.serializedBytes == text, "serializing is not stable")
        if let set = VCPUSetDescription(json: value) {
            precondition(VCPUSetDescription(json: set.json) == set)
        }
    } catch {
        precondition(error.offset >= 0 && error.offset <= bytes.count, "error offset outside the input")
        precondition(!error.description.contains("\n") && !error.description.contains("\r"), "error is not one line: \(error)")
    }
    return 0
}

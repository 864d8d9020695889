/// One vCPU as the API shows it.
public struct VCPUDescription: Sendable, Equatable {
    public var index: Int
    public var apicID: Int
    /// "absent", "parked", "starting", "running", "paused", "stopping".
    public var state: String

    public init(index: Int, apicID: Int, state: String) {
        self.index = index
        self.apicID = apicID
        self.state = state
    }
}

/// The VM's vCPU set at one moment.
public struct VCPUSetDescription: Sendable, Equatable {
    /// vCPUs started with the VM (`--cpus`); they cannot be removed.
    public var bootCPUs: Int
    /// The most vCPUs the VM can have (`--max-cpus`).
    public var maxCPUs: Int
    public var vcpus: [VCPUDescription]

    public init(bootCPUs: Int, maxCPUs: Int, vcpus: [VCPUDescription]) {
        self.bootCPUs = bootCPUs
        self.maxCPUs = maxCPUs
        self.vcpus = vcpus
    }

    /// `{"boot_cpus":1,"max_cpus":4,"vcpus":[{"index":0,"apic_id":0,"state":"running"}]}`
    public var json: JSONValue {
        [
            "boot_cpus": .integer(bootCPUs),
            "max_cpus": .integer(maxCPUs),
            "vcpus": .array(vcpus.map { ["index": .integer($0.index), "apic_id": .integer($0.apicID), "state": .string($0.state)] }),
        ]
    }

    /// Reads the form `json` writes; nil if `value` is not in that form.
    public init?(json value: JSONValue) {
        guard let boot = value["boot_cpus"]?.intValue, let max = value["max_cpus"]?.intValue,
              let list = value["vcpus"]?.arrayValue else { return nil }
        var vcpus: [VCPUDescription] = []
        for entry in list {
            guard let index = entry["index"]?.intValue, let apicID = entry["apic_id"]?.intValue,
                  let state = entry["state"]?.stringValue else { return nil }
            vcpus.append(VCPUDescription(index: index, apicID: apicID, state: state))
        }
        self.init(bootCPUs: boot, maxCPUs: max, vcpus: vcpus)
    }
}

/// Why the VM refused or failed a change to its vCPU set.
public enum VCPUControlError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The vCPU is one of the boot CPUs, which cannot be removed.
    case bootCPU(index: Int)
    /// The index is not below the VM's maximum.
    case outOfRange(index: Int, max: Int)
    /// A desired count outside `min...max`.
    case invalidCount(count: Int, min: Int, max: Int)
    /// Another change is under way, or the VM is not in a state to change
    /// (starting, stopping); the message says which.
    case busy(String)
    case alreadyPresent(index: Int)
    case notPresent(index: Int)
    /// The VMM failed to carry out a valid request.
    case failed(String)

    public var description: String {
        switch self {
        case .bootCPU(let index):
            "vCPU \(index) is a boot CPU and cannot be removed"
        case .outOfRange(let index, let max):
            "vCPU index \(index) is out of range: this VM has at most \(max) vCPUs (indexes 0-\(max - 1); see --max-cpus)"
        case .invalidCount(let count, let min, let max):
            "vCPU count \(count) is out of range: it must be between \(min) (the boot CPUs) and \(max) (--max-cpus)"
        case .busy(let message):
            message
        case .alreadyPresent(let index):
            "vCPU \(index) is already present"
        case .notPresent(let index):
            "vCPU \(index) is not present"
        case .failed(let message):
            message
        }
    }

    /// The API's answer: invalid requests are 400, requests that conflict
    /// with the set's state or race another change are 409, failures 500.
    public var apiError: APIError {
        switch self {
        case .bootCPU, .outOfRange, .invalidCount: .badRequest(description)
        case .busy, .alreadyPresent, .notPresent: .conflict(description)
        case .failed: .internalError(description)
        }
    }
}

/// What the API needs of a VM to serve `/vcpus`. `Machine` conforms.
///
/// `vcpuSet()` is called on the API server thread and must not block.
/// The other methods run on the API's worker thread, one at a time, and
/// may block until the change is complete (a removal joins the vCPU's
/// thread).
public protocol VCPUSetControl: AnyObject, Sendable {
    /// A snapshot of the set.
    func vcpuSet() -> VCPUSetDescription
    /// Adds or removes vCPUs (highest indexes first) until `count` are present.
    func setVCPUCount(_ count: Int) throws(VCPUControlError)
    func addVCPU(_ index: Int) throws(VCPUControlError)
    func removeVCPU(_ index: Int) throws(VCPUControlError)
}

extension APIRouter {
    /// The vCPU resource:
    ///
    /// | request | success |
    /// |---|---|
    /// | `GET /vcpus` | 200, the set as `VCPUSetDescription.json` |
    /// | `PUT /vcpus` with `{"count": N}` | 204 once N vCPUs are present |
    /// | `PUT /vcpus/{index}` | 204 once that vCPU is present (added) |
    /// | `DELETE /vcpus/{index}` | 204 once that vCPU is removed |
    ///
    /// Errors are `VCPUControlError.apiError`, plus 400 for a malformed
    /// index or body and 409 when another change is running.
    public mutating func addVCPUResource(_ control: any VCPUSetControl) {
        add("GET", "/vcpus", kind: .read) { _ throws(APIError) in
            HTTPResponse(status: .ok, json: control.vcpuSet().json)
        }
        add("PUT", "/vcpus", kind: .mutate) { request throws(APIError) in
            let body = try request.json()
            guard let object = body.objectValue else { throw .badRequest("the body must be an object like {\"count\": 2}, not \(body.kindName)") }
            if let unknown = object.keys.first(where: { $0 != "count" }) {
                throw .badRequest("unknown field \(JSONValue.string(unknown).serialized) (the body is {\"count\": N})")
            }
            guard let value = object["count"] else { throw .badRequest("missing field \"count\"") }
            guard let count = value.intValue else { throw .badRequest("\"count\" must be an integer, not \(value.kindName)") }
            do throws(VCPUControlError) {
                try control.setVCPUCount(count)
            } catch {
                throw error.apiError
            }
            return HTTPResponse(status: .noContent)
        }
        add("PUT", "/vcpus/{index}", kind: .mutate) { request throws(APIError) in
            let index = try Self.vcpuIndex(request)
            try request.requireEmptyBody()
            do throws(VCPUControlError) {
                try control.addVCPU(index)
            } catch {
                throw error.apiError
            }
            return HTTPResponse(status: .noContent)
        }
        add("DELETE", "/vcpus/{index}", kind: .mutate) { request throws(APIError) in
            let index = try Self.vcpuIndex(request)
            try request.requireEmptyBody()
            do throws(VCPUControlError) {
                try control.removeVCPU(index)
            } catch {
                throw error.apiError
            }
            return HTTPResponse(status: .noContent)
        }
    }

    /// The `{index}` of the path: a decimal number without sign.
    static func vcpuIndex(_ request: APIRequest) throws(APIError) -> Int {
        let text = request.parameters["index"] ?? ""
        guard !text.isEmpty, text.utf8.count <= 9, text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
              let index = Int(text) else {
            throw .badRequest("'\(text)' is not a vCPU index (a whole number such as 1)")
        }
        return index
    }
}

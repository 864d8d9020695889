import Swiftlet
import SwiftletAPI
import SwiftletSystem

/// `swiftlet vcpus`: reads and changes a running VM's vCPU set through its
/// API socket (`swiftlet run --api-socket PATH`).
enum VCPUsCommand {
    /// The VM answered, refusing or failing the request; its reason is printed.
    static let requestRefused: Int32 = 1
    /// No VM answered: nothing listens at the socket, or the answer was not
    /// an HTTP response.
    static let cannotConnect: Int32 = 5

    static let parser = ArgumentParser(command: "swiftlet vcpus", options: [
        .init("api-socket", value: "PATH", help: "the API socket of the VM (swiftlet run --api-socket PATH)"),
    ])

    static var help: String {
        """
        USAGE: swiftlet vcpus list --api-socket PATH
               swiftlet vcpus add INDEX --api-socket PATH
               swiftlet vcpus remove INDEX --api-socket PATH
               swiftlet vcpus set COUNT --api-socket PATH

        Lists a running VM's vCPUs, adds or removes one, or adds and removes
        vCPUs until COUNT are present. The boot CPUs cannot be removed, and a
        VM has at most the vCPUs its --max-cpus allows.

        OPTIONS:
        \(parser.optionsHelp)

        EXIT STATUS:
          0 done; 1 the VM refused or failed the request (the reason is printed);
          2 bad invocation; 5 cannot connect to the API socket or no valid answer
        """
    }

    /// What a run prints and returns; separate from printing so tests can
    /// check it.
    struct Outcome: Equatable {
        var status: Int32
        var output: String = ""
        var error: String?
    }

    static func run(_ arguments: ArraySlice<String>) -> Int32 {
        let outcome = perform(arguments)
        if !outcome.output.isEmpty { print(outcome.output) }
        if let error = outcome.error { SwiftletCommand.writeError("swiftlet: error: \(error)") }
        return outcome.status
    }

    enum Action: Equatable {
        case list
        case add(Int)
        case remove(Int)
        case set(Int)
    }

    static func perform(_ arguments: ArraySlice<String>) -> Outcome {
        if arguments.contains("--help") || arguments.contains("-h") { return Outcome(status: ExitStatus.success, output: help) }
        let action: Action
        let socketPath: String
        do {
            (action, socketPath) = try parse(arguments)
        } catch {
            return Outcome(status: ExitStatus.usage, error: error.message)
        }
        let client = APIClient(socketPath: socketPath)
        let response: HTTPResponse
        do {
            switch action {
            case .list: response = try client.send("GET", "/vcpus")
            case .add(let index): response = try client.send("PUT", "/vcpus/\(index)")
            case .remove(let index): response = try client.send("DELETE", "/vcpus/\(index)")
            case .set(let count): response = try client.send("PUT", "/vcpus", json: ["count": .integer(count)])
            }
        } catch {
            return Outcome(status: cannotConnect, error: error.description)
        }
        guard response.status.isSuccess else {
            let reason = response.faultMessage ?? "the VM answered \(response.status)"
            return Outcome(status: requestRefused, error: reason)
        }
        switch action {
        case .list:
            guard let json = try? response.json(), let set = VCPUSetDescription(json: json) else {
                return Outcome(status: cannotConnect, error: "invalid response from the API: not a vCPU set")
            }
            return Outcome(status: ExitStatus.success, output: table(set))
        case .add(let index): return Outcome(status: ExitStatus.success, output: "added vCPU \(index)")
        case .remove(let index): return Outcome(status: ExitStatus.success, output: "removal of vCPU \(index) requested: it goes when the guest ejects it")
        case .set(let count): return Outcome(status: ExitStatus.success, output: "\(count) vCPU\(count == 1 ? "" : "s") present")
        }
    }

    /// `ACTION [NUMBER]` and the options, in any order.
    static func parse(_ arguments: ArraySlice<String>) throws(UsageError) -> (Action, String) {
        var positional: [String] = []
        var optionArguments: [String] = []
        var iterator = arguments.makeIterator()
        while let argument = iterator.next() {
            if argument.hasPrefix("--") {
                optionArguments.append(argument)
                // `--name value`: the value goes with its option.
                let name = argument.dropFirst(2)
                if !name.contains("="), parser.options.contains(where: { $0.name == name && $0.takesValue }), let value = iterator.next() {
                    optionArguments.append(value)
                }
            } else {
                positional.append(argument)
            }
        }
        let values = try parser.parse(optionArguments)
        guard let verb = positional.first else {
            throw UsageError("'swiftlet vcpus' needs an action: list, add INDEX, remove INDEX or set COUNT")
        }
        let action: Action
        switch verb {
        case "list":
            guard positional.count == 1 else { throw UsageError("unexpected argument '\(positional[1])' for 'swiftlet vcpus list'") }
            action = .list
        case "add", "remove", "set":
            let what = verb == "set" ? "COUNT" : "INDEX"
            guard positional.count >= 2 else { throw UsageError("'swiftlet vcpus \(verb)' needs \(what)") }
            guard positional.count == 2 else { throw UsageError("unexpected argument '\(positional[2])' for 'swiftlet vcpus \(verb)'") }
            guard let number = Int(positional[1]), number >= 0 else {
                throw UsageError("\(what) must be a whole number, not '\(positional[1])'")
            }
            action = verb == "add" ? .add(number) : verb == "remove" ? .remove(number) : .set(number)
        default:
            throw UsageError("unknown action '\(verb)' for 'swiftlet vcpus' (list, add, remove, set)")
        }
        guard let path = values["api-socket"], !path.isEmpty else { throw UsageError("'swiftlet vcpus' needs --api-socket PATH") }
        return (action, path)
    }

    /// The set as a table:
    ///
    ///     2 vCPUs (1 at boot, at most 4)
    ///     INDEX  APIC ID  STATE
    ///     0      0        running
    static func table(_ set: VCPUSetDescription) -> String {
        // The resource lists every possible CPU; absent and parked ones are
        // not present.
        let present = set.vcpus.filter { $0.state != "absent" && $0.state != "parked" }.count
        var lines = ["\(present) vCPU\(present == 1 ? "" : "s") present (\(set.bootCPUs) at boot, at most \(set.maxCPUs))"]
        let rows = [["INDEX", "APIC ID", "STATE"]] + set.vcpus.map { [String($0.index), String($0.apicID), $0.state] }
        let widths = (0..<3).map { column in rows.map { $0[column].count }.max()! }
        for row in rows {
            lines.append((0..<2).map { row[$0] + String(repeating: " ", count: widths[$0] - row[$0].count + 2) }.joined() + row[2])
        }
        return lines.joined(separator: "\n")
    }
}

/// A small command-line parser for `swiftlet`'s subcommands.
///
/// Written by hand rather than with swift-argument-parser, which pulls
/// FoundationEssentials into the VMM process (about 4 MiB of resident
/// memory against a 6 MiB goal). Accepts `--name value` and `--name=value`;
/// refuses unknown options, repeated options, missing values and stray
/// arguments, each with one line that says what was wrong.
public struct ArgumentParser: Sendable {
    public struct Option: Sendable {
        public let name: String
        public let valueName: String?
        public let help: String
        public var takesValue: Bool { valueName != nil }

        public init(_ name: String, value: String? = nil, help: String) {
            self.name = name
            self.valueName = value
            self.help = help
        }
    }

    public let command: String
    public let options: [Option]

    public init(command: String, options: [Option]) {
        self.command = command
        self.options = options
    }

    /// Option name (without dashes) → value ("" for flags).
    public func parse(_ arguments: some Collection<String>) throws(UsageError) -> [String: String] {
        var values: [String: String] = [:]
        var iterator = arguments.makeIterator()
        while let argument = iterator.next() {
            guard argument.hasPrefix("--"), argument.count > 2 else {
                throw UsageError("unexpected argument '\(argument)' for '\(command)'")
            }
            let body = argument.dropFirst(2)
            let name: String
            var inlineValue: String?
            if let eq = body.firstIndex(of: "=") {
                name = String(body[..<eq])
                inlineValue = String(body[body.index(after: eq)...])
            } else {
                name = String(body)
            }
            guard let option = options.first(where: { $0.name == name }) else {
                throw UsageError("unknown option '--\(name)' for '\(command)'")
            }
            guard values[name] == nil else { throw UsageError("option '--\(name)' given more than once") }
            if option.takesValue {
                if let inlineValue {
                    values[name] = inlineValue
                } else if let next = iterator.next() {
                    values[name] = next
                } else {
                    throw UsageError("option '--\(name)' needs a value (\(option.valueName!))")
                }
            } else {
                guard inlineValue == nil else { throw UsageError("option '--\(name)' takes no value") }
                values[name] = ""
            }
        }
        return values
    }

    /// Help text for the options, aligned.
    public var optionsHelp: String {
        let labels = options.map { "--\($0.name)" + ($0.valueName.map { " \($0)" } ?? "") }
        let width = (labels.map(\.count).max() ?? 0) + 2
        return zip(labels, options).map { label, option in
            "  " + label + String(repeating: " ", count: width - label.count) + option.help
        }.joined(separator: "\n")
    }
}

/// A bad invocation: exit status 2 with this one line.
public struct UsageError: Error, Equatable, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension ArgumentParser {
    /// An integer option value within `range`.
    public static func integer(_ text: String, option: String, in range: ClosedRange<Int>) throws(UsageError) -> Int {
        guard let value = Int(text) else { throw UsageError("--\(option): '\(text)' is not a whole number") }
        guard range.contains(value) else {
            throw UsageError("--\(option) must be between \(range.lowerBound) and \(range.upperBound), not \(value)")
        }
        return value
    }
}

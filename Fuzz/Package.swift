// swift-tools-version: 6.1
//
// libFuzzer targets for Swiftlet's image parsers and its control API's
// HTTP and JSON parsers. Built and run by `Fuzz/run`
// with `--sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address`; each target exports
// LLVMFuzzerTestOneInput and has no `main` of its own (libFuzzer provides it),
// hence `-parse-as-library`.
import PackageDescription

let fuzzTarget: (String, String) -> Target = { name, library in
    .executableTarget(
        name: name,
        dependencies: [.product(name: library, package: "Swiftlet")],
        swiftSettings: [.unsafeFlags(["-parse-as-library"])])
}

let package = Package(
    name: "SwiftletFuzz",
    dependencies: [.package(name: "Swiftlet", path: "..")],
    targets: [
        fuzzTarget("FuzzELF", "SwiftletBoot"),
        fuzzTarget("FuzzMultiboot", "SwiftletBoot"),
        fuzzTarget("FuzzBootLoader", "SwiftletBoot"),
        fuzzTarget("FuzzBzImage", "SwiftletBoot"),
        fuzzTarget("FuzzHTTPRequest", "SwiftletAPI"),
        fuzzTarget("FuzzJSON", "SwiftletAPI"),
    ],
    swiftLanguageModes: [.v6]
)

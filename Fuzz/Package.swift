// swift-tools-version: 6.1
//
// libFuzzer targets for Swiftlet's image parsers. Built and run by `Fuzz/run`
// with `--sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address`; each target exports
// LLVMFuzzerTestOneInput and has no `main` of its own (libFuzzer provides it),
// hence `-parse-as-library`.
import PackageDescription

let fuzzTarget: (String) -> Target = { name in
    .executableTarget(
        name: name,
        dependencies: [.product(name: "SwiftletBoot", package: "Swiftlet")],
        swiftSettings: [.unsafeFlags(["-parse-as-library"])])
}

let package = Package(
    name: "SwiftletFuzz",
    dependencies: [.package(name: "Swiftlet", path: "..")],
    targets: [
        fuzzTarget("FuzzELF"),
        fuzzTarget("FuzzMultiboot"),
        fuzzTarget("FuzzBootLoader"),
        fuzzTarget("FuzzBzImage"),
    ],
    swiftLanguageModes: [.v6]
)

// swift-tools-version: 6.1
//
// Swiftlet — a virtual machine monitor for Linux KVM.
//
// The targets are the architecture, bottom to top:
//   CSwiftlet        C shim: vendored linux/kvm.h, ioctl numbers, kick signal, futex
//   SwiftletSystem   owning fds, mmap, OS threads, futex words, epoll, logging
//   SwiftletKVM      safe KVM bindings: system, VM and vCPU descriptors, exits
//   SwiftletMemory   guest-physical memory: addresses, regions, checked access
//   SwiftletBoot     image formats and x86 boot state (ELF, Multiboot, long mode)
//   SwiftletDevices  buses and devices, independent of KVM
//   SwiftletVCPU     vCPU threads, states, kicks and exit dispatch
//   Swiftlet         machine assembly: configuration to running VM (the library)
//   SwiftletAPI      the control API: HTTP/1.1 and JSON on a Unix socket, client
//   SwiftletCLI      the `swiftlet` command: argument parsing and subcommands
//   SwiftletDefaultGuest  the guest `swiftlet run` boots with no --kernel (generated)
//   SwiftletTool     the `swiftlet` executable (main.swift only)
//
// No third-party packages: each was weighed against the VMM's memory goal
// (see README, "Dependencies").
import PackageDescription

let package = Package(
    name: "Swiftlet",
    products: [
        .library(name: "Swiftlet", targets: ["Swiftlet"]),
        .executable(name: "swiftlet", targets: ["SwiftletTool"]),
        .executable(name: "swiftlet-bench", targets: ["SwiftletBench"]),
        // For the fuzz targets in Fuzz/, a separate package that depends on this one.
        .library(name: "SwiftletBoot", targets: ["SwiftletBoot"]),
        .library(name: "SwiftletAPI", targets: ["SwiftletAPI"]),
    ],
    targets: [
        .target(name: "CSwiftlet"),
        .target(name: "SwiftletSystem", dependencies: ["CSwiftlet"]),
        .target(name: "SwiftletKVM", dependencies: ["CSwiftlet", "SwiftletSystem"]),
        .target(name: "SwiftletMemory", dependencies: ["SwiftletSystem"]),
        .target(name: "SwiftletBoot", dependencies: ["SwiftletMemory", "SwiftletSystem"]),
        .target(name: "SwiftletDevices", dependencies: ["SwiftletACPI", "SwiftletSystem"]),
        .target(name: "SwiftletInterrupts", dependencies: ["SwiftletDevices", "SwiftletSystem"]),
        .target(name: "SwiftletACPI", dependencies: []),
        .target(name: "Swiftlet", dependencies: ["SwiftletACPI", "SwiftletAPI", "SwiftletBoot", "SwiftletDevices", "SwiftletInterrupts", "SwiftletKVM", "SwiftletMemory", "SwiftletSystem", "SwiftletVCPU"]),
        .target(name: "SwiftletAPI", dependencies: ["SwiftletSystem"]),
        .target(name: "SwiftletCLI", dependencies: ["Swiftlet", "SwiftletAPI", "SwiftletBoot", "SwiftletKVM", "SwiftletSystem", "SwiftletVCPU"]),
        .target(name: "SwiftletDefaultGuest"),
        // Release builds are fully static (Swift runtime, libstdc++ and glibc):
        // no dynamic loader work at start-up, and only the library code we
        // use is resident — 4.5 MiB RSS instead of 7 MiB with shared libraries.
        .executableTarget(name: "SwiftletTool", dependencies: ["SwiftletCLI", "SwiftletDefaultGuest"],
                          linkerSettings: [.unsafeFlags(["-static-executable"], .when(configuration: .release))]),
        // In-process benchmarks of VMM-internal latencies (Benchmarks/run hotplug).
        .executableTarget(name: "SwiftletBench", dependencies: ["Swiftlet", "SwiftletDevices", "SwiftletSystem", "SwiftletVCPU"]),
        .target(name: "SwiftletVCPU", dependencies: ["CSwiftlet", "SwiftletKVM", "SwiftletDevices", "SwiftletInterrupts", "SwiftletMemory", "SwiftletSystem"]),

        // Tests. SwiftletTestSupport builds and runs the guests in Guests/.
        .target(name: "SwiftletTestSupport", dependencies: ["Swiftlet", "SwiftletBoot", "SwiftletDevices", "SwiftletSystem"],
                path: "Tests/SwiftletTestSupport"),
        .testTarget(name: "SwiftletCLITests", dependencies: ["SwiftletCLI", "SwiftletTool", "SwiftletBoot", "Swiftlet", "SwiftletTestSupport"]),
        .testTarget(name: "SwiftletMachineTests", dependencies: ["Swiftlet", "SwiftletDevices", "SwiftletKVM", "SwiftletMemory", "SwiftletVCPU", "SwiftletTestSupport"]),
        .testTarget(name: "SwiftletMemoryTests", dependencies: ["SwiftletMemory"]),
        .testTarget(name: "SwiftletSystemTests", dependencies: ["SwiftletSystem"]),
        .testTarget(name: "SwiftletVCPUTests", dependencies: ["SwiftletVCPU", "SwiftletKVM", "SwiftletMemory", "SwiftletSystem"]),
        .testTarget(name: "SwiftletBootTests", dependencies: ["SwiftletBoot", "SwiftletMemory"]),
        .testTarget(name: "SwiftletDevicesTests", dependencies: ["SwiftletACPI", "SwiftletDevices", "SwiftletSystem", "SwiftletTestSupport"]),
        .testTarget(name: "SwiftletInterruptsTests", dependencies: ["SwiftletInterrupts", "SwiftletDevices", "SwiftletSystem", "SwiftletTestSupport"]),
        .testTarget(name: "SwiftletACPITests", dependencies: ["SwiftletACPI"]),
        .testTarget(name: "SwiftletAPITests", dependencies: ["SwiftletAPI", "SwiftletCLI", "SwiftletSystem"]),
        .testTarget(name: "SwiftletSoakTests", dependencies: ["Swiftlet", "SwiftletSystem", "SwiftletTestSupport", "SwiftletVCPU"]),
        .testTarget(name: "SwiftletLinuxTests", dependencies: ["Swiftlet", "SwiftletDevices", "SwiftletTestSupport", "SwiftletKVM"]),
    ],
    swiftLanguageModes: [.v6]
)

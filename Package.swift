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
//   SwiftletCLI      the `swiftlet` command
//
// No third-party packages: each was weighed against the VMM's memory goal
// (see README, "Dependencies").
import PackageDescription

let package = Package(
    name: "Swiftlet",
    products: [
    ],
    targets: [
        .target(name: "CSwiftlet"),
        .target(name: "SwiftletSystem", dependencies: ["CSwiftlet"]),
        .target(name: "SwiftletKVM", dependencies: ["CSwiftlet", "SwiftletSystem"]),
        .target(name: "SwiftletMemory", dependencies: ["SwiftletSystem"]),
        .target(name: "SwiftletBoot", dependencies: ["SwiftletMemory", "SwiftletSystem"]),
        .target(name: "SwiftletDevices", dependencies: ["SwiftletSystem"]),
        .target(name: "SwiftletVCPU", dependencies: ["CSwiftlet", "SwiftletKVM", "SwiftletDevices", "SwiftletMemory", "SwiftletSystem"]),

        .testTarget(name: "SwiftletMemoryTests", dependencies: ["SwiftletMemory"]),
        .testTarget(name: "SwiftletBootTests", dependencies: ["SwiftletBoot", "SwiftletMemory"]),
        .testTarget(name: "SwiftletDevicesTests", dependencies: ["SwiftletDevices"]),
    ],
    swiftLanguageModes: [.v6]
)

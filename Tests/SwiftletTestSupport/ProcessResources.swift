import Glibc

/// What the test process holds right now, to show that something released
/// everything it took (threads, file descriptors, vCPU mappings).
public struct ProcessResources: Equatable, Sendable, CustomStringConvertible {
    public var threads: Int
    /// Threads named `vcpu<N>` (Swiftlet's vCPU threads); the total above
    /// also counts the test runner's pool threads, which come and go.
    public var vcpuThreads: Int
    public var fileDescriptors: Int
    /// kvm_run areas mapped (`anon_inode:kvm-vcpu` lines in /proc/self/maps).
    public var vcpuMappings: Int

    public static func current() -> ProcessResources {
        ProcessResources(threads: entries(in: "/proc/self/task"), vcpuThreads: vcpuThreadCount(),
                         fileDescriptors: entries(in: "/proc/self/fd") - 1,
                         vcpuMappings: mapsLines(containing: "kvm-vcpu"))
    }

    public var description: String { "\(threads) threads (\(vcpuThreads) vCPU), \(fileDescriptors) fds, \(vcpuMappings) kvm_run mappings" }

    /// Entries of a directory other than . and .. (the directory stream's
    /// own descriptor is one of /proc/self/fd's, hence the - 1 above).
    private static func entries(in path: String) -> Int {
        guard let dir = opendir(path) else { return -1 }
        defer { closedir(dir) }
        var count = 0
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { count += 1 }
        }
        return count
    }

    private static func vcpuThreadCount() -> Int {
        guard let dir = opendir("/proc/self/task") else { return -1 }
        defer { closedir(dir) }
        var count = 0
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard name != "." && name != "..", let file = fopen("/proc/self/task/\(name)/comm", "r") else { continue }
            var buffer = [CChar](repeating: 0, count: 32)
            if fgets(&buffer, Int32(buffer.count), file) != nil,
               String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self).hasPrefix("vcpu") {
                count += 1
            }
            fclose(file)
        }
        return count
    }

    private static func mapsLines(containing text: String) -> Int {
        guard let file = fopen("/proc/self/maps", "r") else { return -1 }
        defer { fclose(file) }
        var count = 0
        var buffer = [CChar](repeating: 0, count: 4096)
        while fgets(&buffer, Int32(buffer.count), file) != nil {
            let line = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if line.contains(text) { count += 1 }
        }
        return count
    }
}

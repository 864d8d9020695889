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
        names(in: path)?.count ?? -1
    }

    private static func vcpuThreadCount() -> Int {
        guard let tasks = names(in: "/proc/self/task") else { return -1 }
        return tasks.filter { firstLine(of: "/proc/self/task/\($0)/comm")?.hasPrefix("vcpu") == true }.count
    }

    private static func names(in path: String) -> [String]? {
        guard let dir = opendir(path) else { return nil }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Lines of a text file, read with the C library (no Foundation needed).
    private static func lines(of path: String) -> [String]? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var lines: [String] = []
        var buffer = [CChar](repeating: 0, count: 4096)
        while fgets(&buffer, Int32(buffer.count), file) != nil {
            lines.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return lines
    }

    private static func firstLine(of path: String) -> String? { lines(of: path)?.first }

    /// Lines of /proc/self/maps: every mapping the process has (guest
    /// memory is one or more of them).
    public static func mappingCount() -> Int {
        lines(of: "/proc/self/maps")?.count ?? -1
    }

    private static func mapsLines(containing text: String) -> Int {
        lines(of: "/proc/self/maps")?.filter { $0.contains(text) }.count ?? -1
    }
}

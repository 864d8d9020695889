import Glibc
import Synchronization

/// Swiftlet's log: one line per message on stderr, prefixed with the level.
/// Deliberately tiny — the VMM process avoids Foundation and most packages
/// to keep its resident memory small.
public enum Log {
    public enum Level: Int, Sendable, Comparable, CaseIterable {
        case error = 0, warning, info, debug

        public static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }

        public var name: String {
            switch self {
            case .error: "error"
            case .warning: "warning"
            case .info: "info"
            case .debug: "debug"
            }
        }

        public init?(name: String) {
            guard let level = Level.allCases.first(where: { $0.name == name }) else { return nil }
            self = level
        }
    }

    private static let threshold = Atomic<Int>(Level.warning.rawValue)

    public static var level: Level {
        get { Level(rawValue: threshold.load(ordering: .relaxed)) ?? .warning }
        set { threshold.store(newValue.rawValue, ordering: .relaxed) }
    }

    public static func enabled(_ level: Level) -> Bool { level.rawValue <= threshold.load(ordering: .relaxed) }

    public static func error(_ message: @autoclosure () -> String) { emit(.error, message) }
    public static func warning(_ message: @autoclosure () -> String) { emit(.warning, message) }
    public static func info(_ message: @autoclosure () -> String) { emit(.info, message) }
    public static func debug(_ message: @autoclosure () -> String) { emit(.debug, message) }

    private static func emit(_ level: Level, _ message: () -> String) {
        guard enabled(level) else { return }
        writeLine("swiftlet: \(level.name): \(message())")
    }

    /// Writes `line` plus a newline to stderr in one write(2), so lines from
    /// different threads do not interleave.
    public static func writeLine(_ line: String) {
        var text = line
        text.append("\n")
        text.withUTF8 { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = Glibc.write(2, buffer.baseAddress! + offset, buffer.count - offset)
                if n <= 0 { break }
                offset += n
            }
        }
    }
}

/// Lets through at most `burst` events per `interval`, counting the rest so
/// the next message can say how many were suppressed. A guest that hammers
/// an unclaimed port must not be able to flood the host's log.
public final class RateLimiter: Sendable {
    private struct State {
        var windowStart: Int64 = 0
        var inWindow = 0
        var suppressed = 0
    }
    private let state = Locked(State())
    private let burst: Int
    private let interval: Int64

    public init(burst: Int = 10, intervalNanoseconds: Int64 = 1_000_000_000) {
        self.burst = burst
        self.interval = intervalNanoseconds
    }

    /// Returns nil if this event should be dropped, or the number of events
    /// dropped since the last one let through.
    public func admit(now: Int64 = MonotonicClock.nanoseconds()) -> Int? {
        state.withLock { s in
            if now - s.windowStart >= interval {
                s.windowStart = now
                s.inWindow = 0
            }
            guard s.inWindow < burst else {
                s.suppressed += 1
                return nil
            }
            s.inWindow += 1
            let dropped = s.suppressed
            s.suppressed = 0
            return dropped
        }
    }
}

import Synchronization
import SwiftletSystem
@testable import SwiftletDevices

/// An interrupt line that records every level it is driven to.
final class LevelRecorder: InterruptLine {
    private let levels = Locked<[Bool]>([])

    func setLevel(_ asserted: Bool) {
        levels.withLock { $0.append(asserted) }
    }

    var history: [Bool] { levels.withLock { $0 } }
    /// The current level (a line never driven is deasserted).
    var level: Bool { levels.withLock { $0.last ?? false } }
}

/// A machine stand-in that records guest requests.
final class RequestRecorder: GuestRequestSink {
    private let requests = Locked<[GuestRequest]>([])

    func guestRequested(_ request: GuestRequest) {
        requests.withLock { $0.append(request) }
    }

    var all: [GuestRequest] { requests.withLock { $0 } }
}

/// Counts calls, for handlers.
final class Counter: Sendable {
    private let value = Atomic<Int>(0)
    func increment() { value.add(1, ordering: .relaxed) }
    var count: Int { value.load(ordering: .relaxed) }
}

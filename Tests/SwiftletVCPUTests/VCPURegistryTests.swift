import Glibc
import Synchronization
import Testing
import SwiftletSystem
@testable import SwiftletVCPU

/// The registry without KVM: elements stand in for vCPUs and record when
/// they are "reclaimed", so the tests can check that reclamation never
/// happens while a reader can still hold one.
@Suite struct VCPURegistryTests {
    final class Element: Sendable {
        let index: Int
        /// Set when the element's owner reclaimed it (after `remove`).
        let reclaimed = Atomic<Bool>(false)
        init(index: Int) { self.index = index }
    }

    @Test func insertRemoveAndSnapshots() throws {
        let registry = VCPURegistry<Element>(capacity: 4)
        #expect(registry.present.isEmpty)
        try registry.insert(Element(index: 2), at: 2)
        try registry.insert(Element(index: 0), at: 0)
        #expect(registry.read { $0.indices } == [0, 2])
        #expect(registry.present.map(\.index) == [0, 2])
        #expect(throws: VCPURegistry<Element>.Error.occupied(index: 2)) { try registry.insert(Element(index: 2), at: 2) }
        #expect(throws: VCPURegistry<Element>.Error.outOfRange(index: 4, capacity: 4)) { try registry.insert(Element(index: 4), at: 4) }
        #expect(registry.read { $0[7] } == nil)
        #expect(registry.remove(at: 2)?.index == 2)
        #expect(registry.remove(at: 2) == nil)
        #expect(registry.remove(at: -1) == nil)
        #expect(registry.present.map(\.index) == [0])
    }

    /// A snapshot a reader holds does not change under it.
    @Test func snapshotsAreImmutable() throws {
        let registry = VCPURegistry<Element>(capacity: 2)
        try registry.insert(Element(index: 1), at: 1)
        registry.read { snapshot in
            _ = registry  // a writer elsewhere could run now; this reader's view stays
            #expect(snapshot.indices == [1])
        }
    }

    /// `remove` does not return while a reader that saw the element is
    /// still in its read section.
    @Test func removeWaitsForReadersThatCouldHoldTheElement() throws {
        let registry = VCPURegistry<Element>(capacity: 2)
        try registry.insert(Element(index: 1), at: 1)
        let inside = Latch(), leave = Latch()
        let removedAt = Atomic<Int64>(0), readerLeftAt = Atomic<Int64>(0)
        let reader = try OSThread(name: "reader") {
            registry.read { snapshot in
                let element = snapshot[1]!
                inside.signal()
                leave.wait()
                let wasReclaimed = element.reclaimed.load(ordering: .sequentiallyConsistent)
                #expect(!wasReclaimed, "reclaimed while a reader held it")
                readerLeftAt.store(MonotonicClock.nanoseconds(), ordering: .sequentiallyConsistent)
            }
        }
        inside.wait()
        let writer = try OSThread(name: "writer") {
            let removed = registry.remove(at: 1)!
            removedAt.store(MonotonicClock.nanoseconds(), ordering: .sequentiallyConsistent)
            removed.reclaimed.store(true, ordering: .sequentiallyConsistent)
        }
        usleep(50_000)
        let removedEarly = removedAt.load(ordering: .sequentiallyConsistent)
        #expect(removedEarly == 0, "remove returned while a reader was inside")
        leave.signal()
        reader.join()
        writer.join()
        let removed = removedAt.load(ordering: .sequentiallyConsistent), left = readerLeftAt.load(ordering: .sequentiallyConsistent)
        #expect(removed >= left)
    }

    /// Readers walk the set while writers add and remove: no reader ever
    /// sees a reclaimed element, and every element ends reclaimed or present.
    @Test func concurrentReadersAndWriters() throws {
        let registry = VCPURegistry<Element>(capacity: 8)
        let done = Atomic<Bool>(false)
        let violations = Atomic<Int>(0), reads = Atomic<Int>(0)
        var threads: [OSThread] = []
        for r in 0..<3 {
            threads.append(try OSThread(name: "reader\(r)") {
                while !done.load(ordering: .relaxed) {
                    registry.forEach { element in
                        if element.reclaimed.load(ordering: .sequentiallyConsistent) { violations.add(1, ordering: .relaxed) }
                    }
                    reads.add(1, ordering: .relaxed)
                }
            })
        }
        let writers = 2, rounds = 500
        let writerThreads = try (0..<writers).map { w in
            try OSThread(name: "writer\(w)") {
                // Writer w owns slots w, w+2, w+4, w+6.
                for round in 0..<rounds {
                    let index = w + 2 * (round % 4)
                    try? registry.insert(Element(index: index), at: index)
                    if let removed = registry.remove(at: index) {
                        removed.reclaimed.store(true, ordering: .sequentiallyConsistent)
                    }
                }
            }
        }
        for t in writerThreads { t.join() }
        done.store(true, ordering: .relaxed)
        for t in threads { t.join() }
        let seen = violations.load(ordering: .relaxed), readCount = reads.load(ordering: .relaxed)
        #expect(seen == 0, "a reader saw a reclaimed element")
        #expect(registry.present.isEmpty)
        #expect(readCount > 0)
    }
}

import Glibc
import Synchronization
import Testing
@testable import SwiftletSystem

@Suite struct ReadCopyUpdateTests {
    /// An object that knows whether it was reclaimed.
    final class Resource: Sendable {
        let id: Int
        let alive = Atomic<Bool>(true)
        init(id: Int) { self.id = id }
    }

    final class Snapshot: Sendable {
        let resources: [Resource]
        init(_ resources: [Resource]) { self.resources = resources }
    }

    @Test func readersNeverSeeAReclaimedResource() throws {
        let cell = ReadCopyUpdate(Snapshot((0..<8).map(Resource.init)))
        let stop = Atomic<Bool>(false)
        let violations = Atomic<Int>(0)
        let reads = Atomic<Int>(0)
        var readers: [OSThread] = []
        for i in 0..<3 {
            readers.append(try OSThread(name: "reader\(i)") {
                while !stop.load(ordering: .relaxed) {
                    cell.read { snapshot in
                        for r in snapshot.resources where !r.alive.load(ordering: .sequentiallyConsistent) {
                            violations.add(1, ordering: .relaxed)
                        }
                    }
                    // Readers in Swiftlet (vCPU threads routing interrupts)
                    // do other work between reads; yielding now and then
                    // keeps three spinning readers on two CPUs from starving
                    // the writer.
                    if reads.add(1, ordering: .relaxed).newValue % 64 == 0 { sched_yield() }
                }
            })
        }
        // The writer removes one resource and adds another, 5,000 times;
        // a resource is reclaimed as soon as `replace` says no reader can
        // still hold the snapshot that had it.
        var next = 8
        for _ in 0..<5_000 {
            let (old, new) = cell.update { current in
                Snapshot(Array(current.resources.dropFirst()) + [Resource(id: next)])
            }
            next += 1
            let kept = Set(new.resources.map(\.id))
            for r in old.resources where !kept.contains(r.id) {
                r.alive.store(false, ordering: .sequentiallyConsistent)
            }
        }
        stop.store(true, ordering: .relaxed)
        for r in readers { r.join() }
        #expect(violations.load(ordering: .relaxed) == 0)
        #expect(reads.load(ordering: .relaxed) > 0)
        cell.read { #expect($0.resources.map(\.id) == Array(5_000..<5_008)) }
    }

    @Test func replaceReturnsThePreviousSnapshot() {
        let cell = ReadCopyUpdate(Snapshot([Resource(id: 1)]))
        let old = cell.replace(with: Snapshot([Resource(id: 2)]))
        #expect(old.resources.map(\.id) == [1])
        cell.read { #expect($0.resources.map(\.id) == [2]) }
    }

    @Test func snapshotsAreReleasedOnceReplaced() {
        weak var first: Snapshot?
        let cell: ReadCopyUpdate<Snapshot>
        do {
            let s = Snapshot([])
            first = s
            cell = ReadCopyUpdate(s)
        }
        #expect(first != nil)
        cell.replace(with: Snapshot([]))
        #expect(first == nil, "the cell kept the old snapshot alive")
    }
}

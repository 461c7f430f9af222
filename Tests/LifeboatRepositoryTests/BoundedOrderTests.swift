import Foundation
import LifeboatCore
import LifeboatRepository
import Synchronization
import Testing

/// The loop a backup stores its files with: results reach the consumer in the items' order, no more
/// than `parallelism` run at once, and no more than `window` are held ahead of the oldest unfinished
/// one (a slow first item holds up the consumer, not memory).
struct BoundedOrderTests {
    final class Gauge: Sendable {
        let state = Mutex((running: 0, most: 0, started: 0))
        func enter() -> Int {
            state.withLock { s in
                s.running += 1
                s.most = max(s.most, s.running)
                s.started += 1
                return s.started
            }
        }
        func leave() { state.withLock { $0.running -= 1 } }
    }

    @Test func resultsArriveInOrderWithinTheParallelismAndTheWindow() async throws {
        let gauge = Gauge()
        var seen: [Int] = []
        var aheadAtFirst = 0
        try await forEachBoundedInOrder(Array(0..<500), parallelism: 4, window: 32) { i -> Int in
            _ = gauge.enter()
            defer { gauge.leave() }
            // The first item is slow: the others finish long before it.
            try await Task.sleep(for: .milliseconds(i == 0 ? 300 : Int.random(in: 0...3)))
            return i * 2
        } consume: { value in
            if seen.isEmpty { aheadAtFirst = gauge.state.withLock { $0.started } }
            seen.append(value)
        }
        #expect(seen == (0..<500).map { $0 * 2 })
        #expect(gauge.state.withLock { $0.most } <= 4)
        #expect(aheadAtFirst <= 32 + 1, "no more than the window started while the first was slow: \(aheadAtFirst)")
    }

    @Test func aFailureStopsTheLoopAndReachesTheCaller() async throws {
        var consumed = 0
        await #expect(throws: LifeboatError.self) {
            try await forEachBoundedInOrder(Array(0..<100), parallelism: 3) { i -> Int in
                if i == 40 { throw LifeboatError(.io, "item 40 failed") }
                return i
            } consume: { _ in consumed += 1 }
        }
        #expect(consumed <= 40, "nothing after the failed item is consumed")
        var none = 0
        try await forEachBoundedInOrder([Int](), parallelism: 3) { $0 } consume: { _ in none += 1 }
        #expect(none == 0)
    }

    /// Items made one at a time (a directory walk): made in order, never further ahead of the
    /// consumer than the window, and not asked for again once the maker said there are no more.
    @Test func itemsMadeOneAtATimeAreMadeOnlyAsTheWindowAllows() async throws {
        var made = 0
        var asksAfterEnd = 0
        var mostAhead = 0
        var seen: [Int] = []
        try await forEachBoundedInOrder(next: { () -> Int? in
            if made == 300 {
                asksAfterEnd += 1
                return nil
            }
            made += 1
            mostAhead = max(mostAhead, made - seen.count)
            return made - 1
        }, parallelism: 3, window: 16) { i -> Int in
            try await Task.sleep(for: .milliseconds(i % 50 == 0 ? 40 : 0))
            return i + 1000
        } consume: { seen.append($0) }
        #expect(seen == (0..<300).map { $0 + 1000 })
        #expect(mostAhead <= 16, "made \(mostAhead) ahead of the consumer with a window of 16")
        #expect(asksAfterEnd == 1)
    }
}

import Foundation
import LifeboatTesting
import Testing

/// The README's first command: the demo runs end to end and its report holds real measurements.
struct DemoTests {
    @Test func demoRecoversFromTheDisasterAndReports() async throws {
        let result = try await LifeboatCLI.run(["demo", "--scale", "2", "--json"], timeout: 600)
        #expect(result.status == 0, "\(result.errors)")
        let report = try LifeboatCLI.json(result)
        #expect(report["passed"] as? Bool == true)
        #expect(report["transactionsLost"] as? Int == 0)
        let checks = try #require(report["checks"] as? [String: Bool])
        #expect(checks.count == 4 && checks.values.allSatisfy { $0 })
        let rto = try #require(report["recoverySeconds"] as? Double)
        #expect(rto > 0 && rto < 300)
        // The restored cluster's last commit is at or before T, and close to it.
        let window = try #require(report["dataLossWindowSeconds"] as? Double)
        #expect(window >= 0 && window < 10)
        let steps = try #require(report["steps"] as? [[String: Any]])
        #expect(steps.count == 8)
        let work = try #require(report["workDirectory"] as? String)
        #expect(!FileManager.default.fileExists(atPath: work), "the demo cleans up after itself")
    }
}

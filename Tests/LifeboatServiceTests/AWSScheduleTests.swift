import Foundation
import LifeboatAWS
import LifeboatAWSCore
import LifeboatConfiguration
import LifeboatCore
import LifeboatRepository
import LifeboatRunbooks
import LifeboatService
import LifeboatTesting
import Testing

/// When serve's AWS jobs run: the seed's weekly snapshot on Sundays only (unless a week and a day
/// were missed), inside the AWS window; against the strict AWS proxy, read back from RDS.
@Suite(.serialized) struct AWSScheduleTests {
    func utc(_ text: String) throws -> Date { try Timestamp.parse(text) }

    @Test func theWeeklySnapshotWaitsForSundayInTheWindow() async throws {
        let sandbox = try TestSandbox("aws-schedule")
        defer { Task { await sandbox.remove() } }
        let endpoint = try await StrictAWS.shared.url()
        let account = MotoServer.overrides(endpoint, region: "us-west-2")
        let rds = try AWSClient(.rds, overrides: account)
        _ = try await rds.query("CreateDBCluster", version: "2014-10-31", [("DBClusterIdentifier", "weekly-prod"), ("Engine", "aurora-postgresql"),
            ("MasterUsername", "postgres"), ("MasterUserPassword", "a-long-password")])
        _ = try await AuroraClusters(client: rds).waitAvailable("weekly-prod", timeout: 30, poll: 0.3)
        var d = AWSDeploymentSettings()
        d.auroraCluster = "weekly-prod"
        d.schedule = AWSJobSchedule(snapshot: 7 * 86400, window: try BackupWindow.parse("04:00-05:00"))
        d.schedule.snapshotWeekday = 1  // Sunday
        let repo = try await TestRepository.make(in: sandbox)
        let stateFile = sandbox.path("serve.json")
        // Job records take the real clock, so the days are laid out from now: the next Sunday at
        // 04:05 (in the window), the previous weekly snapshot late in the window a week before it.
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? .current
        let real = Date()
        let sundayEarly = try #require(calendar.nextDate(after: real, matching: DateComponents(hour: 4, minute: 5, weekday: 1),
            matchingPolicy: .nextTime))
        let previous = sundayEarly.addingTimeInterval(-7 * 86400 + 35 * 60)
        var state = ServiceState()
        state[.awsSnapshot] = JobRecord(startedAt: previous, finishedAt: previous, succeeded: true, reason: "test", message: "", runs: 1,
            failures: 0, lastSuccessAt: previous)
        // (Expiry, daily, is kept out of this test: recorded as done until long after it.)
        state[.awsExpireSnapshots] = JobRecord(startedAt: real, finishedAt: real, succeeded: true, reason: "test", message: "", runs: 1,
            failures: 0, lastSuccessAt: real.addingTimeInterval(86400 * 60))
        try state.save(stateFile)
        func service() throws -> BackupService {
            var configuration = ServiceConfiguration(schedule: ServiceSchedule(backupEvery: nil), backup: nil, expirePolicy: nil, copyToMirrors: false,
                drill: nil, production: nil, stateFile: stateFile)
            configuration.aws = AWSProtection(deployment: d, account: account)
            return try BackupService(repository: repo.repository, mirrors: MirrorSet([]), configuration: configuration, logger: TestSandbox.logger())
        }
        func weekly() async throws -> Int {
            try await AuroraClusters(client: rds).manualSnapshots(of: "weekly-prod").filter { $0.tags["Purpose"] == "weekly" }.count
        }
        let saturday = sundayEarly.addingTimeInterval(-86400 + 10 * 60)
        #expect(try await service().runDueJobs(now: saturday).isEmpty, "Saturday in the window: not the snapshot's day")
        let sundayOutside = sundayEarly.addingTimeInterval(8 * 3600)
        #expect(try await service().runDueJobs(now: sundayOutside).isEmpty, "Sunday outside the window, a day short of a missed week")
        #expect(try await weekly() == 0)
        // In the window, though 35 minutes short of 7 days (the last one ran late in the window).
        #expect(try await service().runDueJobs(now: sundayEarly) == [.awsSnapshot])
        #expect(try await weekly() == 1)
        #expect(try await service().runDueJobs(now: sundayEarly.addingTimeInterval(600)).isEmpty, "not twice")
        #expect(try await service().runDueJobs(now: sundayEarly.addingTimeInterval(86400)).isEmpty, "Monday: not due")
        // Nine days without one (the daemon was down over Sunday): taken late, whatever the day and hour.
        let late = real.addingTimeInterval(9 * 86400 + 6 * 3600)
        #expect(try await service().runDueJobs(now: late) == [.awsSnapshot])
        #expect(try await weekly() == 2)
    }
}

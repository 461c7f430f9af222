import Foundation
import LifeboatCore
import Testing

func record(_ id: String, _ kind: BackupKind, stoppedDaysAgo days: Double, now: Date, retainDays: Double? = nil,
    startSegment: UInt64 = 2, stopSegment: UInt64 = 2, nextXid: UInt64? = nil) -> BackupRecord
{
    let size: UInt64 = 16 << 20
    let stop = now.addingTimeInterval(-days * 86400)
    return BackupRecord(id: id, kind: kind, tags: [:], retainUntil: retainDays.map { stop.addingTimeInterval($0 * 86400) },
        startTime: stop.addingTimeInterval(-60), stopTime: stop, startLSN: LSN(startSegment * size + 40),
        stopLSN: LSN(stopSegment * size + 256), timeline: 1, nextXidAtStop: nextXid, walSegmentSize: size, postgresVersion: "15",
        systemIdentifier: "1", backupLabel: "", tablespaceMap: "", fileCount: 1, logicalBytes: 1, newStoredBytes: 1, newChunks: 1,
        totalChunks: 1, manifestObject: "manifests/\(id)", host: "h", lifeboatVersion: "t")
}

struct RetentionTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    @Test func automatedKeepsWindowPlusItsBase() {
        let backups = [
            record("a10", .automated, stoppedDaysAgo: 10, now: now), record("a8", .automated, stoppedDaysAgo: 8, now: now),
            record("a6", .automated, stoppedDaysAgo: 6, now: now), record("a1", .automated, stoppedDaysAgo: 1, now: now),
        ]
        let plan = ExpirePlan.make(backups: backups, policy: .seedDefault, now: now)
        #expect(plan.expired == ["a10"])
        #expect(plan.kept == ["a8", "a6", "a1"])
    }

    @Test func manualKeepsItsOwnRetention() {
        let backups = [
            record("m40", .manual, stoppedDaysAgo: 40, now: now),  // policy default 30d: expired
            record("m40keep", .manual, stoppedDaysAgo: 40, now: now, retainDays: 90),
            record("m20", .manual, stoppedDaysAgo: 20, now: now),
            record("m3short", .manual, stoppedDaysAgo: 3, now: now, retainDays: 1),
            record("a1", .automated, stoppedDaysAgo: 1, now: now),
        ]
        let plan = ExpirePlan.make(backups: backups, policy: .seedDefault, now: now)
        #expect(Set(plan.expired) == ["m40", "m3short"])
    }

    @Test func newestBackupIsNeverExpired() {
        let backups = [record("m", .manual, stoppedDaysAgo: 100, now: now), record("old", .manual, stoppedDaysAgo: 200, now: now)]
        let plan = ExpirePlan.make(backups: backups, policy: .seedDefault, now: now)
        #expect(plan.kept == ["m"])
        #expect(plan.expired == ["old"])
    }

    /// Backups stopped for three weeks (a broken scheduler): the window alone would keep one; the
    /// keep_last floor keeps the newest N automated ones, and only automated ones count.
    @Test func keepLastIsAFloorOfAutomatedBackups() {
        let backups = [
            record("a30", .automated, stoppedDaysAgo: 30, now: now), record("a25", .automated, stoppedDaysAgo: 25, now: now),
            record("a22", .automated, stoppedDaysAgo: 22, now: now), record("m21", .manual, stoppedDaysAgo: 50, now: now),
            record("a21", .automated, stoppedDaysAgo: 21, now: now),
        ]
        #expect(ExpirePlan.make(backups: backups, policy: .seedDefault, now: now).kept == ["a21"])
        var policy = RetentionPolicy.seedDefault
        policy.keepLast = 3
        let plan = ExpirePlan.make(backups: backups, policy: policy, now: now)
        #expect(Set(plan.kept) == ["a25", "a22", "a21"])
        #expect(Set(plan.expired) == ["a30", "m21"])
        #expect(plan.decisions.first { $0.backupID == "a25" }?.reason.contains("keep_last") == true)
        // Old policies (stored without the key) decode with no floor.
        let old = #"{"recoveryWindow":604800,"manualRetention":2592000}"#
        #expect((try? JSONDecoder().decode(RetentionPolicy.self, from: Data(old.utf8)))?.keepLast == 0)
    }

    @Test func walNeededByKeptBackups() {
        let size: UInt64 = 16 << 20
        let auto = record("a", .automated, stoppedDaysAgo: 1, now: now, startSegment: 20, stopSegment: 21)
        let manual = record("m", .manual, stoppedDaysAgo: 9, now: now, startSegment: 5, stopSegment: 6)
        func needed(_ n: UInt64) -> Bool {
            ExpirePlan.walNeeded(.segment(WALSegment(timeline: 1, number: n, segmentSize: size)), keptBackups: [auto, manual])
        }
        #expect(!needed(4))
        #expect(needed(5) && needed(6))
        #expect(!needed(7) && !needed(19))
        #expect(needed(20) && needed(500))
        #expect(ExpirePlan.walNeeded(.history(timeline: 2), keptBackups: []))
    }

    @Test func chooseBackupForTargets() throws {
        let b1 = record("b1", .automated, stoppedDaysAgo: 3, now: now, startSegment: 2, stopSegment: 2, nextXid: 100)
        let b2 = record("b2", .automated, stoppedDaysAgo: 2, now: now, startSegment: 8, stopSegment: 9, nextXid: 500)
        let all = [b2, b1]
        let g = TimelineGraph(segmentSize: 16 << 20, segments: [], histories: [:])
        func pick(_ t: RecoveryTarget, _ backups: [BackupRecord] = all) throws -> String { try t.chooseBackup(from: backups, along: 1, in: g).id }
        #expect(try pick(.latest) == "b2")
        #expect(try pick(.time(now.addingTimeInterval(-2.5 * 86400))) == "b1")
        #expect(try pick(.time(now)) == "b2")
        #expect(try pick(.lsn(b2.stopLSN)) == "b2")
        #expect(try pick(.lsn(LSN(b2.stopLSN.value - 1))) == "b1")
        #expect(try pick(.xid(499)) == "b1")
        #expect(try pick(.xid(500)) == "b2")
        #expect(try pick(.name("x")) == "b1")
        #expect(throws: LifeboatError.self) { try pick(.time(now.addingTimeInterval(-30 * 86400))) }
        #expect(throws: LifeboatError.self) { try pick(.latest, []) }
    }

    @Test func recoverySettingsSetEveryTargetKey() {
        func dict(_ t: RecoveryTarget) -> [String: String] { Dictionary(uniqueKeysWithValues: t.recoverySettings().map { ($0.key, $0.value) }) }
        let latest = dict(.latest)
        for key in ["recovery_target", "recovery_target_lsn", "recovery_target_name", "recovery_target_time", "recovery_target_xid"] {
            #expect(latest[key] == "", "\(key) is written empty, so an earlier restore's cannot add a second target")
        }
        #expect(dict(.immediate)["recovery_target"] == "immediate" && dict(.immediate)["recovery_target_action"] == "promote")
        #expect(dict(.xid(42))["recovery_target_xid"] == "42" && dict(.xid(42))["recovery_target_time"] == "")
        // A restore that promotes the server itself pauses it at a target; there is none to pause at
        // for the latest point.
        let paused = Dictionary(uniqueKeysWithValues: RecoveryTarget.lsn(LSN(0x3000000)).recoverySettings(pauseAtTarget: true).map { ($0.key, $0.value) })
        #expect(paused["recovery_target_action"] == "pause" && paused["recovery_target_lsn"] == "0/3000000")
        #expect(Dictionary(uniqueKeysWithValues: RecoveryTarget.latest.recoverySettings(pauseAtTarget: true).map { ($0.key, $0.value) })["recovery_target_action"] == "promote")
    }
}

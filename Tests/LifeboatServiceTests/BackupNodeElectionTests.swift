import LifeboatService
import Testing

/// The election rule every node applies to the same member list.
struct BackupNodeElectionTests {
    typealias Member = BackupNodeElection.Member
    let limit: UInt64 = 64 << 20

    @Test func theFirstHealthyReplicaByNameBacksUp() {
        let members = [
            Member(name: "node3", role: "sync_standby", state: "streaming", lagBytes: 0),
            Member(name: "node1", role: "leader", state: "running", lagBytes: nil),
            Member(name: "node2", role: "replica", state: "streaming", lagBytes: 1024),
        ]
        #expect(BackupNodeElection.choose(members, maxLagBytes: limit, preferLeader: false).name == "node2")
        // The order Patroni lists them in does not matter: every node gets the same answer.
        #expect(BackupNodeElection.choose(members.reversed(), maxLagBytes: limit, preferLeader: false).name == "node2")
        #expect(BackupNodeElection.choose(members, maxLagBytes: limit, preferLeader: true).name == "node1")
    }

    @Test func laggingStartingAndTaggedReplicasAreSkipped() {
        let members = [
            Member(name: "a", role: "replica", state: "streaming", lagBytes: limit + 1),
            Member(name: "b", role: "replica", state: "starting", lagBytes: 0),
            Member(name: "c", role: "replica", state: "streaming", lagBytes: 0, noBackup: true),
            Member(name: "d", role: "replica", state: "streaming", lagBytes: nil),
            Member(name: "e", role: "replica", state: "running", lagBytes: 10),
            Member(name: "z", role: "leader", state: "running", lagBytes: nil),
        ]
        let chosen = BackupNodeElection.choose(members, maxLagBytes: limit, preferLeader: false)
        #expect(chosen.name == "e", "\(chosen)")
    }

    @Test func theLeaderWhenNoReplicaIsHealthyAndNobodyWhenNothingIs() {
        let leaderOnly = [
            Member(name: "b", role: "replica", state: "stopped", lagBytes: nil),
            Member(name: "a", role: "leader", state: "running", lagBytes: nil),
        ]
        #expect(BackupNodeElection.choose(leaderOnly, maxLagBytes: limit, preferLeader: false).name == "a")
        // A standby cluster's leader counts as the leader.
        let standbyCluster = [Member(name: "s", role: "standby_leader", state: "running", lagBytes: nil)]
        #expect(BackupNodeElection.choose(standbyCluster, maxLagBytes: limit, preferLeader: false).name == "s")
        let down = [Member(name: "a", role: "leader", state: "stopped", lagBytes: nil)]
        #expect(BackupNodeElection.choose(down, maxLagBytes: limit, preferLeader: false).name == nil)
    }

    @Test func aNodeThatCannotAskPatroniDoesNotBackUp() async {
        // Nothing listens on port 9 of loopback.
        let choice = await BackupNodeElection(patroniURL: "http://127.0.0.1:9").elect()
        #expect(!choice.thisNodeBacksUp)
        #expect(choice.error != nil && choice.summary.contains("does not back up"), "\(choice.summary)")
    }
}

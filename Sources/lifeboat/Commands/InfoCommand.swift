import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatRepository

struct InfoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "Backups, recovery window, WAL archive state.")

    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let settings = try Settings(global)
        let logger = settings.makeLogger()
        let repo = try await settings.openRepository(logger)
        var s = try await RepositorySummary.make(repo)
        for path in try settings.replicaConfigs {
            do {
                s.replicas.append(try await ReplicaLag.measure(primary: repo, replica: try await Settings.openReplica(path, logger: logger)))
            } catch let e as LifeboatError {
                s.replicas.append(ReplicaLag(location: "\(path) (unreachable: \(e.message))", missingBackups: [], missingWALFiles: -1))
            }
        }
        if json {
            try Output.json(s)
            return
        }
        print("repository \(s.location) (id \(s.repositoryID), format \(s.format)): \(Output.bytes(UInt64(s.totalBytes))) in \(s.chunkCount) chunks and other objects")
        print("recovery window: \(s.earliestRestorableTime.map(Timestamp.format) ?? "-") .. \(s.latestRestorableTime.map(Timestamp.format) ?? "-")")
        print("wal archive: \(s.walFiles) files, \(Output.bytes(UInt64(s.walBytes))), last segment \(s.lastArchivedWAL ?? "-")")
        for t in s.timelines { print("  timeline \(t.timeline): \(t.segments) segments \(t.first ?? "") .. \(t.last ?? "")") }
        for r in s.replicas {
            print("replica \(r.location): " + (r.missingWALFiles < 0 ? "unreachable"
                : r.upToDate ? "up to date" : "behind by \(r.missingBackups.count) backup(s) and \(r.missingWALFiles) WAL file(s) (last WAL \(r.lastReplicaWAL ?? "-") vs \(r.lastPrimaryWAL ?? "-"))"))
        }
        print("backups: \(s.backups.count)")
        for b in s.backups {
            let tags = b.tags.keys.sorted().map { "\($0)=\(b.tags[$0] ?? "")" }.joined(separator: ",")
            print("  \(b.id)  \(b.kind.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)) \(Timestamp.format(b.startTime)) .. \(Timestamp.format(b.stopTime))  lsn \(b.startLSN)..\(b.stopLSN) tl \(b.timeline)  \(Output.bytes(b.logicalBytes)) read, \(Output.bytes(b.newStoredBytes)) stored\(tags.isEmpty ? "" : "  [\(tags)]")\(b.retainUntil.map { "  until \(Timestamp.format($0))" } ?? "")")
        }
    }
}

import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatRepository

struct InfoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "Backups, recovery window, WAL archive state.")

    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let context = try Context(global)
        let logger = context.makeLogger()
        let repo = try await context.openRepository(logger)
        var s = try await RepositorySummary.make(repo)
        s.mirrors = await context.mirrors(logger).statuses(primary: repo)
        if json {
            try Output.json(s)
            return
        }
        print("repository \(s.location) (id \(s.repositoryID), format \(s.format)): \(Output.bytes(UInt64(s.totalBytes))) in \(s.chunkCount) chunks, \(s.packCount) packs and other objects")
        print("recovery window: \(s.earliestRestorableTime.map(Timestamp.format) ?? "-") .. \(s.latestRestorableTime.map(Timestamp.format) ?? "-")")
        print("wal archive: \(s.walFiles) files, \(Output.bytes(UInt64(s.walBytes))), last segment \(s.lastArchivedWAL ?? "-")")
        for t in s.timelines {
            var line = "  timeline \(t.timeline): \(t.segments) segments \(t.first ?? "") .. \(t.last ?? "")"
            if let parent = t.parent, let at = t.forkedAt { line += ", forked from \(parent) at \(at)" }
            if let tail = t.abandonedTail { line += "; abandoned tail after the fork to a newer timeline: \(tail)" }
            print(line)
        }
        for m in s.mirrors { print(MirrorText.line(m)) }
        print("backups: \(s.backups.count)")
        for b in s.backups {
            let tags = b.tags.keys.sorted().map { "\($0)=\(b.tags[$0] ?? "")" }.joined(separator: ",")
            print("  \(b.id)  \(b.kind.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)) \(Timestamp.format(b.startTime)) .. \(Timestamp.format(b.stopTime))  lsn \(b.startLSN)..\(b.stopLSN) tl \(b.timeline)  \(Output.bytes(b.logicalBytes)) read, \(Output.bytes(b.newStoredBytes)) stored\(tags.isEmpty ? "" : "  [\(tags)]")\(b.retainUntil.map { "  until \(Timestamp.format($0))" } ?? "")")
        }
        // Backups from outside PostgreSQL (task definitions, Terraform state, secret metadata).
        let artifacts = try await repo.artifacts()
        if !artifacts.isEmpty {
            print("aws artifacts: \(artifacts.count)")
            for kind in Set(artifacts.map(\.kind)).sorted() {
                let of = artifacts.filter { $0.kind == kind }
                guard let newest = of.last else { continue }
                print("  \(kind): \(of.count), newest \(newest.id) (\(newest.items.count) document(s), \(Output.bytes(UInt64(newest.bytes))))")
            }
        }
    }
}

/// A mirror's state as one line.
enum MirrorText {
    static func line(_ m: MirrorStatus) -> String {
        switch m.state {
        case .upToDate: return "mirror \(m.location): up to date"
        case .unreachable: return "mirror \(m.location): UNREACHABLE (\(m.reason ?? "?"))"
        case .lagging:
            return "mirror \(m.location): LAGGING by \(m.missingBackups.count) backup(s) and \(m.missingWALFiles) WAL file(s) (last WAL \(m.lastMirrorWAL ?? "-") vs \(m.lastPrimaryWAL ?? "-")); run `lifeboat copy --to-mirrors --all`"
        }
    }
}

import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatRepository

struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "verify",
        abstract: "Authenticate every object, check every backup's chunks and WAL continuity. Exit 5 on any problem.")

    @OptionGroup var global: GlobalOptions
    @Option(help: "Objects checked at once.") var parallelism: Int?
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let settings = try Settings(global)
        let logger = settings.makeLogger()
        let repo = try await settings.openRepository(logger)
        var report = try await Verifier(repository: repo, parallelism: try settings.parallelism(parallelism)).run()
        for path in try settings.replicaConfigs {
            do {
                report.replicas.append(try await ReplicaLag.measure(primary: repo, replica: try await Settings.openReplica(path, logger: logger)))
            } catch let e as LifeboatError {
                report.replicas.append(ReplicaLag(location: "\(path) (unreachable: \(e.message))", missingBackups: [], missingWALFiles: -1))
            }
        }
        if json {
            try Output.json(report)
        } else {
            for r in report.replicas {
                print("replica \(r.location): " + (r.missingWALFiles < 0 ? "UNREACHABLE"
                    : r.upToDate ? "up to date" : "LAGGING: \(r.missingBackups.count) backup(s), \(r.missingWALFiles) WAL file(s) missing; run `lifeboat copy --to-replicas --all`"))
            }
            print("checked \(report.objectsChecked) objects (\(Output.bytes(UInt64(report.bytesChecked)))), \(report.backupsChecked) backups, \(report.walFilesChecked) WAL files")
            for p in report.problems { print("PROBLEM \(p.object): \(p.message)") }
            print(report.ok ? "ok: no problems found" : "\(report.problems.count) problem(s) found")
        }
        if !report.ok {
            throw LifeboatError(.integrity, "verify found \(report.problems.count) problem(s)",
                hint: "restore from an unaffected backup or repository copy; see the list above")
        }
    }
}

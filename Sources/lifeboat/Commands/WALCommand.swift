import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository
import Logging

struct WALCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "wal", abstract: "WAL archive commands run by PostgreSQL.",
        subcommands: [WALPushCommand.self, WALFetchCommand.self])
}

struct WALPushCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "push",
        abstract: "Archive one WAL file: archive_command = 'lifeboat wal push --config FILE %p'.")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Path of the WAL file (%p).") var path: String

    func run() async throws {
        let settings = try Settings(global)
        let logger = settings.makeLogger()
        let repo = try await settings.openRepository(logger)
        // The primary must take the file: its failure fails the archive_command.
        _ = try await WALArchive(repository: repo, logger: logger).push(path: path)
        // Replicas are best effort with a bound, so a slow or unreachable one never holds up
        // archiving (which would grow the RPO); `lifeboat copy --to-replicas` catches them up.
        for replica in try settings.replicaConfigs {
            let file = path
            let outcome = await withTaskGroup(of: String?.self) { group -> String? in
                group.addTask {
                    do {
                        let r = try await Settings.openReplica(replica, logger: logger)
                        _ = try await WALArchive(repository: r, logger: logger).push(path: file)
                        return nil
                    } catch let e as LifeboatError {
                        return e.message
                    } catch {
                        return "\(error)"
                    }
                }
                group.addTask {
                    try? await Task.sleep(for: .seconds(30))
                    return "timed out after 30s"
                }
                let first = await group.next() ?? nil
                group.cancelAll()
                return first
            }
            if let problem = outcome {
                logger.warning("replica did not take the WAL file; it will lag until `lifeboat copy --to-replicas`",
                    metadata: ["lifeboat.replica": .string(replica), "lifeboat.error": .string(problem)])
            }
        }
    }
}

struct WALFetchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "fetch",
        abstract: "Restore one WAL file: restore_command = 'lifeboat wal fetch --config FILE %f %p'. Exits 6 if it is not archived.")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "WAL file name (%f).") var name: String
    @Argument(help: "Where to write it (%p).") var destination: String

    @Option(help: "Segments to fetch ahead into pg_wal/.lifeboat-prefetch (default: wal_prefetch, 8; 0 turns it off).")
    var prefetch: Int?

    func run() async throws {
        // A segment fetched ahead by an earlier call: no configuration, key or repository needed.
        if WALPrefetchSpool(destination: destination).take(name, destination: destination) { return }
        let settings = try Settings(global)
        let logger = settings.makeLogger()
        let ahead = try settings.walPrefetch(prefetch)
        guard try await WALArchive.isArchived(name: name, store: try settings.store()) else {
            throw LifeboatError(.notFound, "WAL file \(name) is not in the archive")
        }
        let repo = try await settings.openRepository(logger)
        try await WALArchive(repository: repo, logger: logger).fetch(name: name, destination: destination, prefetch: ahead)
    }
}

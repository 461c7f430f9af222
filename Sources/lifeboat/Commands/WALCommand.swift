import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository

struct WALCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "wal", abstract: "WAL archive commands run by PostgreSQL.",
        subcommands: [WALPushCommand.self, WALFetchCommand.self, WALRecoveryEndCommand.self])
}

struct WALPushCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "push",
        abstract: "Archive one WAL file: archive_command = 'lifeboat wal push --config FILE %p'.")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Path of the WAL file (%p).") var path: String

    func run() async throws {
        let context = try Context(global)
        let logger = context.makeLogger()
        let repo = try await context.openRepository(logger)
        // The primary repository must take the file; mirrors are best effort (see MirrorSet.pushWAL).
        _ = try await WALArchive(repository: repo, logger: logger).push(path: path, mirrors: context.mirrors(logger))
    }
}

struct WALFetchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "fetch",
        abstract: "Restore one WAL file: restore_command = 'lifeboat wal fetch --config FILE %f %p'.",
        discussion: """
            Exits 6 when the file is not archived: that is how PostgreSQL learns it reached the end of the archive. \
            Any other failure (a damaged object, a wrong key, an unreachable repository, a tablespace that cannot be \
            kept out of the original's directory) exits 127, which PostgreSQL treats as fatal: recovery stops instead of \
            ending early and promoting a cluster that lacks data. --soft-errors (for standbys, which retry) exits 1 instead.
            """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "WAL file name (%f).") var name: String
    @Argument(help: "Where to write it (%p).") var destination: String

    @Option(help: "Segments to fetch ahead into pg_wal/.lifeboat-prefetch (default: wal_prefetch, 8; 0 turns it off).")
    var prefetch: Int?

    @Option(name: .customLong("key-handoff"), help: "A restore's private key file (written by lifeboat restore, removed when recovery ends).")
    var keyHandoff: String?

    @Flag(name: .customLong("soft-errors"), help: "Fail with exit 1 rather than 127 (a standby retries; a restore must not end early).")
    var softErrors = false

    func run() async throws {
        do {
            try await fetch()
        } catch let error as LifeboatError where error.code == .notFound {
            throw error
        } catch {
            let e = (error as? LifeboatError) ?? LifeboatError(.internalError, "\(error)")
            FileHandle.standardError.write(Data((e.description + "\n").utf8))
            Foundation.exit(softErrors ? 1 : 127)
        }
    }

    func fetch() async throws {
        // A segment fetched ahead by an earlier call: no configuration, key or repository needed.
        if WALPrefetchSpool(destination: destination).take(name, destination: destination) { return }
        let context = try Context(global) { $0.walPrefetch = prefetch }
        let logger = context.makeLogger()
        let ahead = try context.settings.walPrefetch()
        let store = try context.store()
        guard try await WALArchive.isArchived(name: name, store: store) else {
            throw LifeboatError(.notFound, "WAL file \(name) is not in the archive")
        }
        let key: KeySource = try keyHandoff.map { .handoff($0) } ?? context.keySource()
        let repo = try await Repository.open(store: store, key: key, logger: logger)
        try await WALArchive(repository: repo, logger: logger).fetch(name: name, destination: destination, prefetch: ahead)
    }
}

struct WALRecoveryEndCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "recovery-end",
        abstract: "Run by a restored server at the end of recovery (recovery_end_command): removes lifeboat's recovery settings and key handoff.")

    @Argument(help: "The restored data directory.") var dataDirectory: String

    func run() async throws {
        try RecoveryFinish.run(dataDirectory: dataDirectory)
    }
}

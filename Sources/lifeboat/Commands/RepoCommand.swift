import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatRepository

struct RepoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "repo", abstract: "Manage repositories.",
        subcommands: [RepoInitCommand.self])
}

struct RepoInitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "init", abstract: "Create an encrypted repository in an empty location.")

    @OptionGroup var global: GlobalOptions
    @Option(help: "Compression of every object (default zstd).") var compression: CompressionAlgorithm?
    @Option(name: .customLong("compression-level"), help: "zstd level (default 3).") var compressionLevel: Int?
    @Option(name: .customLong("chunk-size"), help: "Chunk size in KiB (default 1024).") var chunkSizeKiB: Int?
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let context = try Context(global)
        let logger = context.makeLogger()
        let s = context.settings
        let options = RepositoryOptions(chunkSize: try s.chunkSize(kib: chunkSizeKiB), compression: s.compression(compression),
            compressionLevel: try s.compressionLevel(compressionLevel))
        let repo = try await Repository.initialize(store: try context.store(), key: try context.keySource(), options: options, logger: logger)
        if json {
            try Output.json(repo.config)
        } else {
            print("initialized repository \(repo.store.location)")
            print("  id \(repo.config.repositoryID), format \(repo.config.format), \(repo.config.compression.rawValue) compression, \(repo.config.chunkSize / 1024) KiB chunks")
            print("  keep the passphrase or key file safe: without it nothing in the repository can be read")
        }
    }
}

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
    @Option(help: "zstd (default), lz4 or none.") var compression: String?
    @Option(name: .customLong("compression-level"), help: "zstd level (default 3).") var compressionLevel: Int?
    @Option(name: .customLong("chunk-size"), help: "Chunk size in KiB (default 1024).") var chunkSizeKiB: Int?
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let settings = try Settings(global)
        let logger = settings.makeLogger()
        var options = RepositoryOptions()
        if let c = compression ?? settings.string("compression") {
            guard let algorithm = CompressionAlgorithm(rawValue: c) else {
                throw LifeboatError(.invalidUsage, "unknown compression '\(c)'", hint: "use zstd, lz4 or none")
            }
            options.compression = algorithm
        }
        options.compressionLevel = try compressionLevel ?? settings.int("compression_level") ?? options.compressionLevel
        if let kib = try chunkSizeKiB ?? settings.int("chunk_size") { options.chunkSize = kib * 1024 }
        let repo = try await Repository.initialize(store: try settings.store(), key: try settings.keySource(), options: options, logger: logger)
        if json {
            try Output.json(repo.config)
        } else {
            print("initialized repository \(repo.store.location)")
            print("  id \(repo.config.repositoryID), format \(repo.config.format), \(repo.config.compression.rawValue) compression, \(repo.config.chunkSize / 1024) KiB chunks")
            print("  keep the passphrase or key file safe: without it nothing in the repository can be read")
        }
    }
}

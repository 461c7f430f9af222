import ArgumentParser
import CLinuxSys
import Foundation
import LifeboatCore

@main
struct Lifeboat: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lifeboat",
        abstract: "Disaster recovery for PostgreSQL: encrypted deduplicated backups, WAL archive, point-in-time restore.",
        discussion: "Exit codes: 0 ok, " + LifeboatError.Code.exitCodeTable + ".",
        version: LifeboatVersion.current,
        subcommands: [RepoCommand.self, BackupCommand.self, WALCommand.self, RestoreCommand.self, InfoCommand.self,
            VerifyCommand.self, ExpireCommand.self, CopyCommand.self, DrillCommand.self, RunbookCommand.self, ServeCommand.self, PatroniCommand.self, AWSCommand.self, DemoCommand.self])

    static func main() async {
        // Chunk-sized buffers (1 MiB, the default chunk size) would each be a fresh mmap, paid again as
        // page faults on every chunk: keep them in the heap and reuse the memory. Blocks of 2 MiB and
        // more are mmapped: scrypt's 32 MiB work area (the key derivation when a repository opens), a
        // pack being filled, the chunk index's tables as they double, a manifest being sealed. They go
        // back to the system when freed instead of leaving holes among the long-lived tables (a
        // 121,000-file backup: 94 to 88 MiB peak with 16 MiB here), and an array's untouched
        // capacity costs no resident memory. Free memory above 4 MiB at a heap's top goes back too,
        // and two arenas serve all threads (glibc's default, 8 per core, kept each thread's freed
        // buffers apart: a 20,000-table backup's peak RSS had reached 237 MiB).
        _ = lifeboat_tune_malloc(2 << 20, 4 << 20, 2)
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let error as LifeboatError {
            FileHandle.standardError.write(Data((error.description + "\n").utf8))
            Foundation.exit(error.code.exitCode)
        } catch {
            if exitCode(for: error) == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(LifeboatError.Code.invalidUsage.exitCode)
            }
            exit(withError: error)
        }
    }
}

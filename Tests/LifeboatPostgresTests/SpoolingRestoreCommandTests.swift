import Foundation
import LifeboatPostgres
import Testing

/// The restore_command of a restore that prefetches: a spooled segment is moved by the shell alone,
/// anything else goes to Lifeboat (here a script standing in for it that records its arguments).
@Suite struct SpoolingRestoreCommandTests {
    func run(_ command: String, name: String, in directory: String, attempt: Int = 0) throws -> Int32 {
        let line = command.replacingOccurrences(of: "%f", with: name).replacingOccurrences(of: "%p", with: "pg_wal/RECOVERYXLOG")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", line]
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        try process.run()
        process.waitUntilExit()
        // 126: the script could not be executed, "text file busy" while another test's fork still
        // held it open for writing (the suite runs tests in parallel): try again.
        if process.terminationStatus == 126, attempt < 20 {
            Thread.sleep(forTimeInterval: 0.1)
            return try run(command, name: name, in: directory, attempt: attempt + 1)
        }
        return process.terminationStatus
    }

    @Test func aSpooledSegmentIsMovedAndAMissingOneIsFetchedByLifeboat() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("spool-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let spool = dir + "/pg_wal/.lifeboat-prefetch"
        try FileManager.default.createDirectory(atPath: spool, withIntermediateDirectories: true)
        let stand = dir + "/fake-lifeboat"
        try "#!/bin/sh\necho \"$@\" > \(dir)/called\nexit 3\n".write(toFile: stand, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: stand)
        let command = LifeboatInvocation(executable: stand, arguments: ["--config", "/etc/x y.yaml"]).spoolingRestoreCommand
        let segment = "000000010000000000000003"
        let bytes = Data((0..<4096).map { UInt8($0 % 251) })
        try bytes.write(to: URL(fileURLWithPath: spool + "/" + segment))

        #expect(try run(command, name: segment, in: dir) == 0)
        #expect(FileManager.default.contents(atPath: dir + "/pg_wal/RECOVERYXLOG") == bytes)
        #expect(!FileManager.default.fileExists(atPath: spool + "/" + segment))
        #expect(!FileManager.default.fileExists(atPath: dir + "/called"), "a spooled segment must not start Lifeboat")

        // Not spooled: Lifeboat is called with the repository options, and its exit status is the command's.
        #expect(try run(command, name: "000000010000000000000004", in: dir) == 3)
        let called = try String(contentsOfFile: dir + "/called", encoding: .utf8)
        #expect(called == "wal fetch --config /etc/x y.yaml 000000010000000000000004 pg_wal/RECOVERYXLOG\n")
    }
}

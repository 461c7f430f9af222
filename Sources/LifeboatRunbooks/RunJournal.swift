import Foundation
import LifeboatFileSystem
import LifeboatCore
import LifeboatRepository

#if canImport(Glibc)
import Glibc
#endif

/// The durable record of a runbook run: one JSON object per line, appended and fsynced before and
/// after every step, so a run killed at any moment can be resumed without repeating what finished.
public struct JournalEvent: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable {
        case runStarted = "run-started"
        /// `runbook resume --var`: the variables changed from here on.
        case varsChanged = "vars-changed"
        /// The read-only checks made before the first change (`outputs`: check to result).
        case preflight
        case stepStarted = "step-started"
        case stepFinished = "step-finished"
        case runFinished = "run-finished"
    }

    public enum Status: String, Codable, Sendable {
        case ok
        case failed
        case skipped
        case interrupted
        /// A later run of the same runbook finished what this one had left (recorded in this run's journal).
        case superseded
    }

    public var event: Kind
    public var at: Date
    public var step: String?
    public var attempt: Int?
    public var status: Status?
    public var seconds: Double?
    public var outputs: [String: String]?
    public var error: String?
    /// For run-started: the runbook text and variables, so `resume` needs nothing else.
    public var runbook: String?
    public var vars: [String: String]?
    /// For run-started: the runbook's name (to find earlier runs of it), and the earlier unfinished
    /// run whose recorded production state this run carries on.
    public var runbookName: String?
    public var inheritedFrom: String?

    public init(event: Kind, at: Date = Date(), step: String? = nil, attempt: Int? = nil, status: Status? = nil, seconds: Double? = nil,
        outputs: [String: String]? = nil, error: String? = nil, runbook: String? = nil, vars: [String: String]? = nil,
        runbookName: String? = nil, inheritedFrom: String? = nil)
    {
        self.runbookName = runbookName
        self.inheritedFrom = inheritedFrom
        self.event = event
        self.at = at
        self.step = step
        self.attempt = attempt
        self.status = status
        self.seconds = seconds
        self.outputs = outputs
        self.error = error
        self.runbook = runbook
        self.vars = vars
    }
}

public final class RunJournal: @unchecked Sendable {
    public let runID: String
    public let path: String
    private let lock = NSLock()

    public init(directory: String, runID: String) throws {
        self.runID = runID
        let dir = directory + "/" + runID
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        path = dir + "/journal.jsonl"
    }

    public func append(_ event: JournalEvent) throws {
        var line = try RepositoryJSON.encoder().encode(event)
        line.append(0x0A)
        try lock.withLock {
            let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw FileIO.error("cannot write the run journal", errno: errno, path: path) }
            defer { close(fd) }
            let written = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard written == line.count, fsync(fd) == 0 else { throw FileIO.error("cannot write the run journal", errno: errno, path: path) }
        }
    }

    /// Every event; a torn last line (killed mid-write) is ignored.
    public func events() throws -> [JournalEvent] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        let decoder = RepositoryJSON.decoder()
        return text.split(separator: "\n").compactMap { try? decoder.decode(JournalEvent.self, from: Data($0.utf8)) }
    }

    /// Whether the run ended in success (or was finished by a later run).
    public static func isFinished(_ events: [JournalEvent]) -> Bool {
        guard let end = events.last(where: { $0.event == .runFinished }) else { return false }
        return end.status == .ok || end.status == .superseded
    }

    /// The runbook's name a run's journal records (older journals: from the runbook text).
    public static func runbookName(_ events: [JournalEvent]) -> String? {
        guard let start = events.first(where: { $0.event == .runStarted }) else { return nil }
        if let name = start.runbookName { return name }
        return start.runbook.flatMap { try? Runbook(yaml: $0).name }
    }

    /// Runs under `directory`, newest last, with their state.
    public static func list(directory: String) -> [(id: String, events: [JournalEvent])] {
        let ids = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
        return ids.compactMap { id in
            guard let j = try? RunJournal(directory: directory, runID: id), let events = try? j.events(), !events.isEmpty else { return nil }
            return (id, events)
        }
    }
}

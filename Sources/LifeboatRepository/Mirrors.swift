import Foundation
import LifeboatCore
import Logging

/// The cluster's further repositories (`mirrors` in the configuration; the seed's second-region
/// copies): how to open each one, and the policy that spans them. Opening is left to the caller
/// (it knows the configuration); each mirror is opened at most once (an open derives a key) and
/// again only after a failed open.
public actor MirrorSet {
    public struct Entry: Sendable {
        /// How the mirror is named in messages (its configuration file).
        public var name: String
        public var open: @Sendable () async throws -> Repository

        public init(name: String, open: @escaping @Sendable () async throws -> Repository) {
            self.name = name
            self.open = open
        }
    }

    public nonisolated let entries: [Entry]
    private var opened: [String: Repository] = [:]

    public init(_ entries: [Entry]) { self.entries = entries }

    public nonisolated var isEmpty: Bool { entries.isEmpty }

    /// The open repository of `entry`, opening it on first use.
    public func repository(_ entry: Entry) async throws -> Repository {
        if let repo = opened[entry.name] { return repo }
        let repo = try await entry.open()
        opened[entry.name] = repo
        return repo
    }

    /// Every mirror, opened; throws on the first that cannot be opened.
    public func all() async throws -> [Repository] {
        var repos: [Repository] = []
        for entry in entries { repos.append(try await repository(entry)) }
        return repos
    }

    /// How far each mirror is behind `primary`; one that cannot be opened or listed is `unreachable`
    /// with the reason, never an error: a mirror down must not hide the primary's state.
    public func statuses(primary: Repository) async -> [MirrorStatus] {
        var result: [MirrorStatus] = []
        for entry in entries {
            do {
                result.append(try await MirrorStatus.measure(primary: primary, mirror: try await repository(entry)))
            } catch {
                opened[entry.name] = nil
                result.append(.unreachable(entry.name, reason: (error as? LifeboatError)?.message ?? "\(error)"))
            }
        }
        return result
    }

    /// Archives one WAL file into every mirror, best effort with a bound per mirror, so a slow or
    /// unreachable one never holds up archiving (which would grow the RPO); `lifeboat copy
    /// --to-mirrors` catches them up. Returns a line per mirror that did not take it.
    public func pushWAL(name: String, data: Data, timeout: TimeInterval = 30, logger: Logger) async -> [String] {
        var problems: [String] = []
        for entry in entries {
            let outcome = await withTaskGroup(of: String?.self) { group -> String? in
                group.addTask {
                    do {
                        _ = try await self.repository(entry).pushWAL(name: name, data: data)
                        return nil
                    } catch {
                        return (error as? LifeboatError)?.message ?? "\(error)"
                    }
                }
                group.addTask {
                    try? await Task.sleep(for: .seconds(timeout))
                    return "timed out after \(HumanDuration.format(timeout))"
                }
                let first = await group.next() ?? nil
                group.cancelAll()
                return first
            }
            if let problem = outcome {
                logger.warning("mirror did not take the WAL file; it lags until `lifeboat copy --to-mirrors`",
                    metadata: ["lifeboat.mirror": .string(entry.name), LogKey.walFile: .string(name), "lifeboat.error": .string(problem)])
                problems.append("\(entry.name): \(problem)")
            }
        }
        return problems
    }
}

/// How far a mirror repository is behind the primary: backups and WAL files it lacks.
public struct MirrorStatus: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable {
        case upToDate = "up-to-date"
        case lagging
        case unreachable
    }

    public var location: String
    public var state: State
    /// Why the mirror could not be measured (unreachable only).
    public var reason: String?
    public var missingBackups: [String]
    public var missingWALFiles: Int
    public var lastPrimaryWAL: String?
    public var lastMirrorWAL: String?

    public var upToDate: Bool { state == .upToDate }

    public init(location: String, state: State, reason: String? = nil, missingBackups: [String] = [], missingWALFiles: Int = 0,
        lastPrimaryWAL: String? = nil, lastMirrorWAL: String? = nil)
    {
        self.location = location
        self.state = state
        self.reason = reason
        self.missingBackups = missingBackups
        self.missingWALFiles = missingWALFiles
        self.lastPrimaryWAL = lastPrimaryWAL
        self.lastMirrorWAL = lastMirrorWAL
    }

    public static func unreachable(_ location: String, reason: String) -> MirrorStatus {
        MirrorStatus(location: location, state: .unreachable, reason: reason)
    }

    /// Compares by backup id and WAL file name (both are the same in every repository), from the
    /// two listings alone.
    public static func measure(primary: Repository, mirror: Repository) async throws -> MirrorStatus {
        try await mirror.checkPresent()
        let mirrorBackups = Set(try await mirror.backupIDs())
        let missing = try await primary.backupIDs().filter { !mirrorBackups.contains($0) }
        let primaryWAL = try await primary.walFiles().map(\.file)
        let mirrorWAL = Set(try await mirror.walFiles().map(\.file))
        func lastSegment(_ files: [WALFileName]) -> String? {
            files.compactMap { f -> WALSegment? in
                if case .segment(let s) = f { return s }
                return nil
            }.max()?.name
        }
        let missingWAL = primaryWAL.filter { !mirrorWAL.contains($0) }.count
        return MirrorStatus(location: mirror.store.location, state: missing.isEmpty && missingWAL == 0 ? .upToDate : .lagging,
            missingBackups: missing, missingWALFiles: missingWAL, lastPrimaryWAL: lastSegment(primaryWAL),
            lastMirrorWAL: lastSegment(Array(mirrorWAL)))
    }
}

import Foundation
import LifeboatCore

/// How far a second repository is behind the primary: backups and WAL files it lacks.
public struct ReplicaLag: Codable, Sendable, Equatable {
    public var location: String
    public var missingBackups: [String]
    public var missingWALFiles: Int
    public var lastPrimaryWAL: String?
    public var lastReplicaWAL: String?
    public var upToDate: Bool { missingBackups.isEmpty && missingWALFiles == 0 }

    public init(location: String, missingBackups: [String], missingWALFiles: Int, lastPrimaryWAL: String? = nil, lastReplicaWAL: String? = nil) {
        self.location = location
        self.missingBackups = missingBackups
        self.missingWALFiles = missingWALFiles
        self.lastPrimaryWAL = lastPrimaryWAL
        self.lastReplicaWAL = lastReplicaWAL
    }

    /// Compares by backup id and WAL file name (both are the same in every repository), from the
    /// two listings alone.
    public static func measure(primary: Repository, replica: Repository) async throws -> ReplicaLag {
        let replicaBackups = Set(try await replica.backupIDs())
        let missing = try await primary.backupIDs().filter { !replicaBackups.contains($0) }
        let primaryWAL = try await primary.walFiles().map { "\($0.file)" }
        let replicaWAL = Set(try await replica.walFiles().map { "\($0.file)" })
        let segments = { (names: [String]) in names.filter { $0.count == 24 }.sorted() }
        return ReplicaLag(location: replica.store.location, missingBackups: missing,
            missingWALFiles: primaryWAL.filter { !replicaWAL.contains($0) }.count, lastPrimaryWAL: segments(primaryWAL).last,
            lastReplicaWAL: segments(Array(replicaWAL)).last)
    }
}

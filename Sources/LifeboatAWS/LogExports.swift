import Foundation
import LifeboatAWSCore
import LifeboatCore

/// One finished CloudWatch Logs export.
public struct LogExport: Sendable, Equatable, Codable {
    public var group: String
    public var taskID: String
    public var from: Date
    public var to: Date
    public var destination: String
    public var status: String
}

/// CloudWatch Logs exports to S3 (the seed's `create-export-task`): one task at a time, as AWS allows
/// one active export per account and region, each polled until it completes.
public struct LogExports: Sendable {
    public let client: AWSClient
    static let prefix = "Logs_20140328."

    public init(client: AWSClient) { self.client = client }

    /// The seed's layout: `<prefix>/<group without its leading slash>/YYYY/MM`.
    public static func destinationPrefix(_ prefix: String, group: String, day: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? .current
        let c = calendar.dateComponents([.year, .month], from: day)
        let name = group.split(separator: "/").joined(separator: "/")
        return [prefix, name, String(format: "%04d/%02d", c.year ?? 0, c.month ?? 0)].filter { !$0.isEmpty }.joined(separator: "/")
    }

    /// The previous UTC day: [yesterday 00:00, today 00:00).
    public static func previousDay(_ now: Date) -> (from: Date, to: Date) {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? .current
        let today = calendar.startOfDay(for: now)
        return (today.addingTimeInterval(-86400), today)
    }

    /// Status code of one task (`PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, `CANCELLED`, ...).
    public func status(_ taskID: String) async throws -> (code: String, message: String?) {
        let answer = try await client.json(Self.prefix + "DescribeExportTasks", ["taskId": taskID])
        guard let task = (answer["exportTasks"] as? [[String: Any]])?.first else {
            throw LifeboatError(.notFound, "export task \(taskID) not found in \(client.account.region)")
        }
        let status = task["status"] as? [String: Any] ?? [:]
        return (status["code"] as? String ?? "UNKNOWN", status["message"] as? String)
    }

    /// Tasks still active in the region (someone else's export counts too: AWS allows one).
    public func activeTasks() async throws -> [String] {
        var out: [String] = []
        for code in ["RUNNING", "PENDING"] {
            let answer = try await client.json(Self.prefix + "DescribeExportTasks", ["statusCode": code])
            out += (answer["exportTasks"] as? [[String: Any]] ?? []).compactMap { $0["taskId"] as? String }
        }
        return out
    }

    /// Exports `group`'s events in [from, to) to `bucket`/`prefix`, waiting for any active task
    /// first and for this one to complete. A task that fails or is cancelled is an error.
    public func export(group: String, from: Date, to: Date, bucket: String, prefix: String, timeout: TimeInterval,
        poll: TimeInterval, progress: @Sendable (String) -> Void = { _ in }) async throws -> LogExport
    {
        let deadline = Date().addingTimeInterval(timeout)
        var taskID: String?
        while taskID == nil {
            let active = try await activeTasks()
            if !active.isEmpty {
                guard Date() < deadline else {
                    throw LifeboatError(.timeout, "another CloudWatch Logs export (\(active.joined(separator: ", "))) is still running in \(client.account.region)",
                        hint: "AWS runs one export task at a time per account and region; run again when it finished")
                }
                progress("waiting for export task \(active[0]) to finish (one export at a time)")
                try await Task.sleep(for: .seconds(poll))
                continue
            }
            do {
                let answer = try await client.json(Self.prefix + "CreateExportTask", [
                    "taskName": "lifeboat-\(TimestampID.make(Date()))", "logGroupName": group,
                    "from": Int64(from.timeIntervalSince1970 * 1000), "to": Int64(to.timeIntervalSince1970 * 1000),
                    "destination": bucket, "destinationPrefix": prefix,
                ])
                taskID = answer["taskId"] as? String
                if taskID == nil { throw LifeboatError(.externalCommand, "AWS logs CreateExportTask: the answer has no taskId") }
            } catch let e as LifeboatError where e.awsCode == .limitExceeded {
                guard Date() < deadline else { throw e }
                progress("AWS refused a second export task at once; waiting")
                try await Task.sleep(for: .seconds(poll))
            } catch let e as LifeboatError where e.awsCode == .resourceNotFound {
                throw LifeboatError(.notFound, "log group \(group) not found in \(client.account.region)", hint: "check aws.logs.groups")
            }
        }
        let id = taskID ?? ""
        progress("export task \(id) for \(group) started")
        let code = try await AWSWait.until(what: "export task \(id) of \(group) to complete", timeout: max(1, deadline.timeIntervalSinceNow), every: poll) {
            let s = try await status(id)
            if ["FAILED", "CANCELLED"].contains(s.code) {
                throw LifeboatError(.externalCommand, "export task \(id) of \(group) is \(s.code): \(s.message ?? "no message")",
                    hint: "the bucket policy must let logs.amazonaws.com write to s3://\(bucket)/\(prefix)")
            }
            return s.code == "COMPLETED" ? s.code : nil
        }
        return LogExport(group: group, taskID: id, from: from, to: to, destination: "s3://\(bucket)/\(prefix)", status: code)
    }
}

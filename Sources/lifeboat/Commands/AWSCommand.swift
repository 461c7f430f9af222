import ArgumentParser
import Foundation
import LifeboatAWS
import LifeboatConfiguration
import LifeboatCore
import LifeboatRepository
import LifeboatRunbooks

/// `lifeboat aws ...`: the seed's backup procedures for the deployment the `aws:` section describes.
struct AWSCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "aws",
        abstract: "The seed's AWS backups and recoveries for the deployment the configuration's aws: section describes.",
        subcommands: [AWSBackupCommand.self, AWSCheckCommand.self, AWSSnapshotCommand.self, AWSExpireSnapshotsCommand.self,
            AWSECRLifecycleCommand.self, AWSExportTaskDefinitionsCommand.self, AWSRegisterTaskDefinitionCommand.self,
            AWSBackupStateCommand.self, AWSConfigSnapshotCommand.self, AWSExportSecretsCommand.self, AWSRecoverSecretCommand.self,
            AWSExportLogsCommand.self, AWSArtifactsCommand.self, AWSArtifactGetCommand.self])
}

/// What every `lifeboat aws` command shares: the context, the deployment, the protection.
struct AWSRun {
    let context: Context
    let protection: AWSProtection

    init(_ global: GlobalOptions, quiet: Bool = false) throws {
        context = try Context(global)
        protection = AWSProtection(deployment: try context.settings.awsDeployment(), account: context.awsOverrides,
            progress: { line in if !quiet { FileHandle.standardError.write(Data(("  " + line + "\n").utf8)) } })
    }

    func repository() async throws -> Repository { try await context.openRepository(context.makeLogger()) }

    /// Prints the outcome; problems make the command fail (exit 14, an objective missed).
    func report(_ outcome: AWSJobOutcome) throws {
        for line in outcome.lines { print(line) }
        for p in outcome.problems { print("PROBLEM: \(p)") }
        if !outcome.ok {
            throw LifeboatError(.objectiveMissed, "aws \(outcome.job): \(outcome.problems.count) problem(s) found",
                hint: outcome.job == "check" ? "run `lifeboat aws check --fix` to set them back" : nil)
        }
    }

    /// Asks before a change to production unless `yes`.
    static func confirm(_ question: String, yes: Bool) throws {
        if yes { return }
        FileHandle.standardError.write(Data("\n⚠ \(question)\n  Type 'yes' to continue: ".utf8))
        guard readLine()?.trimmingCharacters(in: .whitespaces).lowercased() == "yes" else {
            throw LifeboatError(.notConfirmed, "not confirmed: nothing was changed", hint: "pass --yes to confirm in advance")
        }
    }
}

struct AWSBackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "backup",
        abstract: "Run every seed backup the aws: section configures: check, task definitions, Terraform state, secret metadata, AWS Config, logs.")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Also take a weekly-style snapshot (and its copy and expiry).") var snapshot = false

    func run() async throws {
        let run = try AWSRun(global)
        let d = run.protection.deployment
        var failed: [String] = []
        func attempt(_ name: String, _ body: () async throws -> AWSJobOutcome) async {
            do {
                let o = try await body()
                for line in o.lines { print("\(name): \(line)") }
                for p in o.problems { print("\(name): PROBLEM: \(p)") }
                if !o.ok { failed.append(name) }
            } catch {
                print("\(name): FAILED: \((error as? LifeboatError)?.description ?? "\(error)")")
                failed.append(name)
            }
        }
        await attempt("check") { try await run.protection.check(fix: false) }
        if snapshot, d.auroraCluster != nil {
            await attempt("snapshot") { try await run.protection.snapshot(purpose: "weekly", retentionDays: nil, copy: d.copyToSecondRegion, wait: true).outcome }
            await attempt("expire-snapshots") { try await run.protection.expireSnapshots(dryRun: false).outcome }
        }
        let needsRepository = d.schedule.taskDefinitions != nil || d.terraformState != nil || !d.secretPrefixes.isEmpty
        let repo = needsRepository ? try await run.repository() : nil
        if let repo, d.schedule.taskDefinitions != nil { await attempt("task-definitions") { try await run.protection.exportTaskDefinitions(into: repo).outcome } }
        if let repo, d.terraformState != nil { await attempt("terraform-state") { try await run.protection.backupTerraformState(into: repo) } }
        if let repo, !d.secretPrefixes.isEmpty { await attempt("secrets") { try await run.protection.exportSecrets(into: repo) } }
        if d.configDeliveryChannel != nil { await attempt("config-snapshot") { try await run.protection.configSnapshot() } }
        if !d.logGroups.isEmpty { await attempt("logs") { try await run.protection.exportLogs() } }
        if !failed.isEmpty {
            throw LifeboatError(.objectiveMissed, "aws backup: \(failed.joined(separator: ", ")) did not complete cleanly", hint: "see the lines above")
        }
    }
}

struct AWSCheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check",
        abstract: "Check the automated backup settings, the ECR lifecycle rule, state bucket versioning and the second region; report drift.")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Set drifted backup settings and lifecycle rules back (asks first).") var fix = false
    @Flag(help: "Confirm the fix in advance.") var yes = false

    func run() async throws {
        let run = try AWSRun(global)
        if fix { try AWSRun.confirm("Set the production cluster's backup settings and the ECR lifecycle rules to the configured ones?", yes: yes) }
        try run.report(try await run.protection.check(fix: fix))
    }
}

struct AWSSnapshotCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "snapshot",
        abstract: "Take a tagged manual snapshot of the Aurora cluster (Purpose, CreatedBy, Lifeboat's retention), wait for it, optionally copy it.")
    @OptionGroup var global: GlobalOptions
    @Option(help: "Why (the Purpose tag): pre-migration, weekly, ...") var purpose: String
    @Option(name: .customLong("retention-days"), help: "Keep it this many days (default aws.aurora.snapshot_retention; 0 keeps it forever).") var retentionDays: Int?
    @Flag(help: "Copy it to aws.second_region under aws.second_region_kms_key.") var copy = false
    @Flag(name: .customLong("no-wait"), help: "Return once the snapshot is started.") var noWait = false
    @Option(help: "How long to wait, e.g. 1h.") var timeout: DurationArgument?
    @Option(help: "Poll interval, e.g. 15s.") var poll: DurationArgument?

    func run() async throws {
        let run = try AWSRun(global)
        let r = try await run.protection.snapshot(purpose: purpose, retentionDays: retentionDays, copy: copy, wait: !noWait,
            timeout: timeout?.seconds ?? 3600, poll: poll?.seconds ?? 15)
        try run.report(r.outcome)
    }
}

struct AWSExpireSnapshotsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "expire-snapshots",
        abstract: "Delete Lifeboat's manual snapshots older than their retention (only those tagged by its policy; never automated ones).")
    @OptionGroup var global: GlobalOptions
    @Flag(name: .customLong("dry-run"), help: "List what would be deleted; delete nothing.") var dryRun = false
    @Flag(help: "Confirm the deletion in advance.") var yes = false
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let run = try AWSRun(global, quiet: json)
        if !dryRun {
            let preview = try await run.protection.expireSnapshots(dryRun: true)
            let doomed = preview.reports.flatMap(\.expired)
            if doomed.isEmpty {
                if json { try Output.json(preview.reports) } else { try run.report(preview.outcome) }
                return
            }
            try AWSRun.confirm("Delete \(doomed.count) snapshot(s): \(doomed.joined(separator: ", "))?", yes: yes)
        }
        let r = try await run.protection.expireSnapshots(dryRun: dryRun)
        if json { try Output.json(r.reports); return }
        for report in r.reports {
            for s in report.expired { print("\(report.region): \(dryRun ? "would expire" : "expired") \(s)") }
            for k in report.kept { print("\(report.region): keep \(k.snapshot): \(k.reason)") }
        }
        try run.report(r.outcome)
    }
}

struct AWSECRLifecycleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ecr-lifecycle",
        abstract: "Apply the seed's \"keep last N images\" lifecycle rule to every configured ECR repository.")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Confirm in advance.") var yes = false

    func run() async throws {
        let run = try AWSRun(global)
        try AWSRun.confirm("Set the lifecycle policy of \(run.protection.deployment.ecrRepositories.joined(separator: ", ")) to keep the last \(run.protection.deployment.keepImages) images?", yes: yes)
        try run.report(try await run.protection.applyLifecycle())
    }
}

struct AWSExportTaskDefinitionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "export-task-definitions",
        abstract: "Store every ACTIVE revision of every task definition family (or aws.ecs.families) in the repository.")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let run = try AWSRun(global)
        try run.report(try await run.protection.exportTaskDefinitions(into: try await run.repository()).outcome)
    }
}

struct AWSRegisterTaskDefinitionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "register-task-definition",
        abstract: "Register a task definition kept in the repository back into ECS (as a new revision of its family).")
    @OptionGroup var global: GlobalOptions
    @Option(help: "The artifact (an id from `lifeboat aws artifacts`, or latest:ecs-task-definitions).") var artifact = "latest:ecs-task-definitions"
    @Argument(help: "The revision to register, e.g. app:7.") var revision: String

    func run() async throws {
        let run = try AWSRun(global)
        let arn = try await run.protection.registerTaskDefinition(from: try await run.repository(), artifact: artifact, item: revision)
        print("registered \(revision) from the repository as \(arn)")
    }
}

struct AWSBackupStateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "backup-state",
        abstract: "Store the Terraform state in the repository, and copy it to aws.terraform.backup_bucket with SSE-KMS.")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let run = try AWSRun(global)
        try run.report(try await run.protection.backupTerraformState(into: try await run.repository()))
    }
}

struct AWSConfigSnapshotCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "config-snapshot",
        abstract: "Ask AWS Config to deliver a configuration snapshot (the seed's deliver-config-snapshot) and show the last delivery.")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let run = try AWSRun(global)
        try run.report(try await run.protection.configSnapshot())
    }
}

struct AWSExportSecretsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "export-secrets",
        abstract: "Store the metadata (never the values) of the configured secrets in the repository; report secrets gone since the last export.")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let run = try AWSRun(global)
        try run.report(try await run.protection.exportSecrets(into: try await run.repository()))
    }
}

struct AWSRecoverSecretCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "recover-secret",
        abstract: "Restore a secret scheduled for deletion, or create it anew; optionally set the Aurora master password to it. The value is never printed.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The secret's name.") var name: String
    @Option(name: .customLong("value-file"), help: "Read the new value from this file (default: a generated password).") var valueFile: String?
    @Flag(name: .customLong("set-master-password"), help: "Set the Aurora cluster's master password to the secret's value (modify-db-cluster).") var setMasterPassword = false
    @Option(name: .customLong("kms-key-id"), help: "KMS key of a secret created anew.") var kmsKeyID: String?
    @Flag(help: "Confirm in advance.") var yes = false

    func run() async throws {
        let run = try AWSRun(global)
        var value: String?
        if let valueFile {
            guard let data = FileManager.default.contents(atPath: run.context.absolute(valueFile)) else {
                throw LifeboatError(.notFound, "cannot read \(valueFile)")
            }
            value = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)
        }
        if setMasterPassword {
            try AWSRun.confirm("Change the master password of \(run.protection.deployment.auroraCluster ?? "?") to the value of \(name)? Clients using the old one lose access.", yes: yes)
        }
        try run.report(try await run.protection.recoverSecret(name, value: value, setMasterPassword: setMasterPassword, kmsKeyID: kmsKeyID))
    }
}

struct AWSExportLogsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "export-logs",
        abstract: "Export each configured log group to the archive bucket (<prefix>/<group>/YYYY/MM), one export task at a time.")
    @OptionGroup var global: GlobalOptions
    @Option(help: "Start (ISO 8601; default: the previous UTC day).") var from: String?
    @Option(help: "End (ISO 8601).") var to: String?
    @Option(help: "How long to wait for all exports, e.g. 1h.") var timeout: DurationArgument?
    @Option(help: "Poll interval, e.g. 10s.") var poll: DurationArgument?

    func run() async throws {
        let run = try AWSRun(global)
        try run.report(try await run.protection.exportLogs(from: try from.map(Timestamp.parse), to: try to.map(Timestamp.parse),
            timeout: timeout?.seconds ?? 3600, poll: poll?.seconds ?? 10))
    }
}

struct AWSArtifactsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "artifacts",
        abstract: "List what the repository holds from AWS (task definitions, Terraform state, secret metadata).")
    @OptionGroup var global: GlobalOptions
    @Option(help: "Only this kind.") var kind: String?
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let run = try AWSRun(global, quiet: true)
        let list = try await run.repository().artifacts(kind: kind)
        if json { try Output.json(list); return }
        for a in list {
            print("\(a.id)  \(a.kind)  \(Timestamp.format(a.created))  \(a.items.count) document(s), \(Output.bytes(UInt64(a.bytes)))")
        }
    }
}

struct AWSArtifactGetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "artifact-get",
        abstract: "Write one document of an artifact to a file (e.g. the Terraform state to restore).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The artifact id, or latest:KIND.") var artifact: String
    @Option(help: "The document (default: the only one).") var item: String?
    @Option(help: "Write it here (refused if the file exists).") var output: String

    func run() async throws {
        let run = try AWSRun(global, quiet: true)
        let repo = try await run.repository()
        let record = try await repo.artifact(artifact)
        guard let doc = item.map({ name in record.items.first { $0.name == name || $0.name == name + ".json" } }) ?? (record.items.count == 1 ? record.items.first : nil) else {
            throw LifeboatError(.invalidUsage, "name the document with --item: \(record.items.map(\.name).joined(separator: ", "))")
        }
        let path = run.context.absolute(output)
        if FileManager.default.fileExists(atPath: path) {
            throw LifeboatError(.targetNotEmpty, "\(path) exists: refusing to overwrite it", hint: "write to a new file, compare, then move it in place")
        }
        let data = try await repo.artifactContent(doc)
        guard FileManager.default.createFile(atPath: path, contents: data, attributes: [.posixPermissions: 0o600]) else {
            throw LifeboatError(.io, "cannot write \(path)")
        }
        print("wrote \(doc.name) of \(record.id) (\(data.count) bytes) to \(path)")
    }
}

import Foundation

/// PostgreSQL configuration files as text, and the rewrites a restore makes to them. Pure: takes
/// and returns text, so every rule is unit-tested.
///
/// - Lifeboat's recovery settings live in one marked block of `postgresql.auto.conf`; a restore
///   replaces every setting it manages (from any earlier restore, marked or not), never appends a
///   second block; the block is removed when recovery ends, and a backup's copy of the file never
///   carries one.
/// - Settings that point into the source cluster's paths (`data_directory`, `hba_file`,
///   `ident_file`, `external_pid_file`, includes) are neutralised in the restored copy, each change
///   reported.
public enum ServerConfiguration {
    /// One line of a configuration file.
    public struct Line: Sendable, Equatable {
        public var text: String
        /// The parameter set on this line (lower case), or the include directive's name.
        public var key: String?
        /// The value, unquoted.
        public var value: String?
    }

    public static let recoveryBegin = "# BEGIN lifeboat recovery settings: removed when recovery ends"
    public static let recoveryEnd = "# END lifeboat recovery settings"
    public static let restoredBegin = "# BEGIN lifeboat restored-copy settings"
    public static let restoredEnd = "# END lifeboat restored-copy settings"

    /// Keys whose only purpose is a recovery: an earlier restore's values must never reach a later one.
    public static let recoveryKeys: Set<String> = [
        "recovery_target", "recovery_target_lsn", "recovery_target_name", "recovery_target_time", "recovery_target_xid",
        "recovery_target_inclusive", "recovery_target_action", "recovery_target_timeline", "restore_command", "recovery_end_command",
        "primary_conninfo", "primary_slot_name",
    ]

    /// Keys that name paths of the cluster's own host.
    public static let pathKeys: Set<String> = ["data_directory", "hba_file", "ident_file", "external_pid_file", "config_file"]

    public static let includeDirectives: Set<String> = ["include", "include_if_exists", "include_dir"]

    /// Splits a file into lines with the parameter each sets, as PostgreSQL reads them:
    /// `name = value` or `name value`, values quoted with `'` (`''` inside) or bare, `#` comments.
    public static func parse(_ text: String) -> [Line] {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { raw in
            let line = String(raw)
            var rest = Substring(line).drop { $0 == " " || $0 == "\t" }
            guard let first = rest.first, first != "#" else { return Line(text: line, key: nil, value: nil) }
            let name = rest.prefix { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "." }
            guard !name.isEmpty else { _ = first; return Line(text: line, key: nil, value: nil) }
            rest = rest.dropFirst(name.count).drop { $0 == " " || $0 == "\t" }
            if rest.first == "=" { rest = rest.dropFirst().drop { $0 == " " || $0 == "\t" } }
            var value = ""
            if rest.first == "'" {
                var chars = rest.dropFirst()
                while let c = chars.first {
                    chars = chars.dropFirst()
                    if c == "'" {
                        if chars.first == "'" {
                            value.append("'")
                            chars = chars.dropFirst()
                            continue
                        }
                        break
                    }
                    if c == "\\", let next = chars.first {
                        value.append(next)
                        chars = chars.dropFirst()
                        continue
                    }
                    value.append(c)
                }
            } else {
                value = String(rest.prefix { $0 != "#" && $0 != " " && $0 != "\t" })
            }
            return Line(text: line, key: name.lowercased(), value: value)
        }
    }

    /// A value quoted for a configuration file.
    public static func quote(_ value: String) -> String {
        "'" + value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "''") + "'"
    }

    /// Removes marked blocks and every line setting one of `keys`; returns the other lines.
    static func removing(_ keys: Set<String>, blocks: [(String, String)], from text: String) -> [String] {
        var kept: [String] = []
        var inBlock: String?
        for line in parse(text) {
            if let end = inBlock {
                if line.text.trimmingCharacters(in: .whitespaces) == end { inBlock = nil }
                continue
            }
            if let block = blocks.first(where: { $0.0 == line.text.trimmingCharacters(in: .whitespaces) }) {
                inBlock = block.1
                continue
            }
            if let key = line.key, keys.contains(key) { continue }
            kept.append(line.text)
        }
        while kept.last?.trimmingCharacters(in: .whitespaces).isEmpty == true { kept.removeLast() }
        return kept
    }

    /// `postgresql.auto.conf` for a restore: the file's own settings, minus every setting a restore
    /// manages (an earlier restore's recovery block, marked or left unmarked by `ALTER SYSTEM`),
    /// then this restore's settings for the restored copy (kept) and for its recovery (removed at
    /// its end), each in its own marked block.
    public static func autoConfForRestore(_ text: String, restored: [(key: String, value: String)],
        recovery: [(key: String, value: String)], comment: String) -> String
    {
        let managed = recoveryKeys.union(restored.map { $0.key }).union(recovery.map { $0.key })
        var lines = removing(managed, blocks: [(recoveryBegin, recoveryEnd), (restoredBegin, restoredEnd)], from: text)
        if !restored.isEmpty {
            lines += [restoredBegin, "# \(comment)"] + restored.map { "\($0.key) = \(quote($0.value))" } + [restoredEnd]
        }
        lines += [recoveryBegin, "# \(comment)"] + recovery.map { "\($0.key) = \(quote($0.value))" } + [recoveryEnd]
        return lines.joined(separator: "\n") + "\n"
    }

    /// `postgresql.auto.conf` once recovery has ended: the recovery block gone (and, if `ALTER
    /// SYSTEM` dropped the markers, Lifeboat's recovery settings by value), the rest untouched.
    public static func autoConfAfterRecovery(_ text: String) -> String {
        var kept = removing([], blocks: [(recoveryBegin, recoveryEnd)], from: text)
        kept = kept.filter { raw in
            guard let line = parse(raw).first, let key = line.key else { return true }
            if key.hasPrefix("recovery_target") { return false }
            if key == "restore_command" || key == "recovery_end_command" { return !(line.value ?? "").contains("lifeboat") }
            return true
        }
        return kept.joined(separator: "\n") + "\n"
    }

    /// The backup's copy of `postgresql.auto.conf`: no recovery target (meaningless on a running
    /// primary, harmful to the next restore) and no Lifeboat recovery block.
    public static func autoConfForBackup(_ text: String) -> String {
        let stripped = autoConfAfterRecovery(text)
        return stripped == "\n" && text.isEmpty ? "" : stripped
    }

    /// One change made to a restored copy's configuration, for the report.
    public struct Change: Sendable, Equatable, Codable, CustomStringConvertible {
        public var file: String
        public var setting: String
        public var was: String
        public var now: String
        public var description: String { "\(file): \(setting) was \(was), now \(now)" }
    }

    /// `postgresql.conf` (or an included file) of a restored copy: settings naming the source's own
    /// paths commented out (defaults then resolve inside the restored directory, where the backup
    /// put those files), absolute includes into the source data directory pointed at the copy.
    /// `sourceDataDirectory` nil: unknown (older backups), every absolute path key is neutralised.
    public static func neutralisePaths(_ text: String, file: String, sourceDataDirectory: String?, restoredDataDirectory: String)
        -> (text: String, changes: [Change])
    {
        var out: [String] = []
        var changes: [Change] = []
        for line in parse(text) {
            guard let key = line.key, let value = line.value else {
                out.append(line.text)
                continue
            }
            if pathKeys.contains(key) {
                out.append("#lifeboat: \(line.text)")
                changes.append(Change(file: file, setting: key, was: quote(value), now: "commented out (the default, inside the restored directory)"))
                continue
            }
            if includeDirectives.contains(key), value.hasPrefix("/"), let source = sourceDataDirectory,
                value == source || value.hasPrefix(source + "/")
            {
                let moved = restoredDataDirectory + value.dropFirst(source.count)
                out.append("\(key) = \(quote(moved))")
                changes.append(Change(file: file, setting: key, was: quote(value), now: quote(moved)))
                continue
            }
            out.append(line.text)
        }
        return (out.joined(separator: "\n"), changes)
    }
}

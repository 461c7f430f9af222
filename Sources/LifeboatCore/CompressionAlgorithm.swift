/// The compression applied to each repository object before encryption (the codecs live in the
/// repository module; this is the choice, as configuration and the repository config name it).
public enum CompressionAlgorithm: String, Codable, Sendable, CaseIterable {
    case zstd
    case lz4
    case none
}

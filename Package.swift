// swift-tools-version:6.0
import PackageDescription

let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)]

let package = Package(
    name: "Lifeboat",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "lifeboat", targets: ["lifeboat"]),
        .library(name: "LifeboatCore", targets: ["LifeboatCore"]),
        .library(name: "LifeboatRepository", targets: ["LifeboatRepository"]),
        .library(name: "LifeboatPostgres", targets: ["LifeboatPostgres"]),
        .library(name: "LifeboatRunbooks", targets: ["LifeboatRunbooks"]),
        .library(name: "LifeboatService", targets: ["LifeboatService"]),
        .library(name: "LifeboatAWS", targets: ["LifeboatAWS"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
    ],
    targets: [
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),
        .target(name: "CLinuxSys"),
        .target(name: "LifeboatCore", swiftSettings: strict),
        .target(name: "LifeboatFileSystem", dependencies: ["LifeboatCore"], swiftSettings: strict),
        .target(
            name: "LifeboatConfiguration",
            dependencies: ["LifeboatCore", .product(name: "Yams", package: "Yams")],
            swiftSettings: strict),
        .target(
            name: "LifeboatAWSCore",
            dependencies: [
                "LifeboatCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict),
        .target(
            name: "LifeboatRepository",
            dependencies: [
                "LifeboatCore", "LifeboatFileSystem", "LifeboatAWSCore", "CZstd", "CLZ4", "CLinuxSys",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        .target(
            name: "LifeboatPostgres",
            dependencies: [
                "LifeboatCore", "LifeboatFileSystem", "LifeboatRepository", "CLinuxSys",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        .target(
            name: "LifeboatAWS",
            dependencies: ["LifeboatCore", "LifeboatAWSCore"],
            swiftSettings: strict),
        .target(
            name: "LifeboatRunbooks",
            dependencies: [
                "LifeboatCore", "LifeboatConfiguration", "LifeboatFileSystem", "LifeboatRepository", "LifeboatPostgres", "LifeboatAWS",
                "LifeboatAWSCore", .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict),
        .target(
            name: "LifeboatService",
            dependencies: [
                "LifeboatCore", "LifeboatConfiguration", "LifeboatFileSystem", "LifeboatRepository", "LifeboatPostgres", "LifeboatRunbooks",
                "LifeboatAWS", "LifeboatAWSCore", .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict),
        .target(
            name: "LifeboatTesting",
            dependencies: ["LifeboatCore", "LifeboatFileSystem", "LifeboatRepository", "LifeboatPostgres", "LifeboatAWSCore"],
            swiftSettings: strict),
        .executableTarget(
            name: "lifeboat",
            dependencies: [
                "LifeboatCore", "LifeboatConfiguration", "LifeboatAWSCore", "LifeboatRepository", "LifeboatPostgres", "LifeboatRunbooks",
                "LifeboatService", "CLinuxSys",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict),
        .testTarget(name: "LifeboatCoreTests", dependencies: ["LifeboatCore"], swiftSettings: strict),
        .testTarget(name: "LifeboatConfigurationTests", dependencies: ["LifeboatConfiguration"], swiftSettings: strict),
        .testTarget(
            name: "LifeboatRepositoryTests",
            dependencies: ["LifeboatRepository", "LifeboatAWSCore", "LifeboatPostgres", "LifeboatTesting"], swiftSettings: strict),
        .testTarget(
            name: "LifeboatPostgresTests",
            dependencies: ["LifeboatPostgres", "LifeboatTesting"], swiftSettings: strict),
        .testTarget(
            name: "LifeboatRunbooksTests",
            dependencies: ["LifeboatRunbooks", "LifeboatTesting"], swiftSettings: strict),
        .testTarget(
            name: "LifeboatAWSTests", dependencies: ["LifeboatAWS", "LifeboatAWSCore", "LifeboatConfiguration", "LifeboatRepository", "LifeboatRunbooks", "LifeboatTesting"],
            swiftSettings: strict),
        .testTarget(name: "LifeboatServiceTests", dependencies: ["LifeboatService", "LifeboatTesting", "LifeboatAWS", "LifeboatAWSCore",
            "LifeboatConfiguration", "LifeboatRunbooks", "LifeboatRepository"], swiftSettings: strict),
        .testTarget(
            name: "LifeboatCLITests",
            dependencies: ["LifeboatTesting", "LifeboatAWS", "LifeboatAWSCore", "LifeboatPostgres", "LifeboatRunbooks", "lifeboat", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict),
    ]
)

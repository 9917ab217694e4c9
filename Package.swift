// swift-tools-version: 6.1
import PackageDescription

// perfd: CT perfusion daemon. docs/ARCHITECTURE.md §2 lists the targets and what each owns.
let package = Package(
    name: "perfd",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "perfd", targets: ["perfd"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
    ],
    targets: [
        // The only place that includes DCMTK headers; Swift sees the plain-C header pdcm.h.
        .target(
            name: "CDCMTK",
            cxxSettings: [.unsafeFlags(["-std=c++17", "-O2", "-Wno-deprecated-declarations"])],
            linkerSettings: [
                .linkedLibrary("dcmnet"), .linkedLibrary("dcmdata"), .linkedLibrary("dcmimgle"),
                .linkedLibrary("dcmjpeg"), .linkedLibrary("dcmjpls"), .linkedLibrary("dcmtkcharls"),
                .linkedLibrary("ijg8"), .linkedLibrary("ijg12"), .linkedLibrary("ijg16"),
                .linkedLibrary("oflog"), .linkedLibrary("ofstd"), .linkedLibrary("z"),
                .linkedLibrary("dcmtls"), .linkedLibrary("ssl"), .linkedLibrary("crypto"),
                .linkedLibrary("stdc++"),
            ]
        ),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        // Cairo draws the text, legends and curves burned into colour outputs.
        .systemLibrary(name: "CCairo", pkgConfig: "cairo", providers: [.apt(["libcairo2-dev"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .target(name: "DICOM", dependencies: ["CDCMTK"]),
        // The ConvLSTM engine's SIMD kernels: C++ templates compiled for AVX-512, AVX2+FMA and
        // baseline x86-64, picked at run time (Swift has no per-function target features, and
        // the binary must run on any x86-64).
        .target(name: "CInferenceKernels", cxxSettings: [.unsafeFlags(["-std=c++17", "-O2", "-Wno-psabi"])]),
        // The ConvLSTM engine: the standard library, OpenBLAS and its kernels only.
        .target(name: "Inference", dependencies: ["COpenBLAS", "CInferenceKernels"], swiftSettings: [.unsafeFlags(["-Ounchecked"])]),
        .target(name: "Volume", dependencies: ["DICOM"]),
        .target(name: "Registration", dependencies: ["Volume"], swiftSettings: [.unsafeFlags(["-Ounchecked"])]),
        // What the services ask of the store (`PerfdStore`) and the records it answers with;
        // no SQLite, so the services depend on this and not on an implementation.
        .target(name: "Store"),
        .target(name: "JobStore", dependencies: ["CSQLite", "Store"]),
        // PostgreSQL's own C client, synchronous like the SQLite C API (issue 20).
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        // The store on a shared PostgreSQL: the `PerfdStore` operations plus leases, fencing and
        // the DICOM bytes in the database (docs/ARCHITECTURE.md §7). Not wired into serve yet.
        .target(name: "PostgresStore", dependencies: ["CLibPQ", "Store"]),
        // Classical perfusion maps, NIfTI and .npy writers (docs/ARCHITECTURE.md §8).
        .target(name: "Perfusion", dependencies: ["Volume", "COpenBLAS"], swiftSettings: [.unsafeFlags(["-Ounchecked"])]),
        // The synthetic CTP phantom: writes DICOM series and their truth maps.
        .target(name: "Phantom", dependencies: ["Perfusion", "Volume", "DICOM", "Registration"],
                swiftSettings: [.unsafeFlags(["-Ounchecked"])]),
        // The pipeline registry and adapters, model lookup, preprocessing, streamed assembly and
        // registration of a series, quality control and the report.
        .target(name: "Pipelines", dependencies: ["DICOM", "Volume", "Registration", "Perfusion", "Inference"]),
        // Output pictures (Cairo), the Secondary Capture writer, the summary page, derived UIDs.
        .target(name: "Rendering", dependencies: ["DICOM", "Volume", "CCairo", "Pipelines"]),
        // perfd.yaml: parsing, validation, the version.
        .target(name: "Config", dependencies: ["DICOM", "Pipelines", .product(name: "Yams", package: "Yams")]),
        // How the daemon runs and is watched: the polling loop and executors, metrics and
        // /health, the status report, heartbeat and systemd notification, log handlers.
        .target(
            name: "Operations",
            dependencies: [
                "Config", "DICOM", "Store",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The storage SCP service, start-up reconciliation, series completion.
        .target(
            name: "Ingest",
            dependencies: [
                "DICOM", "Volume", "Store", "Config", "Operations",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The job worker and the stages of one job, the exporter, retention.
        .target(
            name: "Jobs",
            dependencies: [
                "DICOM", "Volume", "Perfusion", "Store", "Config", "Operations", "Ingest", "Pipelines", "Rendering",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The daemon: the services composed, the single-instance lock.
        .target(
            name: "PerfdCore",
            dependencies: [
                "DICOM", "Store", "JobStore", "Config", "Operations", "Ingest", "Jobs",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "perfd",
            dependencies: [
                "PerfdCore", "DICOM", "Store", "JobStore", "Config", "Operations", "Jobs", "Pipelines", "Inference", "Perfusion", "Phantom",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(name: "PerfdTestSupport", dependencies: ["DICOM", "Perfusion", "Phantom"], path: "Tests/PerfdTestSupport"),
        // The in-process daemon harness (the daemon's services in the test process on port 0 and
        // a clock the test moves); apart so that low-level test targets never link the daemon.
        .target(name: "DaemonTestSupport",
                dependencies: ["PerfdTestSupport", "PerfdCore", "Config", "Operations", "Store", "JobStore",
                               .product(name: "Logging", package: "swift-log"),
                               .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")],
                path: "Tests/DaemonTestSupport"),
        .testTarget(name: "DICOMTests", dependencies: ["DICOM", "PerfdTestSupport"]),
        .testTarget(name: "VolumeTests", dependencies: ["Volume", "DICOM", "Perfusion", "PerfdTestSupport"]),
        .testTarget(name: "RegistrationTests", dependencies: ["Registration", "Volume", "PerfdTestSupport"]),
        .testTarget(name: "JobStoreTests", dependencies: ["JobStore", "Store", "PerfdTestSupport"]),
        .testTarget(name: "PostgresStoreTests", dependencies: ["PostgresStore", "Store", "JobStore", "PerfdTestSupport"]),
        .testTarget(name: "InferenceTests", dependencies: ["Inference", "Perfusion", "PerfdTestSupport"], exclude: ["python"]),
        .testTarget(name: "PerfusionTests", dependencies: ["Perfusion", "Phantom", "Registration", "Volume", "DICOM", "PerfdTestSupport"]),
        .testTarget(
            name: "PerfdCoreTests",
            dependencies: [
                "DICOM", "Volume", "Registration", "Perfusion", "Phantom", "Inference", "Store", "JobStore", "PerfdCore",
                "Config", "Operations", "Ingest", "Jobs", "Pipelines", "Rendering", "PerfdTestSupport", "DaemonTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["fixtures"]
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["DICOM", "Volume", "Perfusion", "Phantom", "Config", "Operations", "PerfdTestSupport", "DaemonTestSupport"],
            exclude: ["python"]
        ),
        // Checks docs/ARCHITECTURE.md against the tree; no dependencies, so it builds in seconds.
        .testTarget(name: "DocsTests"),
    ],
    swiftLanguageModes: [.v6]
)

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
        .target(name: "JobStore", dependencies: ["CSQLite"]),
        // PostgreSQL's own C client, synchronous like the SQLite C API (issue 20).
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        // The store on a shared PostgreSQL: JobStore's operations plus leases, fencing and
        // the DICOM bytes in the database (docs/ARCHITECTURE.md §7). Not wired into serve yet.
        .target(name: "PostgresStore", dependencies: ["CLibPQ", "JobStore"]),
        // Classical perfusion maps and the synthetic CTP phantom (docs/ARCHITECTURE.md §8).
        .target(name: "Perfusion", dependencies: ["Volume", "DICOM", "Registration", "COpenBLAS"],
                swiftSettings: [.unsafeFlags(["-Ounchecked"])]),
        .target(
            name: "PerfdCore",
            dependencies: [
                "DICOM", "Volume", "Registration", "JobStore", "CCairo", "Inference", "Perfusion",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .executableTarget(
            name: "perfd",
            dependencies: [
                "PerfdCore", "Inference", "Perfusion",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(name: "PerfdTestSupport", dependencies: ["DICOM", "PerfdCore", "Perfusion"], path: "Tests/PerfdTestSupport"),
        .testTarget(name: "DICOMTests", dependencies: ["DICOM", "PerfdTestSupport"]),
        .testTarget(name: "VolumeTests", dependencies: ["Volume", "PerfdCore", "PerfdTestSupport"]),
        .testTarget(name: "RegistrationTests", dependencies: ["Registration", "PerfdCore", "PerfdTestSupport"]),
        .testTarget(name: "JobStoreTests", dependencies: ["JobStore", "PerfdTestSupport"]),
        .testTarget(name: "PostgresStoreTests", dependencies: ["PostgresStore", "JobStore", "PerfdTestSupport"]),
        .testTarget(name: "InferenceTests", dependencies: ["Inference", "PerfdTestSupport"], exclude: ["python"]),
        .testTarget(name: "PerfusionTests", dependencies: ["Perfusion", "PerfdCore", "PerfdTestSupport"]),
        .testTarget(name: "PerfdCoreTests", dependencies: ["PerfdCore", "PerfdTestSupport"], exclude: ["fixtures"]),
        .testTarget(name: "IntegrationTests", dependencies: ["PerfdCore", "PerfdTestSupport"], exclude: ["python"]),
        // Checks docs/ARCHITECTURE.md against the tree; no dependencies, so it builds in seconds.
        .testTarget(name: "DocsTests"),
    ],
    swiftLanguageModes: [.v6]
)

import Foundation
import Testing

/// The target graph §2 of docs/ARCHITECTURE.md describes, checked against Package.swift and
/// the sources: every module a target imports is one it names, the services reach the store
/// only through its protocol, and the low-level test targets do not need the daemon.
struct TargetGraphTests {
    static let root = ArchitectureDocTests.root

    /// Modules of the toolchain, which no target names in Package.swift.
    static let toolchain: Set<String> = ["Foundation", "Glibc", "Synchronization", "Dispatch", "Testing", "XCTest"]

    /// Each target in Package.swift: its name, the targets and products it names, and its folder.
    static func targets(_ manifest: String) -> [String: (deps: Set<String>, path: String?)] {
        var out: [String: (deps: Set<String>, path: String?)] = [:]
        let starts = [".target(", ".testTarget(", ".executableTarget(", ".systemLibrary("]
        var pieces: [Substring] = [Substring(manifest)]
        for s in starts { pieces = pieces.flatMap { $0.components(separatedBy: s).map { $0[...] } } }
        for piece in pieces.dropFirst() {
            guard let name = Self.quoted(after: "name:", in: piece) else { continue }
            var deps = Set<String>()
            if let d = piece.range(of: "dependencies:") {
                let rest = piece[d.upperBound...]
                let list = rest[..<(rest.range(of: "]")?.upperBound ?? rest.endIndex)]
                // Target names are quoted strings; a product's name is its first quoted string.
                for (n, span) in list.split(separator: "\"", omittingEmptySubsequences: false).enumerated() where n % 2 == 1 {
                    deps.insert(String(span))
                }
            }
            out[name] = (deps, Self.quoted(after: "path:", in: piece))
        }
        return out
    }

    static func quoted(after key: String, in text: Substring) -> String? {
        guard let k = text.range(of: key) else { return nil }
        let rest = text[k.upperBound...]
        guard let a = rest.firstIndex(of: "\"") else { return nil }
        let b = rest[rest.index(after: a)...]
        guard let e = b.firstIndex(of: "\"") else { return nil }
        return String(b[..<e])
    }

    /// The modules the Swift files under `dir` import.
    static func imports(under dir: String) -> Set<String> {
        var found = Set<String>()
        guard let walk = FileManager.default.enumerator(atPath: dir) else { return found }
        for case let file as String in walk where file.hasSuffix(".swift") {
            guard let text = try? String(contentsOfFile: dir + "/" + file, encoding: .utf8) else { continue }
            for line in text.split(separator: "\n") {
                // A Swift import is a whole line at column 0: attributes, `import`, one module name
                // (the Python some tests carry in string literals has commas or indentation).
                let words = line.split(separator: " ")
                guard let i = words.firstIndex(of: "import"), i + 2 == words.count, !line.hasPrefix(" "),
                      words[..<i].allSatisfy({ $0.hasPrefix("@") || $0 == "internal" || $0 == "public" }),
                      words[i + 1].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else { continue }
                found.insert(String(words[i + 1]))
            }
        }
        return found
    }

    @Test func everyTargetNamesWhatItImports() throws {
        let manifest = try String(contentsOfFile: Self.root + "/Package.swift", encoding: .utf8)
        let targets = Self.targets(manifest)
        #expect(targets.count >= 25, "found only \(targets.count) targets in Package.swift")
        var checked = 0
        for (name, t) in targets {
            let dir = Self.root + "/" + (t.path ?? (name.hasSuffix("Tests") ? "Tests/\(name)" : "Sources/\(name)"))
            let undeclared = Self.imports(under: dir).subtracting(t.deps).subtracting(Self.toolchain)
            #expect(undeclared.isEmpty, "\(name) imports \(undeclared.sorted()) without naming them in Package.swift")
            checked += 1
        }
        #expect(checked >= 25)
    }

    @Test func servicesReachTheStoreThroughItsProtocolAndLowLevelTestsNeedNoDaemon() throws {
        let targets = Self.targets(try String(contentsOfFile: Self.root + "/Package.swift", encoding: .utf8))
        for service in ["Ingest", "Jobs", "Operations"] {
            let deps = try #require(targets[service]?.deps, "no target \(service)")
            #expect(deps.contains("Store") && !deps.contains("JobStore") && !deps.contains("CSQLite"),
                    "\(service) depends on \(deps.sorted())")
        }
        #expect(targets["Store"]?.deps.isEmpty == true, "Store must build without SQLite: \(targets["Store"]?.deps.sorted() ?? [])")
        let daemon: Set<String> = ["PerfdCore", "Config", "Operations", "Ingest", "Jobs", "Pipelines", "Rendering"]
        for low in ["VolumeTests", "RegistrationTests", "PerfusionTests", "PerfdTestSupport"] {
            let deps = try #require(targets[low]?.deps, "no target \(low)")
            #expect(deps.isDisjoint(with: daemon), "\(low) depends on \(deps.intersection(daemon).sorted())")
        }
    }
}

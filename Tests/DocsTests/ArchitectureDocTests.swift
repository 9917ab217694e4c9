import Foundation
import Testing

/// docs/ARCHITECTURE.md is the design document a clone carries: every source path it names
/// must exist, and no file may send the reader to a document outside the repository.
struct ArchitectureDocTests {
    /// The package root: this file is Tests/DocsTests/ArchitectureDocTests.swift.
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    /// Top-level folders whose paths the document may name.
    static let prefixes = ["Sources/", "Tests/", "scripts/", "deploy/", "models/", "docs/", "systemd/"]

    /// Backticked spans of `text` that start with one of `prefixes`; a `:line` suffix is dropped.
    static func namedPaths(_ text: String) -> [String] {
        var paths: [String] = []
        for (n, span) in text.split(separator: "`", omittingEmptySubsequences: false).enumerated() where n % 2 == 1 {
            var p = String(span)
            guard prefixes.contains(where: { p.hasPrefix($0) }), !p.contains(" ") else { continue }
            if let colon = p.firstIndex(of: ":") { p = String(p[..<colon]) }
            paths.append(p)
        }
        return paths
    }

    /// Whether `pattern` (path components, `*` and `?` allowed in any of them) matches something under `base`.
    static func exists(_ pattern: [Substring], under base: String) -> Bool {
        guard let first = pattern.first else { return true }
        let rest = Array(pattern.dropFirst())
        if first.isEmpty { return exists(rest, under: base) }   // "dir/" or "a//b"
        if !first.contains("*") && !first.contains("?") {
            let path = base + "/" + first
            return FileManager.default.fileExists(atPath: path) && exists(rest, under: path)
        }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []
        return names.contains { fnmatch(String(first), $0, 0) == 0 && exists(rest, under: base + "/" + $0) }
    }

    @Test func everyPathTheArchitectureDocumentNamesExists() throws {
        let doc = try String(contentsOfFile: Self.root + "/docs/ARCHITECTURE.md", encoding: .utf8)
        let paths = Self.namedPaths(doc)
        // The document walks the data path file by file; far fewer named paths means the
        // parsing broke, and a check of nothing passes.
        #expect(paths.count >= 40, "found only \(paths.count) paths in docs/ARCHITECTURE.md")
        let missing = Set(paths.filter { !Self.exists($0.split(separator: "/", omittingEmptySubsequences: false), under: Self.root) })
        #expect(missing.isEmpty, "docs/ARCHITECTURE.md names paths that do not exist: \(missing.sorted().joined(separator: ", "))")
    }

    @Test func theParserFindsPathsAndTheCheckCatchesAMissingOne() {
        let text = "see `Sources/JobStore/Outbox.swift:42`, `models/*/model.json`, `perfd run`, `Sources/Nope.swift` and `Tests/`"
        let paths = Self.namedPaths(text)
        #expect(paths == ["Sources/JobStore/Outbox.swift", "models/*/model.json", "Sources/Nope.swift", "Tests/"])
        let found = paths.map { Self.exists($0.split(separator: "/", omittingEmptySubsequences: false), under: Self.root) }
        #expect(found == [true, true, false, true])
    }

    /// What `line` cites that is not in the repository, if anything: the removed design
    /// document (by name or by section) or a sibling `shared` folder.
    static func outsideCitation(_ line: String) -> String? {
        if line.range(of: #"\bDESIGN\b"#, options: .regularExpression) != nil { return "the removed design document" }
        if line.contains("../" + "shared") { return "a document outside the repository (a sibling shared folder)" }
        return nil
    }

    /// The repository's files: git's list (tracked, plus new files not ignored), else a walk
    /// that skips hidden and build folders.
    static func repositoryFiles() -> [String] {
        let git = Process()
        git.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        git.arguments = ["git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
        let pipe = Pipe()
        git.standardOutput = pipe
        git.standardError = FileHandle.nullDevice
        if (try? git.run()) != nil {
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            git.waitUntilExit()
            if git.terminationStatus == 0 {
                return String(decoding: data, as: UTF8.self).split(separator: "\0").map(String.init)
            }
        }
        var files: [String] = []
        let walker = FileManager.default.enumerator(atPath: root)
        while let p = walker?.nextObject() as? String {
            let name = (p as NSString).lastPathComponent
            if name.hasPrefix(".") && name != ".ci" && name != ".gitignore" { walker?.skipDescendants(); continue }
            var dir: ObjCBool = false
            if FileManager.default.fileExists(atPath: root + "/" + p, isDirectory: &dir), !dir.boolValue { files.append(p) }
        }
        return files
    }

    @Test func noFileCitesADocumentOutsideTheRepository() throws {
        let files = Self.repositoryFiles()
        #expect(files.contains("Package.swift") && files.contains("README.md"), "the file list is wrong: \(files.prefix(5))")
        var hits: [String] = []
        for file in files where file != "Tests/DocsTests/ArchitectureDocTests.swift" {
            // Text files only: weights and other binaries are not UTF-8.
            guard let data = FileManager.default.contents(atPath: Self.root + "/" + file),
                  let text = String(data: data, encoding: .utf8) else { continue }
            for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                if let what = Self.outsideCitation(String(line)) {
                    hits.append("\(file):\(n + 1) cites \(what): \(line.trimmingCharacters(in: .whitespaces).prefix(100))")
                }
            }
        }
        #expect(hits.isEmpty, "\(hits.count) citations; point to docs/ARCHITECTURE.md instead:\n\(hits.joined(separator: "\n"))")
    }
}

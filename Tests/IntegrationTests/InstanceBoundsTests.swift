import DICOM
import Foundation
import PerfdTestSupport
import Testing
import Volume

/// A Part 10 file in explicit VR little endian, written byte by byte so a test can say
/// exactly what a hostile sender would (DCMTK's tools refuse to write most of it).
struct RawInstance {
    var body: [UInt8] = []
    let sop = "1.2.826.0.1.3680043.10.1040.7.\(UInt32.random(in: 1...UInt32.max))"
    let study = "1.2.826.0.1.3680043.10.1040.8.\(UInt32.random(in: 1...UInt32.max))"
    let series = "1.2.826.0.1.3680043.10.1040.9.\(UInt32.random(in: 1...UInt32.max))"

    static let longVRs: Set<String> = ["OB", "OW", "SQ", "UN", "UT", "UC", "UR", "OD", "OF", "OL", "OV", "SV", "UV"]

    static func u16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
    static func u32(_ v: UInt32) -> [UInt8] { u16(UInt16(v & 0xFFFF)) + u16(UInt16(v >> 16)) }
    static func element(_ g: UInt16, _ e: UInt16, _ vr: String, _ value: [UInt8]) -> [UInt8] {
        var b = u16(g) + u16(e) + Array(vr.utf8)
        b += longVRs.contains(vr) ? u16(0) + u32(UInt32(value.count)) : u16(UInt16(value.count))
        return b + value
    }
    static func text(_ g: UInt16, _ e: UInt16, _ vr: String, _ s: String) -> [UInt8] {
        var v = Array(s.utf8)
        if v.count % 2 == 1 { v.append(vr == "UI" ? 0 : 0x20) }
        return element(g, e, vr, v)
    }
    static func us(_ g: UInt16, _ e: UInt16, _ v: UInt16) -> [UInt8] { element(g, e, "US", u16(v)) }
    /// A tag and a 32-bit length without a VR: items, delimiters, undefined-length headers.
    static func raw(_ g: UInt16, _ e: UInt16, _ len: UInt32) -> [UInt8] { u16(g) + u16(e) + u32(len) }
    static let undefined: UInt32 = 0xFFFF_FFFF

    /// A CT slice of `rows`×`columns`; `privateData` goes in group 0009 (its creator is
    /// written first), `pixels` is the whole Pixel Data element.
    func file(rows: UInt16, columns: UInt16, transferSyntax: String = "1.2.840.10008.1.2.1",
              privateData: [UInt8] = [], pixels: [UInt8]) -> Data {
        let ct = "1.2.840.10008.5.1.4.1.1.2"
        var meta = Self.element(0x0002, 0x0001, "OB", [0, 1]) + Self.text(0x0002, 0x0002, "UI", ct) +
            Self.text(0x0002, 0x0003, "UI", sop) + Self.text(0x0002, 0x0010, "UI", transferSyntax)
        meta = Self.element(0x0002, 0x0000, "UL", Self.u32(UInt32(meta.count))) + meta
        var ds = Self.text(0x0008, 0x0016, "UI", ct) + Self.text(0x0008, 0x0018, "UI", sop) + Self.text(0x0008, 0x0060, "CS", "CT")
        if !privateData.isEmpty { ds += Self.text(0x0009, 0x0010, "LO", "PERFD TEST") + privateData }
        ds += Self.text(0x0010, 0x0010, "PN", "BOUNDS^TEST") + Self.text(0x0010, 0x0020, "LO", "B1")
        ds += Self.text(0x0020, 0x000D, "UI", study) + Self.text(0x0020, 0x000E, "UI", series)
        ds += Self.us(0x0028, 0x0002, 1) + Self.text(0x0028, 0x0004, "CS", "MONOCHROME2")
        ds += Self.us(0x0028, 0x0010, rows) + Self.us(0x0028, 0x0011, columns)
        ds += Self.us(0x0028, 0x0100, 16) + Self.us(0x0028, 0x0101, 12) + Self.us(0x0028, 0x0102, 11) + Self.us(0x0028, 0x0103, 0)
        return Data([UInt8](repeating: 0, count: 128) + Array("DICM".utf8) + meta + ds + pixels)
    }

    /// Native 16-bit pixel data of the right size.
    static func nativePixels(rows: Int, columns: Int) -> [UInt8] {
        element(0x7FE0, 0x0010, "OW", [UInt8](repeating: 0, count: rows * columns * 2))
    }

    /// Private sequence (0009,1001) nested `depth` levels, undefined lengths throughout.
    static func nestedSequence(depth: Int) -> [UInt8] {
        let open = u16(0x0009) + u16(0x1001) + Array("SQ".utf8) + u16(0) + u32(undefined) + raw(0xFFFE, 0xE000, undefined)
        let close = raw(0xFFFE, 0xE00D, 0) + raw(0xFFFE, 0xE0DD, 0)
        var b: [UInt8] = []
        b.reserveCapacity(depth * (open.count + close.count) + 16)
        for _ in 0..<depth { b += open }
        b += text(0x0009, 0x1002, "LO", "BOTTOM")
        for _ in 0..<depth { b += close }
        return b
    }

    /// Private sequence (0009,1001) of `count` empty items.
    static func emptyItems(_ count: Int) -> [UInt8] {
        var b = u16(0x0009) + u16(0x1001) + Array("SQ".utf8) + u16(0) + u32(undefined)
        let item = raw(0xFFFE, 0xE000, 0)
        b.reserveCapacity(b.count + count * 8 + 8)
        for _ in 0..<count { b += item }
        return b + raw(0xFFFE, 0xE0DD, 0)
    }
}

/// Bounds on what one instance may cost the daemon: nesting, item count, image size, disk.
/// Each hostile instance is sent with storescu to the real `perfd serve`.
@Suite(.serialized) struct InstanceBoundsTests {
    func store(_ files: [String], port: Int, options: [String] = []) throws -> ToolResult {
        try runTool("storescu", options + ["-aet", "SCANNER", "-aec", "PERFD", "127.0.0.1", String(port)] + files)
    }

    func rowCount(_ dir: TempDir, _ series: String) throws -> Int {
        try databaseInt(dir, "SELECT COUNT(*) FROM instances WHERE series_uid = '\(series)'")
    }

    /// The daemon's peak resident memory (VmHWM), in MiB.
    func peakMiB(_ server: PerfdServer) throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(server.process.processIdentifier)/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kb = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") else {
            throw TestFailure("no VmHWM in /proc status")
        }
        return kb / 1024
    }

    func write(_ data: Data, _ path: String) throws -> String {
        try data.write(to: URL(fileURLWithPath: path))
        return path
    }

    /// 7,000 nested sequences (252 KB) overflowed the worker's stack in DCMTK's recursive
    /// parser: the daemon died with SIGSEGV. Now the scan before parsing refuses it (0xC000),
    /// and the daemon goes on answering; an instance nested a few levels is still taken.
    @Test func deeplyNestedSequenceIsRefusedAndTheDaemonKeepsServing() throws {
        let dir = TempDir()
        let port = freePort()
        let server = try PerfdServer(configPath: writeConfig(in: dir, port: port, quietSeconds: 30), port: port, logPath: dir.path + "/serve.log")
        defer { server.stop() }
        let deep = RawInstance()
        let path = try write(deep.file(rows: 16, columns: 16, privateData: RawInstance.nestedSequence(depth: 7000),
                                       pixels: RawInstance.nativePixels(rows: 16, columns: 16)), dir.path + "/deep.dcm")
        // storescu parses the file with the same recursive code: give it room.
        let r = try runTool("bash", ["-c", "ulimit -s unlimited && exec storescu -aet SCANNER -aec PERFD 127.0.0.1 \(port) \(path)"])
        #expect(server.process.isRunning, "perfd died on the nested instance: \(r.output)")
        #expect(server.log.contains("answered 0xC000"), "\(server.log)")
        #expect(server.log.contains("sequences are nested more than 16 levels deep"), "\(server.log)")
        #expect(try rowCount(dir, deep.series) == 0)
        #expect(try runTool("echoscu", ["-aet", "SCANNER", "-aec", "PERFD", "127.0.0.1", String(port)]).status == 0)
        // Nesting a CT can have (a few levels) is stored.
        let shallow = RawInstance()
        let ok = try write(shallow.file(rows: 16, columns: 16, privateData: RawInstance.nestedSequence(depth: 6),
                                        pixels: RawInstance.nativePixels(rows: 16, columns: 16)), dir.path + "/shallow.dcm")
        #expect(try store([ok], port: port).status == 0)
        #expect(try rowCount(dir, shallow.series) == 1, "\(server.log)")
    }

    /// Two 15 KB RLE instances declaring 65535×65535 were stored (the pixel length check
    /// skipped encapsulated syntaxes) and their job allocated 34 GB. Now the size is refused
    /// at the C-STORE (0xA900), while a genuine RLE instance is stored.
    @Test func hugeRLEImageIsRefusedAtStore() throws {
        let dir = TempDir()
        let port = freePort()
        let server = try PerfdServer(configPath: writeConfig(in: dir, port: port, quietSeconds: 1), port: port, logPath: dir.path + "/serve.log")
        defer { server.stop() }
        // One RLE segment of replicate runs (each 2 bytes for 128), 15 KB.
        var fragment = RawInstance.u32(1) + RawInstance.u32(64) + [UInt8](repeating: 0, count: 56)
        for _ in 0..<7600 { fragment += [0x81, 0x00] }
        var paths: [String] = []
        var series: [String] = []
        for i in 0..<2 {
            let bomb = RawInstance()
            let pixels = RawInstance.u16(0x7FE0) + RawInstance.u16(0x0010) + Array("OB".utf8) + RawInstance.u16(0) + RawInstance.u32(RawInstance.undefined) +
                RawInstance.raw(0xFFFE, 0xE000, 0) + RawInstance.raw(0xFFFE, 0xE000, UInt32(fragment.count)) + fragment + RawInstance.raw(0xFFFE, 0xE0DD, 0)
            paths.append(try write(bomb.file(rows: 65535, columns: 65535, transferSyntax: "1.2.840.10008.1.2.5", pixels: pixels), dir.path + "/rle\(i).dcm"))
            series.append(bomb.series)
        }
        let sent = try store(paths, port: port, options: ["-xr"])
        #expect(server.process.isRunning)
        for s in series { #expect(try rowCount(dir, s) == 0, "\(server.log)") }
        #expect(server.log.contains("answered 0xA900"), "\(sent.output)\n\(server.log)")
        #expect(server.log.contains("declares a 65535×65535 image; perfd takes at most 4096×4096"), "\(server.log)")
        // A real RLE slice passes the plausibility check.
        let ph = try makePhantom(in: dir.sub("ph"), size: 32, slices: 1, timepoints: 1, transferSyntax: .rle)
        let real = try store(ph.files, port: port, options: ["-xr"])
        #expect(real.status == 0, "\(real.output)")
        #expect(try rowCount(dir, ph.seriesUID) == 1, "\(server.log)")
    }

    /// Found by the fuzzer: DCMTK 3.6.7's JPEG decoder walks the first fragment's markers for
    /// the sample precision and never steps past a TEM marker (FF01), so the job decoding
    /// such an instance hung for good. Now it is refused at the C-STORE (0xA900).
    @Test func jpegThatHangsDCMTKsDecoderIsRefusedAtStore() throws {
        let dir = TempDir()
        let port = freePort()
        let server = try PerfdServer(configPath: writeConfig(in: dir, port: port, quietSeconds: 30), port: port, logPath: dir.path + "/serve.log")
        defer { server.stop() }
        let ph = try makePhantom(in: dir.sub("ph"), size: 16, slices: 1, timepoints: 2, transferSyntax: .jpegLossless)
        // The marker right after SOI becomes FF01 (same length, so the file stays well formed).
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: ph.files[0])))
        let soi = try #require((0..<(bytes.count - 3)).first { bytes[$0] == 0xFF && bytes[$0 + 1] == 0xD8 && bytes[$0 + 2] == 0xFF })
        bytes[soi + 3] = 0x01
        try Data(bytes).write(to: URL(fileURLWithPath: ph.files[0]))
        let r = try store([ph.files[0]], port: port, options: ["-xs"])
        #expect(server.log.contains("answered 0xA900"), "\(r.output)\n\(server.log)")
        #expect(server.log.contains("TEM marker (FF01)"), "\(server.log)")
        #expect(try rowCount(dir, ph.seriesUID) == 0)
        // The intact JPEG instance is kept.
        #expect(try store([ph.files[1]], port: port, options: ["-xs"]).status == 0)
        #expect(try rowCount(dir, ph.seriesUID) == 1, "\(server.log)")
    }

    /// 4 million empty items (32 MB) cost 1.27 GB of the daemon's memory in DCMTK's parse;
    /// here 2 million (16 MB). Now the scan stops counting at its limit and the daemon's
    /// peak memory stays where it was.
    @Test func itemCountBombIsRefusedWithoutTheMemory() throws {
        let dir = TempDir()
        let port = freePort()
        let server = try PerfdServer(configPath: writeConfig(in: dir, port: port, quietSeconds: 30, spoolReserveMB: 0),
                                     port: port, logPath: dir.path + "/serve.log")
        defer { server.stop() }
        #expect(try runTool("echoscu", ["-aet", "SCANNER", "-aec", "PERFD", "127.0.0.1", String(port)]).status == 0)
        let before = try peakMiB(server)
        let bomb = RawInstance()
        let path = try write(bomb.file(rows: 16, columns: 16, privateData: RawInstance.emptyItems(2_000_000),
                                       pixels: RawInstance.nativePixels(rows: 16, columns: 16)), dir.path + "/items.dcm")
        _ = try store([path], port: port)
        let after = try peakMiB(server)
        print("perfd peak RSS: \(before) MiB before the item bomb, \(after) MiB after")
        #expect(server.process.isRunning)
        #expect(try rowCount(dir, bomb.series) == 0)
        #expect(server.log.contains("more than 400000 data elements and items"), "\(server.log)")
        #expect(after - before < 100, "peak RSS grew from \(before) to \(after) MiB")
    }

    /// The disk guard looked only before receiving: a 600 MB instance was kept although it
    /// left the spool 300 MB under min_free_disk_gb. Now the free space is checked again once
    /// the data set is on disk; an instance that crosses the limit is refused (0xA700) and
    /// deleted. The spool is a 40 MiB tmpfs with a 20.5 MiB limit and the instance 24 MiB.
    @Test(.enabled(if: getuid() == 0, "mounts a tmpfs for the spool"))
    func instanceThatWouldCrossTheDiskLimitIsRefusedAndNotKept() throws {
        let dir = TempDir()
        let port = freePort()
        let spool = dir.path + "/state/spool"
        try FileManager.default.createDirectory(atPath: spool, withIntermediateDirectories: true)
        let m = try runTool("mount", ["-t", "tmpfs", "-o", "size=40m", "tmpfs", spool])
        try #require(m.status == 0, "\(m.output)")
        defer { _ = try? runTool("umount", ["-l", spool]) }
        let server = try PerfdServer(configPath: writeConfig(in: dir, port: port, quietSeconds: 30, minFreeDiskGB: 0.02, spoolReserveMB: 0),
                                     port: port, logPath: dir.path + "/serve.log")
        defer { server.stop() }
        let big = RawInstance()
        let path = try write(big.file(rows: 4096, columns: 3072, pixels: RawInstance.nativePixels(rows: 4096, columns: 3072)), dir.path + "/big.dcm")
        let r = try store([path], port: port)
        #expect(server.log.contains("answered 0xA700"), "\(r.output)\n\(server.log)")
        #expect(server.log.contains("below min_free_disk_gb"), "\(server.log)")
        #expect(try rowCount(dir, big.series) == 0)
        let kept = (FileManager.default.enumerator(atPath: spool)?.allObjects as? [String] ?? []).filter { $0.hasSuffix(".dcm") }
        #expect(kept.isEmpty, "files left in the spool: \(kept)")
        // The space is back: a small instance is taken.
        let small = RawInstance()
        let ok = try write(small.file(rows: 16, columns: 16, pixels: RawInstance.nativePixels(rows: 16, columns: 16)), dir.path + "/small.dcm")
        #expect(try store([ok], port: port).status == 0)
        #expect(try rowCount(dir, small.series) == 1, "\(server.log)")
    }
}

/// Defence in depth behind the C-STORE checks: a file already in a spool (stored by an older
/// version) or a series too large for the machine is refused with a reason before anything
/// sizes a buffer from its header.
@Suite struct DecodeBoundsTests {
    @Test func decodeAndAssemblyRefuseAHugeImageBeforeAllocating() throws {
        let dir = TempDir()
        var fragment = RawInstance.u32(1) + RawInstance.u32(64) + [UInt8](repeating: 0, count: 56)
        for _ in 0..<64 { fragment += [0x81, 0x00] }
        let pixels = RawInstance.u16(0x7FE0) + RawInstance.u16(0x0010) + Array("OB".utf8) + RawInstance.u16(0) + RawInstance.u32(RawInstance.undefined) +
            RawInstance.raw(0xFFFE, 0xE000, 0) + RawInstance.raw(0xFFFE, 0xE000, UInt32(fragment.count)) + fragment + RawInstance.raw(0xFFFE, 0xE0DD, 0)
        let path = dir.path + "/huge.dcm"
        try RawInstance().file(rows: 65535, columns: 65535, transferSyntax: "1.2.840.10008.1.2.5", pixels: pixels).write(to: URL(fileURLWithPath: path))
        let f = try DicomFile(path: path)
        #expect { _ = try f.storedPixels() } throws: { "\($0)".contains("at most 4096×4096") }
        #expect { _ = try SliceHeader(file: f) } throws: { "\($0)".contains("at most 4096×4096") }
    }

    @Test func assemblyRefusesASeriesOverTheVoxelLimit() throws {
        let dir = TempDir()
        let ph = try makePhantom(in: dir.sub("ph"), size: 16, slices: 2, timepoints: 3)
        let voxels = 16 * 16 * 2 * 3
        #expect { _ = try Assembler.assemble(paths: ph.files, maxVoxels: voxels - 1) } throws: {
            "\($0)".contains("3 time points × 2 slices × 16×16 = \(voxels) voxels, more than the \(voxels - 1)")
        }
        #expect(try Assembler.assemble(paths: ph.files, maxVoxels: voxels).voxels.count == voxels)
    }
}

import DICOM
import Foundation
import PerfdTestSupport
import Perfusion
import Testing
@testable import Volume

/// Headers for a T×D grid, with z positions spaced `dz` mm.
func grid(_ T: Int, _ D: Int, dz: Double = 5, temporal: Bool = true, acquisition: Bool = false, times: Bool = true) -> [SliceHeader] {
    var out: [SliceHeader] = []
    for t in 0..<T {
        for z in 0..<D {
            out.append(SliceHeader(path: "t\(t)z\(z)", rows: 4, columns: 4, position: SIMD3(0, 0, Double(z) * dz),
                                   temporalPosition: temporal ? t + 1 : nil, acquisitionNumber: acquisition ? t + 1 : nil,
                                   time: times ? 3600 + Double(t) * 1.5 + Double(z) * 0.01 : nil))
        }
    }
    return out
}

@Suite struct PlanTests {
    @Test func ordersShuffledInstancesIntoTimeAndSlice() throws {
        var rng = SeededRandom(seed: 7)
        let layout = try Assembler.plan(grid(5, 4).shuffled(using: &rng))
        #expect(layout.grid.count == 5)
        #expect(layout.grid.allSatisfy { $0.count == 4 })
        for t in 0..<5 { for z in 0..<4 { #expect(layout.grid[t][z].path == "t\(t)z\(z)") } }
        #expect(layout.temporalSource == "TemporalPositionIdentifier")
        #expect(layout.geometry.sliceSpacing == 5)
        #expect(layout.frameTimes.map { ($0 * 1000).rounded() / 1000 } == [0, 1.5, 3, 4.5, 6])
    }

    @Test func fallsBackToAcquisitionNumberThenTime() throws {
        #expect(try Assembler.plan(grid(3, 2, temporal: false, acquisition: true)).temporalSource == "AcquisitionNumber")
        let byTime = try Assembler.plan(grid(3, 2, temporal: false).shuffled())
        #expect(byTime.temporalSource.hasPrefix("acquisition time"))
        for t in 0..<3 { for z in 0..<2 { #expect(byTime.grid[t][z].path == "t\(t)z\(z)") } }
    }

    @Test func slicesFollowTheNormalNotTheFileOrder() throws {
        // Positions decreasing in z: slice 0 is the lowest along the normal.
        let h = grid(2, 3, dz: -2.5)
        let layout = try Assembler.plan(h)
        #expect(layout.grid[0].map(\.path) == ["t0z2", "t0z1", "t0z0"])
        #expect(layout.geometry.sliceSpacing == 2.5)
    }

    @Test func missingSliceIsNamed() {
        var h = grid(3, 4)
        h.removeAll { $0.path == "t2z1" }
        #expect {
            try Assembler.plan(h)
        } throws: { e in
            "\(e)".contains("time point 3 of 3 lacks the slice at 5.00 mm") && "\(e)".contains("has 3 of 4")
        }
    }

    @Test func oneTimePointIsRefused() {
        #expect { try Assembler.plan(grid(1, 4)) } throws: { "\($0)".contains("only one time point") }
    }

    @Test func differentSizesAreRefused() {
        var h = grid(2, 2)
        h[3].rows = 8
        #expect { try Assembler.plan(h) } throws: { "\($0)".contains("image sizes differ") }
    }

    @Test func differentOrientationsAreRefused() {
        var h = grid(2, 2)
        h[1].rowDirection = SIMD3(0, 1, 0)
        h[1].columnDirection = SIMD3(1, 0, 0)
        #expect { try Assembler.plan(h) } throws: { "\($0)".contains("orientations differ") }
    }

    @Test func noWayToTellTimeApartIsRefused() {
        #expect { try Assembler.plan(grid(2, 2, temporal: false, times: false)) } throws: { "\($0)".contains("cannot tell time points apart") }
    }

    /// Time stamps that run backwards, repeat, span hours or are missing on some time points
    /// are refused: they would stretch or fold the curves into confident nonsense (or, at
    /// hours, a deconvolution that never ends).
    @Test func implausibleTimingIsRefused() {
        var back = grid(4, 2)
        for i in back.indices where back[i].path.hasPrefix("t2") { back[i].time = 3600 - 10 }
        #expect { try Assembler.plan(back) } throws: { "\($0)".contains("not after time point 2") }
        var same = grid(4, 2)
        for i in same.indices { same[i].time = 3600 }
        #expect { try Assembler.plan(same) } throws: { "\($0)".contains("not after") }
        var late = grid(4, 2)
        for i in late.indices where late[i].path.hasPrefix("t3") { late[i].time = 3600 + 4 * 3600 }
        #expect { try Assembler.plan(late) } throws: { "\($0)".contains("span") }
        var partial = grid(4, 2)
        for i in partial.indices where partial[i].path.hasPrefix("t1") { partial[i].time = nil }
        #expect { try Assembler.plan(partial) } throws: { "\($0)".contains("time point 2 has no AcquisitionTime") }
        #expect(parseDicomTime("..") == nil)
        #expect(parseDicomTime(".5") == nil)
    }

    @Test func dicomTimesParse() {
        let a: Double = 30615.5, b: Double = 30615, c: Double = 30600
        #expect(parseDicomTime("083015.5") == a)
        #expect(parseDicomTime("08:30:15") == b)
        #expect(parseDicomTime("0830") == c)
        #expect(parseDicomTime("x") == nil)
    }
}

@Suite struct AssembleFromFiles {
    /// A phantom written by DCMTK and read back: shape, geometry, HU and frame times.
    @Test(arguments: [TransferSyntax.explicitLittleEndian, .jpegLSLossless, .rle])
    func phantomRoundTrip(_ ts: TransferSyntax) throws {
        let dir = TempDir()
        let ph = try makePhantom(in: dir.path, size: 48, slices: 3, timepoints: 5, transferSyntax: ts)
        let s = try Assembler.assemble(paths: ph.files.shuffled())
        let shape: [Int] = [s.timepoints, s.depth, s.height, s.width]
        #expect(shape == [5, 3, 48, 48])
        #expect(s.frameTimes == ph.frameTimes)
        #expect(abs(s.geometry.rowSpacing - 5) < 1e-9)   // 240 mm / 48
        #expect(s.geometry.sliceSpacing == 5)
        // Corner voxel is air at −1000 HU exactly (no noise outside the head).
        #expect(s.voxels[0] == -1000)
        // The head centre holds brain tissue (white matter 28 HU ± noise), not air or bone.
        let centre = s.frame(0)[1, 24, 24]
        #expect(centre > -30 && centre < 90, "centre voxel \(centre) HU")
        // The arterial voxels enhance by hundreds of HU at the bolus peak.
        #expect(s.files[0][0].hasSuffix("t00_z000.dcm"))
    }
}

@Suite struct MalformedGeometry {
    /// A decimal string that Swift would read as NaN or infinity, or direction cosines that
    /// are not unit vectors, fail the assembly with the file and the tag named (before, "nan"
    /// in ImagePositionPatient trapped in the slice lookup and took the daemon down with it).
    @Test(arguments: [("(0020,0032)", "0\\0\\nan", "ImagePositionPatient"), ("(0020,0032)", "0\\0\\1e400", "ImagePositionPatient"),
                      ("(0020,0037)", "0\\0\\0\\0\\0\\0", "ImageOrientationPatient"), ("(0028,0030)", "0\\0", "PixelSpacing"),
                      ("(0028,1053)", "inf", "RescaleSlope"), ("(0028,1053)", "1e300", "RescaleSlope"),
                      ("(0028,0030)", "1e-20\\1e-20", "PixelSpacing")])
    func isRefusedWithTheTagNamed(_ tag: String, _ value: String, _ name: String) throws {
        let dir = TempDir()
        let ph = try makePhantom(in: dir.path, size: 16, slices: 2, timepoints: 3)
        let bad = ph.files[ph.files.count / 2]
        #expect(try runTool("dcmodify", ["-nb", "-m", "\(tag)=\(value)", bad]).status == 0)
        #expect { try Assembler.assemble(paths: ph.files) } throws: { e in
            "\(e)".contains(name) && "\(e)".contains((bad as NSString).lastPathComponent)
        }
    }
}

@Suite struct BlockTests {
    /// Averaging f×f blocks keeps each block's mean (a partly covered edge block, the mean of
    /// the pixels it has) and puts a whole block's voxel at the centre of its source voxels;
    /// expanding a coarse map gives every source voxel its block's value.
    @Test func blocksAverageAndExpandInPlace() {
        let T = 2, D = 3, H = 6, W = 7, f = 3
        let g = Geometry(origin: SIMD3(-10, 20, 5), rowDirection: SIMD3(0.8, 0.6, 0), columnDirection: SIMD3(-0.6, 0.8, 0),
                         sliceDirection: SIMD3(0, 0, 1), spacing: SIMD3(5, 0.5, 0.4))
        let voxels = (0..<(T * D * H * W)).map { Float(($0 * 37) % 101) }
        let s = Series4D(timepoints: T, depth: D, height: H, width: W, voxels: voxels, geometry: g,
                         frameTimes: [0, 2], temporalSource: "test", files: [])
        let b = s.blockAveraged(f)
        #expect(b.height == 2 && b.width == 3 && b.depth == D && b.timepoints == T)
        #expect(((b.geometry.spacing - SIMD3(5, 1.5, 1.2)) * (b.geometry.spacing - SIMD3(5, 1.5, 1.2))).sum() < 1e-18)
        for t in 0..<T { for z in 0..<D { for y in 0..<2 { for x in 0..<3 {
            var sum: Float = 0, count = 0, centre = SIMD3<Double>(0, 0, 0)
            for dy in 0..<f { for dx in 0..<f where x * f + dx < W {
                sum += voxels[((t * D + z) * H + y * f + dy) * W + x * f + dx]
                count += 1
                centre += g.position(z: Double(z), y: Double(y * f + dy), x: Double(x * f + dx))
            } }
            #expect(abs(b.voxels[((t * D + z) * 2 + y) * 3 + x] - sum / Float(count)) < 1e-4)
            if count == f * f {
                let d = b.geometry.position(z: Double(z), y: Double(y), x: Double(x)) - centre / Double(count)
                #expect((d * d).sum() < 1e-18)
            }
        } } } }
        let coarse = Volume3D(depth: D, height: 2, width: 3, voxels: (0..<(D * 6)).map(Float.init), geometry: b.geometry)
        let back = coarse.blockExpanded(f, to: s)
        #expect(back.height == H && back.width == W && back.geometry == g)
        for z in 0..<D { for y in 0..<H { for x in 0..<W {
            #expect(back.voxels[(z * H + y) * W + x] == coarse.voxels[(z * 2 + y / f) * 3 + x / f])
        } } }
    }
}

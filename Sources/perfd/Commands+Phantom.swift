import ArgumentParser
import DICOM
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Perfusion
import Phantom

struct PhantomCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "phantom",
        abstract: "Write a synthetic CTP series with its ground truth (demos, tests, training data).",
        discussion: """
        The head has skull, CSF, grey and white matter, arteries, a venous sinus and (unless
        --no-lesion) an ischaemic core and penumbra in one hemisphere; the bolus is a
        gamma-variate AIF with recirculation, each region with its own delay, dispersion and
        residue family. The seed decides the lesion, the AIF and the tissue parameters.

        Output folder:
          t00_z000.dcm ...     the series (CT Image Storage; --format dicom or both)
          series.npy           float32 HU, shape (T, D, H, W)   (--format npy or both)
          truth.json           frame times, motion, per-tissue parameters, lesion volumes (ml)
          truth/{ncct,cbf,cbv,mtt,tmax,labels}.nii   float32, the series' geometry
          truth/*.npy          the same maps, shape (D, H, W)  (--format npy or both)
        For training, --format npy skips DICOM encoding and is the fastest.
        """)
    @Option(help: "Output directory.") var output: String
    @Option(help: "Rows and columns (square images).") var size = 512
    @Option(help: "Slices per time point.") var slices = 8
    @Option(help: "Time points (at least 2; scanners send 19 or more).") var timepoints = 19
    @Option(help: "Seconds between time points.") var interval = 2.0
    @Flag(help: "Irregular sampling: each interval drawn from 1–3 s (overrides --interval).") var irregular = false
    @Option(help: "Slice thickness and spacing in mm.") var sliceThickness = 5.0
    @Option(name: .customLong("slice-mm"), help: "The same as --slice-thickness (e.g. --slices 320 --slice-mm 0.5: a whole-brain series).") var sliceMM: Double?
    @Option(help: "Field of view in mm (pixel size = fov / size).") var fov = 240.0
    @Option(help: "Image noise σ in HU (0–20).") var noise = 10.0
    @Option(help: "σ in mm of the Gaussian that correlates the noise in-plane (0: white noise).") var noiseCorrelation = 0.8
    @Option(help: "Noise σ in HU of the true NCCT in truth/ncct.nii.") var ncctNoise = 3.0
    @Option(help: "Random seed (same seed, same phantom and pixels).") var seed: UInt64 = 1
    @Flag(help: "No ischaemic lesion (healthy brain).") var noLesion = false
    @Option(help: "Put the lesion in this hemisphere: left (patient left, +x, image right) or right.") var lesionSide: String?
    @Flag(help: "No contrast bolus (a series scanned without contrast reaching the head).") var noBolus = false
    @Flag(help: "No artery inside the slab (veins only; the arterial input cannot be measured).") var noArtery = false
    @Option(help: "What to write: dicom, npy (series.npy + truth/*.npy, no DICOM), or both.") var format = "dicom"
    @Option(help: "Transfer syntax: explicit, implicit, big-endian, deflated, jpeg-lossless, jpeg-ls, rle.") var transferSyntax = "explicit"
    @Option(help: "Study Instance UID to use (default: a new one).") var studyUid: String?
    @Option(help: "Series description.") var seriesDescription = "CTP phantom"
    @Option(help: "Random rigid head motion per time point: DEGREES,MILLIMETRES at most (e.g. 5,5); the poses go to truth.json.") var motion: String?

    func validate() throws {
        guard (8...1024).contains(size) else { throw ValidationError("--size must be between 8 and 1024") }
        guard timepoints >= 1 else { throw ValidationError("--timepoints must be at least 1") }
        guard slices >= 1 else { throw ValidationError("--slices must be at least 1") }
        guard (0.1...20).contains(sliceMM ?? sliceThickness) else { throw ValidationError("--slice-mm/--slice-thickness must be between 0.1 and 20 mm") }
        guard (0...50).contains(noise) else { throw ValidationError("--noise must be between 0 and 50 HU") }
        guard interval > 0 else { throw ValidationError("--interval must be positive") }
        guard lesionSide == nil || ["left", "right"].contains(lesionSide!) else { throw ValidationError("--lesion-side must be left or right") }
        guard ["dicom", "npy", "both"].contains(format) else { throw ValidationError("--format must be dicom, npy or both") }
    }

    func run() throws {
        let syntaxes: [String: TransferSyntax] = ["explicit": .explicitLittleEndian, "implicit": .implicitLittleEndian,
                                                  "big-endian": .explicitBigEndian, "deflated": .deflated,
                                                  "jpeg-lossless": .jpegLossless, "jpeg-ls": .jpegLSLossless, "rle": .rle]
        guard let ts = syntaxes[transferSyntax] else {
            throw CLIError("unknown transfer syntax \"\(transferSyntax)\"; use one of \(syntaxes.keys.sorted().joined(separator: ", "))")
        }
        var o = PhantomOptions()
        o.size = size; o.slices = slices; o.timepoints = timepoints; o.frameInterval = interval; o.irregular = irregular
        o.sliceThickness = sliceMM ?? sliceThickness; o.fieldOfView = fov; o.noiseSigma = noise; o.noiseCorrelationMM = noiseCorrelation
        o.ncctNoiseSigma = ncctNoise; o.seed = seed; o.lesion = !noLesion; o.transferSyntax = ts
        o.writeDICOM = format != "npy"; o.writeNPY = format != "dicom"
        o.studyUID = studyUid; o.seriesDescription = seriesDescription
        o.bolus = !noBolus; o.arteriesInSlab = !noArtery
        o.lesionSide = lesionSide.map { $0 == "left" ? 1 : -1 }
        if let motion {
            let parts = motion.split(separator: ",").compactMap { Double($0) }
            guard parts.count == 2, parts.allSatisfy({ $0 >= 0 }) else {
                throw CLIError("--motion takes DEGREES,MILLIMETRES, e.g. --motion 5,5")
            }
            o.motion = (parts[0], parts[1])
        }
        #if canImport(Glibc)
        // Every slice allocates and frees a few 1 MB buffers (image, blur scratch, noise,
        // pixels); glibc hands such blocks back to the kernel and faults them in again for the
        // next slice, ~15 % of the phantom's CPU at 8,000 files. This process writes the
        // phantom and exits, so it keeps freed memory for reuse instead.
        // (mallopt is not in Swift's Glibc module; M_TRIM_THRESHOLD −1, M_MMAP_THRESHOLD −3.)
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        if let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") {
            let mallopt = unsafeBitCast(sym, to: Mallopt.self)
            _ = mallopt(-3, 16 << 20)
            _ = mallopt(-1, 256 << 20)
        }
        #endif
        let start = Date()
        let r: PhantomResult
        do { r = try Phantom.write(to: output, options: o) } catch { throw CLIError("\(error)") }
        let what = o.writeDICOM ? "\(r.files.count) DICOM files" + (o.writeNPY ? " and series.npy" : "") : "series.npy"
        print("wrote \(what) (\(timepoints) time points × \(slices) slices, \(size)×\(size)) and truth/ to \(output)"
              + (o.writeDICOM ? "; series \(r.seriesUID)" : "")
              + String(format: "; core %.1f ml, penumbra %.1f ml; %.2f s", r.coreML, r.penumbraML, Date().timeIntervalSince(start)))
    }
}

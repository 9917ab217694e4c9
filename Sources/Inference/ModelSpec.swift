import Foundation

/// model.json: the architecture and its contract (docs/ARCHITECTURE.md §7 "Model directory").
///
/// Tensor names in weights.safetensors follow the layer index: for a `bclstm` layer i,
/// `layers.i.forward.kernel` [k_x…, C_in, 4f], `layers.i.forward.recurrent_kernel` [k_h…, f, 4f],
/// `layers.i.forward.bias` [4f], and the same under `backward`; for the `conv` head,
/// `layers.i.kernel` [k…, f, C] and `layers.i.bias` [C]. Layout is Keras's, channels-last,
/// gates in the order i, f, c, o along the last axis (`"layout": "keras-channels-last"`).
/// `input_channels` (default 1) is C_in of the first layer: the input then carries C values
/// per voxel and time point, channels last.
public struct ModelSpec: Codable, Sendable {
    public struct Layer: Codable, Sendable {
        public var type: String            // "bclstm" | "conv"
        public var filters: Int
        public var kernelX: Int?           // bclstm: input kernel
        public var kernelH: Int?           // bclstm: recurrent kernel
        public var kernel: Int?            // conv
        public var returnSequences: Bool?
        public var activation: String?     // conv: "linear" (default) or "relu"
        enum CodingKeys: String, CodingKey {
            case type, filters, kernel, activation, kernelX = "kernel_x", kernelH = "kernel_h", returnSequences = "return_sequences"
        }
    }
    public struct Normalisation: Codable, Sendable {
        /// x' = (x + offset) / scale
        public var offset: Double
        public var scale: Double
    }
    public struct Output: Codable, Sendable {
        public var name: String
        public var unit: String
        /// y = y' · scale + offset, or with `transform` "exp": y = exp(y') · scale + offset
        /// (a network trained on log-scaled targets; positive scale, so y > offset).
        public var scale: Double
        public var offset: Double
        public var transform: String?

        public init(name: String, unit: String, scale: Double, offset: Double, transform: String? = nil) {
            self.name = name; self.unit = unit; self.scale = scale; self.offset = offset; self.transform = transform
        }

        /// The de-normalised value of a raw network output.
        @inline(__always) public func value(_ y: Float) -> Float {
            transform == "exp" ? Float(scale) * exp(y) + Float(offset) : y * Float(scale) + Float(offset)
        }
    }

    public var name: String
    public var version: String
    public var task: String
    public var spatialDims: Int
    public var timepoints: Int?
    public var layout: String?
    public var layers: [Layer]
    public var inputNormalisation: Normalisation?
    public var outputs: [Output]?
    /// When set, the de-normalised output is a correction added to the mean of the input's
    /// first N time points (in input units, before normalisation): the derived NCCT is
    /// mean(frames 0…N−1) + network. nil: the output stands alone.
    public var residualMeanFrames: Int?
    /// Channels per voxel and time point of the input (nil: 1).
    public var inputChannels: Int?
    /// How a pipeline prepares the input from a series (the perfusion pipeline:
    /// "aif-aligned-delta-hu" or "aif-aligned-delta-hu+aif"; nil: the task's original one).
    public var preprocessing: String?
    /// In-plane pixel size (mm) of the data the model was trained on. A pipeline averages finer
    /// series in blocks to about this size before inference (a 3×3 kernel then spans the
    /// anatomy and noise texture it learnt), and brings the maps back to the series' grid.
    /// nil: the series' own grid.
    public var pixelMM: Double?

    /// What the model was trained on (perfusion): outside it, perfd runs the fallback pipeline.
    /// Each entry is a [min, max] range; absent entries are not checked.
    public struct Envelope: Codable, Sendable, Equatable {
        public var frames, frameIntervalS, durationS, pixelMM, noiseHU, noiseCorrelationMM: [Double]?
        public var note: String?
        enum CodingKeys: String, CodingKey {
            case frames, note, frameIntervalS = "frame_interval_s", durationS = "duration_s", pixelMM = "pixel_mm",
                 noiseHU = "noise_hu", noiseCorrelationMM = "noise_correlation_mm"
        }
    }
    public var envelope: Envelope?

    enum CodingKeys: String, CodingKey {
        case name, version, task, layers, outputs, timepoints, layout, preprocessing, residualMeanFrames = "residual_mean_frames"
        case envelope
        case pixelMM = "pixel_mm"
        case spatialDims = "spatial_dims", inputNormalisation = "input_normalisation", inputChannels = "input_channels"
    }

    public static func load(_ path: String) throws -> ModelSpec {
        guard let d = FileManager.default.contents(atPath: path) else { throw InferenceError("cannot read \(path)") }
        do { return try JSONDecoder().decode(ModelSpec.self, from: d) } catch {
            throw InferenceError("\(path) is not a valid model.json: \(error)")
        }
    }
}

import Foundation
import PerfdTestSupport
import Phantom
import Pipelines
import Testing
import Volume

/// The perfusion-svd pipeline adapter over a phantom series (moved here from PerfusionTests,
/// which tests the Perfusion target alone and does not depend on the pipelines).
@Suite struct SVDPipelineTests {
    @Test func pipelineReturnsMapsAndSummary() throws {
        let dir = TempDir()
        let ph = try makePhantom(in: dir.path, size: 128, slices: 8, timepoints: 19, seed: 9303, noise: 5)
        let s = try Assembler.assemble(paths: ph.files)
        let out = try Pipelines.make("perfusion-svd").runWithSummary(s) { _ in }
        #expect(out.volumes.map(\.name) == ["cbf", "cbv", "mtt", "tmax", "ttp"])
        for key in ["core_ml", "penumbra_ml", "mismatch_ratio", "aif_delta_hu", "vof_delta_hu", "aif_voxels_zyx"] {
            #expect(out.summary[key] != nil, "summary lacks \(key)")
        }
    }
}

import Foundation
import TensorIO
@testable import Training
import XCTest

extension TrainingRunTests {
    /// A run interrupted after the last batch of an epoch, before that epoch's validation, resumes to
    /// the uninterrupted run's weights, on cached features as through the network: its checkpoint is
    /// the one state in which a resume starts with a validation, not a training step. (Stop 53 found a
    /// fresh process resumed from such a checkpoint against torch 2.13's wheel ending a ULP or two off
    /// in the head, where Debian's LibTorch is exact; docs/reliability.md, "Kill campaign".)
    func testARunInterruptedAfterAnEpochsLastBatchResumesExactly() throws {
        let data = try makeData()
        for cached in [true, false] {
            let runs = try TRData.temporaryDirectory(self)
            func spec(_ out: String) -> TrainingRun.Specification {
                var spec = specification(data: data, out: runs + out)
                spec.recipe.recipe = .headOnly
                spec.recipe.optimizer = .adam
                spec.options.augment = .none
                spec.options.featureCache = cached ? .on : .off
                spec.options.featureCacheDirectory = runs + "/features"
                return spec
            }
            try trainStraight(spec("/a"))
            for step in [3, 6] {
                let out = "/b\(step)"
                let first = try TrainingRun.create(spec(out), notify: { _ in })
                XCTAssertEqual(try runInterrupted(first, afterStep: step).status, "interrupted")
                first.release()
                // 12 training images in batches of 4: the epoch's batches done, the epoch not ended.
                let state = try Checkpoint.readManifest(runs + out + "/checkpoints/last").state
                XCTAssertEqual([state.epoch, state.batchInEpoch], [step / 3 - 1, 3])
                try resumeToTheEnd(runs + out, equalling: runs + "/a")
            }
        }
    }
}

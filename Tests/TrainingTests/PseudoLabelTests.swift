import Data
import Foundation
import NN
import Torch
@testable import Training
import Vision
import XCTest

/// Pseudo-labelling on generated data whose structure is known (TRData: the class is the bright
/// channel): the share of each batch, the start epoch, the threshold and the refresh are as
/// specified, the cached-feature path equals the image path, and a fraction of 0 trains exactly as
/// no unlabelled images at all.
final class PseudoLabelTests: XCTestCase {
    /// TRTinyNet's layers; records the batch size of every training forward of the head.
    final class RecordingNet: ImageClassifier {
        let features: Sequential
        let classifier: Sequential
        var trainingBatchSizes: [Int] = []

        init() throws {
            func block(_ input: Int, _ output: Int, stride: Int) throws -> Sequential {
                Sequential(try Conv2d(input, output, kernelSize: (3, 3), stride: (stride, stride), padding: 1),
                           try BatchNorm2d(output), ReLU())
            }
            features = Sequential(try block(3, 8, stride: 1), try block(8, 8, stride: 2), try block(8, 12, stride: 2))
            classifier = Sequential(try Dropout(p: 0.2), try Linear(12, 3))
            super.init(architecture: "tiny", options: ModelOptions(numClasses: 3), headPath: "classifier.1",
                       embeddingSize: 12, featureChannels: 12)
        }

        override var namedChildren: [(String, Module)] { [("features", features), ("classifier", classifier)] }
        override var layerGroups: [String] { ["features.0", "features.1", "features.2", "classifier"] }
        override var classifierScopes: [String] { ["classifier"] }
        override func forwardFeatures(_ x: Tensor) throws -> Tensor { try features(x) }
        override func classify(_ embedding: Tensor) throws -> Tensor {
            if isTraining { trainingBatchSizes.append(embedding.shape[0]) }
            return try classifier(embedding)
        }
    }

    /// What one run saw: per epoch, the batch sizes the head trained on and the labelled sizes;
    /// per refreshed epoch, the selection an independent inference pass expects.
    struct Observed {
        var trainer: Trainer
        var total: [[Int]] = []
        var labelled: [[Int]] = []
        var expected: [Int: [PseudoLabel]] = [:]
        var refreshedEpochs: [Int?] = []
    }

    let labelledSet = try! TRData.dataset(count: 30, seed: 1)
    let unlabeledSet = try! TRData.dataset(count: 40, seed: 9)

    /// Our own inference pass: eval behaviour, inference mode, evaluation transform, softmax ≥ threshold.
    func expectedSelection(_ model: Module, threshold: Double) throws -> [PseudoLabel] {
        model.eval()
        defer { model.train() }
        let loader = try DataLoader(unlabeledSet, batchSize: 7, transform: TRData.transform, workers: 0)
        var selected: [PseudoLabel] = []
        try withInferenceMode {
            let run = loader.epoch(0)
            while let batch = try run.nextBatch() {
                let p = try Functional.softmax(model(batch.images), dim: 1).floats()
                for (row, index) in batch.indices.enumerated() {
                    let probabilities = Array(p[row * 3..<row * 3 + 3])
                    let best = probabilities.indices.max { probabilities[$0] < probabilities[$1] }!
                    if Double(probabilities[best]) >= threshold {
                        selected.append(PseudoLabel(index: index, label: best, confidence: Double(probabilities[best])))
                    }
                }
            }
        }
        return selected
    }

    /// The labeler of `unlabeledSet`, its folders named after the labelled set's classes.
    func makeLabeler(notify: @escaping (String) -> Void = { _ in }) -> PseudoLabeler {
        let folders = unlabeledSet.samples.map { Optional(labelledSet.classNames[$0.label]) }
        let labeler = PseudoLabeler(unlabeled: unlabeledSet, folderNames: folders, classNames: labelledSet.classNames,
                                    trainTransform: TRData.transform, evalTransform: TRData.transform, seed: 7,
                                    batchSize: 5, workers: 0)
        labeler.notify = notify
        return labeler
    }

    /// `stopAtEpoch`: Ctrl-C (a triggered `SignalStop`) as that epoch starts, the checkpoints going to
    /// `checkpoints`.
    func run(_ settings: PseudoLabelSettings?, recipe: Recipe? = nil, cached: Bool = false, epochs: Int = 4,
             unlabeled: Bool = true, notify: @escaping (String) -> Void = { _ in }, checkpoints: String? = nil,
             stopAtEpoch: Int? = nil) throws -> Observed {
        Runtime.manualSeed(3)
        let model = try RecordingNet()
        var configuration = TrainingConfiguration(optimizer: .adam(learningRate: 3e-2), seed: 11)
        if let recipe { configuration.apply(recipe) }
        configuration.pseudoLabel = settings
        configuration.checkpointDirectory = checkpoints
        var observed = Observed(trainer: try Trainer(model: model, configuration: configuration))
        let stop = SignalStop(signals: [])
        if stopAtEpoch != nil { observed.trainer.signalStop = stop }
        let loader = try TRData.loader(labelledSet, batchSize: 8)
        let recorder = TREventRecorder { event, trainer in
            switch event {
            case .epochStart(let epoch, _):
                if epoch == stopAtEpoch { stop.trigger(signal: SIGINT) }
                model.trainingBatchSizes = []
                observed.labelled.append([])
                if let settings, epoch >= settings.firstEpoch(of: epochs) {
                    observed.expected[epoch] = try! self.expectedSelection(model, threshold: settings.threshold)
                }
            case .batchEnd(let r): observed.labelled[r.epoch].append(r.samples)
            case .epochEnd:
                observed.total.append(model.trainingBatchSizes)
                observed.refreshedEpochs.append(trainer.state.pseudoLabels?.refreshedEpoch)
            default: break
            }
        }
        observed.trainer.callbacks = [recorder]
        if unlabeled {
            let labeler = makeLabeler(notify: notify)
            if cached {
                let features = try FeatureCache.prepare(model: model, dataset: unlabeledSet, transform: TRData.transform,
                                                        transformDescription: "eval", directory: nil)
                labeler.features = UnlabeledFeatures(teacher: features, student: features)
                observed.trainer.featureCache = TrainingFeatures(
                    train: try FeatureCache.prepare(model: model, dataset: labelledSet, transform: TRData.transform,
                                                    transformDescription: "train", directory: nil))
            }
            observed.trainer.pseudoLabeler = labeler
        }
        try observed.trainer.fit(train: loader, epochs: epochs)
        return observed
    }

    func testEachBatchGetsItsShareFromTheStartEpochWithTheImagesAboveTheThreshold() throws {
        // Batches of 8, 8, 8 and 6 labelled images; fraction 0.2 adds round(0.2 × n / 0.8): 2, 2, 2 and 2.
        let settings = PseudoLabelSettings(threshold: 0.6, fraction: 0.2, startEpoch: 2, refresh: .everyEpoch)
        let observed = try run(settings)
        XCTAssertEqual(observed.labelled, Array(repeating: [8, 8, 8, 6], count: 4))
        XCTAssertEqual(observed.total[0], [8, 8, 8, 6], "before the start epoch: labelled data only")
        XCTAssertEqual(observed.total[1], [8, 8, 8, 6])
        for epoch in 2..<4 {
            let selected = try XCTUnwrap(observed.expected[epoch])
            XCTAssertGreaterThan(selected.count, 0, "the easy task gives confident labels by epoch \(epoch)")
            XCTAssertLessThan(selected.count, unlabeledSet.count, "some images stay below the threshold")
            XCTAssertEqual(observed.total[epoch], [10, 10, 10, 8], "epoch \(epoch): 1/5 of each batch is pseudo-labelled")
        }
        // The last refresh (epoch 3) kept exactly the images our own inference pass puts at or above 0.6.
        let state = try XCTUnwrap(observed.trainer.state.pseudoLabels)
        XCTAssertEqual(state.refreshedEpoch, 3)
        XCTAssertEqual(state.labels.map(\.index), observed.expected[3]!.map(\.index))
        XCTAssertEqual(state.labels.map(\.label), observed.expected[3]!.map(\.label))
        for (a, b) in zip(state.labels, observed.expected[3]!) { XCTAssertEqual(a.confidence, b.confidence, accuracy: 1e-6) }
        XCTAssertEqual(observed.refreshedEpochs, [nil, nil, 2, 3], "every-epoch refreshes at each epoch from the start")
        // The records: count, mean confidence and class histogram of the epoch's pseudo-labels.
        let last = try XCTUnwrap(observed.trainer.state.history.last?.metrics)
        XCTAssertEqual(last["pseudo_count"], Double(state.labels.count))
        XCTAssertEqual(last["pseudo_confidence"] ?? 0, state.labels.map(\.confidence).reduce(0, +) / Double(state.labels.count),
                       accuracy: 1e-12)
        let histogram = (0..<3).map { c in Double(state.labels.filter { $0.label == c }.count) }
        XCTAssertEqual((0..<3).map { last["pseudo_class_class\($0)"] }, histogram)
        XCTAssertNil(observed.trainer.state.history[1].metrics["pseudo_count"])
        // The labels agree with the generating structure (class = bright channel, i % 3).
        let correct = state.labels.filter { $0.label == unlabeledSet.samples[$0.index].label }.count
        XCTAssertGreaterThan(Double(correct) / Double(state.labels.count), 0.5, "better than chance (1/3)")
        // The folder-accuracy record is over the images used, not over every candidate.
        XCTAssertEqual(try XCTUnwrap(state.folderAccuracy), Double(correct) / Double(state.labels.count), accuracy: 1e-12)
    }

    /// Ctrl-C while the unlabelled images are labelled (at the start of a pseudo-labelling epoch) stops
    /// the labelling after its batch and the run at the epoch's start, with a checkpoint there; resumed, the
    /// run labels them again and ends bit-identical to the uninterrupted one. Until 2026-12-07 the labelling
    /// ran to its end first (11 s for 6,000 images at 160 px in a debug build; minutes for a large folder),
    /// and the run stopped after the epoch's first batch.
    func testCtrlCWhileLabellingStopsAtTheEpochsStartAndResumesExactly() throws {
        let settings = PseudoLabelSettings(threshold: 0.6, fraction: 0.2, startEpoch: 2, refresh: .everyEpoch)
        let uninterrupted = try run(settings)
        let checkpoints = try TRData.temporaryDirectory(self)
        var notices: [String] = []
        let stopped = try run(settings, notify: { notices.append($0) }, checkpoints: checkpoints, stopAtEpoch: 2)
        XCTAssertEqual(stopped.trainer.state.status, "interrupted")
        XCTAssertEqual(stopped.trainer.state.epoch, 2)
        XCTAssertEqual(stopped.trainer.state.batchInEpoch, 0, "stopped at the epoch's start, before any batch")
        XCTAssertNil(stopped.trainer.state.pseudoLabels, "the labelling did not run to its end")
        XCTAssertFalse(notices.contains { $0.hasPrefix("pseudo-labelling, epoch 3") }, "\(notices)")

        Runtime.manualSeed(999)  // the generator state must come from the checkpoint
        let resumed = try Trainer.resume(from: checkpoints + "/last", model: RecordingNet())
        resumed.pseudoLabeler = makeLabeler()
        XCTAssertEqual(try resumed.fit(train: TRData.loader(labelledSet, batchSize: 8), epochs: 4).status, .completed)
        try TRData.assertIdentical(resumed.model.stateDict(), uninterrupted.trainer.model.stateDict(), "model")
        XCTAssertEqual(resumed.state.pseudoLabels?.labels.map(\.index), uninterrupted.trainer.state.pseudoLabels?.labels.map(\.index))
    }

    func testRefreshOnceKeepsTheStartEpochsLabels() throws {
        let settings = PseudoLabelSettings(threshold: 0.6, fraction: 0.3, startEpoch: 1, refresh: .once)
        let observed = try run(settings)
        XCTAssertEqual(observed.refreshedEpochs, [nil, 1, 1, 1])
        let state = try XCTUnwrap(observed.trainer.state.pseudoLabels)
        XCTAssertEqual(state.labels.map(\.index), try XCTUnwrap(observed.expected[1]).map(\.index))
        // Fraction 0.3: round(0.3 × 8 / 0.7) = 3 and round(0.3 × 6 / 0.7) = 3.
        XCTAssertEqual(observed.total[1], [11, 11, 11, 9])
    }

    func testAThresholdNobodyReachesTrainsOnLabelledDataOnly() throws {
        var notices: [String] = []
        let settings = PseudoLabelSettings(threshold: 1, fraction: 0.3, startEpoch: 1)
        let observed = try run(settings, epochs: 3) { notices.append($0) }
        XCTAssertEqual(observed.total[1], [8, 8, 8, 6])
        XCTAssertEqual(observed.total[2], [8, 8, 8, 6])
        XCTAssertEqual(observed.trainer.state.pseudoLabels?.labels.count, 0)
        XCTAssertEqual(notices.filter { $0.contains("no unlabelled image reaches the threshold 1.0") }.count, 2,
                       "said at each refresh: \(notices)")
    }

    func testFractionZeroTrainsExactlyAsWithoutUnlabelledImages() throws {
        let zero = try run(PseudoLabelSettings(threshold: 0.5, fraction: 0, startEpoch: 0), epochs: 3)
        let none = try run(nil, epochs: 3, unlabeled: false)
        try TRData.assertIdentical(zero.trainer.model.stateDict(), none.trainer.model.stateDict(), "fraction 0")
        XCTAssertEqual(zero.total, none.total)
    }

    /// Head-only on the feature cache: teacher and student run on cached features, and the run equals
    /// the one through the frozen network (same selection, same weights to float tolerance).
    func testCachedFeaturesEqualTheImagePath() throws {
        let settings = PseudoLabelSettings(threshold: 0.35, fraction: 0.25, startEpoch: 1)
        let recipe = Recipe.headOnly(trainBatchNorm: false)
        let images = try run(settings, recipe: recipe, epochs: 3)
        let cached = try run(settings, recipe: recipe, cached: true, epochs: 3)
        XCTAssertEqual(images.trainer.state.pseudoLabels?.labels.map(\.index), cached.trainer.state.pseudoLabels?.labels.map(\.index))
        XCTAssertGreaterThan(cached.trainer.state.pseudoLabels?.labels.count ?? 0, 0)
        XCTAssertEqual(images.total, cached.total)
        let b = cached.trainer.model.stateDict()
        for (key, tensor) in images.trainer.model.stateDict() where tensor.dtype.isFloatingPoint {
            XCTAssertTrue(try tensor.allClose(XCTUnwrap(b[key]), rtol: 0, atol: 1e-5), key)
        }
    }

    /// The three selection rules on a hand-computed case (τ = 0.9, two classes).
    /// A checkpoint's pseudo-labels are positions in the unlabelled list: they fit only that list (the
    /// same files by folder, name and size, in order, every index inside it). A resume whose folder had
    /// lost files trapped on an index past the end; one with files added gave other images the labels.
    func testCheckpointLabelsFitOnlyTheUnlabelledListTheyIndex() throws {
        let root = NSTemporaryDirectory() + "pseudo-fit-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        var paths: [String] = []
        for i in 0..<4 {
            let path = "\(root)/\(i % 2 == 0 ? "a" : "b")/\(i).png"
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Image(rgb: [UInt8](repeating: UInt8(i * 40), count: 8 * 8 * 3), width: 8, height: 8).pngData()
                .write(to: URL(fileURLWithPath: path))
            paths.append(path)
        }
        func labeler(_ files: [String]) -> PseudoLabeler {
            PseudoLabeler(unlabeled: LabeledDataset(samples: files.map { LabeledSample(source: .file($0), label: 0) },
                                                    classNames: ["a", "b"]),
                          classNames: ["a", "b"], trainTransform: TRData.transform, evalTransform: TRData.transform,
                          seed: 1, batchSize: 2, workers: 0)
        }
        var state = PseudoLabelState(labels: [PseudoLabel(index: 3, label: 1, confidence: 0.9)], refreshedEpoch: 0, candidates: 4)
        state.unlabeledDigest = labeler(paths).unlabeledDigest
        XCTAssertTrue(labeler(paths).fits(state))
        XCTAssertFalse(labeler(Array(paths.prefix(3))).fits(state), "index 3 is past a list of three")
        XCTAssertFalse(labeler([paths[1]] + paths).fits(state), "a file added before: other images at those positions")
        var older = state
        older.unlabeledDigest = nil  // a checkpoint from before the digest: the indices are still checked
        XCTAssertTrue(labeler(paths).fits(older))
        XCTAssertFalse(labeler(Array(paths.prefix(2))).fits(older))
    }

    /// The review folder may not lie inside the unlabelled folder (its next labelling would read the
    /// links as images), also when reached through a symbolic link to it: a new folder behind the link
    /// was not resolved, and passed.
    func testTheReviewFolderMayNotLieInsideTheUnlabelledFolderEvenThroughALink() throws {
        let root = NSTemporaryDirectory() + "pseudo-dest-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let unlabeled = root + "/unlabeled"
        try FileManager.default.createDirectory(atPath: unlabeled + "/a", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: root + "/link", withDestinationPath: unlabeled)
        for out in [unlabeled + "/review", root + "/link/review", root + "/link/deeper/review"] {
            XCTAssertThrowsError(try PseudoLabelReview.checkDestination(out, unlabeledRoot: unlabeled), out) { error in
                XCTAssertTrue("\(error)".contains("lies inside the unlabelled folder"), "\(error)")
            }
        }
        XCTAssertNoThrow(try PseudoLabelReview.checkDestination(root + "/review", unlabeledRoot: unlabeled))
        // A link to a folder not there yet (a disk not mounted): refused, and the link kept (a failed
        // write removed it as if it had made it).
        let dangling = root + "/dangling"
        try FileManager.default.createSymbolicLink(atPath: dangling, withDestinationPath: root + "/not-mounted")
        XCTAssertThrowsError(try PseudoLabelReview.write([], unlabeledRoot: unlabeled, to: dangling, copy: false)) { error in
            XCTAssertTrue("\(error)".contains("symbolic link to \(root)/not-mounted, which does not exist"), "\(error)")
        }
        XCTAssertNotNil(try? FileManager.default.destinationOfSymbolicLink(atPath: dangling))
    }

    func testSelectionRules() throws {
        let predictions = [(0, 0.95), (0, 0.92), (0, 0.91), (0, 0.99), (1, 0.95), (1, 0.5), (0, 0.6), (1, 0.3)]
            .enumerated().map { PseudoLabel(index: $0, label: $1.0, confidence: $1.1) }
        func kept(_ selection: PseudoLabelSelection?) -> [Int] {
            PseudoLabelSettings(threshold: 0.9, selection: selection).select(predictions, classes: 2).map(\.index)
        }
        XCTAssertEqual(kept(nil), [0, 1, 2, 3, 4])
        XCTAssertEqual(kept(.threshold), [0, 1, 2, 3, 4])
        // Class 1 has one confident image, so class 0 keeps its single most confident (index 3).
        XCTAssertEqual(kept(.balanced), [3, 4])
        // σ = [4, 1], 3 below τ: β = [1, 0.25]; thresholds 0.9 and 0.9 · 0.25 / 1.75 ≈ 0.129.
        XCTAssertEqual(kept(.flexmatch), [0, 1, 2, 3, 4, 5, 7])
        // Warm-up: while most images are below τ, every class's threshold drops (u = 7 > max σ = 1).
        let early = [PseudoLabel(index: 0, label: 0, confidence: 0.95)]
            + (1...7).map { PseudoLabel(index: $0, label: $0 % 2, confidence: $0 % 2 == 0 ? 0.05 : 0.2) }
        XCTAssertEqual(PseudoLabelSettings(threshold: 0.9, selection: .flexmatch).select(early, classes: 2).map(\.index),
                       [0, 1, 3, 5, 7], "class 0: 0.9 · (1/7) / (2 − 1/7) ≈ 0.069 > 0.05; class 1 (σ = 0): threshold 0")
        // Settings saved before the option existed read as the threshold rule.
        let old = #"{"threshold":0.9,"fraction":0.3,"refresh":"every-epoch","weight":1}"#
        XCTAssertNil(try JSONDecoder().decode(PseudoLabelSettings.self, from: Foundation.Data(old.utf8)).selection)
    }

    /// `balanced` in training: every class that has confident images contributes as many as the
    /// rarest, its most confident ones, all at or above the threshold.
    func testBalancedSelectionGivesEveryClassTheSameCount() throws {
        // The first threshold at which the threshold rule is unbalanced on this data: which one depends
        // on the kernels' rounding (0.8 gave 13 and 13 under torch 2.13 on one machine, and none of the
        // first six did under torch 2.13 on an Intel Xeon with AMX), so a finer grid follows them.
        var found: (observed: Observed, counts: [Int], confident: [PseudoLabel])?
        let grid = stride(from: 0.95, through: 0.35, by: -0.025).map { ($0 * 1000).rounded() / 1000 }
        for threshold in [0.8, 0.7, 0.9, 0.6, 0.85, 0.75] + grid {
            let settings = PseudoLabelSettings(threshold: threshold, fraction: 0.2, startEpoch: 2, selection: .balanced)
            let observed = try run(settings)
            let confident = try XCTUnwrap(observed.expected[3])
            let counts = (0..<3).map { c in confident.filter { $0.label == c }.count }.filter { $0 > 0 }
            if Set(counts).count > 1 { found = (observed, counts, confident); break }
        }
        let (observed, counts, confident) = try XCTUnwrap(found, "no threshold makes the threshold rule unbalanced on this data")
        let state = try XCTUnwrap(observed.trainer.state.pseudoLabels)
        let quota = try XCTUnwrap(counts.min())
        XCTAssertEqual(state.labels.count, quota * counts.count)
        for c in 0..<3 {
            let mine = state.labels.filter { $0.label == c }
            let best = confident.filter { $0.label == c }.map(\.confidence).sorted(by: >).prefix(quota)
            XCTAssertEqual(mine.map(\.confidence).sorted(by: >), Array(best), "class \(c)")
        }
    }

    /// A CSV dataset's labels are free text: classes named `../escaped`, `a/b`, `.` or after the CSV
    /// itself each get one folder inside the review folder (before, `../escaped` was written beside
    /// it and `a/b` made two levels), distinct classes keep distinct folders, and the CSV keeps the
    /// names as they are.
    func testClassNamesThatAreNotFolderNamesStayInsideTheReviewFolder() throws {
        let directory = try TRData.temporaryDirectory(self)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let names = ["../escaped", "a/b", "a%2Fb", ".", "..", PseudoLabelReview.csvName, "plain", "50%"]
        var entries: [PseudoLabelReview.Entry] = []
        try FileManager.default.createDirectory(atPath: directory + "/unlabeled", withIntermediateDirectories: true)
        for (i, name) in names.enumerated() {
            let image = directory + "/unlabeled/image\(i).png"
            try Foundation.Data([UInt8(i)]).write(to: URL(fileURLWithPath: image))
            entries.append(.init(file: image, className: name, confidence: 0.5 + Double(i) / 100))
        }
        let out = directory + "/review/x"
        try PseudoLabelReview.write(entries, unlabeledRoot: directory + "/unlabeled", to: out, copy: true)

        XCTAssertEqual(names.map(PseudoLabelReview.folderName(forClass:)),
                       ["..%2Fescaped", "a%2Fb", "a%252Fb", "%2E", "%2E.", "%70seudo_labels.csv", "plain", "50%25"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory + "/review"), ["x"],
                       "nothing is written beside the review folder")
        let folders = try FileManager.default.contentsOfDirectory(atPath: out).sorted()
        XCTAssertEqual(folders, (names.map(PseudoLabelReview.folderName(forClass:)) + [PseudoLabelReview.csvName]).sorted())
        for (i, name) in names.enumerated() {
            let folder = out + "/" + PseudoLabelReview.folderName(forClass: name)
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder), ["image\(i).png"], name)
        }
        let csv = try CSV.parse(String(contentsOfFile: out + "/" + PseudoLabelReview.csvName, encoding: .utf8))
        XCTAssertEqual(csv.dropFirst().map { $0.fields[1] }, names)
    }

    /// Files whose folders joined with `__` give the same name (`a/b/x.png`, `a__b/x.png`) get a counter
    /// (the second link failed with "A file with the same name already exists" and left a partial,
    /// non-empty folder); a failure part-way (a missing source, with --copy) removes what was written.
    func testReviewFileNamesNeverClashAndAFailureLeavesNothing() throws {
        let directory = try TRData.temporaryDirectory(self)
        let files = ["a/b/x.png", "a__b/x.png", "c/x.png"].map { directory + "/unlabeled/" + $0 }
        for file in files {
            try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Foundation.Data(file.utf8).write(to: URL(fileURLWithPath: file))
        }
        let entries = files.map { PseudoLabelReview.Entry(file: $0, className: "cat", confidence: 0.9) }
        let out = directory + "/review"
        try PseudoLabelReview.write(entries, unlabeledRoot: directory + "/unlabeled", to: out, copy: true)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out + "/cat").sorted(),
                       ["a__b__x-2.png", "a__b__x.png", "c__x.png"])
        XCTAssertEqual(try String(contentsOfFile: out + "/cat/a__b__x-2.png", encoding: .utf8), files[1])

        // Folder names that, put in front, make a name past 255 bytes: the nearest that fit are kept
        // (the write failed as a whole, "The file name is invalid").
        let long = [String(repeating: "a", count: 250), String(repeating: "b", count: 250)]
        let deep = long.map { directory + "/deep/\($0)/IMG_0001.png" }
        for file in deep {
            try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Foundation.Data(file.utf8).write(to: URL(fileURLWithPath: file))
        }
        try PseudoLabelReview.write(deep.map { PseudoLabelReview.Entry(file: $0, className: "cat", confidence: 0.9) },
                                    unlabeledRoot: directory + "/deep", to: directory + "/long", copy: false)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory + "/long/cat").sorted(),
                       ["IMG_0001-2.png", "IMG_0001.png"])
        // A file name of 255 bytes that clashes: its counter fits by shortening the stem (257 bytes failed).
        let longName = String(repeating: "n", count: 251) + ".png"
        let clashing = ["x", "y"].map { directory + "/clash/\($0)/" + longName }
        for file in clashing {
            try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Foundation.Data(file.utf8).write(to: URL(fileURLWithPath: file))
        }
        try PseudoLabelReview.write(clashing.map { PseudoLabelReview.Entry(file: $0, className: "cat", confidence: 0.9) },
                                    unlabeledRoot: directory + "/clash", to: directory + "/clashed", copy: false)
        let written = try FileManager.default.contentsOfDirectory(atPath: directory + "/clashed/cat")
        XCTAssertEqual(written.count, 2)
        XCTAssertTrue(written.allSatisfy { $0.utf8.count <= 255 && $0.hasSuffix(".png") }, "\(written)")

        let failing = directory + "/failing"
        let missing = entries + [PseudoLabelReview.Entry(file: directory + "/gone.png", className: "dog", confidence: 0.5)]
        XCTAssertThrowsError(try PseudoLabelReview.write(missing, unlabeledRoot: directory + "/unlabeled", to: failing, copy: true)) {
            XCTAssertTrue("\($0)".contains(failing), "\($0)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: failing), "nothing is left behind")

        // Inside the unlabelled folder, the next labelling would read the review's links as more images.
        let inside = directory + "/unlabeled/review"
        XCTAssertThrowsError(try PseudoLabelReview.write(entries, unlabeledRoot: directory + "/unlabeled", to: inside, copy: false)) {
            XCTAssertTrue("\($0)".contains("inside the unlabelled folder"), "\($0)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: inside))
    }

    func testSettingsOutOfRangeNameTheSetting() {
        XCTAssertEqual(PseudoLabelSettings(threshold: 0).problem()?.setting, "threshold")
        XCTAssertEqual(PseudoLabelSettings(threshold: 1.01).problem()?.setting, "threshold")
        XCTAssertNil(PseudoLabelSettings(threshold: 1).problem())
        XCTAssertEqual(PseudoLabelSettings(fraction: 1).problem()?.setting, "fraction")
        XCTAssertEqual(PseudoLabelSettings(fraction: 0.9999999999999999).problem()?.setting, "fraction",
                       "just below 1: a count per batch that cannot be allocated")
        XCTAssertNil(PseudoLabelSettings(fraction: PseudoLabelSettings.largestFraction).problem())
        XCTAssertEqual(PseudoLabelSettings(fraction: -0.1).problem()?.setting, "fraction")
        XCTAssertNil(PseudoLabelSettings(fraction: 0).problem())
        XCTAssertEqual(PseudoLabelSettings(weight: -1).problem()?.setting, "weight")
        var configuration = TrainingConfiguration()
        configuration.pseudoLabel = PseudoLabelSettings(fraction: 1)
        XCTAssertThrowsError(try configuration.validate())
    }
}

extension TrainingRunTests {
    /// Label smoothing trains the top class toward 1 − ε + ε/K; a pseudo-label threshold above that is
    /// reached by few or no images, and each refresh said only that none had reached it (stop 53). The
    /// run now says why as it starts; a threshold the smoothing leaves reachable is quiet.
    func testLabelSmoothingThatKeepsConfidenceUnderThePseudoLabelThresholdIsWarned() throws {
        let data = try makeData()
        let runs = try TRData.temporaryDirectory(self)
        func warnings(smoothing: Double, threshold: Double) throws -> [String] {
            var spec = specification(data: data, out: runs + "/" + UUID().uuidString)
            spec.recipe.labelSmoothing = smoothing
            spec.options.unlabeled = data + "/test"
            spec.options.pseudoLabel = PseudoLabelSettings(threshold: threshold)
            var warnings: [String] = []
            try TrainingRun.create(spec, notify: { if case .warning(let text) = $0 { warnings.append(text) } }).release()
            return warnings.filter { $0.hasPrefix("--label-smoothing") }
        }
        XCTAssertEqual(try warnings(smoothing: 0.2, threshold: 0.9), ["--label-smoothing 0.2 trains the top class toward a "
            + "probability of 0.867 (3 classes), below --pseudo-label-threshold 0.9: few or no unlabelled images will reach it; "
            + "lower the threshold under 0.867, or the smoothing"])
        XCTAssertEqual(try warnings(smoothing: 0.1, threshold: 0.9), [], "0.933 is above the threshold")
        XCTAssertEqual(try warnings(smoothing: 0, threshold: 1), [])
        // A binary head's target is 1 − ε/2.
        var binary = TrainingConfiguration(loss: .binary, labelSmoothing: 0.3)
        binary.pseudoLabel = PseudoLabelSettings(threshold: 0.9)
        XCTAssertEqual(TrainingRun.smoothingCapsConfidenceWarning(binary, classCount: 2)?.contains("0.85 (2 classes)"), true)
        binary.labelSmoothing = 0.1
        XCTAssertNil(TrainingRun.smoothingCapsConfidenceWarning(binary, classCount: 2))
    }
}

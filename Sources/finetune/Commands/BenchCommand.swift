import ArgumentParser
import Data
import Foundation
import Torch

/// `finetune bench …`: measurements (see docs/benchmarks.md and bench/ for the comparisons).
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks: the model table (the default), the data loader and SHA-256.",
        discussion: """
            `finetune bench [options]` runs `finetune bench models`; see docs/benchmarks.md, and bench/compare_pytorch \
            and bench/compare_data_loader for the comparisons with PyTorch.
            """,
        subcommands: [ModelBench.self, LoaderBench.self, HashBench.self],
        defaultSubcommand: ModelBench.self)

    /// Decode + augment + batch throughput of the data loader on a folder of images.
    struct LoaderBench: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "loader",
            abstract: "Images per second through decode + augment + batch at a given size.",
            discussion: """
                Example (compare with bench/compare_data_loader, which runs torchvision the same way):
                  finetune bench loader --data bench-images --workers 2 --augment train --json
                """)

        @Option(help: "Class-folder dataset to read.") var data: String
        @Option(help: "Decoding threads.") var workers = 2
        @Option(help: "Images per batch.") var batchSize = 32
        @Option(help: "Output side in pixels.") var size = 224
        @Option(help: "Transform: train (random resized crop + flip) or eval (resize + centre crop).")
        var augment: LoaderAugmentation = .train
        @Flag(inversion: .prefixedNo, help: "Decode JPEGs at reduced size when much larger than needed (training augmentation; evaluation decodes at full size).")
        var dctScaling = true
        @Option(help: "Epochs to time (the first batch of the first epoch is excluded as warm-up).") var epochs = 1
        @Flag(help: "Print one JSON object.") var json = false

        func validate() throws {
            guard workers >= 0, batchSize > 0, size > 0, epochs > 0 else {
                throw ValidationError("--workers, --batch-size, --size and --epochs must be positive")
            }
        }

        func run() throws {
            // Loader threads do the work; keep LibTorch's own pool from competing with them.
            try Runtime.setNumThreads(1)
            let dataset = try ImageFolderDataset(root: data)
            let preprocessing = Preprocessing(mean: Preprocessing.imagenet.mean, std: Preprocessing.imagenet.std,
                                              resizeSize: size * 8 / 7, cropSize: size)
            let transform: any SampleTransform = augment == .train
                ? TrainingTransform.standard(preprocessing) : EvaluationTransform(preprocessing)
            let loader = try DataLoader(dataset, batchSize: batchSize, shuffle: true, seed: 0, transform: transform,
                                        workers: workers, prefetch: max(2, workers), dctScaling: dctScaling)
            var images = 0
            var start: Date?
            for epoch in 0..<epochs {
                for batch in loader.epoch(epoch) {
                    if start == nil { start = Date(); continue }  // warm-up batch
                    images += batch.count
                }
            }
            let seconds = Date().timeIntervalSince(start ?? Date())
            let rate = seconds > 0 ? Double(images) / seconds : 0
            if json {
                printEncodedJSON(Output(images: images, seconds: seconds, imagesPerSecond: rate, workers: workers,
                                        batchSize: batchSize, size: size, augment: augment.rawValue,
                                        dctScaling: dctScaling))
            } else {
                printLine(String(format: "%d images in %.2f s: %.1f images/s (%d workers, %@, %dpx)", images, seconds,
                                 rate, workers, augment.rawValue, size))
            }
        }

        /// `bench loader --json`.
        struct Output: Encodable {
            var images: Int
            @JSONNumber var seconds: Double
            @JSONNumber var imagesPerSecond: Double
            var workers: Int
            var batchSize: Int
            var size: Int
            var augment: String
            var dctScaling: Bool
        }
    }
}

import ArgumentParser
import Data
import Foundation
import Training
import Vision

/// `finetune check-data DATA`: corrupt files, class balance, modes, duplicates and cross-split leaks.
struct CheckDataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-data",
        abstract: "Check a class-folder dataset: unreadable files, class imbalance, image modes, exact and near-duplicates across splits.",
        discussion: """
            DATA is a class-folder root with train/ val/ test/ splits, or a plain folder of class folders. Every image \
            is read and decoded once. Exact duplicates are files with the same SHA-256. Near-duplicates are images of \
            different splits (any two images of a plain folder) that are the same photo re-encoded, resized or \
            slightly edited. With --near-method embedding (and auto, the default, when the weights are in the cache) \
            they are pairs whose MobileNetV2 ImageNet embeddings (--embedding-arch; through the feature cache) have a \
            centred cosine similarity of at least --near-cosine. With phash (auto's fallback) they are pairs whose \
            perceptual hashes (DCT of a 32×32 grey thumbnail, 64 bits) differ in at most --near-distance bits and \
            whose thumbnails correlate at least --near-similarity. The exit status is 0 even when problems are found.

            Examples:
              finetune check-data data/flowers
              finetune check-data data/flowers --json
            """)

    @Argument(help: "Class-folder root (with splits), a folder of class folders, or a path,label CSV file.") var data: String
    @Option(help: "Folder the relative paths of a CSV DATA file resolve against (default: the CSV's folder).")
    var imageRoot: String?
    @Option(help: "How near-duplicates are found: auto (embeddings when the weights are cached, else phash), embedding, phash.")
    var nearMethod: NearDuplicateMethod = .auto
    @Option(help: "Smallest centred cosine similarity (-1 to 1) of near-duplicates' embeddings.")
    var nearCosine = 0.9
    @Option(help: "The backbone whose ImageNet embeddings find near-duplicates.")
    var embeddingArch = "mobilenet_v2"
    @Option(help: "Largest Hamming distance (of 64 bits) between perceptual hashes of near-duplicates (phash).")
    var nearDistance = 6
    @Option(help: "Smallest correlation (-1 to 1) of the 32×32 grey thumbnails of near-duplicates (phash).")
    var nearSimilarity = 0.99
    @Flag(help: "Print the report as one JSON object.") var json = false

    func validate() throws {
        guard (0...32).contains(nearDistance) else { throw ValidationError("--near-distance must be 0 to 32, got \(nearDistance)") }
        guard (-1...1).contains(nearSimilarity) else { throw ValidationError("--near-similarity must be -1 to 1, got \(nearSimilarity)") }
        guard (-1...1).contains(nearCosine) else { throw ValidationError("--near-cosine must be -1 to 1, got \(nearCosine)") }
        guard ModelZoo.architectures.contains(embeddingArch) else {
            throw ValidationError("--embedding-arch \(embeddingArch) is not an architecture; architectures: "
                                  + ModelZoo.architectures.joined(separator: ", "))
        }
        try checkDataArgument(data, imageRoot: imageRoot)
    }

    func run() throws {
        let report: DataCheckReport
        do {
            let options = DataCheckOptions(nearDuplicateDistance: nearDistance, nearDuplicateSimilarity: nearSimilarity,
                                           nearDuplicateCosine: nearCosine, imageRoot: imageRoot)
            report = try DataCheck.run(data, options: options, method: nearMethod, architecture: embeddingArch)
        } catch let error as DataError {
            throw ValidationError("DATA \(data): \(error)")
        } catch let error as WeightsError where nearMethod == .embedding {
            throw ValidationError("--near-method embedding: \(embeddingArch) ImageNet weights: \(error)")
        }
        if json { printEncodedJSON(report) } else { printLine(report.rendered()) }
    }
}

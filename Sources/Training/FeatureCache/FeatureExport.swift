import AtomicFiles
import Data
import Foundation
import NN
import TensorIO
import Torch

/// A backbone's pooled features (embeddings) and the labels of a dataset, written for other tools
/// (`finetune features`), in the dataset's order with unreadable images left out.
///
/// Memory holds one batch of features, whatever the dataset's size: the rows stream to the file
/// as they are computed (CSV), or to a `SpoolFile` beside it that is then copied behind the header,
/// once the number of readable images is known (`.safetensors`, `.npy`). Until 2026-12-07
/// every feature was held in memory three times over (an array, a tensor and its rows' copy), and a
/// CSV's whole text once more: about 1 GB for Fashion-MNIST's 70,000 images with MobileNetV2.
public enum FeatureExport {
    /// The file format (an output file's extension).
    public enum Format: String, CaseIterable, Sendable {
        /// Tensors `features` [N, D] float32 and `labels` [N] int64; metadata `format`
        /// (`safetensorsFormat`), `class_names` and `files` (JSON arrays), `architecture`, `weights`.
        case safetensors
        /// The features; `<stem>_labels.npy` beside it the labels (`files(_:path:)`).
        case npy
        /// One row per image: `path,label,class,f0,…,f(D-1)` (`Data.CSV` quoting).
        case csv
    }

    /// The `format` of the .safetensors metadata written.
    public static let safetensorsFormat = "finetune-features"

    /// What was written.
    public struct Result {
        /// The images whose features were written, in dataset order.
        public var samples: [LabeledSample]
        /// The images left out: they could not be read or decoded.
        public var skipped: SkippedFiles
    }

    /// The files `format` writes for `path`: `path` itself, and for .npy its labels beside it
    /// (`<stem>_labels.npy`).
    public static func files(_ format: Format, path: String) -> [String] {
        format == .npy ? [path, (path as NSString).deletingPathExtension + "_labels.npy"] : [path]
    }

    /// Computes `model`'s features of `dataset` (through `transform`, in inference mode) and writes
    /// them with the labels to `path` in `format`, atomically: on an error, or with the .npy pair when
    /// the labels' file cannot be written, no file is left changed. `weights` names the model's
    /// weights in the .safetensors metadata. Throws before computing anything when the disk beside
    /// `path` lacks the room a binary format needs (the spool and the file: twice the features).
    public static func write(model: any ClassifierModel, dataset: any ImageDataset, transform: any SampleTransform,
                             autocastBF16: Bool = false, batchSize: Int = 32, workers: Int = 2, format: Format,
                             to path: String, weights: String) throws -> Result {
        let width = model.embeddingSize
        var kept: [Int] = []
        func extract(_ body: (_ indices: [Int], _ rows: [Float]) throws -> Void) throws -> SkippedFiles {
            try FeatureCache.forEachBatch(model: model, dataset: dataset, transform: transform, views: 1, seed: 0,
                                          autocastBF16: autocastBF16, batchSize: batchSize, workers: workers,
                                          strict: false) { _, indices, rows in
                kept += indices
                try body(indices, rows)
            }
        }
        func samples() -> [LabeledSample] { kept.map { dataset.samples[$0] } }
        if format == .csv {
            var skipped = SkippedFiles()
            try AtomicFile.write(to: path) { append in
                let header = CSV.record(["path", "label", "class"] + (0..<width).map { "f\($0)" }) + "\n"
                try Array(header.utf8).withUnsafeBytes(append)
                skipped = try extract { indices, rows in
                    var text = ""
                    for (row, index) in indices.enumerated() {
                        let sample = dataset.samples[index]
                        let names = dataset.classNames
                        let name = names.indices.contains(sample.label) ? names[sample.label] : ""  // unlabelled: -1
                        text += CSV.record([sample.source.description, String(sample.label), name]
                                           + rows[row * width..<(row + 1) * width].map { "\($0)" }) + "\n"
                    }
                    try Array(text.utf8).withUnsafeBytes(append)
                }
            }
            return Result(samples: samples(), skipped: skipped)
        }

        try checkDiskSpace(beside: path, bytes: 2 * dataset.count * width * MemoryLayout<Float>.size)
        let spool = try SpoolFile(beside: path)
        let skipped = try extract { _, rows in try rows.withUnsafeBytes { try spool.append($0) } }
        let written = samples()
        let labels = written.map { Int64($0.label) }
        let shape = [written.count, width]
        switch format {
        case .npy:
            let files = files(.npy, path: path)
            try NumPy.write(streaming: .float32, shape: shape, to: path) { append in try spool.forEachChunk(append) }
            // Two files, each written atomically: when the second cannot be, neither stays (new features
            // beside the earlier labels were a pair of equal lengths with other images' labels).
            do { try NumPy.write(Tensor(labels, shape: [labels.count]), to: files[1]) } catch {
                for file in files { try? FileManager.default.removeItem(atPath: file) }
                throw error
            }
        case .safetensors:
            func json<T: Encodable>(_ value: T) throws -> String {
                String(decoding: try JSONEncoder().encode(value), as: UTF8.self)
            }
            let metadata = ["format": safetensorsFormat, "class_names": try json(dataset.classNames),
                            "files": try json(written.map(\.source.description)), "architecture": model.architecture,
                            "weights": weights]
            try SafeTensors.write(streaming: [("features", .float32, shape), ("labels", .int64, [labels.count])],
                                  metadata: metadata, to: path) { append in
                try spool.forEachChunk(append)
                try labels.withUnsafeBytes(append)
            }
        case .csv:
            break  // written above
        }
        return Result(samples: written, skipped: skipped)
    }

    /// Whether `path` (and for .npy its labels file) looks like an earlier output of `write`, which a
    /// new one may replace: a .csv whose header is `path,label,class,f0,…`; a .safetensors with this
    /// metadata `format` (or, as written before it had one, its `features` and `labels` tensors with
    /// `class_names` and `files`); a .npy pair of float32 [N, D] features and int64 [N] labels, both there.
    public static func isEarlierOutput(_ path: String, format: Format) -> Bool {
        switch format {
        case .csv:
            let head = FileHandle(forReadingAtPath: path)?.readData(ofLength: 64) ?? Foundation.Data()
            return String(decoding: head, as: UTF8.self).hasPrefix("path,label,class,f0,")
        case .safetensors:
            guard let file = try? SafeTensors.read(path) else { return false }
            return file.metadata["format"] == safetensorsFormat
                || (file.metadata["class_names"] != nil && file.metadata["files"] != nil
                    && Set(file.tensors.keys) == ["features", "labels"])
        case .npy:
            let labels = files(.npy, path: path)[1]
            guard let features = NumPy.header(ofFileAt: path), features.descriptor == "<f4", features.shape.count == 2 else {
                return false
            }
            // Only the pair: a lone float32 [N, D] .npy may be anybody's (it was replaced).
            guard FileManager.default.fileExists(atPath: labels) else { return false }
            guard let labelsHeader = NumPy.header(ofFileAt: labels) else { return false }
            return labelsHeader.descriptor == "<i8" && labelsHeader.shape == [features.shape[0]]
        }
    }

    /// Throws when the file system of `path`'s folder has less than `bytes` free.
    static func checkDiskSpace(beside path: String, bytes: Int) throws {
        let folder = (path as NSString).deletingLastPathComponent
        let place = folder.isEmpty ? "." : folder
        guard let free = (try? FileManager.default.attributesOfFileSystem(forPath: place)[.systemFreeSize] as? NSNumber)?
            .int64Value, Int64(bytes) > free else { return }
        throw InsufficientDisk(description: "\(path): writing these features needs about \(MemoryEstimate.format(bytes)) "
            + "of disk (a temporary copy of the features, then the file), and \(place) has "
            + "\(MemoryEstimate.format(Int(free))) free")
    }

    /// The disk beside the output lacks the room a binary format needs (`write` checks before it reads
    /// an image): the sizes needed and free, and where.
    public struct InsufficientDisk: Error, CustomStringConvertible {
        /// "OUT: writing these features needs about 720 MB of disk (…), and FOLDER has 12 MB free".
        public let description: String
    }
}

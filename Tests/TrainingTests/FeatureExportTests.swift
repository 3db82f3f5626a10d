import Data
import Foundation
import TensorIO
import Torch
@testable import Training
import XCTest

/// `FeatureExport` (`finetune features`) streams the features to the file: each format holds the
/// readable images' features in dataset order, whatever the batch size, and nothing else is left in
/// the folder (the spool of a binary format goes with its descriptor).
final class FeatureExportTests: XCTestCase {
    func testFeaturesStreamToEachFormatInDatasetOrderWithoutTheUnreadableImage() throws {
        let root = try TRData.temporaryDirectory(self)
        // Image 4 is half a PNG: scanned as an image, then not decodable.
        let files = try TRData.writeClassFolders(TRData.dataset(count: 10), to: "\(root)/data") {
            $0 == 4 ? $1.prefix($1.count / 2) : $1
        }
        let dataset = try ImageFolderDataset(root: "\(root)/data")
        XCTAssertEqual(dataset.count, 10)
        Runtime.manualSeed(5)
        let model = try TRTinyNet()

        // The reference: every readable image in one batch, straight through the backbone.
        let loader = try DataLoader(dataset, batchSize: 64, shuffle: false, transform: TRData.transform, workers: 0)
        let batch = try XCTUnwrap(loader.epoch(0).nextBatch())
        XCTAssertEqual(batch.indices.count, 9)  // all but image 4
        model.eval()
        let expected = try withInferenceMode { try model.extractFeatures(batch.images) }
        let kept = batch.indices.map { dataset.samples[$0] }

        let out = root + "/out"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: false)
        for format in FeatureExport.Format.allCases {
            let result = try FeatureExport.write(model: model, dataset: dataset, transform: TRData.transform, batchSize: 4,
                                                 workers: 0, format: format, to: "\(out)/f.\(format.rawValue)",
                                                 weights: "random")
            XCTAssertEqual(result.samples, kept, format.rawValue)
            XCTAssertEqual(result.skipped.paths, [files[4]], format.rawValue)
        }
        let file = try SafeTensors.read(out + "/f.safetensors")
        let features = try XCTUnwrap(file.tensors["features"])
        XCTAssertEqual(features.shape, [9, model.embeddingSize])
        XCTAssertTrue(try features.allClose(expected, rtol: 1e-5, atol: 1e-6))
        XCTAssertEqual(try XCTUnwrap(file.tensors["labels"]).toArray(Int64.self), kept.map { Int64($0.label) })
        XCTAssertEqual(file.metadata["files"],
                       String(decoding: try JSONEncoder().encode(kept.map(\.source.description)), as: UTF8.self))
        XCTAssertEqual(file.metadata["format"], FeatureExport.safetensorsFormat)

        XCTAssertEqual(NumPy.header(ofFileAt: out + "/f.npy")?.shape, [9, model.embeddingSize])
        let npy = try Foundation.Data(contentsOf: URL(fileURLWithPath: out + "/f.npy"))
        XCTAssertEqual(npy.suffix(9 * model.embeddingSize * 4), Foundation.Data(try features.floats().withUnsafeBytes { Array($0) }))
        XCTAssertEqual(NumPy.header(ofFileAt: out + "/f_labels.npy")?.shape, [9])

        let rows = try CSV.parse(String(contentsOfFile: out + "/f.csv", encoding: .utf8)).map(\.fields)
        XCTAssertEqual(rows.count, 10)
        XCTAssertEqual(rows.dropFirst().map { $0[0] }, kept.map(\.source.description))
        XCTAssertEqual(rows.dropFirst().flatMap { $0.dropFirst(3).compactMap(Float.init) }, try features.floats())

        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: out)),
                       ["f.safetensors", "f.npy", "f_labels.npy", "f.csv"])
        // A disk without room for the spool and the file is refused before anything is computed.
        XCTAssertThrowsError(try FeatureExport.checkDiskSpace(beside: out + "/f.npy", bytes: Int.max / 2)) { error in
            XCTAssertTrue("\(error)".hasPrefix(out + "/f.npy: writing these features needs about "), "\(error)")
        }
    }
}

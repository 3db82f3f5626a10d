import Foundation
import XCTest

/// Every `--json` output of the command line, as the set of its key paths with each value's JSON
/// type (`per_class[].auc: number`, `weights: null`), nested objects and arrays included, on the tiny
/// dataset of `TrainCLITests`. Scripts read these objects: a key renamed, added or dropped, or a null
/// turned into something else, fails here.
final class JSONKeysCLITests: XCTestCase {
    func run(_ arguments: [String], environment: [String: String] = [:]) throws -> CLITests.Run {
        try CLITests.run(arguments, environment: environment)
    }

    func temporaryFolder(_ name: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    // MARK: Shapes

    /// A JSON value, decoded strictly (`true` is not a number, `1` not a boolean).
    enum Value: Decodable {
        case null, bool, number, string
        case array([Value])
        case object([String: Value])

        struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init?(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }

        init(from decoder: Decoder) throws {
            if let object = try? decoder.container(keyedBy: Key.self) {
                var members: [String: Value] = [:]
                for key in object.allKeys { members[key.stringValue] = try object.decode(Value.self, forKey: key) }
                self = .object(members)
            } else if var array = try? decoder.unkeyedContainer() {
                var elements: [Value] = []
                while !array.isAtEnd { elements.append(try array.decode(Value.self)) }
                self = .array(elements)
            } else {
                let single = try decoder.singleValueContainer()
                if single.decodeNil() {
                    self = .null
                } else if (try? single.decode(Bool.self)) != nil {
                    self = .bool
                } else if (try? single.decode(Double.self)) != nil {
                    self = .number
                } else {
                    _ = try single.decode(String.self)
                    self = .string
                }
            }
        }

        var type: String {
            switch self {
            case .null: return "null"
            case .bool: return "bool"
            case .number: return "number"
            case .string: return "string"
            case .array: return "array"
            case .object: return "object"
            }
        }

        /// "path: type" of every member, recursively: `a.b` for a nested key, `a[]` for array elements.
        func shape(at path: String = "", into set: inout Set<String>) {
            switch self {
            case .object(let members):
                for (key, member) in members {
                    let memberPath = path.isEmpty ? key : path + "." + key
                    set.insert("\(memberPath): \(member.type)")
                    member.shape(at: memberPath, into: &set)
                }
            case .array(let elements):
                for element in elements {
                    set.insert("\(path)[]: \(element.type)")
                    element.shape(at: path + "[]", into: &set)
                }
            default:
                break
            }
        }
    }

    /// The union of the shapes of standard output's lines, each of which must be one JSON object.
    func shape(_ result: CLITests.Run, file: StaticString = #filePath, line: UInt = #line) throws -> Set<String> {
        XCTAssertEqual(result.status, 0, result.stderr, file: file, line: line)
        XCTAssertFalse(result.lines.isEmpty, "no output; standard error: \(result.stderr)", file: file, line: line)
        var set = Set<String>()
        for text in result.lines {
            let value = try JSONDecoder().decode(Value.self, from: Foundation.Data(text.utf8))
            guard case .object = value else {
                XCTFail("not a JSON object: \(text)", file: file, line: line)
                continue
            }
            value.shape(into: &set)
        }
        return set
    }

    func assertShape(_ actual: Set<String>, _ expected: Set<String>, _ command: String,
                     file: StaticString = #filePath, line: UInt = #line) {
        guard actual != expected else { return }
        XCTFail("""
            \(command) --json changed shape
              missing: \(expected.subtracting(actual).sorted())
              new: \(actual.subtracting(expected).sorted())
            all of it:
            \(actual.sorted().map { "\"\($0)\"," }.joined(separator: "\n"))
            """, file: file, line: line)
    }

    // MARK: Commands

    /// train, evaluate, predict RUN_DIR and features RUN_DIR: one run of the tiny dataset.
    func testRunCommands() throws {
        let data = try temporaryFolder("tiny-data")
        try TrainCLITests.writeDataset(at: data)
        let out = try temporaryFolder("runs") + "/run"
        let train = try run(["train", data, "--out", out, "--epochs", "1", "--json"] + TrainCLITests.common)
        assertShape(try shape(train), Self.train, "train")
        let threads = ["--threads", "2", "--workers", "0"]
        let evaluate = try run(["evaluate", out, data, "--json"] + threads)
        // Whether there are notes (0/0 precision, say) depends on what one epoch learned.
        assertShape(try shape(evaluate).union(["notes[]: string"]), Self.evaluate, "evaluate")
        let predict = try run(["predict", out, "\(data)/test/red", "--json", "--top-k", "2", "--threads", "2"])
        XCTAssertEqual(predict.lines.count, 3, predict.stdout)
        assertShape(try shape(predict), Self.predict, "predict")
        let features = try run(["features", out, data, "--out", "\(out)/f.npy", "--json"] + threads)
        assertShape(try shape(features), Self.features, "features")
    }

    func testInfoAndSummary() throws {
        assertShape(try shape(run(["info", "--json"])), Self.info, "info")
        assertShape(try shape(run(["summary", "resnet18", "--depth", "1", "--classes", "7", "--json"])),
                    Self.summary, "summary")
    }

    /// The model table: a full run, and a training-only run at batch 1 whose step fails (ResNet's
    /// BatchNorm needs two values per channel), leaving nulls and an `error`; the loader on the tiny
    /// dataset; SHA-256 on 1 MiB.
    func testBench() throws {
        let tiny = ["--models", "resnet18", "--input-size", "32", "--iterations", "1", "--warmup", "0",
                    "--threads", "2", "--json"]
        let failed = try run(["bench", "models"] + tiny + ["--batch-size", "1", "--no-inference"])
        XCTAssertTrue(failed.stdout.contains(#""error":"training step: "#), failed.stdout)
        let models = try shape(run(["bench"] + tiny + ["--batch-size", "2"])).union(shape(failed))
        assertShape(models, Self.benchModels, "bench")
        let data = try temporaryFolder("tiny-data")
        try TrainCLITests.writeDataset(at: data)
        let loader = try run(["bench", "loader", "--data", "\(data)/train", "--workers", "0", "--batch-size", "4",
                              "--size", "32", "--json"])
        assertShape(try shape(loader), Self.benchLoader, "bench loader")
        let hash = try run(["bench", "hash", "--size-mb", "1", "--runs", "1", "--json"])
        assertShape(try shape(hash), Self.benchHash, "bench hash")
    }

    /// convert on MNIST IDX files of 3 training and 2 test images.
    func testConvert() throws {
        let source = try temporaryFolder("idx")
        func idx(_ name: String, type: UInt8, dims: [Int], bytes: [UInt8]) throws {
            var data: [UInt8] = [0, 0, type, UInt8(dims.count)]
            for d in dims { data += [UInt8(d >> 24 & 0xFF), UInt8(d >> 16 & 0xFF), UInt8(d >> 8 & 0xFF), UInt8(d & 0xFF)] }
            try Foundation.Data(data + bytes).write(to: URL(fileURLWithPath: "\(source)/\(name)"))
        }
        for (prefix, labels) in [("train", [0, 1, 2] as [UInt8]), ("t10k", [2, 0])] {
            try idx("\(prefix)-images-idx3-ubyte", type: 8, dims: [labels.count, 28, 28],
                    bytes: [UInt8](repeating: 7, count: labels.count * 28 * 28))
            try idx("\(prefix)-labels-idx1-ubyte", type: 8, dims: [labels.count], bytes: labels)
        }
        let destination = try temporaryFolder("converted")
        let dryRun = try run(["convert", "mnist", source, destination + "/dry", "--dry-run", "--json"])
        let written = try run(["convert", "mnist", source, destination + "/out", "--json"])
        assertShape(try shape(dryRun).union(shape(written)), Self.convert, "convert")
    }

    /// weights list and verify against a temporary cache holding empty files: one named like
    /// MobileNetV2's weights (listed as cached, then removed), one weight file named by its digest,
    /// a converted copy with its digest record, and an unused copy beside a .pth.
    func testWeights() throws {
        let root = try temporaryFolder("cache")
        let environment = ["FINETUNE_CACHE_DIR": root]
        let weights = root + "/weights"
        try FileManager.default.createDirectory(atPath: weights + "/converted", withIntermediateDirectories: true)
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  // SHA-256 of no bytes
        let mobilenet = "\(weights)/b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889.pth"
        XCTAssertTrue(FileManager.default.createFile(atPath: mobilenet, contents: nil))
        let list = try run(["weights", "list", "--json"], environment: environment)
        XCTAssertEqual(list.lines.count, 22, list.stdout)
        assertShape(try shape(list), Self.weightsList, "weights list")

        try FileManager.default.removeItem(atPath: mobilenet)
        for path in ["\(weights)/\(empty).pth", "\(weights)/\(empty).safetensors", "\(weights)/converted/x.safetensors"] {
            XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: nil))
        }
        try Foundation.Data((empty + "\n").utf8).write(to: URL(fileURLWithPath: "\(weights)/converted/x.safetensors.sha256"))
        let verify = try run(["weights", "verify", "--json"], environment: environment)
        XCTAssertEqual(verify.lines.count, 3, verify.stdout)
        assertShape(try shape(verify), Self.weightsVerify, "weights verify")
    }

    // MARK: Expected shapes

    static let train: Set<String> = [
        "architecture: string", "best_epoch: number", "best_value: number", "classes: array", "classes[]: string",
        "epochs: number", "final_metrics.accuracy: number", "final_metrics.loss: number", "final_metrics.lr: number",
        "final_metrics.val_accuracy: number", "final_metrics.val_loss: number",
        "final_metrics.val_macro_auc: number", "final_metrics.val_macro_f1: number",
        "final_metrics.val_macro_precision: number", "final_metrics.val_macro_recall: number",
        "final_metrics.val_weighted_f1: number", "final_metrics: object", "global_step: number",
        "model_epoch: number", "model_weights: string", "monitor: string", "run_dir: string", "seconds: number",
        "status: string", "stop_reason: null", "test_accuracy: number", "test_loss: number", "test_samples: number", "test_top5_accuracy: null",
        "train_samples: number", "validation_accuracy: number", "validation_samples: number", "weights: null",
    ]

    static let evaluate: Set<String> = [
        "accuracy: number", "architecture: string", "class_names: array", "class_names[]: string",
        "confusion_matrix: array", "confusion_matrix[]: array", "confusion_matrix[][]: number", "data: string",
        "loss: number", "macro_auc: number", "macro_average.f1: number", "macro_average.precision: number",
        "macro_average.recall: number", "macro_average.support: number", "macro_average: object", "notes: array",
        "notes[]: string", "per_class: array", "per_class[].auc: number", "per_class[].f1: number",
        "per_class[].name: string", "per_class[].precision: number", "per_class[].recall: number",
        "per_class[].support: number", "per_class[]: object", "run_dir: string", "sample_count: number",
        "split: string", "tta: string", "weighted_average.f1: number", "weighted_average.precision: number",
        "weighted_average.recall: number", "weighted_average.support: number", "weighted_average: object",
        "weights_used: string", "zero_division: bool",
    ]

    static let predict: Set<String> = [
        "file: string", "top_k: array", "top_k[].class: string", "top_k[].index: number",
        "top_k[].probability: number", "top_k[]: object",
    ]

    static let features: Set<String> = [
        "architecture: string", "classes: array", "classes[]: string", "feature_size: number", "files: array",
        "files[]: string", "format: string", "images: number", "seconds: number", "skipped: number",
    ]

    static let info: Set<String> = [
        "cpu_kernels: string", "cuda_devices: number", "default_device: string", "libtorch: string", "mps: bool",
        "gomp_spincount: string", "mkl_cbwr: string", "omp_wait_policy: string", "retains_freed_memory: bool", "threads: number",
        "cores: number", "memory_bytes: number",  // added 2026-12-07
    ]

    static let summary: Set<String> = [
        "input_shape: array", "input_shape[]: number", "layer_groups: array", "layer_groups[]: string",
        "layers: array", "layers[].name: string", "layers[].output_shape: array", "layers[].output_shape[]: number",
        "layers[].parameters: number", "layers[].trainable_parameters: number", "layers[].type: string",
        "layers[]: object", "model: string", "non_trainable_parameters: number", "output_shape: array",
        "output_shape[]: number", "total_parameters: number", "trainable_parameters: number",
    ]

    static let benchModels: Set<String> = [
        "batch_size: number", "device: string", "iterations: number", "libtorch: string", "results: array",
        "results[].backward_ms: null", "results[].backward_ms: number", "results[].channels_last: bool",
        "results[].dtype: string", "results[].error: string", "results[].forward_ms: null",
        "results[].forward_ms: number", "results[].images_per_second: null", "results[].images_per_second: number",
        "results[].inference_images_per_second: null", "results[].inference_images_per_second: number",
        "results[].inference_ms: null", "results[].inference_ms: number", "results[].input_size: number",
        "results[].model: string", "results[].optimizer_ms: null", "results[].optimizer_ms: number",
        "results[].step_ms: null", "results[].step_ms: number", "results[].total_ms: null",
        "results[].total_ms: number", "results[]: object", "threads: number", "warmup: number",
    ]

    static let benchLoader: Set<String> = [
        "augment: string", "batch_size: number", "dct_scaling: bool", "images: number", "images_per_second: number",
        "seconds: number", "size: number", "workers: number",
    ]

    static let benchHash: Set<String> = [
        "file_median_ms: number", "file_mib_per_s: number", "file_ms: array", "file_ms[]: number",
        "memory_median_ms: number", "memory_mib_per_s: number", "memory_ms: array", "memory_ms[]: number",
        "runs: number", "sha256: string", "size_mib: number",
    ]

    static let convert: Set<String> = [
        "classes: array", "classes[]: string", "counts.test: array", "counts.test[]: number", "counts.train: array",
        "counts.train[]: number", "counts: object", "destination: string", "dry_run: bool", "folders: array",
        "folders[]: string", "written: number",
    ]

    static let weightsList: Set<String> = [
        "architecture: string", "cached: bool", "input_size: number", "name: string", "parameters: number",
        "path: null", "path: string", "sha256: null", "sha256: string", "sha256_prefix: string", "top1: number",
        "url: null", "url: string", "verification: string",
    ]

    static let weightsVerify: Set<String> = [
        "kind: string", "ok: bool", "path: string", "sha256: null", "sha256: string",
    ]
}

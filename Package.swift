// swift-tools-version:5.9
//
// finetune — transfer learning for image classifiers, in Swift, on LibTorch.
//
// LibTorch is located in this order (see docs/libtorch.md):
//   1. the directory named by the `LIBTORCH` environment variable (include/ and lib/ inside);
//   2. the `torch` package of the `python3` on PATH (a PyTorch wheel carries libtorch);
//   3. a system install: Debian/Ubuntu `libtorch-dev`, or Homebrew's `pytorch`.
// `scripts/setup` installs Debian's `libtorch-dev` when none is found.
import Foundation
import PackageDescription

struct LibTorch {
    var includeDirs: [String]
    var libDir: String?     // nil: the linker's default search path (system install)
    var major: Int
    var origin: String
}

func fileExists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

/// TORCH_VERSION_MAJOR from whichever version header this libtorch ships (1.x and 2.x differ).
func torchMajorVersion(includeRoot: String) -> Int {
    for header in ["torch/headeronly/version.h", "torch/csrc/api/include/torch/version.h"] {
        guard let text = try? String(contentsOfFile: includeRoot + "/" + header, encoding: .utf8) else { continue }
        for line in text.split(separator: "\n") where line.contains("#define TORCH_VERSION_MAJOR") {
            if let n = Int(line.split(separator: " ").last ?? "") { return n }
        }
    }
    return 1
}

func libTorchAt(root: String, origin: String) -> LibTorch? {
    let include = root + "/include"
    guard fileExists(include + "/ATen/ATen.h") else { return nil }
    let lib = fileExists(root + "/lib/libtorch_cpu.so") || fileExists(root + "/lib/libtorch_cpu.dylib")
        ? root + "/lib" : nil
    guard let lib else { return nil }
    return LibTorch(includeDirs: [include, include + "/torch/csrc/api/include"], libDir: lib,
                    major: torchMajorVersion(includeRoot: include), origin: origin)
}

/// Finds the `torch` package of `python3` without importing it (find_spec is instant).
func pythonTorchRoot() -> String? {
    if ProcessInfo.processInfo.environment["FINETUNE_NO_PYTHON_TORCH"] != nil { return nil }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", "-c",
        "import importlib.util as u; s = u.find_spec('torch'); print(s.submodule_search_locations[0] if s else '')"]
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    do { try process.run() } catch { return nil }
    process.waitUntilExit()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    let path = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    return path.isEmpty ? nil : path
}

func locateLibTorch() -> LibTorch {
    let env = ProcessInfo.processInfo.environment
    if let root = env["LIBTORCH"], !root.isEmpty {
        if let found = libTorchAt(root: root, origin: "LIBTORCH=\(root)") { return found }
        // Fall through with a usable error later: headers will be missing and the build says so.
        return LibTorch(includeDirs: [root + "/include", root + "/include/torch/csrc/api/include"],
                        libDir: root + "/lib", major: 1, origin: "LIBTORCH=\(root) (incomplete)")
    }
    if let root = pythonTorchRoot(), let found = libTorchAt(root: root, origin: "python3 torch at \(root)") {
        return found
    }
    for prefix in ["/opt/homebrew/opt/pytorch", "/usr/local/opt/pytorch"] {
        if let found = libTorchAt(root: prefix, origin: "Homebrew \(prefix)") { return found }
    }
    // Debian/Ubuntu libtorch-dev: headers in /usr/include, libraries on the default search path.
    return LibTorch(includeDirs: ["/usr/include/torch/csrc/api/include"], libDir: nil,
                    major: torchMajorVersion(includeRoot: "/usr/include"), origin: "system")
}

let libtorch = locateLibTorch()

var shimCxxFlags: [String] = libtorch.includeDirs.flatMap { ["-I", $0] }
shimCxxFlags += ["-Wno-deprecated-declarations", "-Wno-unused-parameter"]
// c10d's Gloo process group (Sources/CTorch/ct_distributed.cpp) needs gloo's headers, which Debian ships
// as libgloo-dev for its libtorch-dev; a PyTorch wheel carries c10d and gloo's code but not <gloo/...>,
// so with a wheel Debian's gloo headers serve (the shim holds gloo objects only through pointers, and
// the distributed tests pass against the 2.13 wheel that way). Without any the distributed entry points
// compile to "not available in this LibTorch build" (docs/libtorch.md).
let c10dGlooHeader = libtorch.includeDirs[0] + "/torch/csrc/distributed/c10d/ProcessGroupGloo.hpp"
let glooHeaders = libtorch.libDir == nil
    ? fileExists("/usr/include/gloo/algorithm.h") && fileExists("/usr/include/torch/csrc/distributed/c10d/ProcessGroupGloo.hpp")
    : fileExists(c10dGlooHeader)
        && (fileExists(libtorch.includeDirs[0] + "/gloo/algorithm.h") || fileExists("/usr/include/gloo/algorithm.h"))
var shimDefines: [CXXSetting] = [.define("CTORCH_LIBTORCH_MAJOR", to: "\(libtorch.major)")]
if glooHeaders { shimDefines.append(.define("CTORCH_HAS_C10D_GLOO")) }
var shimLinkerFlags: [String] = []
if let dir = libtorch.libDir {
    // An rpath is essential: without it a binary built against a wheel can silently load
    // a different (system) libtorch at run time.
    shimLinkerFlags += ["-L", dir, "-Xlinker", "-rpath", "-Xlinker", dir]
}
// c10d's NCCL process group: a CUDA LibTorch (libtorch_cuda, ProcessGroupNCCL.hpp) plus NCCL's and the
// CUDA runtime's headers, from NCCL_INCLUDE_DIR / CUDA_INCLUDE_DIR or, as pip installs a CUDA wheel's
// dependencies, site-packages/nvidia/{nccl,cu13,cuda_runtime}/include beside torch/.
func ncclIncludeDirs() -> [String]? {
    guard let lib = libtorch.libDir, fileExists(lib + "/libtorch_cuda.so"),
          fileExists(libtorch.includeDirs[0] + "/torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp") else { return nil }
    let env = ProcessInfo.processInfo.environment
    let nvidia = URL(fileURLWithPath: lib).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("nvidia").path
    let candidates = [env["NCCL_INCLUDE_DIR"], env["CUDA_INCLUDE_DIR"]].compactMap { $0 }
        + ["nccl", "cu13", "cu12", "cuda_runtime"].map { "\(nvidia)/\($0)/include" }
    guard let nccl = candidates.first(where: { fileExists($0 + "/nccl.h") }),
          let cuda = candidates.first(where: { fileExists($0 + "/cuda_runtime_api.h") }) else { return nil }
    return nccl == cuda ? [nccl] : [nccl, cuda]
}
if let dirs = ncclIncludeDirs() {
    shimCxxFlags += dirs.flatMap { ["-I", $0] }
    shimDefines.append(.define("CTORCH_HAS_C10D_NCCL"))
    shimLinkerFlags += ["-ltorch_cuda", "-lc10_cuda"]
}

let package = Package(
    name: "finetune",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "Torch", targets: ["Torch"]),
        .library(name: "NN", targets: ["NN"]),
        .library(name: "Optim", targets: ["Optim"]),
        .library(name: "TensorIO", targets: ["TensorIO"]),
        .library(name: "Data", targets: ["Data"]),
        .library(name: "Vision", targets: ["Vision"]),
        .library(name: "Training", targets: ["Training"]),
        .library(name: "Export", targets: ["Export"]),
        .library(name: "Serving", targets: ["Serving"]),
        .executable(name: "finetune", targets: ["finetune"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.34.1"),
    ],
    targets: [
        // The C shim: the only code that touches LibTorch's C++ API.
        .target(
            name: "CTorch",
            cxxSettings: [.unsafeFlags(shimCxxFlags)] + shimDefines,
            linkerSettings: [.linkedLibrary("torch_cpu"), .linkedLibrary("c10"), .unsafeFlags(shimLinkerFlags)]
        ),
        // Engine bindings: Tensor, dtypes, devices, autograd scopes, runtime settings.
        .target(name: "Torch", dependencies: ["CTorch"]),
        // Whole-file writes that are never seen half done (temporary file, then rename).
        .target(name: "AtomicFiles"),
        // Tensor file formats: safetensors (and, with the model zoo, restricted .pth import).
        .target(name: "TensorIO", dependencies: ["Torch", "AtomicFiles", "CZlib"]),
        // zlib's CRC-32 for TensorIO's zip reader (zlib alone: CImageCodecs would also link libjpeg and libpng).
        .target(name: "CZlib", linkerSettings: [.linkedLibrary("z")]),
        // SHA-256 as hex over swift-crypto (BoringSSL): weights verification and feature-cache keys.
        .target(name: "Hashing", dependencies: ["AtomicFiles", .product(name: "Crypto", package: "swift-crypto")]),
        // Modules and layers with PyTorch state_dict names.
        .target(name: "NN", dependencies: ["Torch"]),
        // Optimizers with PyTorch semantics and savable state (they work on tensors, not modules).
        .target(name: "Optim", dependencies: ["Torch"]),
        // The model zoo: torchvision-compatible architectures, weights catalog and cache (no image codecs).
        .target(name: "Vision", dependencies: ["Torch", "NN", "TensorIO", "ImagePreprocessing", "AtomicFiles", "Hashing"], resources: [.copy("Resources")]),
        // Fine-tuning: trainer, callbacks, freezing recipes, metrics, checkpoints, loggers, training runs.
        .target(name: "Training", dependencies: ["Torch", "NN", "Optim", "Data", "Vision", "TensorIO", "AtomicFiles", "Hashing"]),
        // JPEG (libjpeg-turbo) and PNG (libpng) decoding and encoding, in C.
        .target(name: "CImageCodecs", linkerSettings: [.linkedLibrary("jpeg"), .linkedLibrary("png"), .linkedLibrary("z")]),
        // The input transform that travels with a model's weights (resize, crop, normalise): below both
        // the model zoo and the data pipeline, so the zoo links no image codecs.
        .target(name: "ImagePreprocessing", dependencies: ["Torch"]),
        // Datasets, decoding, transforms and loaders.
        .target(name: "Data", dependencies: ["Torch", "ImagePreprocessing", "CImageCodecs", "AtomicFiles", "TensorIO", "Hashing"]),
        // Export to other runtimes: ONNX graphs written by explicit traversal of the model
        // (ONNX/onnx.pb.swift is generated from onnx.proto by tools/onnx/generate; do not edit it).
        .target(name: "Export", dependencies: ["Torch", "NN", "Vision", "ImagePreprocessing", "AtomicFiles",
                                               .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        // `finetune serve`: an HTTP prediction server (Hummingbird 2) with dynamic batching and
        // Prometheus metrics, over run directories loaded by Training.
        .target(name: "Serving", dependencies: ["Torch", "NN", "Data", "Vision", "Training", "ImagePreprocessing",
                                                .product(name: "Hummingbird", package: "hummingbird"),
                                                .product(name: "Prometheus", package: "swift-prometheus"),
                                                .product(name: "Logging", package: "swift-log"),
                                                .product(name: "HTTPTypes", package: "swift-http-types"),
                                                .product(name: "NIOCore", package: "swift-nio"),
                                                .product(name: "NIOPosix", package: "swift-nio"),
                                                .product(name: "NIOHTTP1", package: "swift-nio"),
                                                .product(name: "NIOHTTPTypes", package: "swift-nio-extras")]),
        // What the command-line tool does before any library it links starts (OpenMP's waiting policy).
        .target(name: "CProcessStart"),
        // The command-line tool.
        .executableTarget(
            name: "finetune",
            dependencies: ["Torch", "NN", "Optim", "TensorIO", "Data", "Vision", "Training", "AtomicFiles", "Hashing", "Export", "Serving",
                           "CProcessStart",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .testTarget(name: "TorchTests", dependencies: ["Torch", "TestSupport"]),
        .testTarget(name: "NNTests", dependencies: ["NN", "TensorIO", "TestSupport"]),
        .testTarget(name: "OptimTests", dependencies: ["Optim", "NN", "TensorIO", "TestSupport"]),
        .testTarget(name: "TensorIOTests", dependencies: ["TensorIO", "TestSupport"]),
        .testTarget(name: "DataTests", dependencies: ["Data", "TensorIO", "TestSupport"]),
        .testTarget(name: "VisionTests", dependencies: ["Vision", "Data", "Hashing", "AtomicFiles", "TestSupport"]),
        .testTarget(name: "HashingTests", dependencies: ["Hashing"]),
        .testTarget(name: "ExportTests", dependencies: ["Export", "Vision", "NN", "Torch", "TensorIO", "Data", "ImagePreprocessing", "TestSupport"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "TestSupport"]),
        .testTarget(name: "CLITests", dependencies: ["finetune", "TestSupport", "TensorIO", "Torch", "NN", "Training", "Data", "ImagePreprocessing"]),
        .testTarget(name: "ServingTests", dependencies: ["finetune", "Serving", "Data", "TestSupport", "TensorIO", "Torch", "Training"]),
        // Helpers shared by test targets (fixture lookup, tolerant comparisons).
        .target(name: "TestSupport", dependencies: ["Torch", "TensorIO", "NN"], path: "Tests/TestSupport"),
    ],
    cxxLanguageStandard: libtorch.major >= 2 ? .cxx20 : .cxx17
)

// Fuzz targets (Fuzz/, run by scripts/fuzz; docs/reliability.md, "Fuzzing"): one libFuzzer executable
// per parser, built by scripts/fuzz with libFuzzer and AddressSanitizer. They have no main of their own
// (libFuzzer supplies it), so they exist only when FINETUNE_FUZZ is set and ordinary builds never see them.
if ProcessInfo.processInfo.environment["FINETUNE_FUZZ"] != nil {
    let fuzzers: [(name: String, dependencies: [Target.Dependency])] = [
        ("FuzzPickle", ["TensorIO"]), ("FuzzPth", ["TensorIO", "Torch"]), ("FuzzSafeTensors", ["TensorIO", "Torch"]),
        ("FuzzImage", ["Data"]), ("FuzzImageWindow", ["Data"]), ("FuzzCIFAR", ["Data"]), ("FuzzIDX", ["Data", "Torch"]),
        ("FuzzCSV", ["Data"]), ("FuzzRunConfig", ["Training", "Vision", "ImagePreprocessing"]),
        ("FuzzCheckpoint", ["Training", "NN"]),
    ]
    package.targets.append(.target(name: "FuzzSupport", path: "Fuzz/FuzzSupport"))
    for fuzzer in fuzzers {
        package.targets.append(.executableTarget(name: fuzzer.name, dependencies: fuzzer.dependencies + ["FuzzSupport"],
                                                 path: "Fuzz/" + fuzzer.name))
    }
}

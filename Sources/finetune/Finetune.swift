import ArgumentParser
import Foundation
import Torch

@main
struct Finetune: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "finetune",
        abstract: "Transfer learning for image classifiers, on LibTorch.",
        discussion: """
            Examples:
              finetune train data/flowers --arch mobilenet_v2 --weights imagenet --recipe head-only \
                  --epochs 5 --val-split 0.2 --out runs/flowers     fine-tune, write a run directory
              finetune evaluate runs/flowers data/flowers          test-split metrics of the run
              finetune predict runs/flowers photo.jpg              classify with the run's model
              finetune export runs/flowers --format onnx --out flowers.onnx   for onnxruntime & co.
              finetune demo                      train a small convnet on Fashion-MNIST
              finetune info --json               LibTorch version, devices and threads
            """,
        subcommands: [TrainCommand.self, LRFindCommand.self, EvaluateCommand.self, ReportCommand.self, CheckDataCommand.self, PredictCommand.self, ServeCommand.self, ExportCommand.self, FeaturesCommand.self, DemoCommand.self, BenchCommand.self, ConvertCommand.self, SummaryCommand.self, WeightsCommand.self, InfoCommand.self, PseudoLabelCommand.self]
    )

    /// Starts the command, first making sure OpenMP's threads sleep when idle (see
    /// `preferPassiveOpenMPWaiting`) and that freed tensor memory is reused rather than returned to
    /// the system (`Runtime.retainFreedMemory`).
    static func main() {
        preferPassiveOpenMPWaiting()
        Runtime.retainFreedMemory()
        main(nil)
    }

    /// GNU OpenMP (Debian's LibTorch) makes idle intra-op threads busy-wait. On a 2-core machine
    /// they then take the cores from the data loader's decoding threads and from other processes:
    /// a MobileNetV2 training step measured 9–10 s under load, 2.2–2.5 s with
    /// `OMP_WAIT_POLICY=PASSIVE`. OpenMP reads the variable when the library loads, so the process
    /// re-executes itself once with it set. A value the user set is left alone.
    static func preferPassiveOpenMPWaiting() {
        #if os(Linux)
        guard getenv("OMP_WAIT_POLICY") == nil else { return }
        setenv("OMP_WAIT_POLICY", "PASSIVE", 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        // exec failed: carry on with the default policy.
        #endif
    }
}

/// The version written into run directories.
let finetuneVersion = "0.1.0"

/// `finetune info`: what this binary runs on.
struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info", abstract: "Show the LibTorch version, devices and thread count.")

    @Flag(help: "Print one JSON object.") var json = false

    func run() throws {
        let info = Output(libtorch: Runtime.libTorchVersion, threads: Runtime.numThreads,
                          cudaDevices: Runtime.cudaDeviceCount, mps: Runtime.mpsIsAvailable,
                          defaultDevice: Device.auto.description,
                          ompWaitPolicy: getenv("OMP_WAIT_POLICY").map { String(cString: $0) } ?? "default",
                          retainsFreedMemory: Runtime.retainsFreedMemory)
        if json {
            printEncodedJSON(info)
        } else {
            for (key, value) in info.lines { print("\(key.stringValue): \(value)") }
        }
    }

    /// `info --json`, and the lines of the text output (same keys, same order).
    struct Output: Encodable {
        var libtorch: String
        var threads: Int
        var cudaDevices: Int
        var mps: Bool
        var defaultDevice: String
        var ompWaitPolicy: String
        var retainsFreedMemory: Bool

        enum CodingKeys: String, CodingKey {
            case libtorch, threads, cudaDevices = "cuda_devices", mps, defaultDevice = "default_device"
            case ompWaitPolicy = "omp_wait_policy", retainsFreedMemory = "retains_freed_memory"
        }

        var lines: [(CodingKeys, String)] {
            [(.libtorch, libtorch), (.threads, String(threads)), (.cudaDevices, String(cudaDevices)), (.mps, String(mps)),
             (.defaultDevice, defaultDevice), (.ompWaitPolicy, ompWaitPolicy),
             (.retainsFreedMemory, String(retainsFreedMemory))]
        }
    }
}

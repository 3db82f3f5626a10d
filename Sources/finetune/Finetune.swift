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
              finetune demo                      train a small convnet on Fashion-MNIST
              finetune info --json               LibTorch version, devices and threads
            """,
        subcommands: [TrainCommand.self, EvaluateCommand.self, PredictCommand.self, FeaturesCommand.self, DemoCommand.self, BenchCommand.self, ConvertCommand.self, SummaryCommand.self, WeightsCommand.self, InfoCommand.self]
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

/// `finetune info`: what this binary runs on.
struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info", abstract: "Show the LibTorch version, devices and thread count.")

    @Flag(help: "Print one JSON object.") var json = false

    func run() throws {
        let fields: [(String, String)] = [
            ("libtorch", Runtime.libTorchVersion),
            ("threads", String(Runtime.numThreads)),
            ("cuda_devices", String(Runtime.cudaDeviceCount)),
            ("mps", String(Runtime.mpsIsAvailable)),
            ("default_device", Device.auto.description),
            ("omp_wait_policy", getenv("OMP_WAIT_POLICY").map { String(cString: $0) } ?? "default"),
            ("retains_freed_memory", String(Runtime.retainsFreedMemory)),
        ]
        if json {
            let body = fields.map { key, value in
                let quoted = Int(value) != nil || value == "true" || value == "false" ? value : "\"\(value)\""
                return "\"\(key)\": \(quoted)"
            }
            print("{" + body.joined(separator: ", ") + "}")
        } else {
            for (key, value) in fields { print("\(key): \(value)") }
        }
    }
}

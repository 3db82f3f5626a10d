import ArgumentParser
import AtomicFiles
import Foundation
import Torch
import Training

@main
struct Finetune: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "finetune",
        abstract: "Transfer learning for image classifiers, on LibTorch.",
        discussion: """
            Examples:
              finetune train data/flowers --arch mobilenet_v2 --weights imagenet \\
                  --recipe head-only --epochs 5 --val-split 0.2 --out runs/flowers
                                                 fine-tune, write a run directory
              finetune evaluate runs/flowers data/flowers/test
                                                 metrics on the run's test images
              finetune predict runs/flowers photo.jpg
                                                 classify with the run's model
              finetune export runs/flowers --format onnx --out flowers.onnx
                                                 for onnxruntime & co.
              finetune demo                      train a small convnet on Fashion-MNIST
              finetune info --json               LibTorch version, devices and threads
            """,
        subcommands: [TrainCommand.self, LRFindCommand.self, EvaluateCommand.self, ReportCommand.self, CheckDataCommand.self, PredictCommand.self, ServeCommand.self, ExportCommand.self, FeaturesCommand.self, DemoCommand.self, BenchCommand.self, ConvertCommand.self, SummaryCommand.self, WeightsCommand.self, CacheCommand.self, InfoCommand.self, PseudoLabelCommand.self]
    )

    /// Parses the command line and starts the command, first making sure that freed tensor memory is
    /// reused rather than returned to the system (`Runtime.retainFreedMemory`). OpenMP's idle threads
    /// already wait briefly and then sleep: the `CProcessStart` target sets their policy before LibTorch
    /// loads, unless the user set one.
    static func main() {
        // A file-size limit (`ulimit -f`) is a failed write (EFBIG) naming the file, as a full disk is,
        // with the run's clean-up, not death by SIGXFSZ with no word and a run left "running" (probe
        // AK; CPython ignores it the same way).
        signal(SIGXFSZ, SIG_IGN)
        SignalStop.standInForDefaultActionsAsProcessOne()
        StandardStreams.openClosedDescriptors()
        var command: ParsableCommand
        do { command = try parseCommandLine() } catch {
            // swift-argument-parser names the command of a usage error from its stack, which reads
            // "finetune train lr-find" where a command's option group is another command (lr-find's
            // was `train` until 2026-12-07); the subcommand named on the command line is the right one.
            if exitCode(for: error) == .validationFailure, let subcommand = subcommand(in: CommandLine.arguments.dropFirst()) {
                // The parser's own text (its Error and Help lines), with that subcommand's usage.
                let lines = fullMessage(for: error).split(separator: "\n")
                    .filter { !$0.hasPrefix("Usage: ") && !$0.hasPrefix("  See '") }
                reportUsageError(lines.joined(separator: "\n"), of: subcommand)
            }
            exitReporting(error)
        }
        Runtime.retainFreedMemory()
        do { try command.run() } catch let error as ValidationError {
            reportUsageError(error, of: type(of: command))
        } catch {
            exitReporting(error)
        }
        // What the command printed must have reached standard output (`> /dev/full` exited 0).
        if let failure = StandardStreams.outputFailure() {
            StandardStreams.writeError("Error: cannot write standard output: \(failure.reason)\n")
            Foundation.exit(1)
        }
    }

    /// A `ValidationError` thrown by a subcommand's `run()` (a path or value found unusable once the
    /// command started), with that subcommand's usage, where swift-argument-parser's `main` would show
    /// the root's ("Usage: finetune <subcommand>"); exit status 64, as for a flag rejected in parsing.
    static func reportUsageError(_ error: ValidationError, of subcommand: ParsableCommand.Type) -> Never {
        reportUsageError("Error: \(error.message)", of: subcommand)
    }

    /// `message` (an "Error: …" line, and a "Help: …" line of the parser's), then `subcommand`'s usage
    /// and help pointer, on standard error; exit status 64.
    static func reportUsageError(_ message: String, of subcommand: ParsableCommand.Type) -> Never {
        let name = (["finetune"] + commandPath(to: subcommand, from: self)).joined(separator: " ")
        let text = message + "\nUsage: \(usageString(for: subcommand))\n  See '\(name) --help' for more information.\n"
        StandardStreams.writeError(StandardStreams.displayable(text))
        Foundation.exit(ExitCode.validationFailure.rawValue)
    }

    /// swift-argument-parser's `exit(withError:)`, except that the message is written as a terminal
    /// can show it harmlessly (`StandardStreams.displayable`: an ESC in a path the error names was
    /// printed raw), and a help text (`--help`, `help`) goes through `StandardStreams`, so
    /// `--help > /dev/full` exits 1 as any other lost output does (the parser's `print` lost it and
    /// exited 0).
    static func exitReporting(_ error: Error) -> Never {
        let code = exitCode(for: error)
        guard code == .success else {
            let message = fullMessage(for: error)
            if !message.isEmpty { StandardStreams.writeError(StandardStreams.displayable(message) + "\n") }
            Foundation.exit(code.rawValue)
        }
        StandardStreams.writeOutput(fullMessage(for: error) + "\n")
        if let failure = StandardStreams.outputFailure() {
            StandardStreams.writeError("Error: cannot write standard output: \(failure.reason)\n")
            Foundation.exit(1)
        }
        Foundation.exit(0)
    }

    /// The command that `written` (the command line's arguments) names, parsed with negative values
    /// joined to their options (`joiningNegativeValues`). Where that made a flag seem to have a value
    /// (`--json -5`: "The option '--json' does not take any value"), that flag's neighbour is left as
    /// written and the line parsed again, so the parser speaks of `-5` itself (and `--ema -0.1` beside
    /// it still joins).
    static func parseCommandLine(_ written: [String] = Array(CommandLine.arguments.dropFirst())) throws -> ParsableCommand {
        var flags: Set<String> = []
        while true {
            do { return try parseAsRoot(joiningNegativeValues(written, except: flags)) } catch {
                let message = fullMessage(for: error)
                guard let start = message.range(of: "The option '"), let end = message[start.upperBound...].firstIndex(of: "'"),
                      message[end...].hasPrefix("' does not take any value") else { throw error }
                guard flags.insert(String(message[start.upperBound..<end])).inserted else { throw error }
            }
        }
    }

    /// `arguments` with each negative number that follows a long option joined to it (`--ema -0.1` →
    /// `--ema=-0.1`). swift-argument-parser reads `-0.1` as short options, so a negative value was
    /// refused as "Missing value for '--ema <ema>'" before the option's own check could name the range
    /// it expects. Nothing after a bare `--` is touched, nor what follows one of `flags`.
    static func joiningNegativeValues(_ arguments: [String], except flags: Set<String> = []) -> [String] {
        var joined: [String] = []
        for (index, argument) in arguments.enumerated() {
            if let previous = joined.last, previous.hasPrefix("--"), previous != "--", !previous.contains("="),
               !flags.contains(previous),
               !arguments[..<index].contains("--"), isNegativeNumber(argument) {
                joined[joined.count - 1] = previous + "=" + argument
            } else {
                joined.append(argument)
            }
        }
        return joined
    }

    /// Whether `text` reads as a negative number: `-1`, `-0.5`, `-.5`, `-1e-3`, `-inf`, `-nan`.
    static func isNegativeNumber(_ text: String) -> Bool {
        guard text.hasPrefix("-"), text.count > 1 else { return false }
        return Double(text) != nil
    }

    /// The deepest subcommand that `arguments` name from the root on (`cache prune …` → `Prune`), nil
    /// when the first argument names none.
    static func subcommand(in arguments: ArraySlice<String>) -> ParsableCommand.Type? {
        var found: ParsableCommand.Type?
        var level: ParsableCommand.Type = self
        for argument in arguments {
            guard let next = level.configuration.subcommands.first(where: { $0._commandName == argument }) else { break }
            found = next
            level = next
        }
        return found
    }

    /// The subcommand names from `root` down to `target` (e.g. ["cache", "prune"]); empty for the root.
    static func commandPath(to target: ParsableCommand.Type, from root: ParsableCommand.Type) -> [String] {
        for child in root.configuration.subcommands {
            let name = child._commandName  // the parser's own name for it
            if child == target { return [name] }
            let below = commandPath(to: target, from: child)
            if !below.isEmpty { return [name] + below }
        }
        return []
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
                          gompSpinCount: getenv("GOMP_SPINCOUNT").map { String(cString: $0) } ?? "default",
                          mklCBWR: getenv("MKL_CBWR").map { String(cString: $0) } ?? "default",
                          retainsFreedMemory: Runtime.retainsFreedMemory, cpuKernels: Runtime.cpuCapability,
                          cores: Runtime.coreCount, memoryBytes: Runtime.usableMemory)
        if json {
            printEncodedJSON(info)
        } else {
            for (key, value) in info.lines { printLine("\(key.stringValue): \(value)") }
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
        var gompSpinCount: String
        var mklCBWR: String
        var retainsFreedMemory: Bool
        var cpuKernels: String
        /// The cores and memory this process may use (CPU affinity and control-group limits applied).
        var cores: Int
        var memoryBytes: Int

        enum CodingKeys: String, CodingKey {
            case libtorch, threads, cudaDevices = "cuda_devices", mps, defaultDevice = "default_device"
            case ompWaitPolicy = "omp_wait_policy", gompSpinCount = "gomp_spincount", mklCBWR = "mkl_cbwr"
            case retainsFreedMemory = "retains_freed_memory", cpuKernels = "cpu_kernels", cores, memoryBytes = "memory_bytes"
        }

        var lines: [(CodingKeys, String)] {
            [(.libtorch, libtorch), (.threads, String(threads)), (.cudaDevices, String(cudaDevices)), (.mps, String(mps)),
             (.defaultDevice, defaultDevice), (.ompWaitPolicy, ompWaitPolicy), (.gompSpinCount, gompSpinCount),
             (.mklCBWR, mklCBWR), (.retainsFreedMemory, String(retainsFreedMemory)), (.cpuKernels, cpuKernels),
             (.cores, String(cores)), (.memoryBytes, String(memoryBytes))]
        }
    }
}

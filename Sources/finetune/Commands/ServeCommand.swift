import ArgumentParser
import AtomicFiles
import Foundation
import Serving
import Training

/// `finetune serve`: an HTTP prediction server over run directories (or a zoo model).
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve run directories (or a zoo model) over HTTP, with dynamic batching and Prometheus metrics.",
        discussion: """
            Each run directory is a model named after its folder (--name overrides, once per model in order). Images \
            sent at the same time are batched: up to --max-batch-size per forward pass, waiting at most \
            --max-batch-delay-ms for a batch to fill. SIGTERM (or Ctrl-C, a hang-up, SIGUSR1 or SIGUSR2) stops accepting, answers the \
            requests in flight and exits 0. See docs/cli.md for the API.

            Examples:
              finetune serve runs/flowers
              finetune serve runs/flowers runs/birds --port 9000 --max-batch-size 32
              finetune serve --arch mobilenet_v2 --weights imagenet --name imagenet
              curl --data-binary @photo.jpg -H 'Content-Type: image/jpeg' \\
                  'http://127.0.0.1:8080/v1/models/flowers:predict?top_k=3'
            """)

    @Argument(help: "Run directories written by `finetune train`.") var runDirectories: [String] = []
    @Option(help: "Serve a zoo architecture instead of (or beside) run directories.") var arch: String?
    @Option(help: "With --arch: a catalog tag such as imagenet, a catalog name, a .pth/.safetensors file, or none.")
    var weights = "imagenet"
    @Option(parsing: .singleValue, help: "A model's name in the URL (once per model, in order; default: the folder name, or the architecture).")
    var name: [String] = []
    @Option(help: "The address to listen on.") var host = "127.0.0.1"
    @Option(help: "The port (0: any free port).") var port = 8080
    @Option(help: "The most images per forward pass.") var maxBatchSize = 16
    @Option(help: "How long a batch may wait to fill, in milliseconds.") var maxBatchDelayMs = 5.0
    @Option(help: "The most images waiting per model; more gets 503 with Retry-After.") var maxQueue = 256
    @Option(help: "The largest request body in bytes; more gets 413.") var maxBodyBytes = 20_000_000
    @Option(help: "The largest image in pixels (width × height); more gets 400.") var maxPixels = 40_000_000
    @Option(help: "How long a request may take, in milliseconds; more gets 504.") var requestTimeoutMs = 30_000.0
    @Option(help: "Images decoded at once (default: all cores).") var decodeWorkers: Int?
    @Option(help: "Require 'Authorization: Bearer KEY' on every route but /healthz (default: $FINETUNE_API_KEY).")
    var apiKey: String?
    @OptionGroup var runOptions: ModelRunOptions
    @OptionGroup var runWeights: RunWeightsOption
    @OptionGroup var precisionOptions: PrecisionOptions

    func serveConfiguration() throws -> ServeConfiguration {
        var sources: [(String, ServeConfiguration.ModelSource)] = []
        for path in runDirectories {
            guard RunDirectory.isRun(path) else {
                throw ValidationError("\(path) is not a run directory (no config.json): give folders written by `finetune train`")
            }
            sources.append((URL(fileURLWithPath: path).standardizedFileURL.lastPathComponent,
                            .run(path: path, weights: runWeights.weights)))
        }
        try runWeights.check(isRun: !runDirectories.isEmpty)
        if let arch {
            sources.append((arch, .zoo(architecture: arch, weights: weights.lowercased() == "none" ? nil : weights)))
        }
        guard !sources.isEmpty else { throw ValidationError("give at least one run directory, or --arch") }
        guard name.count <= sources.count else {
            throw ValidationError("--name is given \(name.count) times for \(sources.count) models")
        }
        var configuration = ServeConfiguration(models: sources.enumerated().map { i, source in
            .init(name: i < name.count ? name[i] : source.0, source: source.1)
        })
        configuration.host = host
        configuration.port = port
        configuration.maxBatchSize = maxBatchSize
        configuration.maxBatchDelayMilliseconds = maxBatchDelayMs
        configuration.maxQueue = maxQueue
        configuration.maxBodyBytes = maxBodyBytes
        configuration.maxPixels = maxPixels
        configuration.requestTimeoutMilliseconds = requestTimeoutMs
        if let decodeWorkers { configuration.decodeWorkers = decodeWorkers }
        configuration.apiKey = apiKey ?? ProcessInfo.processInfo.environment["FINETUNE_API_KEY"]
        configuration.precision = precisionOptions.choice
        configuration.exif = runOptions.exif
        do { try configuration.validate() } catch { throw ValidationError("\(error)") }
        return configuration
    }

    func validate() throws { _ = try serveConfiguration() }

    func run() throws {
        // The shutdown signals (SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2) stay pending for the server's
        // graceful shutdown (swift-service-lifecycle reads them with a dispatch signal source): blocked here, before any
        // thread starts, so every thread inherits the mask and none takes the default action (ending
        // the process) instead. (A SIGHUP that `nohup` ignores is discarded, blocked or not.)
        var mask = sigset_t()
        sigemptyset(&mask)
        for number in PredictionServer.shutdownSignals { sigaddset(&mask, number) }
        pthread_sigmask(SIG_BLOCK, &mask, nil)
        try runOptions.applyThreads()
        let configuration = try serveConfiguration()
        runOptions.applyEXIF(run: nil)  // zoo models; each run decodes with its own setting
        let server = try PredictionServer(configuration: configuration) { printError($0) }
        final class Outcome: @unchecked Sendable { var error: Error? }
        let outcome = Outcome(), done = DispatchSemaphore(value: 0)
        Task.detached {
            do {
                try await server.run { host, port in
                    StandardStreams.writeOutput(StandardStreams.displayable("listening on http://\(host):\(port)") + "\n")
                }
            } catch { outcome.error = error }
            done.signal()
        }
        done.wait()
        if let error = outcome.error { throw error }
    }
}

import Foundation
@testable import finetune
import TestSupport
import XCTest

/// Runs the built `finetune` binary as a user would and checks its output.
final class CLITests: XCTestCase {
    struct Run {
        let status: Int32
        let stdout: String
        let stderr: String
        var lines: [String] { stdout.split(separator: "\n").map(String.init) }
        func json(_ line: String) throws -> [String: Any] {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Foundation.Data(line.utf8)) as? [String: Any], line)
        }
    }

    /// The test runner sits next to the products in the build folder.
    static var binary: URL {
        #if os(Linux)
        let runner = URL(fileURLWithPath: ProcessInfo.processInfo.arguments[0]).resolvingSymlinksInPath()
        #else
        let runner = Bundle.allBundles.first { $0.bundlePath.hasSuffix(".xctest") }?.bundleURL ?? Bundle.main.bundleURL
        #endif
        return runner.deletingLastPathComponent().appendingPathComponent("finetune")
    }

    func run(_ arguments: [String]) throws -> Run { try Self.run(arguments) }

    /// Runs the binary to completion, with `environment` added to this process's. Standard error is
    /// drained on another thread, so neither pipe can fill up and block the child while the other is read.
    static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> Run {
        try run(binary, arguments, environment: environment)
    }

    /// finetune's answer to `arguments` where its parser refuses them (an option's own check, a
    /// command's `validate()`), worked out in this process by the parse the binary makes before it
    /// prints that answer; arguments the parser accepts are run by the binary. A refusal in parsing
    /// writes nothing, so the answer is the same, and a bad-flag case spares a LibTorch start (about
    /// 1 s of a 2-core machine). How the binary prints a refusal (status 64, the subcommand's usage) is
    /// checked by tests that run it (`ReliabilityCLITests`, `testBadInputNamesTheFlagOrPath`).
    static func runUnlessRefusedInParsing(_ arguments: [String]) throws -> Run {
        do { _ = try Finetune.parseCommandLine(arguments) } catch {
            return Run(status: Finetune.exitCode(for: error).rawValue, stdout: "", stderr: Finetune.fullMessage(for: error))
        }
        return try run(arguments)
    }

    /// Runs the binary through `/bin/sh -c script`, where the script has the binary as `$0` and
    /// `arguments` as `$@` (`exec "$0" "$@" 2>/dev/full`): for limits and redirections.
    static func run(shell script: String, _ arguments: [String]) throws -> Run {
        try run(URL(fileURLWithPath: "/bin/sh"), ["-c", script, binary.path] + arguments)
    }

    private static func run(_ executable: URL, _ arguments: [String], environment: [String: String] = [:]) throws -> Run {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        final class Box: @unchecked Sendable { var data = Foundation.Data() }  // written before leave()
        let stderrBox = Box()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            stderrBox.data = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        return Run(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                   stderr: String(decoding: stderrBox.data, as: UTF8.self))
    }

    /// Starts `finetune arguments`; its standard output goes to the file `output` (created), or nowhere.
    /// `environment` is added to this process's.
    static func start(_ arguments: [String], output: String? = nil, errorOutput: String? = nil,
                      environment: [String: String] = [:]) throws -> Process {
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        if let output {
            _ = FileManager.default.createFile(atPath: output, contents: nil)
            process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        } else {
            process.standardOutput = FileHandle.nullDevice
        }
        if let errorOutput {
            _ = FileManager.default.createFile(atPath: errorOutput, contents: nil)
            process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errorOutput))
        } else {
            process.standardError = FileHandle.nullDevice
        }
        try process.run()
        return process
    }

    /// Starts `finetune arguments`, its standard error to the file `errorOutput`, and sends it SIGINT
    /// once that file holds `text` (Ctrl-C at a chosen moment); waits for it to end. Returns the process
    /// and whether it was still running when the signal was sent (false: it ended first, or did not
    /// print `text` in 60 s).
    static func interrupt(_ arguments: [String], once text: String, appearsIn errorOutput: String) throws
        -> (process: Process, wasRunning: Bool) {
        let process = try start(arguments, errorOutput: errorOutput)
        let deadline = Date().addingTimeInterval(60)
        while process.isRunning, Date() < deadline,
              !(String(decoding: FileManager.default.contents(atPath: errorOutput) ?? Foundation.Data(), as: UTF8.self).contains(text)) {
            usleep(10_000)
        }
        let running = process.isRunning
        kill(process.processIdentifier, SIGINT)
        process.waitUntilExit()
        return (process, running)
    }

    /// Starts `finetune arguments` and SIGKILLs it once `history` (a run's history.csv) has a row
    /// after its header, i.e. in the second epoch or later. Returns whether the process was still
    /// running when it was killed (false: it ended first, or did not get that far in 120 s).
    static func killDuringSecondEpoch(_ arguments: [String], history: String) throws -> Bool {
        let process = try start(arguments)
        let deadline = Date().addingTimeInterval(120)
        while process.isRunning && Date() < deadline {
            let text = (try? String(contentsOfFile: history, encoding: .utf8)) ?? ""
            if text.split(separator: "\n").count >= 2 { break }
            Thread.sleep(forTimeInterval: 0.01)
        }
        let running = process.isRunning
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        return running && process.terminationReason == .uncaughtSignal
    }

    func testInfoJSON() throws {
        let r = try run(["info", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let info = try r.json(XCTUnwrap(r.lines.first))
        XCTAssertNotNil(info["libtorch"] as? String)
        XCTAssertGreaterThanOrEqual(info["threads"] as? Int ?? 0, 1)
    }

    /// A CPU affinity (`taskset`) and a control group's CPU quota and memory limit (a container's
    /// `--cpus` and `--memory`) bound the cores finetune uses and the memory it checks estimates
    /// against. Foundation reports the machine's on Linux: LibTorch ran a thread per machine core, and
    /// memory checks passed where the container's limit then killed the process.
    func testACPUAffinityAndAControlGroupsLimitsAreHonoured() throws {
        #if os(Linux)
        func info(_ script: String) throws -> [String: Any] {
            let r = try Self.run(shell: script, [])
            XCTAssertEqual(r.status, 0, r.stderr)
            return try r.json(XCTUnwrap(r.lines.first))
        }
        let machine = ProcessInfo.processInfo.activeProcessorCount
        try XCTSkipIf(machine < 2, "one core: no affinity or quota can leave fewer")
        XCTAssertEqual(try info(#"exec taskset -c 0 "$0" info --json"#)["cores"] as? Int, 1)
        let pinned = try Self.run(shell: #"exec taskset -c 0 "$0" predict /nonexistent x.jpg --threads 9"#, [])
        XCTAssertTrue(pinned.stderr.contains("--threads must be 1 to 8 (4 × the 1 core this process may use under its CPU "
                                             + "affinity or control group's quota), got 9"), pinned.stderr)
        // cgroup v1 controllers, as a container runtime sets them (root, with the hierarchies writable).
        let fm = FileManager.default
        let cpuRoot = ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"].first { fm.fileExists(atPath: $0 + "/cpu.cfs_quota_us") }
        let memoryRoot = "/sys/fs/cgroup/memory"
        guard let cpuRoot, fm.fileExists(atPath: memoryRoot + "/memory.limit_in_bytes"), fm.isWritableFile(atPath: cpuRoot),
              fm.isWritableFile(atPath: memoryRoot) else {
            throw XCTSkip("no writable cgroup v1 cpu and memory hierarchies here (the parsing is tested in ProcessResourcesTests)")
        }
        let name = "finetune-test-\(UUID().uuidString)"
        let (cpu, memory) = (cpuRoot + "/" + name, memoryRoot + "/" + name)
        try fm.createDirectory(atPath: cpu, withIntermediateDirectories: false)
        defer { rmdir(cpu) }
        try fm.createDirectory(atPath: memory, withIntermediateDirectories: false)
        defer { rmdir(memory) }
        try "100000".write(toFile: cpu + "/cpu.cfs_period_us", atomically: false, encoding: .utf8)
        try "50000".write(toFile: cpu + "/cpu.cfs_quota_us", atomically: false, encoding: .utf8)  // half a CPU
        try String(1 << 30).write(toFile: memory + "/memory.limit_in_bytes", atomically: false, encoding: .utf8)
        let limited = try info(#"echo $$ > \#(cpu)/cgroup.procs && echo $$ > \#(memory)/cgroup.procs && exec "$0" info --json"#)
        XCTAssertEqual(limited["cores"] as? Int, 1)
        XCTAssertEqual(limited["memory_bytes"] as? Int, 1 << 30)
        let refused = try Self.run(shell: #"echo $$ > \#(cpu)/cgroup.procs && exec "$0" predict /nonexistent x.jpg --threads 9"#, [])
        XCTAssertTrue(refused.stderr.contains("the 1 core this process may use"), refused.stderr)
        #endif
    }

    /// Without OMP_WAIT_POLICY, finetune gives itself PASSIVE waiting and a short spin count before
    /// LibTorch's OpenMP reads them, in one process (it re-executed itself until 2026-12-07, loading
    /// LibTorch twice); a policy or spin count the user chose is left alone.
    func testOpenMPWaitsBrieflyThenSleepsUnlessTheUserChose() throws {
        func info(_ settings: [String: String]) throws -> [String: Any] {
            let process = Process()
            process.executableURL = Self.binary
            process.arguments = ["info", "--json"]
            var environment = ProcessInfo.processInfo.environment
            environment["OMP_WAIT_POLICY"] = nil
            environment["GOMP_SPINCOUNT"] = nil
            environment["MKL_CBWR"] = nil
            process.environment = environment.merging(settings) { $1 }
            let out = Pipe()
            process.standardOutput = out
            try process.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            XCTAssertEqual(process.terminationStatus, 0)
            return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
        }
        let chosen = try info([:])
        XCTAssertEqual(chosen["omp_wait_policy"] as? String, "PASSIVE")
        XCTAssertEqual(chosen["gomp_spincount"] as? String, "3000")
        #if os(Linux)
        // GNU OpenMP's own account of what it read (OMP_DISPLAY_ENV, printed once as it initialises):
        // one initialisation, and it saw the short spin count (its default is 300,000).
        let display = try Self.run(shell: #"exec env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT OMP_DISPLAY_ENV=VERBOSE "$0" info"#, [])
        XCTAssertEqual(display.status, 0, display.stderr)
        XCTAssertEqual(display.stderr.components(separatedBy: "OPENMP DISPLAY ENVIRONMENT BEGIN").count - 1, 1, display.stderr)
        XCTAssertTrue(display.stderr.contains("GOMP_SPINCOUNT = '3000'"), display.stderr)
        // A help text computes nothing and is answered without starting again: OpenMP keeps its default.
        let help = try Self.run(shell: #"exec env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT OMP_DISPLAY_ENV=VERBOSE "$0" train --help"#, [])
        XCTAssertEqual(help.status, 0, help.stderr)
        XCTAssertTrue(help.stdout.contains("USAGE: finetune train"), help.stdout)
        XCTAssertEqual(help.stderr.components(separatedBy: "OPENMP DISPLAY ENVIRONMENT BEGIN").count - 1, 1, help.stderr)
        XCTAssertTrue(help.stderr.contains("GOMP_SPINCOUNT = '300000'"), help.stderr)
        #endif
        let active = try info(["OMP_WAIT_POLICY": "ACTIVE"])
        XCTAssertEqual(active["omp_wait_policy"] as? String, "ACTIVE")
        XCTAssertEqual(active["gomp_spincount"] as? String, "default")
        let spin = try info(["GOMP_SPINCOUNT": "0"])
        XCTAssertEqual(spin["omp_wait_policy"] as? String, "PASSIVE")
        XCTAssertEqual(spin["gomp_spincount"] as? String, "0")
        // MKL's reproducible mode (PyTorch's x86 wheels; a resumed run's head differed without it), unless
        // the user chose another.
        XCTAssertEqual(chosen["mkl_cbwr"] as? String, "AUTO,STRICT")
        XCTAssertEqual(try info(["MKL_CBWR": "COMPATIBLE"])["mkl_cbwr"] as? String, "COMPATIBLE")
    }

    func testSummaryJSONCountsParameters() throws {
        let r = try run(["summary", "resnet18", "--json", "--depth", "1", "--classes", "7", "--freeze-backbone"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let s = try r.json(XCTUnwrap(r.lines.first))
        XCTAssertEqual(s["total_parameters"] as? Int, 11_689_512 - 1000 * 513 + 7 * 513)
        XCTAssertEqual(s["trainable_parameters"] as? Int, 7 * 513)
        XCTAssertEqual(s["output_shape"] as? [Int], [1, 7])
        XCTAssertEqual((s["layer_groups"] as? [String])?.last, "fc")
    }

    func testWeightsListJSONHasOneObjectPerCatalogEntry() throws {
        let r = try run(["weights", "list", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertGreaterThanOrEqual(r.lines.count, 22)
        let names = try r.lines.map { try r.json($0)["name"] as? String }
        XCTAssertTrue(names.contains("mobilenet_v2.imagenet"))
    }

    func testPredictJSONOnImageNetPhotos() throws {
        guard let folder = RealAssets.foolboxData, RealAssets.mobileNetV2 != nil else {
            throw XCTSkip("foolbox images or MobileNetV2 weights missing: run scripts/setup")
        }
        let files = ["imagenet_00_243.jpg", "imagenet_01_559.jpg"].map { folder + "/" + $0 }
        let r = try run(["predict", "--arch", "mobilenet_v2", "--weights", "imagenet", "--top-k", "5", "--json"] + files)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.lines.count, 2)
        for (line, (file, expected)) in zip(r.lines, zip(files, [243, 559])) {
            let object = try r.json(line)
            XCTAssertEqual(object["file"] as? String, file)
            let top = try XCTUnwrap(object["top_k"] as? [[String: Any]])
            XCTAssertEqual(top.count, 5)
            XCTAssertEqual(top[0]["index"] as? Int, expected)
            XCTAssertNotNil(top[0]["class"] as? String)
            let probabilities = top.compactMap { $0["probability"] as? Double }
            XCTAssertEqual(probabilities, probabilities.sorted(by: >))
        }
    }

    func testConvertFashionMNISTCountsAndFolders() throws {
        let source = "/usr/share/datasets/fashion-mnist"
        guard FileManager.default.fileExists(atPath: source) else { throw XCTSkip("dataset-fashion-mnist not installed") }
        let dryRun = try run(["convert", "fashion-mnist", source, "/tmp/unused", "--dry-run", "--json"])
        XCTAssertEqual(dryRun.status, 0, dryRun.stderr)
        let summary = try dryRun.json(XCTUnwrap(dryRun.lines.last))
        let counts = try XCTUnwrap(summary["counts"] as? [String: [Int]])
        XCTAssertEqual(counts["train"], [Int](repeating: 6000, count: 10))
        XCTAssertEqual(counts["test"], [Int](repeating: 1000, count: 10))
        XCTAssertEqual((summary["classes"] as? [String])?.first, "T-shirt/top")

        let destination = FileManager.default.temporaryDirectory.appendingPathComponent("fm-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: destination) }
        let small = try run(["convert", "fashion-mnist", source, destination, "--limit-per-class", "2"])
        XCTAssertEqual(small.status, 0, small.stderr)
        let folders = try FileManager.default.contentsOfDirectory(atPath: destination + "/train").sorted()
        XCTAssertEqual(folders, ["Ankle boot", "Bag", "Coat", "Dress", "Pullover", "Sandal", "Shirt", "Sneaker",
                                 "T-shirt_top", "Trouser"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: destination + "/test/Bag").count, 2)
        // A file convert did not write is a usage error (64) naming it, before any work (it was 1).
        try Foundation.Data().write(to: URL(fileURLWithPath: destination + "/.converted"))
        let foreign = try run(["convert", "fashion-mnist", source, destination, "--limit-per-class", "3"])
        XCTAssertEqual(foreign.status, 64, foreign.stderr)
        XCTAssertTrue(foreign.stderr.contains("DST: \(destination) holds .converted"), foreign.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: destination + "/test/Bag").count, 2)
    }

    /// Ctrl-C during `convert` removes what it has written and exits 130; an earlier conversion in
    /// DST is as it was (the new splits stayed as hidden folders of thousands of PNGs until the next run).
    func testCtrlCDuringConvertLeavesTheDestinationAsItWas() throws {
        let source = "/usr/share/datasets/fashion-mnist"
        guard FileManager.default.fileExists(atPath: source) else { throw XCTSkip("dataset-fashion-mnist not installed") }
        let folder = NSTemporaryDirectory() + "convert-interrupt-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let destination = folder + "/fm"
        XCTAssertEqual(try run(["convert", "fashion-mnist", source, destination, "--limit-per-class", "2"]).status, 0)
        func listing() throws -> [String] { try FileManager.default.subpathsOfDirectory(atPath: destination).sorted() }
        let before = try listing()
        let errors = folder + "/stderr.txt"
        // Interrupted once it has written a chunk of images (70,000 on one worker take a minute or more).
        let (process, wasRunning) = try Self.interrupt(["convert", "fashion-mnist", source, destination, "--workers", "1"],
                                                       once: "train: 512/", appearsIn: errors)
        XCTAssertTrue(wasRunning, "convert ended before it could be interrupted")
        let stderr = String(decoding: FileManager.default.contents(atPath: errors) ?? Foundation.Data(), as: UTF8.self)
        XCTAssertEqual(process.terminationStatus, 130, stderr)
        XCTAssertTrue(stderr.contains("interrupted: \(destination) is as it was before this run"), stderr)
        XCTAssertEqual(try listing(), before)
    }

    func testBadInputNamesTheFlagOrPath() throws {
        let badArch = try run(["predict", "--arch", "resnet9000", "x.jpg"])
        XCTAssertNotEqual(badArch.status, 0)
        let missing = try run(["predict", "--arch", "mobilenet_v2", "/nonexistent/photo.jpg"])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("/nonexistent/photo.jpg"), missing.stderr)
        // A mistyped option after a run directory is named; it used to be dropped unreported, and
        // the error said to give images after the run directory.
        let runFolder = NSTemporaryDirectory() + "run-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: runFolder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: runFolder) }
        try Foundation.Data("{}".utf8).write(to: URL(fileURLWithPath: runFolder + "/config.json"))
        let mistyped = try run(["predict", runFolder, "--topk"])
        XCTAssertEqual(mistyped.status, 64, mistyped.stderr)
        XCTAssertTrue(mistyped.stderr.contains("Unknown option '--topk'"), mistyped.stderr)
        // --arch and --weights with a run directory were ignored without a word: the run's model answered
        // `predict RUN --arch resnet18` (probe AG). They are refused, as export refuses them.
        for (arguments, flag) in [(["predict", runFolder, "--arch", "resnet18", "x.jpg"], "--arch resnet18"),
                                  (["predict", runFolder, "--weights", "none", "x.jpg"], "--weights none"),
                                  (["features", runFolder, runFolder, "--weights", "none", "--out", runFolder + "/f.csv"], "--weights none")] {
            let r = try run(arguments)
            XCTAssertEqual(r.status, 64, r.stderr)
            XCTAssertTrue(r.stderr.contains("\(flag): \(runFolder) is a run directory, which brings its own model"), r.stderr)
        }
        let pooling = try run(["summary", "resnet18", "--no-top", "--pooling", "median"])
        XCTAssertNotEqual(pooling.status, 0)
        XCTAssertTrue(pooling.stderr.contains("--pooling"), pooling.stderr)
        // An empty --out (export said ": cannot rename … over the destination") and a missing SRC
        // (convert said "no train-images-idx3-ubyte[.gz] in SRC") are usage errors naming them.
        let emptyOut = try run(["export", "--arch", "mobilenet_v2", "--out", ""])
        XCTAssertEqual(emptyOut.status, 64, emptyOut.stderr)
        XCTAssertTrue(emptyOut.stderr.contains("--out must name the file"), emptyOut.stderr)
        let noSource = try run(["convert", "mnist", "/nonexistent-\(UUID().uuidString)", "/tmp/unused"])
        XCTAssertEqual(noSource.status, 64, noSource.stderr)
        XCTAssertTrue(noSource.stderr.contains("does not exist"), noSource.stderr)
        let format = try run(["convert", "svhn", "/tmp", "/tmp/out"])
        XCTAssertNotEqual(format.status, 0)
        XCTAssertTrue(format.stderr.contains("svhn") && format.stderr.contains("fashion-mnist"), format.stderr)
        for (flags, flag) in [(["--classes", "0"], "--classes"), (["--classes", "9223372036854775807"], "--classes"),
                              (["--input-size", "100000"], "--input-size")] {
            let summary = try run(["summary", "mobilenet_v2"] + flags)
            XCTAssertEqual(summary.status, 64, summary.stderr)
            XCTAssertTrue(summary.stderr.contains(flag), summary.stderr)
        }
        let unknown = try run(["summary", "resnet9000"])
        XCTAssertNotEqual(unknown.status, 0)
        XCTAssertTrue(unknown.stderr.contains("resnet9000") && unknown.stderr.contains("mobilenet_v2"), unknown.stderr)
    }

    /// An output file flag naming a folder or a FIFO is an error naming the flag; reading the folder
    /// crashed (a trap in Foundation), and the FIFO blocked until a writer came.
    func testAnOutputFileThatIsAFolderOrAFIFOIsRefused() throws {
        let folder = NSTemporaryDirectory() + "plot-target-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder + "/plot.svg", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        XCTAssertEqual(mkfifo(folder + "/fifo.svg", 0o600), 0)
        let directory = try run(["summary", "mobilenet_v2", "--plot", folder + "/plot.svg"])
        XCTAssertEqual(directory.status, 64, directory.stderr)
        XCTAssertTrue(directory.stderr.contains("--plot \(folder)/plot.svg is a folder"), directory.stderr)
        let fifo = try run(["summary", "mobilenet_v2", "--plot", folder + "/fifo.svg"])
        XCTAssertEqual(fifo.status, 64, fifo.stderr)
        XCTAssertTrue(fifo.stderr.contains("is not a regular file"), fifo.stderr)

        // A file that only mentions the marker's words is a user's, kept; a plot it wrote is replaced.
        let notes = folder + "/meeting.md"
        try "# Notes\nTODO: regenerate the finetune architecture plot for resnet50\n".write(toFile: notes, atomically: true, encoding: .utf8)
        let onNotes = try run(["summary", "mobilenet_v2", "--plot", notes])
        XCTAssertEqual(onNotes.status, 64, onNotes.stderr)
        XCTAssertTrue(onNotes.stderr.contains("is not a finetune architecture plot"), onNotes.stderr)
        XCTAssertTrue(try String(contentsOfFile: notes, encoding: .utf8).hasPrefix("# Notes"))
        for _ in 0..<2 { XCTAssertEqual(try run(["summary", "mobilenet_v2", "--plot", folder + "/new.svg"]).status, 0) }
        // A link to nothing is refused and kept (the write replaced the user's link).
        try FileManager.default.createSymbolicLink(atPath: folder + "/link.svg", withDestinationPath: folder + "/gone/x.svg")
        let onLink = try run(["summary", "mobilenet_v2", "--plot", folder + "/link.svg"])
        XCTAssertEqual(onLink.status, 64, onLink.stderr)
        XCTAssertTrue(onLink.stderr.contains("is a symbolic link to \(folder)/gone/x.svg, which does not exist"), onLink.stderr)
        XCTAssertNotNil(try? FileManager.default.destinationOfSymbolicLink(atPath: folder + "/link.svg"))
        // Also the second file an output writes (features' labels beside its .npy).
        try FileManager.default.createSymbolicLink(atPath: folder + "/f_labels.npy", withDestinationPath: folder + "/gone/l.npy")
        let labels = try run(["features", "mobilenet_v2", folder, "--weights", "none", "--out", folder + "/f.npy"])
        XCTAssertEqual(labels.status, 64, labels.stderr)
        XCTAssertTrue(labels.stderr.contains("--out \(folder)/f_labels.npy is a symbolic link"), labels.stderr)
        // A FIFO as `export`'s or `features`' output is refused at once: reading it to tell whether finetune
        // wrote it waited for a writer for good (probe AK).
        XCTAssertEqual(mkfifo(folder + "/fifo.onnx", 0o600), 0)
        XCTAssertEqual(mkfifo(folder + "/fifo.csv", 0o600), 0)
        for arguments in [["export", "--arch", "mobilenet_v2", "--weights", "none", "--out", folder + "/fifo.onnx"],
                          ["features", "mobilenet_v2", folder, "--weights", "none", "--out", folder + "/fifo.csv"]] {
            let process = try Self.start(arguments, errorOutput: folder + "/stderr.txt")
            let deadline = Date().addingTimeInterval(60)
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning { process.terminate(); process.waitUntilExit(); XCTFail("\(arguments[0]) --out FIFO hangs"); continue }
            let stderr = (try? String(contentsOfFile: folder + "/stderr.txt", encoding: .utf8)) ?? ""
            XCTAssertEqual(process.terminationStatus, 64, stderr)
            XCTAssertTrue(stderr.contains("is not a regular file"), stderr)
        }

        // `weights verify` of a cache folder that is a file fails; of one with nothing, it says so.
        let verifyFile = try Self.run(["weights", "verify"], environment: ["FINETUNE_CACHE_DIR": notes])
        XCTAssertEqual(verifyFile.status, 1, verifyFile.stderr)
        XCTAssertTrue(verifyFile.stderr.contains("\(notes): it is a file"), verifyFile.stderr)
        let verifyNone = try Self.run(["weights", "verify"], environment: ["FINETUNE_CACHE_DIR": folder + "/typo"])
        XCTAssertTrue(verifyNone.stderr.contains("no weights are cached under \(folder)/typo/weights"), verifyNone.stderr)
    }

    /// `predict` that classifies nothing fails: a folder without images is an error naming it (exit 64),
    /// and images of which none can be read end with status 1. Both exited 0, the first silently.
    func testPredictThatClassifiesNothingFails() throws {
        let folder = NSTemporaryDirectory() + "predict-nothing-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder + "/empty", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try Foundation.Data("not an image".utf8).write(to: URL(fileURLWithPath: folder + "/notes.txt"))
        try Foundation.Data().write(to: URL(fileURLWithPath: folder + "/empty.png"))
        try Foundation.Data("not a jpeg".utf8).write(to: URL(fileURLWithPath: folder + "/broken.jpg"))

        let none = try run(["predict", "--arch", "mobilenet_v2", "--weights", "none", folder + "/empty"])
        XCTAssertEqual(none.status, 64, none.stderr)
        XCTAssertTrue(none.stderr.contains(folder + "/empty holds no .jpg, .jpeg or .png image"), none.stderr)
        let unreadable = try run(["predict", "--arch", "mobilenet_v2", "--weights", "none",
                                  folder + "/empty.png", folder + "/broken.jpg"])
        XCTAssertEqual(unreadable.status, 1, unreadable.stderr)
        XCTAssertTrue(unreadable.stderr.contains("skipping \(folder)/empty.png"), unreadable.stderr)
        XCTAssertFalse(unreadable.stderr.contains("skipping \(folder)/broken.jpg: \(folder)/broken.jpg"),
                       "the path once: \(unreadable.stderr)")
        XCTAssertTrue(unreadable.stderr.contains("none of the 2 images could be read"), unreadable.stderr)
        XCTAssertFalse(unreadable.stderr.contains("Usage"), unreadable.stderr)
        let unreadableFolder = try run(["predict", "--arch", "mobilenet_v2", "--weights", "none", folder])
        XCTAssertEqual(unreadableFolder.status, 1, "every image of the folder is unreadable: \(unreadableFolder.stderr)")

        // A folder is walked as a dataset is: AppleDouble files and system folders are not images (they
        // were read and counted as unreadable), and an entry skipped by the walk (a broken link) counts.
        // A link to a folder above is left out with a warning, and is no image (it counted as one that
        // could not be read until 2026-12-07: "2 of 3 images").
        let mixed = folder + "/mixed"
        try FileManager.default.createDirectory(atPath: mixed + "/@eaDir", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Fixtures.path("images/rgb.png"), toPath: mixed + "/good.png")
        try Foundation.Data("apple double".utf8).write(to: URL(fileURLWithPath: mixed + "/._good.png"))
        try Foundation.Data("thumbnail".utf8).write(to: URL(fileURLWithPath: mixed + "/@eaDir/good.png"))
        try FileManager.default.createSymbolicLink(atPath: mixed + "/gone.png", withDestinationPath: mixed + "/nowhere.png")
        try FileManager.default.createSymbolicLink(atPath: mixed + "/up", withDestinationPath: "..")
        let walked = try run(["predict", "--arch", "mobilenet_v2", "--weights", "none", mixed, "--top-k", "1"])
        XCTAssertEqual(walked.status, 0, walked.stderr)
        XCTAssertEqual(walked.stdout.components(separatedBy: "\n").filter { $0.hasSuffix(".png") }, [mixed + "/good.png"])
        XCTAssertTrue(walked.stderr.contains("skipping \(mixed)/gone.png: broken symbolic link"), walked.stderr)
        XCTAssertTrue(walked.stderr.contains("skipping \(mixed)/up: a link to "), walked.stderr)
        XCTAssertTrue(walked.stderr.contains("1 of 2 images could not be read"), walked.stderr)
    }
}

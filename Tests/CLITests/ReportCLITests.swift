import Foundation
import XCTest

/// `finetune report`, `check-data`, `summary --plot` and the terminal progress line, on the tiny
/// colour dataset of `TrainCLITests` with a randomly initialised MobileNetV2 at 64 px, trained two-phase.
extension TrainCLITests {
    static var reportTrainFlags: [String] { common + ["--recipe", "two-phase", "--phase1-epochs", "1", "--epochs", "2"] }

    func testReportHasEverySectionNoExternalURLAndTheTopLossesOfEvaluate() throws {
        let data = try temporaryFolder("tiny-data")
        try Self.writeDataset(at: data)
        let folder = try temporaryFolder("runs")
        let out = folder + "/run"
        let train = try run(["train", data, "--out", out] + Self.reportTrainFlags)
        XCTAssertEqual(train.status, 0, train.stderr)
        XCTAssertTrue(train.lines.contains { $0.hasPrefix("Data check: 18 train / 6 val / 9 test images, 3 classes") }, train.stdout)
        // Not a terminal: the periodic progress lines, with images per second, and the best epoch once.
        XCTAssertFalse(train.stdout.contains("\r"))
        XCTAssertTrue(train.lines.contains { $0.hasPrefix("  batch ") && $0.contains(" img/s") }, train.stdout)
        XCTAssertEqual(train.lines.filter { $0.lowercased().hasPrefix("best val_loss") }.count, 1, train.stdout)

        let html = folder + "/report.html"
        let report = try run(["report", out, data, "--out", html, "--top-losses", "6", "--grad-cam", "2",
                              "--batch-size", "4", "--workers", "0", "--threads", "2"])
        XCTAssertEqual(report.status, 0, report.stderr)
        let page = try String(contentsOfFile: html, encoding: .utf8)
        // auto's choice is said and shown (it was silent: the metrics differed from fp32's without a word).
        let native = ((try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? "").contains("avx512_bf16")
        XCTAssertEqual(report.stderr.contains("precision: bf16 (auto"), native, report.stderr)
        XCTAssertTrue(report.stdout.contains(native ? ", bf16)" : ", fp32)"), report.stdout)
        XCTAssertTrue(page.contains(native ? "(bf16)</td>" : "(fp32)</td>"), "the evaluated row names the precision")
        for id in ["run", "curves", "confusion", "per-class", "most-confused", "top-losses", "grad-cam", "data-check"] {
            XCTAssertTrue(page.contains("<section id=\"\(id)\">"), "section \(id) missing")
        }
        // Self-contained: nothing that a browser would fetch.
        for needle in ["http:", "https:", "<script", "<link", "@import", "src=\"//", "ftp:"] {
            XCTAssertFalse(page.lowercased().contains(needle), "found \(needle)")
        }
        let sources = matches(#"src="([^"]*)""#, in: page)
        XCTAssertEqual(sources.count, 6 + 2 + 2, "thumbnails and Grad-CAM pictures")
        XCTAssertTrue(sources.allSatisfy { $0.hasPrefix("data:image/png;base64,") })
        XCTAssertTrue(page.contains("class=\"marker\""), "the phase boundary is marked on the curves")
        XCTAssertTrue(page.contains("<code>features.18</code>"), "Grad-CAM names its layer")
        for header in ["precision", "recall", "F1", "support", "AUC"] { XCTAssertTrue(page.contains("<th>\(header)</th>")) }

        // The top losses are those `evaluate --per-sample --json` gives: -log p(label), largest first.
        let evaluate = try run(["evaluate", out, data, "--json", "--per-sample", "--workers", "0", "--threads", "2"])
        XCTAssertEqual(evaluate.status, 0, evaluate.stderr)
        let object = try evaluate.json(XCTUnwrap(evaluate.lines.last))
        let samples = try XCTUnwrap(object["samples"] as? [[String: Any]])
        XCTAssertEqual(samples.count, 9)
        let recomputed = try samples.map { s -> (path: String, index: Int, loss: Double) in
            let probabilities = try XCTUnwrap(s["probabilities"] as? [Double])
            let label = try XCTUnwrap(s["label"] as? Int)
            return (try XCTUnwrap(s["path"] as? String), try XCTUnwrap(s["index"] as? Int), -log(probabilities[label]))
        }.sorted { $0.loss != $1.loss ? $0.loss > $1.loss : $0.index < $1.index }
        let shown = matches(#"<figure class="top-loss(?: wrong)?" data-index="\d+" data-path="([^"]*)""#, in: page)
        XCTAssertEqual(shown, recomputed.prefix(6).map(\.path))

        // Replacing: a report may be rewritten, any other file is refused.
        XCTAssertEqual(try run(["report", out, data, "--out", html, "--no-data-check", "--workers", "0"]).status, 0)
        let other = folder + "/notes.html"
        try "my notes".write(toFile: other, atomically: true, encoding: .utf8)
        let refused = try run(["report", out, data, "--out", other])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("--out"), refused.stderr)
        XCTAssertEqual(try String(contentsOfFile: other, encoding: .utf8), "my notes")
    }

    /// On a terminal (a pseudo-terminal made by `script`), training redraws one Keras-style line per epoch
    /// with images per second and prints the best epoch once.
    func testProgressLineInAPseudoTerminal() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/script") else {
            throw XCTSkip("util-linux `script` is not installed")
        }
        let data = try temporaryFolder("tiny-data")
        try Self.writeDataset(at: data)
        let out = try temporaryFolder("runs") + "/run"
        let command = ([CLITests.binary.path, "train", data, "--out", out] + Self.reportTrainFlags)
            .map { "'\($0)'" }.joined(separator: " ")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/script")
        process.arguments = ["-q", "-e", "-c", command, "/dev/null"]
        var environment = ProcessInfo.processInfo.environment
        environment["CI"] = nil
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, text)
        // Redrawn in place: carriage returns, a bar, images per second and an ETA on the same line.
        let redraws = text.components(separatedBy: "\r").filter { $0.hasPrefix("Epoch 1/2 [") }
        XCTAssertFalse(redraws.isEmpty, text)
        XCTAssertTrue(redraws.contains { $0.range(of: #"\] \d+/\d+ - loss: [0-9.]+ - accuracy: [0-9.]+ - lr: \S+ - [0-9.]+ img/s - ETA: "#,
                                                  options: .regularExpression) != nil }, "\(redraws)")
        // The best epoch once, not twice.
        XCTAssertEqual(text.components(separatedBy: "Best val_loss: ").count - 1, 1, text)
        XCTAssertFalse(text.contains("best val_loss"), text)
    }

    func testCheckDataAndSummaryPlot() throws {
        let data = try temporaryFolder("tiny-data")
        try Self.writeDataset(at: data)
        let check = try run(["check-data", data, "--json"])
        XCTAssertEqual(check.status, 0, check.stderr)
        let object = try check.json(XCTUnwrap(check.lines.last))
        XCTAssertEqual(object["class_names"] as? [String], Self.classes)
        XCTAssertEqual((object["unreadable"] as? [Any])?.count, 0)
        // auto: MobileNetV2's ImageNet embeddings (scripts/setup caches the weights); phash on request.
        XCTAssertTrue((object["near_duplicate_method"] as? String ?? "").hasPrefix("mobilenet_v2 (imagenet weights, 224 px) embeddings"),
                      "\(object["near_duplicate_method"] ?? "none")")
        let hashed = try run(["check-data", data, "--json", "--near-method", "phash"])
        XCTAssertTrue((try hashed.json(XCTUnwrap(hashed.lines.last))["near_duplicate_method"] as? String ?? "")
                      .hasPrefix("perceptual hash"), hashed.stdout)
        let text = try run(["check-data", data, "--near-method", "phash"])
        XCTAssertTrue(text.stdout.contains("data check: 33 images, 3 classes"), text.stdout)
        XCTAssertNotEqual(try run(["check-data", data + "/missing"]).status, 0)
        for (flags, named) in [(["--near-cosine", "2"], "--near-cosine"), (["--embedding-arch", "nope"], "--embedding-arch"),
                               (["--near-method", "magic"], "--near-method")] {
            let bad = try run(["check-data", data] + flags)
            XCTAssertNotEqual(bad.status, 0)
            XCTAssertTrue(bad.stderr.contains(named), bad.stderr)
        }

        let svg = try temporaryFolder("plot") + "/resnet18.svg"
        let summary = try run(["summary", "resnet18", "--classes", "4", "--input-size", "64", "--plot", svg])
        XCTAssertEqual(summary.status, 0, summary.stderr)
        let drawing = try String(contentsOfFile: svg, encoding: .utf8)
        XCTAssertTrue(drawing.contains("layer4 (Sequential)"), drawing)
        XCTAssertTrue(drawing.contains("(1, 4)"), "output shape")
    }

    func matches(_ pattern: String, in text: String) -> [String] {
        let regex = try! NSRegularExpression(pattern: pattern)
        return regex.matches(in: text, range: NSRange(text.startIndex..., in: text)).map {
            String(text[Range($0.range(at: 1), in: text)!])
        }
    }
}

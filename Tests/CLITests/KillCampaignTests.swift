import Foundation
import TensorIO
import XCTest

/// Issue 18's kill campaign: `finetune train` is SIGKILLed at random steps (10 kills over a
/// head-only run, a two-phase run across its phase switch, and a run on cached features), resumed
/// after each kill, and must end with weights bit-identical to an uninterrupted run and history
/// files without a duplicate row.
final class KillCampaignTests: XCTestCase {
    func temporaryFolder(_ name: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    /// A seeded generator, so a failing campaign can be replayed (the seed is in the failure message).
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// The global step of the run's last checkpoint (0 before the first).
    func checkpointStep(_ out: String) -> Int {
        guard let data = FileManager.default.contents(atPath: out + "/checkpoints/last/trainer.json"),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let state = object["state"] as? [String: Any] else { return 0 }
        return state["globalStep"] as? Int ?? 0
    }

    /// Runs `train` (then `--resume`) until it completes, SIGKILLing it once the run's checkpoint has
    /// passed each of `kills` random steps below `totalSteps` (plus a random 0–100 ms), and resuming
    /// after each kill. Returns the kills that landed on a running process.
    func runWithKills(_ arguments: [String], out: String, kills: Int, totalSteps: Int,
                      random: inout SplitMix) throws -> Int {
        var targets = Set<Int>()
        while targets.count < kills { targets.insert(Int.random(in: 1...(totalSteps - 2), using: &random)) }
        var landed = 0
        var process = try CLITests.start(arguments)
        for target in targets.sorted() {
            let deadline = Date().addingTimeInterval(180)
            while process.isRunning && checkpointStep(out) < target && Date() < deadline {
                Thread.sleep(forTimeInterval: 0.002)
            }
            Thread.sleep(forTimeInterval: Double.random(in: 0...0.1, using: &random))
            guard process.isRunning else { break }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            landed += 1
            process = try CLITests.start(["train", "--resume", out, "--workers", "0"])
        }
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "\(process.arguments ?? [])")
        return landed
    }

    func assertNoDuplicateRows(_ out: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let history = try String(contentsOfFile: out + "/history.csv", encoding: .utf8)
            .split(separator: "\n").dropFirst().map { $0.split(separator: ",").first.map(String.init) ?? "" }
        XCTAssertEqual(history, (0..<history.count).map(String.init), "history.csv epochs", file: file, line: line)
        var seen = Set<String>()
        for entry in try String(contentsOfFile: out + "/events.jsonl", encoding: .utf8).split(separator: "\n") {
            guard let object = try JSONSerialization.jsonObject(with: Foundation.Data(entry.utf8)) as? [String: Any],
                  let name = object["event"] as? String, ["train", "epoch", "validation", "phase_change"].contains(name)
            else { continue }
            let key = "\(name)/\(object["epoch"] ?? "")/\(object["step"] ?? "")"
            XCTAssertTrue(seen.insert(key).inserted, "events.jsonl repeats \(key)", file: file, line: line)
        }
    }

    func testTenRandomKillsAllResumeToTheUninterruptedWeights() throws {
        let data = try temporaryFolder("kill-data")
        try TrainCLITests.writeDataset(at: data)
        let runs = try temporaryFolder("kill-runs")
        let seed = UInt64(Date().timeIntervalSince1970)
        var random = SplitMix(state: seed)
        let common = ["--arch", "mobilenet_v2", "--weights", "none", "--input-size", "32", "--batch-size", "4",
                      "--val-split", "0.25", "--workers", "0", "--threads", "2", "--lr", "0.01", "--save-every-steps", "1",
                      "--feature-cache-dir", runs + "/features"]
        // 18 training images in batches of 4: 5 steps per epoch.
        let scenarios: [(name: String, flags: [String], kills: Int, steps: Int)] = [
            ("head-only", ["--recipe", "head-only", "--augment", "standard", "--epochs", "4"], 3, 20),
            ("two-phase", ["--recipe", "two-phase", "--phase1-epochs", "2", "--epochs", "4", "--augment", "standard"], 4, 20),
            ("feature-cache", ["--recipe", "head-only", "--augment", "none", "--feature-cache", "on", "--epochs", "5"], 3, 25),
        ]
        var total = 0
        for scenario in scenarios {
            let reference = runs + "/\(scenario.name)-reference", killed = runs + "/\(scenario.name)-killed"
            let straight = try CLITests.run(["train", data, "--out", reference] + common + scenario.flags)
            XCTAssertEqual(straight.status, 0, straight.stderr)
            let landed = try runWithKills(["train", data, "--out", killed] + common + scenario.flags, out: killed,
                                          kills: scenario.kills, totalSteps: scenario.steps, random: &random)
            total += landed
            let a = try SafeTensors.load(reference + "/model.safetensors")
            let b = try SafeTensors.load(killed + "/model.safetensors")
            XCTAssertEqual(a.keys, b.keys)
            for (key, tensor) in a {
                XCTAssertTrue(try tensor.allClose(XCTUnwrap(b[key]), rtol: 0, atol: 0),
                              "\(scenario.name): \(key) differs after \(landed) kills (seed \(seed))")
            }
            try assertNoDuplicateRows(killed)
        }
        XCTAssertEqual(total, 10, "every kill lands on a running process (seed \(seed))")
    }
}

import ArgumentParser
@testable import finetune
import Foundation
import XCTest

/// The command line's shape, checked in-process: which flags a command takes, and that the thin CLI
/// stays thin (issue 12: no file in Sources/finetune over 300 lines).
final class CommandLayoutTests: XCTestCase {
    /// `lr-find` takes the flags that describe a run (`RunOptions`) and its own `--out`, but not the
    /// flags that place or start one: its help listed `--overwrite` ("Replace --out if it holds an
    /// earlier finetune run") and `--resume`, with `--out` described as a run directory, because it
    /// embedded the whole `train` command.
    func testLRFindTakesTheRunsFlagsButNotThoseThatPlaceOrStartARun() throws {
        let help = Finetune.helpMessage(for: LRFindCommand.self, columns: 200)
        for flag in ["--arch", "--recipe", "--lr-schedule", "--mixup", "--out", "--steps", "--json"] {
            XCTAssertTrue(help.contains("  \(flag) "), "lr-find --help lists \(flag):\n\(help)")
        }
        for flag in ["--overwrite", "--resume", "--nproc-per-node", "--unlabeled"] {
            XCTAssertFalse(help.contains("  \(flag) "), "lr-find --help lists \(flag):\n\(help)")
        }
        XCTAssertFalse(help.contains("Run directory to create"), help)
        let base = ["lr-find", NSTemporaryDirectory(), "--arch", "mobilenet_v2", "--out", "lr"]  // a DATA that exists
        XCTAssertNoThrow(try Finetune.parseCommandLine(base + ["--recipe", "head-only", "--lr-schedule", "cosine"]))
        for extra in [["--overwrite"], ["--resume", "runs/a"], ["--nproc-per-node", "2"]] {
            XCTAssertThrowsError(try Finetune.parseCommandLine(base + extra), "\(extra)") { error in
                XCTAssertTrue(Finetune.fullMessage(for: error).contains("Unknown option '\(extra[0])'"),
                              Finetune.fullMessage(for: error))
            }
        }
        XCTAssertThrowsError(try Finetune.parseCommandLine(Array(base.dropLast(2)))) { error in
            XCTAssertTrue(Finetune.fullMessage(for: error).contains("--out DIR is required"), Finetune.fullMessage(for: error))
        }
        // train keeps all of them.
        let trainHelp = Finetune.helpMessage(for: TrainCommand.self, columns: 200)
        for flag in ["--arch", "--recipe", "--out", "--overwrite", "--resume", "--nproc-per-node", "--unlabeled", "--json"] {
            XCTAssertTrue(trainHelp.contains("  \(flag) "), "train --help lists \(flag)")
        }
    }

    /// The CLI parses flags and prints; the logic lives in the library targets. A command file that
    /// grows past 300 lines is logic creeping back (TrainCommand.swift had reached 317).
    func testNoFileOfTheCommandLineIsOver300Lines() throws {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources/finetune")
        let files = try XCTUnwrap(FileManager.default.enumerator(atPath: sources.path)).compactMap { $0 as? String }
            .filter { $0.hasSuffix(".swift") }
        XCTAssertGreaterThan(files.count, 10, "the command line's sources are at \(sources.path)")
        for file in files {
            let text = try String(contentsOf: sources.appendingPathComponent(file), encoding: .utf8)
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false).count - (text.hasSuffix("\n") ? 1 : 0)
            XCTAssertLessThanOrEqual(lines, 300, "Sources/finetune/\(file) has \(lines) lines")
        }
    }
}

import ArgumentParser
@testable import finetune
import XCTest

/// The help texts as swift-argument-parser renders them at 80 columns (its width when standard output is
/// not a terminal), in process: no `finetune` is started.
final class HelpTextTests: XCTestCase {
    /// Every command from the root down (`finetune`, `train`, `cache prune`, `bench loader`, …).
    static func commands(under root: ParsableCommand.Type = Finetune.self) -> [ParsableCommand.Type] {
        [root] + root.configuration.subcommands.flatMap { commands(under: $0) }
    }

    /// The pairs of consecutive lines of `text` (the overview and discussion: what comes before `USAGE:`
    /// in a help message rendered at `columns`) that show a newline the parser did not put there.
    ///
    /// The parser keeps the newlines of a discussion and also wraps each line at `columns`, so a paragraph
    /// hard-wrapped in the source prints as lines of uneven length. A line B that carries on line A's
    /// sentence (B starts with a non-space character; A is not a heading ending in `:`; B is not a list
    /// item, `- `, `• `, `* `, `1.`) is ragged when B's first word would have fitted on A: the parser fills
    /// each line as far as it can, so it never breaks there itself. Its lines end before the 80th column
    /// (it cuts an 80-character chunk at its last space), so a word that would end exactly at column 80
    /// was moved down by the parser: the test is `A + space + word < columns`.
    ///
    /// An indented line (an example command line, a list item) followed directly by an unindented line
    /// that is not a heading is an indented line the parser wrapped: its tail starts a line of its own,
    /// at column 0 (`  finetune train … --out` / `runs/flowers`).
    static func raggedPairs(in text: String, columns: Int) -> [(String, String)] {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var pairs: [(String, String)] = []
        for (a, b) in zip(lines, lines.dropFirst()) {
            guard !a.trimmingCharacters(in: .whitespaces).isEmpty, !b.trimmingCharacters(in: .whitespaces).isEmpty,
                  let bFirst = b.first, bFirst != " " else { continue }
            let isHeading = b.hasSuffix(":")
            if a.hasPrefix(" ") {
                if !isHeading { pairs.append((a, b)) }
                continue
            }
            if a.hasSuffix(":") || isListItem(b) { continue }
            let firstWord = b.prefix { $0 != " " }
            if a.count + 1 + firstWord.count < columns { pairs.append((a, b)) }
        }
        return pairs
    }

    /// `- item`, `• item`, `* item`, `1. item`, `2) item`.
    static func isListItem(_ line: String) -> Bool {
        if line.hasPrefix("- ") || line.hasPrefix("• ") || line.hasPrefix("* ") { return true }
        let digits = line.prefix { $0.isNumber }
        guard !digits.isEmpty else { return false }
        let rest = line.dropFirst(digits.count)
        return rest.hasPrefix(".") || rest.hasPrefix(")")
    }

    func testDiscussionsAreWrappedOnlyByTheParser() {
        let columns = 80
        let commands = Self.commands()
        XCTAssertGreaterThan(commands.count, 15)
        for command in commands {
            let help = Finetune.helpMessage(for: command, columns: columns)
            let name = (["finetune"] + Finetune.commandPath(to: command, from: Finetune.self)).joined(separator: " ")
            guard let usage = help.range(of: "\nUSAGE:") ?? help.range(of: "USAGE:") else {
                XCTFail("\(name): no USAGE: line in its help:\n\(help)")
                continue
            }
            let overview = String(help[..<usage.lowerBound])
            for (a, b) in Self.raggedPairs(in: overview, columns: columns) {
                XCTFail("\(name) --help: ragged lines (a newline from the source, or a wrapped example):\n\(a)\n\(b)")
            }
        }
    }

    /// The options whose help, without the parser's `(values: …; default: …)`, only repeats the option's
    /// name (`--recipe`: "Recipe.", `--optimizer`: "Optimizer.", until stop 52): it told a user nothing
    /// of what the values do. `help` is a command's help message.
    static func optionsNamedOnly(in help: String) -> [String] {
        var named: [String] = []
        var option: String?
        var text = ""
        func finish() {
            defer { option = nil; text = "" }
            guard let option else { return }
            // The parser's `(default: …)` ends the text; its `(values: …; default: …)` may come after one of ours.
            let said = text.trimmingCharacters(in: .whitespaces)
                .replacingOccurrences(of: #"\(default:[^()]*\)$"#, with: "", options: .regularExpression)
                .replacingOccurrences(of: #"\(values:[^)]*\)"#, with: "", options: .regularExpression)
                .trimmingCharacters(in: CharacterSet(charactersIn: " ."))
            let name = option.drop { $0 == "-" }.prefix { $0 != " " && $0 != "/" }.replacingOccurrences(of: "-", with: " ")
            if said.lowercased() == name.lowercased() { named.append(option) }
        }
        for line in help.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            if line.hasPrefix("  --") {
                finish()
                // The help starts at column 26, or on the next line after a longer option.
                option = String(line.dropFirst(2).prefix(24)).trimmingCharacters(in: .whitespaces)
                if line.count > 26 && line[line.index(line.startIndex, offsetBy: 25)] != " " {
                    option = line.dropFirst(2).trimmingCharacters(in: .whitespaces)  // no help on this line
                }
                text = line.count > 26 && option!.count <= 23 ? String(line.dropFirst(26)) : ""
            } else if option != nil, line.hasPrefix(String(repeating: " ", count: 20)) {
                text += " " + line.trimmingCharacters(in: .whitespaces)
            } else {
                finish()
            }
        }
        finish()
        return named
    }

    func testEveryOptionsHelpSaysMoreThanItsName() {
        XCTAssertEqual(Self.optionsNamedOnly(in: "  --recipe <recipe>       Recipe. (values: full, head-only, two-phase,\n"
                                             + "                          discriminative; default: full)\n"),
                       ["--recipe <recipe>"], "the check itself")
        for command in Self.commands() {
            let name = (["finetune"] + Finetune.commandPath(to: command, from: Finetune.self)).joined(separator: " ")
            let named = Self.optionsNamedOnly(in: Finetune.helpMessage(for: command, columns: 80))
            XCTAssertEqual(named, [], "\(name) --help: options whose help only repeats their name")
        }
    }
}

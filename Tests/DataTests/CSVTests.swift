import Data
import Foundation
import XCTest

/// The RFC 4180 reader and writer (`CSV`) that CSVDataset and Training's CSVLogger share.
final class CSVTests: XCTestCase {
    /// Fields that need quoting, empty fields and non-ASCII text.
    static let awkward: [[String]] = [
        ["plain", "a \"quoted\" word", "\"", "\"\"", "comma,inside", ","],
        ["line\nbreak", "\n", "windows\r\nbreak", "\r\n", "lone\rCR", "\r"],
        ["", "", ""],
        [""],
        ["é", "日本語", "🙂 emoji", "e\u{301} combining", "\"\u{301}", "ü,\n\"ö\"\r\n"],
        ["  spaces kept  ", "\ttab", "trailing,", ",leading"],
        ["single"],
    ]

    func testRoundTripThroughWriterAndReader() throws {
        for ending in [CSV.LineEnding.lf, .crlf] {
            let text = CSV.text(Self.awkward, lineEnding: ending)
            let records = try CSV.parse(text)
            XCTAssertEqual(records.map(\.fields), Self.awkward, "\(ending)")
            // Every record is complete; line numbers count the LFs inside quoted fields.
            let complete = try CSV.completeRecords(text)
            XCTAssertFalse(complete.partial)
            XCTAssertEqual(complete.records, records)
            XCTAssertEqual(records.map(\.line), [1, 2, 7, 8, 9, 12, 13], "\(ending)")
            // Byte for byte: the Unicode scalars survive (no normalisation of e + U+0301).
            XCTAssertEqual(records.flatMap(\.fields).map { Array($0.utf8) }, Self.awkward.flatMap { $0 }.map { Array($0.utf8) })
        }
    }

    func testWriterQuotesOnlyWhatNeedsIt() {
        XCTAssertEqual(CSV.record(["a", "b c", "", "x,y", "say \"hi\"", "two\nlines", "é"]),
                       "a,b c,,\"x,y\",\"say \"\"hi\"\"\",\"two\nlines\",é")
        XCTAssertEqual(CSV.record([""]), "\"\"")   // not a blank line
        XCTAssertEqual(CSV.record(["", ""]), ",")
        XCTAssertEqual(CSV.text([["a", "b"], ["1", "2"]], lineEnding: .crlf), "a,b\r\n1,2\r\n")
    }

    func testReaderLineEndsQuotesAndErrors() throws {
        // LF, CRLF and a lone CR end records; the last record needs no line break.
        XCTAssertEqual(try CSV.parse("a,b\nc,d\r\ne,f\rg,h").map(\.fields), [["a", "b"], ["c", "d"], ["e", "f"], ["g", "h"]])
        // A blank line is a record of one empty field; a final line break adds no record.
        XCTAssertEqual(try CSV.parse("a\n\nb\n").map(\.fields), [["a"], [""], ["b"]])
        XCTAssertEqual(try CSV.parse("").map(\.fields), [])
        // A quote opens a field only at its start; elsewhere it is text.
        XCTAssertEqual(try CSV.parse("5\"2,x\"y").map(\.fields), [["5\"2", "x\"y"]])
        // Line numbers count the line breaks inside quoted fields.
        XCTAssertEqual(try CSV.parse("\"a\nb\nc\",1\nnext,2").map(\.line), [1, 4])
        XCTAssertThrowsError(try CSV.parse("ok\n\"open,\nstill open")) { error in
            XCTAssertEqual(error as? CSV.ParseError, CSV.ParseError(line: 2, message: "unterminated quoted field"))
        }
        XCTAssertThrowsError(try CSV.parse("a\n\"q\"x,b")) { error in
            XCTAssertEqual("\(error)", "line 2: text after a closing quote")
        }
        // Trimming (CSVDataset): whitespace around unquoted fields and around quotes goes.
        XCTAssertEqual(try CSV.parse("  a b  , \" c \" ,\td\t", trimmingWhitespace: true).map(\.fields), [["a b", " c ", "d"]])
        XCTAssertEqual(try CSV.parse("  a b  , \" c \" ", trimmingWhitespace: false).map(\.fields).first?.first, "  a b  ")
    }

    /// A file a crash left half written: the complete records, and whether anything follows them.
    func testCompleteRecordsLeaveOutAPartialLastRecord() throws {
        let whole = try CSV.completeRecords("h1,h2\n1,2\n")
        XCTAssertEqual(whole.records.map(\.fields), [["h1", "h2"], ["1", "2"]])
        XCTAssertFalse(whole.partial)
        let cut = try CSV.completeRecords("h1,h2\n1,2\n3,")
        XCTAssertEqual(cut.records.map(\.fields), [["h1", "h2"], ["1", "2"]])
        XCTAssertTrue(cut.partial)
        let insideQuotes = try CSV.completeRecords("h1,h2\n1,\"multi\nline")
        XCTAssertEqual(insideQuotes.records.map(\.fields), [["h1", "h2"]])
        XCTAssertTrue(insideQuotes.partial)
        let quotedBreak = try CSV.completeRecords("h1,h2\n1,\"multi\nline\"\n")
        XCTAssertEqual(quotedBreak.records.map(\.fields), [["h1", "h2"], ["1", "multi\nline"]])
        XCTAssertFalse(quotedBreak.partial)
    }
}

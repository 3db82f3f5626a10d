import Foundation

/// RFC 4180 CSV, the project's one reader and writer: `CSVDataset` reads image lists with it and
/// Training's `CSVLogger` writes and reads `history.csv` with it.
///
/// Writing: a field containing a comma, a double quote, CR or LF is quoted, its quotes doubled; a
/// record that is one empty field is written `""` (an empty line reads as a blank line). Records end
/// with LF, or CRLF when asked.
///
/// Reading: quoted fields may hold commas, doubled quotes and line breaks, kept as written (CRLF
/// included). Records end with LF, CRLF or a lone CR; the last one needs no line break. A quote
/// opens a quoted field only at the start of a field (elsewhere it is an ordinary character), and
/// only a comma or a line break may follow the closing quote. A blank line is a record of one empty
/// field. Text is read by Unicode scalar, so a CRLF or a quote followed by a combining mark is never
/// mistaken for one character.
public enum CSV {
    /// One record: its fields and the line (1-based) it starts on.
    public struct Record: Equatable, Sendable {
        /// The record's fields, unquoted (doubled quotes made single; embedded line breaks kept).
        public var fields: [String]
        /// The 1-based line the record starts on (a quoted field with line breaks spans several).
        public var line: Int

        /// A record of `fields` starting on `line` (1-based).
        public init(fields: [String], line: Int) {
            self.fields = fields
            self.line = line
        }
    }

    /// Text that is not valid CSV, with the line the problem is on.
    public struct ParseError: Error, CustomStringConvertible, Equatable {
        /// The 1-based line of the problem.
        public let line: Int
        /// What is wrong, e.g. an unclosed quote or a character after a closing quote.
        public let message: String
        /// "line 12: …", for error messages.
        public var description: String { "line \(line): \(message)" }

        /// An error at `line` (1-based) saying `message`.
        public init(line: Int, message: String) {
            self.line = line
            self.message = message
        }
    }

    /// The line break `text(_:lineEnding:)` ends every record with.
    public enum LineEnding: String, Sendable {
        /// "\n" (Unix; the default).
        case lf = "\n"
        /// "\r\n" (what RFC 4180 specifies, and Excel writes).
        case crlf = "\r\n"
    }

    // MARK: - Writing

    /// `value` as one field: quoted when it contains a comma, a double quote, CR or LF.
    public static func field(_ value: String) -> String {
        guard value.unicodeScalars.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else {
            return value
        }
        // By scalar: a quote followed by a combining mark is one Character, which a String-level
        // replacement would not match.
        var quoted = String.UnicodeScalarView()
        quoted.append("\"")
        for c in value.unicodeScalars {
            if c == "\"" { quoted.append("\"") }
            quoted.append(c)
        }
        quoted.append("\"")
        return String(quoted)
    }

    /// One record, without its line break.
    public static func record(_ fields: [String]) -> String {
        if fields == [""] { return "\"\"" }
        return fields.map(field).joined(separator: ",")
    }

    /// Whole CSV text: every record followed by `lineEnding`.
    public static func text(_ records: [[String]], lineEnding: LineEnding = .lf) -> String {
        records.map { record($0) + lineEnding.rawValue }.joined()
    }

    // MARK: - Reading

    /// Every record of `text`. `trimmingWhitespace` trims whitespace around unquoted fields and allows
    /// spaces and tabs around the quotes of quoted ones (whose content is kept as is).
    public static func parse(_ text: String, trimmingWhitespace: Bool = false) throws -> [Record] {
        let scan = try scan(text, trimming: trimmingWhitespace)
        if let line = scan.openQuoteLine { throw ParseError(line: line, message: "unterminated quoted field") }
        return scan.records
    }

    /// The records of `text` that end with a line break, and whether anything follows them: a last
    /// record without its line break, or cut off inside a quoted field (a file that a crash left
    /// half written).
    public static func completeRecords(_ text: String) throws -> (records: [Record], partial: Bool) {
        let scan = try scan(text, trimming: false)
        if scan.openQuoteLine != nil { return (scan.records, true) }
        return scan.lastRecordUnterminated ? (Array(scan.records.dropLast()), true) : (scan.records, false)
    }

    private struct Scan {
        var records: [Record] = []
        /// The last record was ended by the end of the text, not by a line break.
        var lastRecordUnterminated = false
        /// The line of a record that the text ends inside a quoted field of (that record is left out).
        var openQuoteLine: Int?
    }

    private static func scan(_ text: String, trimming: Bool) throws -> Scan {
        var result = Scan()
        var fields: [String] = []
        var field = String.UnicodeScalarView()
        var quoted = false, inQuotes = false
        var line = 1, recordLine = 1
        func trimmed(_ s: String) -> String { trimming ? s.trimmingCharacters(in: .whitespaces) : s }
        func endField() {
            let value = String(field)
            fields.append(quoted ? value : trimmed(value))
            field = String.UnicodeScalarView()
            quoted = false
        }
        func endRecord() {
            endField()
            result.records.append(Record(fields: fields, line: recordLine))
            fields = []
        }
        let scalars = text.unicodeScalars
        var i = scalars.startIndex
        func peek() -> Unicode.Scalar? { i < scalars.endIndex ? scalars[i] : nil }
        while i < scalars.endIndex {
            let c = scalars[i]
            scalars.formIndex(after: &i)
            if inQuotes {
                if c == "\"" {
                    if peek() == "\"" {
                        scalars.formIndex(after: &i)
                        field.append("\"")
                    } else {
                        inQuotes = false
                    }
                } else {
                    if c == "\n" { line += 1 }
                    field.append(c)
                }
                continue
            }
            switch c {
            case "\"" where !quoted && trimmed(String(field)).isEmpty:
                field = String.UnicodeScalarView()
                inQuotes = true
                quoted = true
            case ",":
                endField()
            case "\r", "\n":
                if c == "\r" && peek() == "\n" { scalars.formIndex(after: &i) }
                endRecord()
                line += 1
                recordLine = line
            default:
                if quoted {
                    if trimming && (c == " " || c == "\t") { continue }
                    throw ParseError(line: line, message: "text after a closing quote")
                }
                field.append(c)
            }
        }
        if inQuotes {
            result.openQuoteLine = recordLine
        } else if !field.isEmpty || !fields.isEmpty || quoted {
            endRecord()
            result.lastRecordUnterminated = true
        }
        return result
    }
}

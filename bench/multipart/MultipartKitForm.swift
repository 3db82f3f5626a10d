// MultipartKit 4.7.1's `MultipartParser` with what `finetune serve` needs around it: the adoption that
// was tried in place of Sources/Serving/Multipart.swift (branch serve-multipart, 2026-12-04) and kept
// here only for bench/compare_multipart, which measures the two side by side. Not part of the build.
import Foundation
import MultipartKit

/// The parts of a `multipart/form-data` body (RFC 7578), split by MultipartKit's `MultipartParser`.
///
/// What this type adds around the parser: a label for each part (its filename, else its field name,
/// else `part N`), a check that the body reached its closing boundary (the parser stops quietly where
/// the bytes stop, so a cut-off body would lose its last image), and a `ServingError.badRequest` that
/// says what is wrong and in which part.
enum MultipartKitForm {
    /// One part: its label (the filename, else the field name, else `part N`) and its bytes.
    struct Part {
        var label: String
        var bytes: ArraySlice<UInt8>
    }

    /// The parts of `body`, in order.
    static func parse(_ body: ByteBuffer, boundary: String) throws -> [Part] {
        func malformed(_ why: String) -> ServingError { .badRequest("malformed multipart body: \(why)") }
        final class Collected {
            var parts: [Part] = []
            var disposition: String?
            var bytes: [UInt8] = []
            /// Whether the parser called back at all (for the end check, below).
            var calledBack = false
            /// The part being read: "part N", with its label once its Content-Disposition is known.
            var current: String {
                let n = parts.count + 1
                guard let disposition else { return "part \(n)" }
                let label = MultipartKitForm.label(disposition: disposition, index: n)
                return label == "part \(n)" ? label : "part \(n) ('\(label)')"
            }
        }
        let collected = Collected()
        let parser = MultipartParser(boundary: boundary)
        parser.onHeader = { name, value in
            collected.calledBack = true
            if name.lowercased() == "content-disposition" { collected.disposition = value }
        }
        parser.onBody = { chunk in
            collected.calledBack = true
            collected.bytes.append(contentsOf: chunk.readableBytesView)
        }
        parser.onPartComplete = {
            collected.calledBack = true
            let n = collected.parts.count + 1
            collected.parts.append(Part(label: collected.disposition.map { label(disposition: $0, index: n) } ?? "part \(n)",
                                        bytes: collected.bytes[...]))
            collected.disposition = nil
            collected.bytes = []
        }
        let delimiter = "--\(boundary)"
        /// Whether `body` has `text` in it (only asked once the body is known to be bad, to say why).
        func has(_ text: String) -> Bool { body.readableBytesView.firstRange(of: Array(text.utf8)) != nil }
        do {
            try parser.execute(body)
        } catch {
            if collected.parts.isEmpty, !collected.calledBack,
               body.readableBytesView.firstRange(of: Array(delimiter.utf8))?.lowerBound
                == body.readableBytesView.firstRange(of: Array("\(delimiter)--".utf8))?.lowerBound {
                throw malformed("it has no parts (it starts with the closing boundary '\(delimiter)--')")
            }
            throw malformed("\(collected.current): a boundary line or header line is malformed "
                            + "(lines end with CRLF, headers are 'Name: value', a boundary line is '\(delimiter)' or '\(delimiter)--')")
        }
        // Did the body end at its closing boundary? After it, the parser ignores whatever it is given
        // (the epilogue); anywhere else, a closing boundary fed to it now ends a part, adds to one, or
        // is refused. So feed one and see whether anything happens.
        let unfinished = collected.current
        collected.calledBack = false
        let ended: Bool
        do {
            try parser.execute(Array("\r\n\(delimiter)--\r\n".utf8))
            ended = !collected.calledBack
        } catch {
            ended = false
        }
        guard ended else {
            if collected.parts.isEmpty && !has(delimiter) { throw malformed("no boundary line '\(delimiter)'") }
            throw malformed("\(unfinished): the body ends before the closing boundary '\(delimiter)--'")
        }
        return collected.parts
    }

    /// The filename of a Content-Disposition value, else its field name, else "part N": the rule of our
    /// parser (Multipart.swift is compiled beside this file), so both label parts alike.
    static func label(disposition: String, index: Int) -> String {
        MultipartForm.label(headers: "Content-Disposition: " + disposition, index: index)
    }
}

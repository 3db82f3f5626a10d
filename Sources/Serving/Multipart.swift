import Foundation

/// A `multipart/form-data` body (RFC 7578) split into its parts. Only what image upload needs: the
/// boundary from the Content-Type, each part's Content-Disposition `name`/`filename`, and its bytes.
/// Anything malformed is a `ServingError.badRequest` that says what is wrong and in which part.
///
/// Hand-written rather than MultipartKit's `MultipartParser` (4.7.1, the version on this machine's
/// package list): that parser allocates for every CR byte of a part, so a hostile 20 MB body costs
/// seconds of CPU on the server's concurrency threads where this costs tens of milliseconds, and it
/// returns the finished parts of a body cut short without a word (docs/architecture.md, "Serving";
/// bench/compare_multipart). The scans here are linear: the delimiter starts with the only CR in it, so
/// a failed partial match is never looked at again as the start of another.
struct MultipartForm {
    /// One part: its label (the filename, else the field name, else `part N`) and its bytes.
    struct Part {
        var label: String
        var bytes: ArraySlice<UInt8>
    }

    /// The boundary of a `multipart/form-data; boundary=...` Content-Type, nil for another type.
    static func boundary(contentType: String) throws -> String? {
        let fields = contentType.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
        guard let type = fields.first, type.lowercased() == "multipart/form-data" else { return nil }
        for field in fields.dropFirst() {
            let pair = field.split(separator: "=", maxSplits: 1).map(String.init)
            guard pair.count == 2, pair[0].lowercased() == "boundary" else { continue }
            var value = pair[1]
            if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = String(value.dropFirst().dropLast()) }
            guard (1...70).contains(value.utf8.count) else {
                throw ServingError.badRequest("malformed multipart body: the boundary must be 1 to 70 characters")
            }
            return value
        }
        throw ServingError.badRequest("malformed multipart body: the Content-Type has no boundary")
    }

    /// More parts than the caller takes: parsing stopped at the first one over `limit`.
    struct TooManyParts: Error {
        var limit: Int
    }

    /// The parts of `body`; a part past the first `maxParts` ends the parse with `TooManyParts`, so a
    /// body of a million empty parts costs no more than the parts a request may hold (20 MB of 1.5
    /// million parts took 95 ms in a release build, and 3 s in a debug one, to be refused afterwards as
    /// over `--max-queue`; bench/compare_multipart).
    static func parse(_ body: [UInt8], boundary: String, maxParts: Int = .max) throws -> [Part] {
        func malformed(_ why: String) -> ServingError { .badRequest("malformed multipart body: \(why)") }
        let delimiter = Array("--\(boundary)".utf8)
        let crlf: [UInt8] = [13, 10]
        let closing = "the closing boundary '--\(boundary)--'"
        guard var position = find(delimiter, in: body, from: 0) else {
            throw malformed("no boundary line '--\(boundary)'")
        }
        var parts: [Part] = []
        while true {
            position += delimiter.count
            let part = "part \(parts.count + 1)"
            // After a delimiter: "--" ends the body, CRLF starts a part.
            if body.count >= position + 2, body[position] == 45, body[position + 1] == 45 {
                if parts.isEmpty { throw malformed("it has no parts (it starts with \(closing))") }
                return parts
            }
            guard parts.count < maxParts else { throw TooManyParts(limit: maxParts) }
            guard body.count >= position + 2 else { throw malformed("\(part): the body ends before \(closing)") }
            guard Array(body[position..<position + 2]) == crlf else {
                throw malformed("\(part): the boundary line is not followed by CRLF")
            }
            position += 2
            let headerEnd: Int
            if body[position...].starts(with: crlf) {
                headerEnd = position - 2  // no headers
            } else if let end = find([13, 10, 13, 10], in: body, from: position) {
                headerEnd = end
            } else {
                throw malformed("\(part): its headers do not end with an empty line (CRLF CRLF) before the body ends")
            }
            let headers = String(decoding: body[position..<max(position, headerEnd)], as: UTF8.self)
            let label = label(headers: headers, index: parts.count + 1)
            let named = label == part ? part : "\(part) ('\(label)')"
            if let bad = headers.split(separator: "\r\n").first(where: { !isHeaderLine($0) }) {
                throw malformed("\(named): the header line '\(bad.prefix(80))' is not 'Name: value'")
            }
            let contentStart = headerEnd + 4
            guard let next = find(crlf + delimiter, in: body, from: contentStart) else {
                throw malformed("\(named): the body ends before \(closing)")
            }
            parts.append(Part(label: label, bytes: body[contentStart..<next]))
            position = next + 2
        }
    }

    /// Whether `line` is `Name: value`, the name an HTTP token (RFC 9110 `tchar`s).
    static func isHeaderLine(_ line: Substring) -> Bool {
        guard let colon = line.firstIndex(of: ":"), colon > line.startIndex else { return false }
        return line[..<colon].utf8.allSatisfy { byte in
            (48...57).contains(byte) || (65...90).contains(byte) || (97...122).contains(byte) || "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }

    /// The part's filename, else its field name, else "part N".
    static func label(headers: String, index: Int) -> String {
        for line in headers.split(separator: "\r\n") {
            let pair = line.split(separator: ":", maxSplits: 1)
            guard pair.count == 2, pair[0].trimmingCharacters(in: .whitespaces).lowercased() == "content-disposition" else { continue }
            let found = dispositionParameters(pair[1])
            if let file = found["filename"], !file.isEmpty { return file }
            if let name = found["name"], !name.isEmpty { return name }
        }
        return "part \(index)"
    }

    /// The parameters of a Content-Disposition value (`form-data; name="image"; filename="a;b.png"`),
    /// names lowercased: split at the semicolons outside quoted strings, a quoted value kept as it is
    /// inside its quotes but for `\"`, an escaped quote. Splitting at every semicolon cut `shoe;1.png`
    /// and `shoe;2.png` to one label, `shoe`; other backslashes stay, as browsers send a Windows path
    /// (`C:\dir\a.png`) unescaped.
    static func dispositionParameters(_ value: Substring) -> [String: String] {
        var found: [String: String] = [:]
        var name = "", text = "", inName = true, quoted = false, wasQuoted = false
        var characters = Array(value)[...]
        func finish() {
            let key = name.trimmingCharacters(in: .whitespaces).lowercased()
            if !inName, !key.isEmpty { found[key] = wasQuoted ? text : text.trimmingCharacters(in: .whitespaces) }
            name = ""; text = ""; inName = true; wasQuoted = false
        }
        var first = true  // the disposition type (`form-data`) before the first semicolon
        while let character = characters.popFirst() {
            if quoted {
                if character == "\\", characters.first == "\"" { text.append(characters.removeFirst()) }
                else if character == "\"" { quoted = false }
                else { text.append(character) }
            } else if character == ";" {
                if first { first = false; name = ""; text = ""; inName = true } else { finish() }
            } else if first {
                continue
            } else if inName && character == "=" {
                inName = false
            } else if inName {
                name.append(character)
            } else if character == "\"" && text.trimmingCharacters(in: .whitespaces).isEmpty {
                text = ""; quoted = true; wasQuoted = true
            } else if !wasQuoted {
                text.append(character)
            }
        }
        if !first { finish() }
        return found
    }

    /// The first index ≥ `start` where `needle` occurs in `haystack`.
    static func find(_ needle: [UInt8], in haystack: [UInt8], from start: Int) -> Int? {
        guard let first = needle.first, haystack.count >= needle.count else { return nil }
        var i = start
        let last = haystack.count - needle.count
        while i <= last {
            if haystack[i] == first {
                var j = 1
                while j < needle.count && haystack[i + j] == needle[j] { j += 1 }
                if j == needle.count { return i }
            }
            i += 1
        }
        return nil
    }
}

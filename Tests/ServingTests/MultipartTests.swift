import Foundation
@testable import Serving
import TestSupport
import XCTest

/// `MultipartForm`, the multipart/form-data splitting of `finetune serve`, on real photos and on the
/// malformed bodies a client can send.
final class MultipartTests: XCTestCase {
    static let boundary = "finetune-test-boundary"

    /// A body with one part per (headers, bytes), and the closing boundary.
    static func body(_ parts: [(headers: String, bytes: [UInt8])], boundary: String = boundary) -> [UInt8] {
        var body: [UInt8] = []
        for part in parts {
            body += Array("--\(boundary)\r\n\(part.headers)\r\n".utf8) + part.bytes + [13, 10]
        }
        body += Array("--\(boundary)--\r\n".utf8)
        return body
    }

    static func file(_ name: String) -> String {
        "Content-Disposition: form-data; name=\"image\"; filename=\"\(name)\"\r\nContent-Type: image/jpeg\r\n"
    }

    func parse(_ body: [UInt8], boundary: String = boundary) throws -> [MultipartForm.Part] {
        try MultipartForm.parse(body, boundary: boundary)
    }

    /// The message of the `ServingError.badRequest` that parsing `body` throws.
    func failure(_ body: [UInt8], boundary: String = boundary, line: UInt = #line) -> String {
        do {
            let parts = try parse(body, boundary: boundary)
            XCTFail("accepted, with \(parts.count) parts: \(parts.map(\.label))", line: line)
            return ""
        } catch ServingError.badRequest(let message) {
            return message
        } catch {
            XCTFail("\(error)", line: line)
            return ""
        }
    }

    func testTheTwentyPhotosComeBackWithTheirNamesAndBytes() throws {
        let photos = try foolboxPhotos()
        let files = try photos.map { (($0 as NSString).lastPathComponent, [UInt8](try Foundation.Data(contentsOf: URL(fileURLWithPath: $0)))) }
        let parts = try parse(Self.body(files.map { (Self.file($0.0), $0.1) }))
        XCTAssertEqual(parts.map(\.label), files.map(\.0))
        for (part, file) in zip(parts, files) { XCTAssertEqual(Array(part.bytes), file.1, file.0) }
    }

    func testLabelsContentAndWhatIsAroundTheParts() throws {
        let content: [UInt8] = Array("x--\(Self.boundary) stays\r\n".utf8)  // a boundary not after CRLF is content
        var body = Array("a preamble, ignored\r\n".utf8)
        body += Self.body([(Self.file("a=b.jpg"), content),
                           ("Content-Disposition: form-data; name=\"field\"\r\n", [1, 2, 3]),
                           ("", [4]),  // no headers at all
                           ("content-disposition: form-data; name=\"x\"; filename=\"\"\r\n", [])])
        body += Array("an epilogue, ignored".utf8)
        let parts = try parse(body)
        XCTAssertEqual(parts.map(\.label), ["a=b.jpg", "field", "part 3", "x"])
        XCTAssertEqual(parts.map { Array($0.bytes) }, [content, [1, 2, 3], [4], []])
    }

    /// Semicolons and escaped quotes inside a quoted filename are part of it (browsers send such names
    /// as they are): `shoe;1.png` and `shoe;2.png` both came back as `shoe`.
    func testAQuotedFilenameKeepsItsSemicolonsAndEscapedQuotes() throws {
        let parts = try parse(Self.body([(Self.file("shoe;1.png"), [1]), (Self.file("shoe;2.png"), [2]),
                                         (Self.file(#"say \"hi\"; ok.png"#), [3]),
                                         ("Content-Disposition: form-data; filename=\"a.png\";name=\"b\"\r\n", [4])]))
        XCTAssertEqual(parts.map(\.label), ["shoe;1.png", "shoe;2.png", #"say "hi"; ok.png"#, "a.png"])
        // A Windows path as browsers send it (backslashes unescaped) and spaces inside the quotes stay.
        let windows = try parse(Self.body([(Self.file(#"C:\dir\a.png"#), [1]), (Self.file(" two  spaces.png "), [2])]))
        XCTAssertEqual(windows.map(\.label), [#"C:\dir\a.png"#, " two  spaces.png "])
    }

    /// A body cut before its closing boundary: refused, naming the part, wherever the cut is (not the
    /// parts before the cut returned without a word, as MultipartKit's parser alone does).
    func testABodyWithoutItsClosingBoundaryIsRefusedNamingThePart() throws {
        let whole = Self.body([(Self.file("good.jpg"), Array(repeating: 7, count: 100)),
                               (Self.file("cut.jpg"), Array(repeating: 9, count: 100))])
        let line = Array("--\(Self.boundary)\r\n".utf8)
        let second = try XCTUnwrap(whole.indices.dropFirst().first { Array(whole[$0...].prefix(line.count)) == line })
        // Cut after part 1's end: in the boundary line's CRLF, part 2's headers, its bytes, the closing boundary.
        for cut in [second + line.count - 2, second + line.count, second + line.count + 20, whole.count - 60, whole.count - 30, whole.count - 6] {
            let message = failure(Array(whole[..<cut]))
            XCTAssertTrue(message.hasPrefix("malformed multipart body: part 2"), "cut at \(cut): \(message)")
            XCTAssertTrue(message.contains("the body ends"), "cut at \(cut): \(message)")
        }
        XCTAssertEqual(failure(Array(whole[..<(whole.count - 60)])),
                       "malformed multipart body: part 2 ('cut.jpg'): the body ends before the closing boundary '--\(Self.boundary)--'")
        XCTAssertEqual(failure(Array(whole[..<(second + line.count + 20)])),
                       "malformed multipart body: part 2: its headers do not end with an empty line (CRLF CRLF) before the body ends")
        // Cut before part 1's end is complete.
        for cut in [second - 1, second, second + 20] {
            let message = failure(Array(whole[..<cut]))
            XCTAssertEqual(message, "malformed multipart body: part 1 ('good.jpg'): the body ends before the closing boundary '--\(Self.boundary)--'",
                           "cut at \(cut)")
        }
        XCTAssertEqual(try parse(whole).count, 2)
        XCTAssertEqual(try parse(Array(whole.dropLast(2))).count, 2, "the CRLF after the closing boundary is optional")
    }

    /// A part past `maxParts` ends the parse with `TooManyParts`, whatever follows it.
    func testAPartPastTheLimitEndsTheParse() throws {
        let three = Self.body([(Self.file("a.jpg"), [1]), (Self.file("b.jpg"), [2]), (Self.file("c.jpg"), [3])])
        XCTAssertEqual(try MultipartForm.parse(three, boundary: Self.boundary, maxParts: 3).map(\.label), ["a.jpg", "b.jpg", "c.jpg"])
        for body in [three, Array(three.dropLast(20))] {
            XCTAssertThrowsError(try MultipartForm.parse(body, boundary: Self.boundary, maxParts: 2)) { error in
                XCTAssertEqual((error as? MultipartForm.TooManyParts)?.limit, 2, "\(error)")
            }
        }
    }

    func testNoPartsNoBoundaryLineAndBadBoundaries() throws {
        XCTAssertEqual(failure(Array("--\(Self.boundary)--\r\n".utf8)),
                       "malformed multipart body: it has no parts (it starts with the closing boundary '--\(Self.boundary)--')")
        XCTAssertEqual(failure(Self.body([(Self.file("a.jpg"), [1])], boundary: "another")),
                       "malformed multipart body: no boundary line '--\(Self.boundary)'")
        XCTAssertNil(try MultipartForm.boundary(contentType: "image/jpeg"))
        XCTAssertEqual(try MultipartForm.boundary(contentType: "Multipart/Form-Data; charset=utf-8; boundary=\"a b\""), "a b")
        for type in ["multipart/form-data", "multipart/form-data; boundary=", "multipart/form-data; boundary=\"\"",
                     "multipart/form-data; boundary=" + String(repeating: "b", count: 71)] {
            XCTAssertThrowsError(try MultipartForm.boundary(contentType: type), type) { error in
                XCTAssertTrue("\(error)".contains("boundary"), "\(type): \(error)")
            }
        }
        XCTAssertEqual(try MultipartForm.boundary(contentType: "multipart/form-data; boundary=" + String(repeating: "b", count: 70))?.count, 70)
    }

    /// A header line that is not `Name: value` (until MultipartKit's parser was tried beside this one,
    /// such a line was skipped and the part taken as one without a name), or lines that end in LF
    /// alone: refused, naming the part.
    func testMalformedLinesAreRefusedNamingThePart() throws {
        let good = (headers: Self.file("a.jpg"), bytes: [UInt8]([1, 2]))
        let noColon = failure(Self.body([good, ("Content-Disposition form-data; filename=\"b.jpg\"\r\n", [3])]))
        XCTAssertEqual(noColon, "malformed multipart body: part 2: the header line 'Content-Disposition form-data; filename=\"b.jpg\"' "
                                + "is not 'Name: value'")
        let afterName = failure(Self.body([good, (Self.file("b.jpg") + "Bad Header: 1\r\n", [3])]))
        XCTAssertEqual(afterName, "malformed multipart body: part 2 ('b.jpg'): the header line 'Bad Header: 1' is not 'Name: value'")
        let lf = Array("--\(Self.boundary)\nContent-Disposition: form-data; name=\"a\"\n\n1\n--\(Self.boundary)--\n".utf8)
        XCTAssertEqual(failure(lf), "malformed multipart body: part 1: the boundary line is not followed by CRLF")
    }
}

@testable import Data
import Foundation
import TestSupport
import Torch
import XCTest

/// JPEG/PNG decoding and PNG encoding against fixtures made by tools/fixtures/make_images.py, whose
/// sidecar `images/expected.json` holds what PIL (same libjpeg-turbo) decodes for each file.
final class ImageCodecTests: XCTestCase {
    struct Expected {
        var width: Int, height: Int, hash: String, mean: [Double], tolerance: Int, rgb: [UInt8]?
    }

    static let sidecar: [String: Any] = {
        let path = Fixtures.path("images/expected.json")
        guard let data = FileManager.default.contents(atPath: path),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            fatalError("missing or unreadable \(path): run tools/fixtures/make_images.py")
        }
        return object
    }()

    static func expected(_ section: String) -> [String: Expected] {
        let entries = sidecar[section] as? [String: [String: Any]] ?? [:]
        return entries.mapValues { e in
            Expected(width: e["width"] as! Int, height: e["height"] as! Int, hash: e["fnv1a64"] as! String,
                     mean: (e["mean"] as! [NSNumber]).map(\.doubleValue), tolerance: e["tolerance"] as? Int ?? 0,
                     rgb: (e["rgb_b64"] as? String).flatMap { Foundation.Data(base64Encoded: $0) }.map { [UInt8]($0) })
        }
    }

    static func fixture(_ name: String) -> String { Fixtures.path("images/" + name) }

    static func fnv1a64(_ bytes: [UInt8]) -> String {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    static func means(_ image: Image) -> [Double] {
        var sums = [0, 0, 0]
        for (i, v) in image.pixels.enumerated() { sums[i % 3] += Int(v) }
        return sums.map { (Double($0) / Double(image.width * image.height) * 1000).rounded() / 1000 }
    }

    func assertMatches(_ image: Image, _ e: Expected, _ name: String, file: StaticString = #filePath,
                       line: UInt = #line) {
        XCTAssertEqual(image.channels, 3, name, file: file, line: line)
        XCTAssertEqual([image.width, image.height], [e.width, e.height], "\(name): size", file: file, line: line)
        guard image.width == e.width, image.height == e.height else { return }
        if let rgb = e.rgb {
            let worst = zip(image.pixels, rgb).map { abs(Int($0) - Int($1)) }.max() ?? 0
            XCTAssertLessThanOrEqual(worst, e.tolerance, "\(name): largest pixel difference from PIL",
                                     file: file, line: line)
        }
        if e.tolerance == 0 {
            XCTAssertEqual(Self.fnv1a64(image.pixels), e.hash,
                           "\(name): pixels differ from PIL's (channel means \(Self.means(image)), PIL's \(e.mean))",
                           file: file, line: line)
        }
    }

    // MARK: - Decoding

    func testEveryFixtureDecodesLikePIL() throws {
        let all = Self.expected("decodable")
        XCTAssertGreaterThanOrEqual(all.count, 25)
        for (name, e) in all.sorted(by: { $0.key < $1.key }) {
            let image = try Image(contentsOfFile: Self.fixture(name))
            assertMatches(image, e, name)
        }
    }

    func testDecodingFromMemoryMatchesDecodingTheFile() throws {
        for name in ["rgb_baseline.jpg", "cmyk.jpg", "palette.png", "orient_6.jpg"] {
            let path = Self.fixture(name)
            let fromFile = try Image(contentsOfFile: path)
            let data = try Foundation.Data(contentsOf: URL(fileURLWithPath: path))
            XCTAssertEqual(try Image(decoding: data), fromFile, name)
            XCTAssertEqual(try Image(decoding: [UInt8](data), path: path), fromFile, name)
        }
    }

    /// Independent of PIL: orientations 2–8 must be the corresponding flips/rotations of orientation 1
    /// (the files differ only in their EXIF tag).
    func testEXIFOrientationsAreTheTransformsOfTheUprightImage() throws {
        let upright = try Image(contentsOfFile: Self.fixture("orient_1.jpg"))
        let w = upright.width, h = upright.height
        func at(_ x: Int, _ y: Int) -> ArraySlice<UInt8> { upright.pixels[(y * w + x) * 3 ..< (y * w + x) * 3 + 3] }
        for orientation in 2...8 {
            let transposed = orientation >= 5
            let (ow, oh) = transposed ? (h, w) : (w, h)
            var expected: [UInt8] = []
            for r in 0..<oh {
                for c in 0..<ow {
                    let (x, y): (Int, Int)
                    switch orientation {
                    case 2: (x, y) = (w - 1 - c, r)
                    case 3: (x, y) = (w - 1 - c, h - 1 - r)
                    case 4: (x, y) = (c, h - 1 - r)
                    case 5: (x, y) = (r, c)                  // transpose
                    case 6: (x, y) = (r, h - 1 - c)          // 90° clockwise
                    case 7: (x, y) = (w - 1 - r, h - 1 - c)  // transverse
                    default: (x, y) = (w - 1 - r, c)         // 8: 90° counter-clockwise
                    }
                    expected += at(x, y)
                }
            }
            let image = try Image(contentsOfFile: Self.fixture("orient_\(orientation).jpg"))
            XCTAssertEqual([image.width, image.height], [ow, oh], "orientation \(orientation)")
            XCTAssertTrue(image.pixels == expected, "orientation \(orientation): pixels are not the transform")
            XCTAssertEqual(try ImageCodec.probe(Self.fixture("orient_\(orientation).jpg")).orientation, orientation)
        }
    }

    /// The segments of a JPEG's header (each from its FF marker to its end) up to the start of scan,
    /// and the rest of the file.
    static func jpegSegments(_ bytes: [UInt8]) -> (segments: [[UInt8]], rest: [UInt8]) {
        var segments: [[UInt8]] = [], i = 2
        while i + 4 <= bytes.count, bytes[i] == 0xFF, bytes[i + 1] != 0xDA {
            let end = i + 2 + (Int(bytes[i + 2]) << 8 | Int(bytes[i + 3]))
            segments.append(Array(bytes[i..<end]))
            i = end
        }
        return (segments, Array(bytes[i...]))
    }

    /// As PIL (JpegImagePlugin keeps the first "Exif" APP1, `exif_transpose` reads it), the first Exif
    /// segment decides the orientation, even when it has no orientation tag; an XMP APP1 is not Exif.
    /// A later segment saying 6 turned these photos.
    func testTheFirstExifSegmentDecidesTheOrientation() throws {
        let upright = try [UInt8](Foundation.Data(contentsOf: URL(fileURLWithPath: Self.fixture("orient_1.jpg"))))
        let turned = try [UInt8](Foundation.Data(contentsOf: URL(fileURLWithPath: Self.fixture("orient_6.jpg"))))
        let (segments, rest) = Self.jpegSegments(upright)
        let exif6 = try XCTUnwrap(Self.jpegSegments(turned).segments.first { $0[1] == 0xE1 })
        let exifIndex = try XCTUnwrap(segments.firstIndex { $0[1] == 0xE1 })
        func jpeg(_ header: [[UInt8]]) -> [UInt8] { [0xFF, 0xD8] + header.joined() + rest }
        // Exif, no orientation tag: a little-endian TIFF header whose first IFD has no entry.
        let tiff: [UInt8] = Array("Exif".utf8) + [0, 0, 0x49, 0x49, 42, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        let noTag: [UInt8] = [0xFF, 0xE1, 0, UInt8(tiff.count + 2)] + tiff
        let xmpPayload = Array("http://ns.adobe.com/xap/1.0/\0<x/>".utf8)
        let xmp: [UInt8] = [0xFF, 0xE1, 0, UInt8(xmpPayload.count + 2)] + xmpPayload
        var header = segments, withoutExif = segments
        header.insert(exif6, at: exifIndex + 1)
        withoutExif.remove(at: exifIndex)
        let reference = try Image(decoding: upright)
        for (name, bytes, orientation) in [("orientation 1, then 6", jpeg(header), 1),
                                           ("no tag, then 6", jpeg(withoutExif + [noTag, exif6]), 1),
                                           ("XMP, then 6", jpeg(withoutExif + [xmp, exif6]), 6)] {
            let image = try Image(decoding: bytes)
            XCTAssertEqual(try ImageCodec.probe(data: bytes).orientation, orientation, name)
            if orientation == 1 {
                XCTAssertEqual(image, reference, name)
            } else {
                XCTAssertEqual([image.width, image.height], [reference.height, reference.width], name)
            }
        }
    }

    /// Like PIL ("CMYK;I": "assume adobe conventions"), a CMYK JPEG is taken as stored inverted with or
    /// without Adobe's APP14 marker: without it, the colours were inverted against PIL's.
    func testACMYKJPEGWithoutTheAdobeMarkerHasPILsColours() throws {
        let bytes = try [UInt8](Foundation.Data(contentsOf: URL(fileURLWithPath: Self.fixture("cmyk.jpg"))))
        let (segments, rest) = Self.jpegSegments(bytes)
        XCTAssertTrue(segments.contains { $0[1] == 0xEE }, "the fixture has the Adobe marker")
        let unmarked: [UInt8] = [0xFF, 0xD8] + segments.filter { $0[1] != 0xEE }.joined() + rest
        XCTAssertEqual(try ImageCodec.probe(data: unmarked).storedChannels, 4)
        XCTAssertEqual(try Image(decoding: unmarked), try Image(decoding: bytes))
    }

    func testGrayscaleSourcesBecomeEqualRGBChannels() throws {
        for name in ["gray.jpg", "gray8.png", "gray16.png", "gray1.png", "gray2.png", "gray4.png", "gray_alpha.png"] {
            let image = try Image(contentsOfFile: Self.fixture(name))
            XCTAssertEqual(image.channels, 3)
            let p = image.pixels
            var equal = true
            for i in stride(from: 0, to: p.count, by: 3) where p[i] != p[i + 1] || p[i] != p[i + 2] {
                equal = false
            }
            XCTAssertTrue(equal, name)
        }
        let oneBit = try Image(contentsOfFile: Self.fixture("gray1.png"))
        XCTAssertTrue(oneBit.pixels.allSatisfy { $0 == 0 || $0 == 255 })
    }

    // MARK: - DCT scaling

    func testDCTScalingMatchesPILDraft() throws {
        let path = Self.fixture("big.jpg")
        let scaled = Self.expected("scaled")
        XCTAssertEqual(scaled.count, 4)
        for (key, e) in scaled.sorted(by: { $0.key < $1.key }) {
            let denominator = Int(key)!
            let minSide = 192 / denominator
            let image = try Image(contentsOfFile: path, minSide: minSide)
            XCTAssertGreaterThanOrEqual(min(image.width, image.height), minSide)
            assertMatches(image, e, "big.jpg at 1/\(denominator) (minSide \(minSide))")
        }
    }

    func testFastDecodeIsCloseToExactDecodeButNotTheSamePath() throws {
        let path = Self.fixture("big.jpg")
        let exact = try Image(contentsOfFile: path)
        let fast = try Image(contentsOfFile: path, fast: true)
        XCTAssertEqual([fast.width, fast.height], [exact.width, exact.height])
        let diffs = zip(exact.pixels, fast.pixels).map { abs(Int($0) - Int($1)) }
        let mean = Double(diffs.reduce(0, +)) / Double(diffs.count)
        XCTAssertLessThan(mean, 2.0, "fast decoding stays within a couple of levels on average")
        XCTAssertGreaterThan(diffs.max() ?? 0, 0, "the fast path is really in use")
        // PNGs have no fast path: identical.
        let png = Self.fixture("rgb.png")
        XCTAssertEqual(try Image(contentsOfFile: png, fast: true), try Image(contentsOfFile: png))
    }

    func testDCTScalingPicksTheSmallestSufficientSIMDScale() throws {
        let path = Self.fixture("big.jpg")  // 256x192; only 1/8, 1/4, 1/2 and 1/1 are used
        let cases: [(minSide: Int, size: [Int])] = [
            (0, [256, 192]), (1, [32, 24]), (24, [32, 24]), (25, [64, 48]), (48, [64, 48]), (49, [128, 96]),
            (96, [128, 96]), (97, [256, 192]), (168, [256, 192]), (192, [256, 192]), (193, [256, 192]),
            (5000, [256, 192]),
        ]
        for c in cases {
            let image = try Image(contentsOfFile: path, minSide: c.minSide)
            XCTAssertEqual([image.width, image.height], c.size, "minSide \(c.minSide)")
            if c.minSide <= 192 { XCTAssertGreaterThanOrEqual(min(image.width, image.height), c.minSide) }
            XCTAssertEqual(image.pixels.count, c.size[0] * c.size[1] * 3)
        }
        // Orientation is applied after scaling; PNGs ignore minSide.
        let rotated = try Image(contentsOfFile: Self.fixture("orient_6.jpg"), minSide: 12)
        XCTAssertEqual([rotated.width, rotated.height], [12, 19])  // 37x23 at 4/8 → 19x12, then rotated
        let png = try Image(contentsOfFile: Self.fixture("rgb.png"), minSide: 5)
        XCTAssertEqual([png.width, png.height], [37, 23])
    }

    // MARK: - Broken and unsupported files

    func testBrokenFilesThrowDataErrorsNamingThePath() throws {
        let broken = Self.sidecar["broken"] as? [String: String] ?? [:]
        XCTAssertGreaterThanOrEqual(broken.count, 10)
        for (name, kind) in broken.sorted(by: { $0.key < $1.key }) {
            let path = Self.fixture(name)
            for minSide in [0, 16] {
                do {
                    _ = try Image(contentsOfFile: path, minSide: minSide)
                    XCTFail("\(name) decoded without an error")
                } catch let error as DataError {
                    XCTAssertTrue(error.description.contains(path), "\(name): '\(error)' does not name the file")
                    switch (kind, error) {
                    case ("corrupt", .corrupt), ("unsupported", .unsupported): break
                    default: XCTFail("\(name): expected a \(kind) error, got \(error)")
                    }
                }
            }
        }
    }

    func testErrorMessagesSayWhatIsWrong() throws {
        func message(_ name: String) -> String {
            do { _ = try Image(contentsOfFile: Self.fixture(name)); return "" } catch { return "\(error)" }
        }
        XCTAssertTrue(message("image.gif").contains("unsupported image format (GIF)"), message("image.gif"))
        XCTAssertTrue(message("image.bmp").contains("unsupported image format (BMP)"), message("image.bmp"))
        XCTAssertTrue(message("random.jpg").contains("unsupported image format"), message("random.jpg"))
        XCTAssertTrue(message("text.png").contains("unsupported image format"), message("text.png"))
        XCTAssertTrue(message("empty.jpg").contains("empty"), message("empty.jpg"))
        XCTAssertTrue(message("truncated.jpg").contains("truncated"), message("truncated.jpg"))
        XCTAssertTrue(message("truncated.png").contains("truncated"), message("truncated.png"))
        // A damaged IDAT fails on its CRC or, when inflating hits garbage first, on what it produced.
        let damaged = message("bad_crc.png")
        XCTAssertTrue(["CRC", "filter", "zlib", "data"].contains { damaged.contains($0) }, damaged)

        let webp: [UInt8] = Array("RIFF\u{10}\0\0\0WEBPVP8 ".utf8) + [UInt8](repeating: 0, count: 16)
        XCTAssertEqual(ImageCodec.sniff(webp), .webp)
        XCTAssertThrowsError(try Image(decoding: webp, path: "x.webp")) { error in
            XCTAssertEqual("\(error)", "x.webp: unsupported image format (WebP); only JPEG and PNG can be decoded")
        }
        XCTAssertEqual(ImageCodec.sniff(Array("II*\0abcd".utf8)), .tiff)
        XCTAssertEqual(ImageCodec.sniff(Array("MM\0*abcd".utf8)), .tiff)
        XCTAssertNil(ImageCodec.sniff([UInt8]()))
        XCTAssertThrowsError(try Image(decoding: [UInt8]())) { error in
            XCTAssertTrue("\(error)".contains("<image data>"), "\(error)")
        }
    }

    func testMissingFilesAndDirectoriesAreUnreadable() throws {
        let dir = NSTemporaryDirectory()
        for path in [Self.fixture("no-such-image.jpg"), dir] {
            XCTAssertThrowsError(try Image(contentsOfFile: path)) { error in
                guard case DataError.unreadable(let p, _) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(p, path)
            }
            XCTAssertThrowsError(try ImageCodec.probe(path)) { error in
                XCTAssertTrue("\(error)".contains(path), "\(error)")
            }
        }
    }

    // MARK: - Files: non-ASCII names and symlinks

    func testNonASCIIPathsAndSymlinksDecode() throws {
        let fm = FileManager.default
        let dir = URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("finetune-images-\(UUID().uuidString)/ünïcødé 画像 🖼")
        try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? fm.removeItem(at: dir.deletingLastPathComponent()) }
        let original = try Image(contentsOfFile: Self.fixture("rgb_baseline.jpg"))
        let unicode = dir.appendingPathComponent("фото – été.jpg").path
        try fm.copyItem(atPath: Self.fixture("rgb_baseline.jpg"), toPath: unicode)
        let link = dir.appendingPathComponent("link.jpeg").path
        try fm.createSymbolicLink(atPath: link, withDestinationPath: unicode)
        let relativeLink = dir.appendingPathComponent("relative-link").path
        try fm.createSymbolicLink(atPath: relativeLink, withDestinationPath: "фото – été.jpg")
        for path in [unicode, link, relativeLink] {
            XCTAssertEqual(try Image(contentsOfFile: path), original, path)
            XCTAssertEqual(try ImageCodec.probe(path).width, 37, path)
        }
        // A dangling symlink is unreadable and named.
        let dangling = dir.appendingPathComponent("dangling ß.png").path
        try fm.createSymbolicLink(atPath: dangling, withDestinationPath: "nowhere.png")
        XCTAssertThrowsError(try Image(contentsOfFile: dangling)) { error in
            XCTAssertTrue("\(error)".contains(dangling), "\(error)")
        }
    }

    // MARK: - Probe

    func testProbeReadsTheHeaderOnly() throws {
        for (name, e) in Self.expected("decodable") {
            let info = try ImageCodec.probe(Self.fixture(name))
            XCTAssertEqual([info.width, info.height], [e.width, e.height], name)
            XCTAssertEqual(info.format, name.hasSuffix(".jpg") ? .jpeg : .png, name)
        }
        // The header of a file whose image data is cut short is still complete.
        let truncated = try ImageCodec.probe(Self.fixture("truncated.jpg"))
        XCTAssertEqual([truncated.width, truncated.height, truncated.storedChannels], [256, 192, 3])
        XCTAssertThrowsError(try Image(contentsOfFile: Self.fixture("truncated.jpg")))
        let png = try ImageCodec.probe(Self.fixture("interlaced_rgba.png"))
        XCTAssertEqual(png.storedChannels, 4)
        XCTAssertTrue(png.isProgressive)
        let rotated = try ImageCodec.probe(Self.fixture("orient_8.jpg"))
        XCTAssertEqual([rotated.width, rotated.height, rotated.storedWidth, rotated.storedHeight], [23, 37, 37, 23])
        for name in ["empty.jpg", "truncated_header.jpg", "random.jpg", "text.png", "image.gif", "soi_then_garbage.jpg"] {
            XCTAssertThrowsError(try ImageCodec.probe(Self.fixture(name))) { error in
                XCTAssertTrue("\(error)".contains(Self.fixture(name)), "\(error)")
            }
        }
    }

    /// A JPEG whose frame header sits behind more than the 64 KiB probe prefix (big comment segments,
    /// as ICC profiles or XMP can be) is still probed, by reading further.
    func testProbeReadsPastLargeMetadata() throws {
        let jpeg = try [UInt8](Foundation.Data(contentsOf: URL(fileURLWithPath: Self.fixture("rgb_baseline.jpg"))))
        var padded: [UInt8] = [0xFF, 0xD8]
        for _ in 0..<3 {  // three 65,000-byte COM segments
            padded += [0xFF, 0xFE, UInt8(65000 >> 8), UInt8(65000 & 0xFF)] + [UInt8](repeating: 0x41, count: 64998)
        }
        padded += jpeg[2...]
        let path = NSTemporaryDirectory() + "finetune-padded-\(UUID().uuidString).jpg"
        try Foundation.Data(padded).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let info = try ImageCodec.probe(path)
        XCTAssertEqual([info.width, info.height], [37, 23])
        XCTAssertEqual(try Image(contentsOfFile: path), try Image(contentsOfFile: Self.fixture("rgb_baseline.jpg")))
    }

    // MARK: - Encoding

    func testPNGRoundTripIsExact() throws {
        var state: UInt32 = 12345
        func next() -> UInt8 { state = state &* 1_664_525 &+ 1_013_904_223; return UInt8(state >> 24) }
        let (w, h) = (29, 17)
        let gray = (0..<(w * h)).map { _ in next() }
        let rgb = (0..<(w * h * 3)).map { _ in next() }
        for level in [0, 1, 6, 9] {
            let grayPNG = try Image(gray: gray, width: w, height: h).pngData(compressionLevel: level)
            XCTAssertEqual(ImageCodec.sniff(grayPNG), .png)
            let grayInfo = try ImageCodec.probe(data: grayPNG)
            XCTAssertEqual([grayInfo.width, grayInfo.height, grayInfo.storedChannels], [w, h, 1])
            let decodedGray = try Image(decoding: grayPNG)
            XCTAssertEqual(decodedGray.pixels, gray.flatMap { [$0, $0, $0] }, "gray, level \(level)")

            let rgbImage = try Image(rgb: rgb, width: w, height: h)
            let rgbPNG = try rgbImage.pngData(compressionLevel: level)
            XCTAssertEqual(try ImageCodec.probe(data: rgbPNG).storedChannels, 3)
            XCTAssertEqual(try Image(decoding: rgbPNG), rgbImage, "rgb, level \(level)")
        }
        // A decoded JPEG survives PNG encoding unchanged (what `finetune convert` relies on).
        let photo = try Image(contentsOfFile: Self.fixture("cmyk.jpg"))
        XCTAssertEqual(try Image(decoding: photo.pngData()), photo)
        XCTAssertThrowsError(try Image(gray: [1, 2, 3], width: 2, height: 2))
    }

    // MARK: - Tensors

    func testToTensorIsCHW() throws {
        let image = try Image(contentsOfFile: Self.fixture("orient_6.jpg"))  // 23x37
        let t = try image.toTensor()
        XCTAssertEqual(t.shape, [3, 37, 23])
        XCTAssertEqual(t.dtype, .uint8)
        XCTAssertTrue(t.isContiguous())
        let values = try t.toArray(UInt8.self)
        let plane = 37 * 23
        for (y, x) in [(0, 0), (5, 17), (36, 22), (20, 3)] {
            for c in 0..<3 {
                XCTAssertEqual(values[c * plane + y * 23 + x], image.pixels[(y * 23 + x) * 3 + c])
            }
        }
        let grayTensor = try Image(gray: [1, 2, 3, 4, 5, 6], width: 3, height: 2).toTensor()
        XCTAssertEqual(grayTensor.shape, [1, 2, 3])
        XCTAssertEqual(try grayTensor.toArray(UInt8.self), [1, 2, 3, 4, 5, 6])
    }

    // MARK: - Speed (informational)

    func testDecodeSpeedIsReported() throws {
        let data = try Foundation.Data(contentsOf: URL(fileURLWithPath: Self.fixture("big.jpg")))
        for minSide in [0, 96] {
            let n = 200
            let start = Date()
            for _ in 0..<n { _ = try Image(decoding: data, minSide: minSide) }
            let seconds = Date().timeIntervalSince(start)
            print("big.jpg 256x192, minSide \(minSide): \(Int(Double(n) / seconds)) images/s")
        }
    }

    /// A FIFO named like an image is refused at once ("not a regular file"): opening it waited for a
    /// writer, so `predict FOLDER` hung on a FIFO in the folder.
    func testAFIFONamedLikeAnImageIsRefusedWithoutWaiting() throws {
        let fifo = NSTemporaryDirectory() + "finetune-fifo-\(UUID().uuidString).jpg"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        defer { unlink(fifo) }
        final class Failure: @unchecked Sendable { var value: String? }  // written before `done`, read after
        let failure = Failure()
        let done = expectation(description: "the decode returns")
        Thread {
            do { _ = try Image(contentsOfFile: fifo) } catch { failure.value = "\(error)" }
            done.fulfill()
        }.start()
        wait(for: [done], timeout: 10)
        XCTAssertTrue(failure.value?.contains("not a regular file") == true, "\(String(describing: failure.value))")
    }

    /// After the last row libpng inflated whatever compressed data followed, only to discard it: a
    /// 1×1 PNG whose IDAT carried 19 GB of compressed zeros kept `serve` busy for a minute past its
    /// request timeout. The decoder now stops a small tail after the last row. Here the tail is 256 KiB
    /// of stored blocks that never end the stream: libpng read all of it and then failed ("Not enough
    /// image data"); now the image decodes, its one pixel intact.
    func testCompressedDataPastTheLastRowIsNotRead() throws {
        func storedBlock(_ data: [UInt8]) -> [UInt8] {  // not final: BFINAL 0, BTYPE 00
            let n = UInt16(data.count)
            return [0, UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8(~n >> 8)] + data
        }
        var zlib: [UInt8] = [0x78, 0x01] + storedBlock([0, 10, 200, 30])  // filter 0, one RGB pixel
        for _ in 0..<4 { zlib += storedBlock([UInt8](repeating: 0, count: 65_535)) }
        let png = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
            + chunk("IHDR", be32(1) + be32(1) + [8, 2, 0, 0, 0]) + chunk("IDAT", zlib) + chunk("IEND", [])
        let image = try Image(decoding: png)
        XCTAssertEqual([image.width, image.height], [1, 1])
        XCTAssertEqual(image.pixels, [10, 200, 30])
    }

    /// Probe W: a valid PNG followed by 3 GB of other bytes took 3 GB of memory per decode, and a 4 GB
    /// file that is no image was read whole before it was refused. A large file is read up to the end
    /// of its image (IEND, EOI; the first 64 KiB of anything else), and decodes as before.
    func testALargeFileIsReadOnlyUpToTheEndOfItsImage() throws {
        let folder = NSTemporaryDirectory() + "extent-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let tail: UInt64 = 40 << 20  // past IC_WHOLE_READ_LIMIT (32 MiB), sparse on disk
        for (name, source) in [("rgb.png", Self.fixture("rgb.png")), ("rgb_progressive.jpg", Self.fixture("rgb_progressive.jpg")),
                               ("big.jpg", Self.fixture("big.jpg"))] {
            let bytes = try Foundation.Data(contentsOf: URL(fileURLWithPath: source))
            let path = folder + "/" + name
            try bytes.write(to: URL(fileURLWithPath: path))
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            try handle.truncate(atOffset: UInt64(bytes.count) + tail)
            try handle.close()
            let (read, size) = try ImageCodec.withFileBytes(path, maxBytes: 0) { raw, size in (raw.count, size) }
            XCTAssertEqual(read, bytes.count, name)
            XCTAssertEqual(size, bytes.count + Int(tail), name)
            XCTAssertEqual(try Image(contentsOfFile: path).pixels, try Image(contentsOfFile: source).pixels, name)
        }
        let other = folder + "/zeros.png"
        _ = FileManager.default.createFile(atPath: other, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: other))
        try handle.truncate(atOffset: tail)
        try handle.close()
        XCTAssertEqual(try ImageCodec.withFileBytes(other, maxBytes: 0) { raw, _ in raw.count }, 65536)
        XCTAssertThrowsError(try Image(contentsOfFile: other)) { error in
            XCTAssertTrue("\(error)".contains("unsupported image format"), "\(error)")
        }
        // Probe X: junk between markers that libjpeg skips (a stuffed FF 00), followed by a comment
        // segment holding FF D9, made the walk stop at that fake end: "truncated". Such a file is read
        // whole and decodes as it did.
        let source = try Foundation.Data(contentsOf: URL(fileURLWithPath: Self.fixture("big.jpg")))
        var junk = source.prefix(2)
        junk.append(Foundation.Data([0xFF, 0x00, 0x00, 0x06, 0xFF, 0xFE, 0x00, 0x04, 0xFF, 0xD9]))
        junk.append(source.dropFirst(2))
        junk.append(Foundation.Data(count: Int(tail)))
        let junkPath = folder + "/junk.jpg"
        try junk.write(to: URL(fileURLWithPath: junkPath))
        XCTAssertEqual(try ImageCodec.withFileBytes(junkPath, maxBytes: 0) { raw, _ in raw.count }, junk.count)
        XCTAssertEqual(try Image(contentsOfFile: junkPath).pixels, try Image(contentsOfFile: Self.fixture("big.jpg")).pixels)
        // A JPEG cut short (no EOI) is read whole, as before: what follows may be its data.
        let cut = folder + "/cut.jpg"
        let big = try Foundation.Data(contentsOf: URL(fileURLWithPath: Self.fixture("big.jpg")))
        var padded = big.prefix(big.count / 2)
        padded.append(Foundation.Data(count: Int(tail)))
        try padded.write(to: URL(fileURLWithPath: cut))
        XCTAssertEqual(try ImageCodec.withFileBytes(cut, maxBytes: 0) { raw, _ in raw.count }, padded.count)
    }

    /// A large file whose image's end cannot be told was read whole, however large: a JPEG header followed
    /// by a preallocated download's zeros took 4 GB per decode. Above 1 GiB (IC_UNTOLD_READ_LIMIT) it is
    /// refused naming the file; below, read whole as before. A file starting FF D8 but not FF D8 FF is no
    /// JPEG to the decoder, and is read as far as its first 64 KiB, like any other non-image.
    func testAFileWhoseImageEndCannotBeToldIsNotReadPastTheLimit() throws {
        let folder = NSTemporaryDirectory() + "untold-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        func sparse(_ name: String, _ head: [UInt8], size: UInt64) throws -> String {
            let path = folder + "/" + name
            try Foundation.Data(head).write(to: URL(fileURLWithPath: path))
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            try handle.truncate(atOffset: size)
            try handle.close()
            return path
        }
        let jpeg = try Foundation.Data(contentsOf: URL(fileURLWithPath: Self.fixture("big.jpg")))
        let app0 = Array(jpeg.prefix(4 + Int(jpeg[4]) << 8 + Int(jpeg[5])))  // SOI and the first segment
        XCTAssertEqual(Array(app0.prefix(3)), [0xFF, 0xD8, 0xFF])
        let png = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + chunk("IHDR", be32(1) + be32(1) + [8, 2, 0, 0, 0])
        let huge = (UInt64(1) << 30) + 1
        for (name, head) in [("zeros.jpg", app0), ("zeros.png", png)] {
            let path = try sparse(name, head, size: huge)
            XCTAssertThrowsError(try ImageCodec.withFileBytes(path, maxBytes: 0) { raw, _ in raw.count }) { error in
                XCTAssertTrue("\(error)".contains(path) && "\(error)".contains("where the image ends in this 1073741825-byte "
                    + "file cannot be told from its structure, and such a file is read whole only up to 1073741824 bytes"),
                              "\(error)")
            }
            // Below the limit it is read whole, as before (what follows may be the image's data).
            let smaller = try sparse("small-" + name, head, size: 40 << 20)
            XCTAssertEqual(try ImageCodec.withFileBytes(smaller, maxBytes: 0) { raw, _ in raw.count }, 40 << 20)
        }
        // A JPEG cut inside its data and padded with zeros (a partial download) was scanned for its end to
        // the last byte before it was refused (probe AD: 17 s for 4 GB); the scan stops at the limit.
        let cut = Array(jpeg.prefix(jpeg.count / 2))
        let padded = try sparse("padded.jpg", cut, size: 16 << 30)
        let started = Date()
        XCTAssertThrowsError(try ImageCodec.withFileBytes(padded, maxBytes: 0) { raw, _ in raw.count }) { error in
            XCTAssertTrue("\(error)".contains("cannot be told"), "\(error)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 30, "16 GiB were scanned")
        // Probe AE: the walk read each chunk header on its own (8.7 million reads, 10 s, for 100 MiB of empty
        // PNG chunks). It reads 1 MiB at a time, and past 2^20 chunks tells no end: such a file is read
        // whole (here 40 MiB), as one whose end cannot be told.
        var chunks = png
        let empty = chunk("abCd", [])
        for _ in 0...(1 << 20) { chunks += empty }
        chunks += chunk("IEND", [])
        let walked = try sparse("chunks.png", chunks, size: 40 << 20)
        let walkStarted = Date()
        XCTAssertEqual(try ImageCodec.withFileBytes(walked, maxBytes: 0) { raw, _ in raw.count }, 40 << 20)
        XCTAssertLessThan(Date().timeIntervalSince(walkStarted), 10)
        let notJPEG = try sparse("junk.jpg", [0xFF, 0xD8, 0x00, 0x01], size: 40 << 20)
        XCTAssertEqual(try ImageCodec.withFileBytes(notJPEG, maxBytes: 0) { raw, _ in raw.count }, 65536)
        XCTAssertThrowsError(try Image(contentsOfFile: notJPEG)) { error in
            XCTAssertTrue("\(error)".contains("unsupported image format"), "\(error)")
        }
    }

    /// Probe W: a 261 KB PNG of 16384² zeros (2^28 pixels, the old limit) took 1 GB and 10 s to decode,
    /// where PIL raises `DecompressionBombError` above 178,956,970 pixels. The limit is PIL's now, and
    /// a progressive JPEG of more than 500 scans (600 here, from a 32 KB file) is refused as well.
    func testDecompressionBombsAreRefusedAtPILsLimit() throws {
        func header(_ width: UInt32, _ height: UInt32) -> [UInt8] {
            [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + chunk("IHDR", be32(width) + be32(height) + [8, 2, 0, 0, 0])
                + chunk("IDAT", [0x78, 0x01, 0x01, 0x00, 0x00, 0xFF, 0xFF]) + chunk("IEND", [])
        }
        XCTAssertThrowsError(try Image(decoding: header(16384, 16384), path: "bomb.png")) { error in
            XCTAssertTrue("\(error)".contains("too large (16384x16384 pixels; the limit is 178956970 pixels)"), "\(error)")
        }
        XCTAssertThrowsError(try Image(decoding: header(13377, 13377), path: "big.png")) { error in
            XCTAssertFalse("\(error)".contains("too large"), "13377² is within PIL's limit: \(error)")
        }
        XCTAssertThrowsError(try Image(contentsOfFile: Self.fixture("scan_bomb.jpg"))) { error in
            XCTAssertTrue("\(error)".contains("progressive JPEG with more than 500 scans"), "\(error)")
        }
        // Probe W: sides past libpng's per-side limit were "Invalid IHDR data" (no size, no limit).
        for (width, height, expected) in [(UInt32(1), UInt32(268_000_000), "too large (1x268000000 pixels; the limit is 178956970 pixels)"),
                                          (2_000_000, 1, "too large (2000000x1 pixels; PNG images are read up to 1000000 pixels a side)")] {
            let check = { (error: Error) in XCTAssertTrue("\(error)".contains("wide.png") && "\(error)".contains(expected), "\(error)") }
            XCTAssertThrowsError(try ImageCodec.probe(data: header(width, height), path: "wide.png"), "", check)
            XCTAssertThrowsError(try Image(decoding: header(width, height), path: "wide.png"), "", check)
        }
    }
}

private func crc32(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
        crc ^= UInt32(byte)
        for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
    }
    return ~crc
}

private func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }

/// A PNG chunk: length, type, payload, CRC.
private func chunk(_ kind: String, _ payload: [UInt8]) -> [UInt8] {
    be32(UInt32(payload.count)) + Array(kind.utf8) + payload + be32(crc32(Array(kind.utf8) + payload))
}

import Foundation
import Hashing
import XCTest

final class SHA256HasherTests: XCTestCase {
    var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("finetune-hashing-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    /// FIPS 180-4 / NIST CSRC example vectors for SHA-256.
    func testNISTVectors() {
        XCTAssertEqual(SHA256Hasher.hexDigest(of: [UInt8]()),
                       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256Hasher.hexDigest(of: Array("abc".utf8)),
                       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        // 56 bytes: padding spills into a second block.
        XCTAssertEqual(SHA256Hasher.hexDigest(of: Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(SHA256Hasher.hexDigest(of: Array(("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
                                                         + "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu").utf8)),
                       "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1")
        XCTAssertEqual(SHA256Hasher.hexDigest(of: [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)),
                       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    func testIncrementalUpdatesOfOddSizesEqualOneUpdate() {
        let bytes = (0..<1000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        var hasher = SHA256Hasher()
        hasher.update(bytes[0..<3]); hasher.update(bytes[3..<130]); hasher.update(bytes[130...])
        XCTAssertEqual(hasher.finalizeHex(), SHA256Hasher.hexDigest(of: bytes))
        var raw = SHA256Hasher()
        bytes.withUnsafeBytes { all in
            raw.update(UnsafeRawBufferPointer(rebasing: all[0..<64]))
            raw.update(UnsafeRawBufferPointer(rebasing: all[64...]))
        }
        XCTAssertEqual(raw.finalizeHex(), SHA256Hasher.hexDigest(of: Foundation.Data(bytes)))
    }

    /// A file one chunk (1 MiB) and 7 bytes long: the streamed digest equals the whole buffer's, and
    /// both equal the digest Python's hashlib gives for these bytes.
    func testFileStreamedAcrossChunksEqualsWholeBuffer() throws {
        let count = (1 << 20) + 7
        let bytes = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ ($0 >> 11)) }
        let file = tmp.appendingPathComponent("blob.bin")
        try Foundation.Data(bytes).write(to: file)
        let streamed = try SHA256Hasher.hexDigest(ofFile: file.path)
        XCTAssertEqual(streamed, SHA256Hasher.hexDigest(of: bytes))
        XCTAssertEqual(streamed, "5133cceb8cc4c529361f8aa8365efdafc876d2ba6b344c4fdc8528d9477ff6ee")
    }

    func testEmptyFile() throws {
        let file = tmp.appendingPathComponent("empty")
        try Foundation.Data().write(to: file)
        XCTAssertEqual(try SHA256Hasher.hexDigest(ofFile: file.path),
                       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    func testUnreadablePathsThrowNamingThePath() {
        let missing = tmp.appendingPathComponent("missing").path
        XCTAssertThrowsError(try SHA256Hasher.hexDigest(ofFile: missing)) { error in
            guard case HashingError.unreadable(let path, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(path, missing)
            XCTAssertTrue(String(describing: error).hasPrefix("cannot read \(missing): "), "\(error)")
        }
        XCTAssertThrowsError(try SHA256Hasher.hexDigest(ofFile: tmp.path)) { error in  // a directory
            guard case HashingError.unreadable = error else { return XCTFail("\(error)") }
        }
    }
}

import Foundation
import TestSupport
import XCTest

extension ServeTests {
    /// Each served run decodes JPEGs with its own `--exif`, not the first run's: a copy of the tiny
    /// run trained "as torchvision decodes" (`exif: ignore`) sees a photo tagged "rotate 90°" as its
    /// stored pixels, the same as the untagged file, while the run that applies the tag beside it sees
    /// it turned. `serve --exif` overrides every run.
    func testEachServedRunDecodesWithItsOwnEXIFSetting() throws {
        _ = try liveServer()  // the tiny run exists
        let upright = Self.root + "/exif-apply", stored = Self.root + "/exif-ignore"
        for (copy, exif) in [(upright, "apply"), (stored, "ignore")] {
            try? FileManager.default.removeItem(atPath: copy)
            try FileManager.default.copyItem(atPath: Self.runDirectory, toPath: copy)
            try? FileManager.default.removeItem(atPath: copy + "/.lock")  // a copy, not the run itself
            let path = copy + "/config.json"
            var config = try XCTUnwrap(JSONSerialization.jsonObject(with: Foundation.Data(contentsOf: URL(fileURLWithPath: path)))
                as? [String: Any])
            var options = try XCTUnwrap(config["options"] as? [String: Any])
            options["exif"] = exif
            config["options"] = options
            try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: path))
        }
        let tagged = try Foundation.Data(contentsOf: URL(fileURLWithPath: Fixtures.path("images/orient_6.jpg")))
        let untagged = try Foundation.Data(contentsOf: URL(fileURLWithPath: Fixtures.path("images/orient_1.jpg")))
        func probabilities(_ server: ServerProcess, _ model: String, _ image: Foundation.Data) throws -> [Double] {
            let answer = try server.request("POST", "/v1/models/\(model):predict?top_k=6", body: image,
                                            headers: ["Content-Type": "image/jpeg"])
            XCTAssertEqual(answer.status, 200, answer.text)
            let topK = (answer.json["predictions"] as? [[String: Any]])?.first?["top_k"] as? [[String: Any]] ?? []
            return topK.sorted { ($0["index"] as? Int ?? 0) < ($1["index"] as? Int ?? 0) }
                .map { $0["probability"] as? Double ?? -1 }
        }

        let server = try ServerProcess([upright, stored])
        defer { _ = server.terminate() }
        XCTAssertEqual(try probabilities(server, "exif-ignore", tagged), try probabilities(server, "exif-ignore", untagged),
                       "the ignoring run decodes the tagged photo as stored")
        XCTAssertNotEqual(try probabilities(server, "exif-apply", tagged), try probabilities(server, "exif-apply", untagged),
                          "the applying run turns it")

        let overridden = try ServerProcess([upright, stored, "--exif", "ignore"])
        defer { _ = overridden.terminate() }
        XCTAssertEqual(try probabilities(overridden, "exif-apply", tagged), try probabilities(overridden, "exif-apply", untagged),
                       "--exif ignore applies to every run")
    }
}

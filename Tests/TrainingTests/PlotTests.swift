import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Training
import XCTest

/// SVG plots: well-formed XML (parsed with Foundation's XMLParser) carrying the series and labels.
final class PlotTests: XCTestCase {
    /// Parses XML, collecting element names, attributes and text.
    final class Collector: NSObject, XMLParserDelegate {
        var elements: [String] = []
        var attributes: [[String: String]] = []
        var text = ""
        func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                    qualifiedName qName: String?, attributes attributeDict: [String: String] = [:]) {
            elements.append(elementName)
            attributes.append(attributeDict)
            text += "|"
        }
        func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?,
                    qualifiedName qName: String?) {
            text += "|"
        }
        func parser(_ parser: XMLParser, foundCharacters string: String) { text += string }
    }

    func parse(_ svg: String, file: StaticString = #filePath, line: UInt = #line) -> Collector {
        let parser = XMLParser(data: Data(svg.utf8))
        let collector = Collector()
        parser.delegate = collector
        XCTAssertTrue(parser.parse(), "not well-formed: \(String(describing: parser.parserError))\n\(svg)",
                      file: file, line: line)
        XCTAssertEqual(collector.elements.first, "svg", file: file, line: line)
        return collector
    }

    func testLineChart() {
        let svg = Plots.lineChart(title: "Loss <train & val>", yLabel: "loss", series: [
            PlotSeries(name: "train", values: [2.3, 1.1, 0.7, 0.5]),
            PlotSeries(name: "validation", points: [(1, 2.0), (2, .nan), (3, 0.9), (4, 0.8)]),
        ])
        let xml = parse(svg)
        XCTAssertTrue(xml.text.contains("Loss <train & val>"))  // escaped in the file, text when parsed
        XCTAssertTrue(svg.contains("Loss &lt;train &amp; val&gt;"))
        let series = zip(xml.elements, xml.attributes).filter { $0.0 == "g" && $0.1["class"] == "series" }
        XCTAssertEqual(series.map { $0.1["data-name"] }, ["train", "validation"])
        // Legend entries and axis labels.
        for label in ["|train|", "|validation|", "|epoch|", "|loss|"] { XCTAssertTrue(xml.text.contains(label), label) }
        // Integer epochs as x ticks; y ticks cover the data (0.5 … 2.3).
        for tick in ["|1|", "|2|", "|3|", "|4|"] { XCTAssertTrue(xml.text.contains(tick), tick) }
        XCTAssertTrue(xml.text.contains("|0.5|") && xml.text.contains("|2.5|"), xml.text)
        // The NaN splits validation into runs of 1 and 2 points: only the second is a polyline.
        XCTAssertEqual(xml.elements.filter { $0 == "polyline" }.count, 2)
        XCTAssertEqual(xml.elements.filter { $0 == "circle" }.count, 7)
    }

    func testDegenerateCharts() {
        _ = parse(Plots.lineChart(title: "empty", yLabel: "y", series: []))
        _ = parse(Plots.lineChart(title: "flat", yLabel: "y", series: [PlotSeries(name: "a", values: [1, 1, 1])]))
        _ = parse(Plots.lineChart(title: "one", yLabel: "y", series: [PlotSeries(name: "a", values: [0.3])]))
        _ = parse(Plots.lineChart(title: "nan", yLabel: "y", series: [PlotSeries(name: "a", values: [.nan, .infinity])]))
    }

    func testConfusionMatrixHeatMap() {
        let svg = Plots.confusionMatrix([[5, 1, 0], [2, 7, 1], [0, 0, 9]], classNames: ["cat", "dog", "\"owl\""])
        let xml = parse(svg)
        for label in ["|cat|", "|dog|", "|\"owl\"|", "|predicted|", "|true|", "|7|", "|9|", "|Confusion matrix|"] {
            XCTAssertTrue(xml.text.contains(label), label)
        }
        // 9 cells with a tooltip each.
        let cells = zip(xml.elements, xml.attributes).filter { $0.0 == "rect" && $0.1["fill"]?.hasPrefix("#") == true }
        XCTAssertEqual(cells.count, 9 + 1)  // + the white background
        XCTAssertTrue(xml.text.contains("true dog, predicted cat: 2"))
        // Full rows are darkest; the empty cell is white-ish.
        XCTAssertTrue(svg.contains("fill=\"#08306b\""))  // 9 of 9
        XCTAssertTrue(svg.contains("fill=\"#f7fbff\""))  // 0
        // Many classes: no counts or labels, still well-formed.
        let big = (0..<Plots.matrixClassLimit).map { i in (0..<Plots.matrixClassLimit).map { $0 == i ? 3 : 0 } }
        let bigXML = parse(Plots.confusionMatrix(big, classNames: (0..<Plots.matrixClassLimit).map { "c\($0)" }))
        XCTAssertFalse(bigXML.text.contains("|c17|"))
        XCTAssertEqual(zip(bigXML.elements, bigXML.attributes).filter { $0.0 == "rect" && $0.1["fill"]?.hasPrefix("#") == true }.count,
                       100 * 100 + 1)
    }

    /// Above `matrixClassLimit` classes the matrix is too many cells to draw (3,000 classes made a
    /// 1.1 GB SVG in 8 GB of memory): the chart shows the most confused pairs instead.
    func testManyClassesGetTheMostConfusedPairs() {
        let n = 3_000
        var matrix = (0..<n).map { i in [Int](repeating: 0, count: n).enumerated().map { $0.offset == i ? 2 : $0.element } }
        matrix[7][8] = 5
        matrix[9][1] = 3
        let svg = Plots.confusionMatrix(matrix, classNames: (0..<n).map { "c\($0)" }, title: "Confusion matrix (validation)")
        XCTAssertLessThan(svg.utf8.count, 20_000)
        let xml = parse(svg)
        for label in ["|c7 → c8|", "|c9 → c1|", "|5 (71.4% of c7)|", "|3000 classes: the 2 most confused pairs (true → predicted)|",
                      "|Confusion matrix (validation)|"] {
            XCTAssertTrue(xml.text.contains(label), label)
        }
        XCTAssertTrue(parse(Plots.confusionMatrix((0..<101).map { i in (0..<101).map { $0 == i ? 1 : 0 } },
                                                  classNames: (0..<101).map { "c\($0)" })).text.contains("|No image was misclassified.|"))
    }

    func testWritingIsAtomicAndCurvesPerMetric() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("finetune-plots-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let train: [Int: [String: Double]] = [1: ["loss": 1.0, "accuracy": 0.6], 2: ["loss": 0.5, "accuracy": 0.8]]
        let validation: [Int: [String: Double]] = [1: ["loss": 1.2, "accuracy": 0.55, "auc": 0.7],
                                                   2: ["loss": 0.9, "accuracy": 0.7, "auc": 0.8]]
        let written = try Plots.writeLearningCurves(train: train, validation: validation, directory: directory.path)
        XCTAssertEqual(written.map { URL(fileURLWithPath: $0).lastPathComponent }, ["loss.svg", "accuracy.svg", "auc.svg"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted(),
                       ["accuracy.svg", "auc.svg", "loss.svg"])  // no temporary files left
        let auc = parse(try String(contentsOfFile: written[2], encoding: .utf8))
        let names = zip(auc.elements, auc.attributes).filter { $0.1["class"] == "series" }.map { $0.1["data-name"] }
        XCTAssertEqual(names, ["validation"])  // only validation has AUC
        XCTAssertNil(Plots.learningCurve(metric: "f1", train: train, validation: validation))

        let matrixPath = directory.appendingPathComponent("confusion.svg").path
        try Plots.write(Plots.confusionMatrix([[1, 0], [0, 1]], classNames: ["a", "b"]), to: matrixPath)
        _ = parse(try String(contentsOfFile: matrixPath, encoding: .utf8))
    }
}

/// A damaged `events.jsonl` (an epoch of Int.max; losses of ±1e308, finite but spanning more than a
/// Double holds) made `report` trap: "arithmetic overflow" at the epoch's number, "Double value cannot
/// be converted to Int" in the axis ticks. The line is left out, and the axis gets its two ends.
final class DamagedHistoryPlotTests: XCTestCase {
    func testExtremeEpochsAndValuesInTheEventsFileDoNotTrap() throws {
        let folder = try TRData.temporaryDirectory(self)
        let path = folder + "/events.jsonl"
        let lines = [#"{"event":"epoch","epoch":9223372036854775807,"metrics":{"loss":1}}"#,
                     #"{"event":"epoch","epoch":0,"metrics":{"loss":-1e308,"val_loss":0}}"#,
                     #"{"event":"epoch","epoch":1,"metrics":{"loss":1e308,"val_loss":1.7e308}}"#]
        try Foundation.Data((lines.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: path))
        let history = try RunHistory(eventsFile: path)
        XCTAssertEqual(history.epochs.map(\.number), [1, 2])
        let svg = try XCTUnwrap(history.curve("loss"))
        XCTAssertTrue(svg.contains("<svg") && svg.hasSuffix("</svg>\n"), svg)
    }
}

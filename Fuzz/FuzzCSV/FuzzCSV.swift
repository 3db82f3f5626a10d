// libFuzzer target: the RFC 4180 reader and writer (Data/CSV.swift) and the CSV dataset reader
// (Data/Datasets/CSVDataset.swift). The input is the CSV text. The reader must round-trip: what
// it parses, written by CSV.text and read again, gives the same fields (LF and CRLF). Then the text
// is read as a dataset list next to two real images, a.jpg and b.png (headers verified).
import Foundation
import FuzzSupport
import Data

private let folder: String = {
    let dir = FuzzScratch.folder("csv")
    let pixels = (0..<(8 * 8 * 3)).map { UInt8($0 % 251) }
    guard let png = try? Image(rgb: pixels, width: 8, height: 8).pngData() else { fatalError("cannot encode a PNG") }
    FuzzScratch.write(png, to: dir + "/a.jpg")  // sniffed by content, not name
    FuzzScratch.write(png, to: dir + "/b.png")
    return dir
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCSV(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    let text = String(decoding: bytes, as: UTF8.self)
    _ = try? CSV.parse(text, trimmingWhitespace: true)
    _ = try? CSV.completeRecords(text)
    if let records = try? CSV.parse(text) {
        let fields = records.map(\.fields)
        for ending in [CSV.LineEnding.lf, .crlf] {
            let written = CSV.text(fields, lineEnding: ending)
            do {
                let again = try CSV.parse(written).map(\.fields)
                guard again == fields else { fatalError("CSV round trip (\(ending)) changed \(fields) into \(again)") }
                let complete = try CSV.completeRecords(written)
                guard !complete.partial, complete.records.map(\.fields) == fields else {
                    fatalError("completeRecords of written CSV (\(ending)) differs")
                }
            } catch {
                fatalError("CSV written by CSV.text (\(ending)) does not parse: \(error)")
            }
        }
    }

    let path = FuzzScratch.write(bytes, to: folder + "/list.csv")
    do {
        let dataset = try CSVDataset(csv: path)
        guard !dataset.samples.isEmpty, dataset.classNames.count >= 2,
              dataset.samples.allSatisfy({ $0.label >= 0 && $0.label < dataset.classNames.count }) else {
            fatalError("CSVDataset: \(dataset.samples.count) samples, labels outside \(dataset.classNames.count) classes")
        }
    } catch {
        // a refusal
    }
    return 0
}

// libFuzzer target: the JPEG and PNG decoders and EXIF orientation (Sources/CImageCodecs through
// Data/Image.swift and Data/ImageCodec.swift): sniffing, header probes, whole decodes with and
// without DCT scaling, exact and fast.
//
// Input: one option byte, then the image file. Bit 0: fast decoding; bits 1-2: minSide 0, 1, 24 or
// 200 (DCT scaling); bit 3: EXIF orientation ignored (`ImageCodec.exifOrientation = .ignore`).
import Foundation
import FuzzSupport
@testable import Data

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzImage(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let options = input.byte()
    let fast = options & 1 != 0
    let minSide = [0, 1, 24, 200][Int(options >> 1) & 3]
    let ignoreEXIF = options & 8 != 0
    ImageCodec.exifOrientation = ignoreEXIF ? .ignore : .apply
    let raw = UnsafeRawBufferPointer(input.rest)
    _ = ImageCodec.sniff(raw)
    let probed = try? ImageCodec.probe(data: raw)
    let image: Image
    do {
        image = try Image.decode(raw, minSide: minSide, label: "fuzz", fast: fast)
    } catch {
        return 0  // a refusal; only crashes and broken invariants are findings
    }
    guard let probed else { fatalError("the image decodes, but its header probe failed") }
    guard image.channels == 3, image.pixels.count == image.width * image.height * 3 else {
        fatalError("decoded \(image.width)x\(image.height)x\(image.channels) with \(image.pixels.count) bytes")
    }
    // The probe reports the size after EXIF orientation, and the stored size.
    let (width, height) = ignoreEXIF ? (probed.storedWidth, probed.storedHeight) : (probed.width, probed.height)
    if minSide == 0 {
        guard image.width == width, image.height == height else {
            fatalError("decoded \(image.width)x\(image.height), the probe said \(width)x\(height) (EXIF ignored: \(ignoreEXIF))")
        }
    } else {
        guard image.width <= width, image.height <= height else {
            fatalError("decoded \(image.width)x\(image.height) at minSide \(minSide), more than \(width)x\(height)")
        }
    }
    return 0
}

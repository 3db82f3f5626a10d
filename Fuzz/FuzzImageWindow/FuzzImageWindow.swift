// libFuzzer target: the windowed JPEG path (ic_decoder_read_window / ic_decoder_decode_window, with
// libjpeg-turbo's skip and crop) as the loader's random-resized-crop fast path drives it
// (Data/Transforms/DirectSampleWriter.swift, RandomResizedCrop.swift), and Image.decodeWindow at a
// chosen DCT scale. PNGs and other files take the whole-image branch of the same writer.
//
// Input: 8 bytes of random seed, an output-size byte, an option byte, then the image file. Options:
// bit 0 fast decoding, bit 1 DCT scaling, bit 2 horizontal flip, bit 3 bicubic, bits 4-5 the
// decode minSide (0, 1, 24, 200), bit 6 a centre-crop plan instead of the random crop, bit 7 EXIF
// orientation ignored (`ImageCodec.exifOrientation = .ignore`).
import Foundation
import FuzzSupport
@testable import Data

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzImageWindow(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let seed = input.u64()
    let side = 1 + Int(input.byte() % 48)
    let options = input.byte()
    let raw = UnsafeRawBufferPointer(input.rest)
    ImageCodec.exifOrientation = options & 128 != 0 ? .ignore : .apply
    let geometry: DirectSamplePlan.Geometry = options & 64 == 0
        ? .randomResizedCrop(scale: 0.08...1, ratio: (3.0 / 4)...(4.0 / 3), flip: options & 4 != 0 ? 0.5 : nil)
        : .centerCrop(resize: side + Int(seed % 8), crop: side)
    let table = (0..<768).map { Float($0 % 256) / 255 }
    let plan = DirectSamplePlan(geometry: geometry, filter: options & 8 != 0 ? .bicubic : .bilinear, height: side,
                                width: side, table: table, decodeFast: options & 1 != 0,
                                decodeMinSide: [0, 1, 24, 200][Int(options >> 4) & 3])
    var out = [Float](repeating: .nan, count: plan.sampleCount)
    var random = SampleRandom(seed: seed)
    do {
        try out.withUnsafeMutableBufferPointer { buffer in
            try plan.write(encoded: raw, label: "fuzz", dctScaling: options & 2 != 0, random: &random,
                           into: buffer.baseAddress!)
        }
        if let bad = out.firstIndex(where: { !$0.isFinite || $0 < -0.01 || $0 > 1.01 }) {
            fatalError("sample value \(out[bad]) at \(bad): not made from the table")
        }
    } catch {
        // a refusal
    }

    // Image.decodeWindow: a window of the image at DCT scale 1, 2, 4 or 8 (eighths).
    guard let info = try? ImageCodec.probe(data: raw) else { return 0 }
    let scale = [1, 2, 4, 8][Int(seed >> 8) & 3]
    let (upright, uprightHeight) = options & 128 != 0 ? (info.storedWidth, info.storedHeight) : (info.width, info.height)
    let fullWidth = (upright * scale + 7) / 8, fullHeight = (uprightHeight * scale + 7) / 8
    guard fullWidth > 0, fullHeight > 0 else { return 0 }
    let width = 1 + Int(seed >> 16 & 0xFFFF) % fullWidth, height = 1 + Int(seed >> 32 & 0xFFFF) % fullHeight
    let left = Int(seed >> 48 & 0xFF) % (fullWidth - width + 1), top = Int(seed >> 56) % (fullHeight - height + 1)
    do {
        let window = try Image.decodeWindow(raw, scale: scale, left: left, top: top, width: width, height: height,
                                            label: "fuzz", fast: options & 1 != 0)
        guard window.width == width, window.height == height, window.pixels.count == width * height * 3 else {
            fatalError("window \(width)x\(height) came out \(window.width)x\(window.height)")
        }
    } catch {
        // a refusal
    }
    return 0
}

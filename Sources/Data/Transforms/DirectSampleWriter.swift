import CImageCodecs
import Foundation
import Torch

/// The loader's fast path for the two standard transforms — `TrainingTransform.standard` without colour
/// jitter (random resized crop, optional horizontal flip, normalisation) and `EvaluationTransform`
/// (resize, centre crop, normalisation): crop, resize, flip, uint8 → float and normalisation run as one
/// C pass that writes the sample straight into its slot of the batch tensor (no per-sample tensors, no
/// stacking). For JPEG files the random crop is chosen from the header alone, and only the crop's window
/// is decoded, at the smallest DCT scale that keeps it at least the output size.
///
/// The output equals the general path (`SampleTransform.tensor(from:random:)` on the decoded image,
/// then stacking) bit for bit whenever the decode scale is the same: the same random draws in the same
/// order, Pillow's arithmetic for the resize, and a lookup table made by the transform's own `OutputScaling`
/// tensor ops for the floats.
struct DirectSamplePlan: Sendable {
    enum Geometry: Sendable {
        case randomResizedCrop(scale: ClosedRange<Double>, ratio: ClosedRange<Double>, flip: Double?)
        case centerCrop(resize: Int, crop: Int)
    }

    var geometry: Geometry
    var filter: Image.Filter
    var height: Int
    var width: Int
    /// `table[c * 256 + v]`: the output float of value `v` in channel `c`.
    var table: [Float]
    var decodeFast: Bool
    var decodeMinSide: Int

    /// Floats in one sample: [3, height, width].
    var sampleCount: Int { 3 * height * width }
}

/// A sample's file could not be read or decoded (the loader skips it) — as opposed to an error of the transform.
struct SampleLoadFailure: Error {
    let underlying: Error
}

/// Transforms that have a `DirectSamplePlan` (nil when their configuration has none).
protocol DirectSampleTransform {
    func directPlan() throws -> DirectSamplePlan?
}

extension OutputScaling {
    /// 3 × 256 floats: what `apply` makes of each value in each channel, computed with the same tensor ops,
    /// so a table lookup gives the same bits.
    func lookupTable() throws -> [Float] {
        let ramp = try Tensor((0..<768).map { UInt8($0 % 256) }, shape: [3, 1, 256])
        let values: Tensor
        switch self {
        case .normalize(let p): values = try p.normalize(ramp)
        case .rescale(let f): values = try ramp.to(.float32) * f
        }
        let table = try values.contiguous().floats()
        guard table.count == 768 else { throw DataError.invalidDataset("output scaling gave \(table.count) values") }
        return table
    }
}

extension TrainingTransform: DirectSampleTransform {
    func directPlan() throws -> DirectSamplePlan? {
        guard let crop = augmentations.first as? RandomResizedCrop, crop.interpolation != .nearest,
              crop.height > 0, crop.width > 0 else { return nil }
        var flip: Double?
        switch augmentations.count {
        case 1: break
        case 2:
            guard let f = augmentations[1] as? RandomHorizontalFlip else { return nil }
            flip = f.p
        default: return nil
        }
        return DirectSamplePlan(geometry: .randomResizedCrop(scale: crop.scale, ratio: crop.ratio, flip: flip),
                                filter: crop.interpolation == .bicubic ? .bicubic : .bilinear, height: crop.height,
                                width: crop.width, table: try output.lookupTable(), decodeFast: decodeFast,
                                decodeMinSide: decodeMinSide)
    }
}

extension EvaluationTransform: DirectSampleTransform {
    func directPlan() throws -> DirectSamplePlan? {
        let p = preprocessing
        guard p.cropSize > 0, p.resizeSize > 0 else { return nil }
        return DirectSamplePlan(geometry: .centerCrop(resize: p.resizeSize, crop: p.cropSize),
                                filter: Image.Filter(name: p.interpolation) ?? .bilinear, height: p.cropSize,
                                width: p.cropSize, table: try OutputScaling.normalize(p).lookupTable(),
                                decodeFast: decodeFast, decodeMinSide: decodeMinSide)
    }
}

extension DirectSamplePlan {
    /// Writes the sample of a decoded image to `out` (`sampleCount` floats).
    func write(_ image: Image, random: inout SampleRandom, into out: UnsafeMutablePointer<Float>) throws {
        let rgb = image.rgb()
        try rgb.pixels.withUnsafeBufferPointer { buffer in
            let pixels = buffer.baseAddress!
            switch geometry {
            case .randomResizedCrop(let scale, let ratio, let flipP):
                let p = RandomResizedCrop.parameters(imageHeight: rgb.height, imageWidth: rgb.width, scale: scale,
                                                     ratio: ratio, random: &random)
                let flip = flipP.map { random.chance($0) } ?? false
                try resample(pixels + (p.top * rgb.width + p.left) * 3, width: p.width, height: p.height,
                             stride: rgb.width * 3, box: (0, 0, Double(p.width), Double(p.height)),
                             scaledWidth: width, scaledHeight: height, x: 0, y: 0, flip: flip, into: out)
            case .centerCrop(let resize, let crop):
                let (rh, rw) = Preprocessing.resizedSize(height: rgb.height, width: rgb.width, shorterSide: resize)
                guard rh >= crop, rw >= crop else {
                    throw DataError.invalidDataset("cannot centre-crop \(crop)×\(crop) from \(rh)×\(rw)")
                }
                let top = Int((Double(rh - crop) / 2).rounded(.toNearestOrEven))
                let left = Int((Double(rw - crop) / 2).rounded(.toNearestOrEven))
                try resample(pixels, width: rgb.width, height: rgb.height, stride: rgb.width * 3,
                             box: (0, 0, Double(rgb.width), Double(rgb.height)), scaledWidth: rw, scaledHeight: rh,
                             x: left, y: top, flip: false, into: out)
            }
        }
    }

    /// Reads, decodes and writes the sample of the image file at `path`. Reading and decoding errors are
    /// thrown as `SampleLoadFailure`s; `dctScaling: false` decodes at full size.
    func write(file path: String, dctScaling: Bool, random: inout SampleRandom,
               into out: UnsafeMutablePointer<Float>) throws {
        var opened = false
        do {
            try ImageCodec.withFileBytes(path, maxBytes: 0) { raw, _ in
                opened = true
                try write(encoded: raw, label: path, dctScaling: dctScaling, random: &random, into: out)
            }
        } catch let failure as SampleLoadFailure {
            throw failure
        } catch where !opened {
            throw SampleLoadFailure(underlying: error)
        }
    }

    func write(encoded raw: UnsafeRawBufferPointer, label: String, dctScaling: Bool, random: inout SampleRandom,
               into out: UnsafeMutablePointer<Float>) throws {
        let minSide = dctScaling ? decodeMinSide : 0
        let base = raw.baseAddress?.assumingMemoryBound(to: UInt8.self)
        guard case .randomResizedCrop(let scale, let ratio, let flipP) = geometry,
              ic_sniff_format(base, raw.count) == Int32(IC_FORMAT_JPEG.rawValue) else {
            // Whole images: decode, then crop and resize in one pass.
            let image: Image
            do { image = try Image.decode(raw, minSide: minSide, label: label, fast: decodeFast) } catch {
                throw SampleLoadFailure(underlying: error)
            }
            return try write(image, random: &random, into: out)
        }

        var message = [CChar](repeating: 0, count: 512)
        var decoder: OpaquePointer?
        var info = ic_image_info()
        let status = ic_decoder_open_flags(base, raw.count, Int32(clamping: max(0, minSide)),
                                           ImageCodec.decodeFlags(fast: decodeFast), &decoder, &info, &message,
                                           message.count)
        guard status == 0, let decoder else {
            throw SampleLoadFailure(underlying: ImageCodecFailure(status: status, message: message, label: label).dataError)
        }
        defer { ic_decoder_close(decoder) }

        // The crop is drawn on the image as the general path decodes it (scale n0/8), as torchvision
        // would on that image; it is then decoded at scale n1/8, the smallest that keeps it at least
        // the output size (never more upsampling than torchvision's full-size decode has).
        let w0 = Int(info.width), h0 = Int(info.height), n0 = Int(info.scale_num)
        let p = RandomResizedCrop.parameters(imageHeight: h0, imageWidth: w0, scale: scale, ratio: ratio,
                                             random: &random)
        let flip = flipP.map { random.chance($0) } ?? false
        var n1 = n0
        if dctScaling {
            n1 = [1, 2, 4, 8].first { p.width * $0 >= width * n0 && p.height * $0 >= height * n0 } ?? 8
        }
        var w1 = Int32(w0), h1 = Int32(h0)
        if n1 != n0 {
            let sized = ic_decoder_scaled_size(decoder, Int32(n1), &w1, &h1, &message, message.count)
            guard sized == 0 else {
                throw SampleLoadFailure(underlying: ImageCodecFailure(status: sized, message: message, label: label).dataError)
            }
        }
        // The crop in scale-n1 pixels (fractional when n1 != n0), and the whole pixels covering it.
        let factor = Double(n1) / Double(n0)
        let x0 = Double(p.left) * factor, y0 = Double(p.top) * factor
        let x1 = min(Double(p.left + p.width) * factor, Double(w1)), y1 = min(Double(p.top + p.height) * factor, Double(h1))
        let left = Int(x0.rounded(.down)), top = Int(y0.rounded(.down))
        let right = min(Int(x1.rounded(.up)), Int(w1)), bottom = min(Int(y1.rounded(.up)), Int(h1))
        let ww = right - left, wh = bottom - top
        guard ww > 0, wh > 0, x1 > x0, y1 > y0 else {
            throw DataError.invalidDataset("empty crop \(p) of a \(w0)x\(h0) image")
        }
        // Decoded into the decoder's memory (for upright RGB JPEGs libjpeg writes the rows there itself).
        var window: UnsafePointer<UInt8>?
        var stride = 0
        let readStatus = ic_decoder_decode_window(decoder, Int32(n1), Int32(left), Int32(top), Int32(ww), Int32(wh),
                                                  &window, &stride, &message, message.count)
        guard readStatus == 0, let window else {
            throw SampleLoadFailure(underlying: ImageCodecFailure(status: readStatus, message: message, label: label).dataError)
        }
        try resample(window, width: ww, height: wh, stride: stride,
                     box: (x0 - Double(left), y0 - Double(top), x1 - Double(left), y1 - Double(top)),
                     scaledWidth: width, scaledHeight: height, x: 0, y: 0, flip: flip, into: out)
    }

    /// `ic_resample_rgb_f32`: the window (x, y, self.width, self.height) of the image `box` resized to
    /// scaledWidth × scaledHeight, normalised through `table`, as CHW floats.
    private func resample(_ pixels: UnsafePointer<UInt8>, width inWidth: Int, height inHeight: Int, stride: Int,
                          box: (Double, Double, Double, Double), scaledWidth: Int, scaledHeight: Int, x: Int, y: Int,
                          flip: Bool, into out: UnsafeMutablePointer<Float>) throws {
        var spec = ic_resample_spec()
        spec.box = box
        spec.scaled_width = Int32(clamping: scaledWidth)
        spec.scaled_height = Int32(clamping: scaledHeight)
        spec.out_x = Int32(clamping: x)
        spec.out_y = Int32(clamping: y)
        spec.out_width = Int32(clamping: width)
        spec.out_height = Int32(clamping: height)
        spec.filter = filter.rawValue
        let status = table.withUnsafeBufferPointer { lut in
            ic_resample_rgb_f32(pixels, Int32(inWidth), Int32(inHeight), stride, &spec, flip ? 1 : 0, lut.baseAddress, out)
        }
        guard status == 0 else {
            throw DataError.unsupported("resizing \(inWidth)×\(inHeight) to \(scaledWidth)×\(scaledHeight) failed (status \(status))")
        }
    }
}

extension SampleTransform {
    /// The sample of encoded JPEG or PNG bytes decoded at full size: the same bits as
    /// `tensor(from: Image(decoding: bytes, path: label), random: &random)`. The standard transforms
    /// (`EvaluationTransform`, `TrainingTransform.standard` without colour jitter) take the loader's fast
    /// path: decode, crop, resize and normalise in one pass into the tensor, with no intermediate
    /// image tensors (what `finetune serve` decodes each request with). Errors are the decoder's
    /// `DataError`s naming `label`.
    public func tensor<Bytes: ContiguousBytes>(decoding bytes: Bytes, label: String,
                                               random: inout SampleRandom) throws -> Tensor {
        guard let direct = self as? DirectSampleTransform, var plan = try direct.directPlan() else {
            return try tensor(from: Image(decoding: bytes, path: label), random: &random)
        }
        plan.decodeFast = false  // `Image(decoding:)`'s exact decoder, even for training augmentation
        let sample = try Tensor.empty([3, plan.height, plan.width], dtype: .float32)
        let out = try sample.dataPointer().assumingMemoryBound(to: Float.self)
        do {
            try bytes.withUnsafeBytes { raw in
                try plan.write(encoded: raw, label: label, dctScaling: false, random: &random, into: out)
            }
        } catch let failure as SampleLoadFailure {
            throw failure.underlying
        }
        return sample
    }
}

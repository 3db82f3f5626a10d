import CImageCodecs
import Foundation
import Torch

/// Resampling filters.
public enum ResizeInterpolation: String, Sendable {
    /// PIL's NEAREST (`src = floor((dst + 0.5) * scale)`), computed in Swift.
    case nearest
    /// Pillow's bilinear / bicubic filters with its exact arithmetic (antialiased when downsampling),
    /// via `resized(width:height:filter:)` — what torchvision's transforms do to PIL images.
    case bilinear, bicubic
}

extension Image {
    /// An image over the pixels of a uint8 tensor of shape [C, H, W] (C = 1 or 3). Other dtypes are
    /// refused: a float tensor's values wrapped modulo 256 (300.0 became 44), and one in [0, 1] came out black.
    public init(chw tensor: Tensor) throws {
        guard tensor.rank == 3, tensor.shape[0] == 1 || tensor.shape[0] == 3 else {
            throw DataError.invalidDataset("expected a [C, H, W] image tensor with 1 or 3 channels, got \(tensor.shape)")
        }
        guard tensor.dtype == .uint8 else {
            throw DataError.invalidDataset("expected a uint8 image tensor (0–255), got \(tensor.dtype): scale float "
                + "images to 0–255 and convert them to uint8 first")
        }
        let hwc = try tensor.permute([1, 2, 0]).contiguous()
        try self.init(width: tensor.shape[2], height: tensor.shape[1], channels: tensor.shape[0],
                      pixels: hwc.toArray(UInt8.self))
    }

    /// The image with 3 channels (gray replicated, as PIL's `convert("RGB")`).
    public func rgb() -> Image {
        guard channels == 1 else { return self }
        var out = [UInt8](repeating: 0, count: width * height * 3)
        for (i, v) in pixels.enumerated() {
            out[3 * i] = v
            out[3 * i + 1] = v
            out[3 * i + 2] = v
        }
        return try! Image(width: width, height: height, channels: 3, pixels: out)
    }

    /// The `height`×`width` region at (`top`, `left`), which must lie inside the image.
    public func cropped(top: Int, left: Int, height h: Int, width w: Int) throws -> Image {
        guard top >= 0, left >= 0, h > 0, w > 0, h <= height - top, w <= width - left else {
            throw DataError.invalidDataset("crop \(w)x\(h) at (\(left), \(top)) is outside a \(width)x\(height) image")
        }
        if top == 0 && left == 0 && h == height && w == width { return self }
        var out = [UInt8]()
        out.reserveCapacity(w * h * channels)
        pixels.withUnsafeBufferPointer { p in
            for y in top..<(top + h) {
                let start = (y * width + left) * channels
                out.append(contentsOf: p[start..<(start + w * channels)])
            }
        }
        return try Image(width: w, height: h, channels: channels, pixels: out)
    }

    /// The image resized to exactly `height`×`width`.
    public func resized(height h: Int, width w: Int, interpolation: ResizeInterpolation = .bilinear) throws -> Image {
        guard h > 0, w > 0 else { throw DataError.invalidDataset("cannot resize to \(w)x\(h)") }
        // The decoders' own limit: more pixels aborted the process allocating them.
        guard h <= Int(IC_MAX_PIXELS) / w else {
            throw DataError.invalidDataset("cannot resize to \(w)x\(h): more than \(IC_MAX_PIXELS) pixels")
        }
        if h == height && w == width { return self }
        switch interpolation {
        case .nearest:
            let c = channels
            let xs = (0..<w).map { Swift.min(width - 1, Int((Double($0) + 0.5) * Double(width) / Double(w))) * c }
            let out = [UInt8](unsafeUninitializedCapacity: w * h * c) { dst, initialized in
                pixels.withUnsafeBufferPointer { src in
                    xs.withUnsafeBufferPointer { xs in
                        var d = 0
                        for y in 0..<h {
                            let sy = Swift.min(height - 1, Int((Double(y) + 0.5) * Double(height) / Double(h)))
                            let row = sy * width * c
                            for x in 0..<w {
                                let s = row + xs[x]
                                for k in 0..<c { dst[d + k] = src[s + k] }
                                d += c
                            }
                        }
                    }
                }
                initialized = w * h * c
            }
            return try Image(width: w, height: h, channels: c, pixels: out)
        case .bilinear, .bicubic:
            return try resized(width: w, height: h, filter: interpolation == .bicubic ? .bicubic : .bilinear)
        }
    }

    /// Mirror image (left ↔ right).
    public func flippedHorizontally() -> Image {
        let c = channels, w = width
        let out = [UInt8](unsafeUninitializedCapacity: pixels.count) { dst, initialized in
            pixels.withUnsafeBufferPointer { src in
                for y in 0..<height {
                    let row = y * w * c
                    for x in 0..<w {
                        let s = row + (w - 1 - x) * c, d = row + x * c
                        for k in 0..<c { dst[d + k] = src[s + k] }
                    }
                }
            }
            initialized = pixels.count
        }
        return try! Image(width: width, height: height, channels: c, pixels: out)
    }

    /// Upside down (top ↔ bottom).
    public func flippedVertically() -> Image {
        var out = [UInt8]()
        out.reserveCapacity(pixels.count)
        let rowBytes = width * channels
        for y in stride(from: height - 1, through: 0, by: -1) {
            out.append(contentsOf: pixels[(y * rowBytes)..<((y + 1) * rowBytes)])
        }
        return try! Image(width: width, height: height, channels: channels, pixels: out)
    }
}

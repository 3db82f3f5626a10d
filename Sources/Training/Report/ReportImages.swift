import Data
import Foundation
import Torch

/// The pictures of a run report: thumbnails and Grad-CAM overlays as PNG data URIs.
enum ReportImages {
    /// `data:image/png;base64,…` of `image`.
    static func dataURI(_ image: Image) throws -> String {
        "data:image/png;base64," + (try image.pngData()).base64EncodedString()
    }

    /// `image` shrunk (never enlarged beyond 4×) so its longer side is `side`, aspect kept.
    static func thumbnail(_ image: Image, side: Int) throws -> Image {
        let scale = min(4, Double(side) / Double(max(image.width, image.height)))
        let w = max(1, Int((Double(image.width) * scale).rounded())), h = max(1, Int((Double(image.height) * scale).rounded()))
        return try image.resized(width: w, height: h, filter: .bilinear)
    }

    /// The uint8 [3, H, W] `crop` blended with the jet colours of `heatmap` ([H, W] in [0, 1]):
    /// `(1 − alpha) · pixel + alpha · colour`.
    static func overlay(crop: Tensor, heatmap: Tensor, alpha: Double = 0.45) throws -> Image {
        let (h, w) = (crop.shape[1], crop.shape[2])
        let pixels = try crop.contiguous().toArray(UInt8.self)
        let heat = try heatmap.to(.float32).contiguous().floats()
        var rgb = [UInt8](repeating: 0, count: h * w * 3)
        for i in 0..<(h * w) {
            let t = Double(min(1, max(0, heat[i])))
            let colour = [jet(4 * t - 3), jet(4 * t - 2), jet(4 * t - 1)]
            for c in 0..<3 {
                let blended = (1 - alpha) * Double(pixels[c * h * w + i]) + alpha * 255 * colour[c]
                rgb[i * 3 + c] = UInt8(min(255, max(0, blended.rounded())))
            }
        }
        return try Image(rgb: rgb, width: w, height: h)
    }

    /// One channel of matplotlib-style "jet": 1.5 − |x|, clamped to [0, 1].
    static func jet(_ x: Double) -> Double { min(1, max(0, 1.5 - abs(x))) }
}

import Data
import Foundation
import TestSupport
import Torch
import XCTest

/// Seeded randomness, augmentations (geometry checked on known images) and the Keras preset.
final class TransformTests: XCTestCase {
    /// An image whose channel values are a linear function of (row, col), so bilinear sampling is
    /// exact anywhere inside it: R = 10·row + 3·col, G = 2·row + 20·col, B = 100.
    static func linearImage(size: Int) -> Image {
        var pixels: [UInt8] = []
        for r in 0..<size { for c in 0..<size { pixels += [UInt8(10 * r + 3 * c), UInt8(2 * r + 20 * c), 100] } }
        return try! Image(rgb: pixels, width: size, height: size)
    }

    static func linearValue(row: Double, col: Double, channel: Int) -> Double {
        [10 * row + 3 * col, 2 * row + 20 * col, 100][channel]
    }

    // MARK: - Randomness

    func testSampleRandomIsSeededPerSampleAndUniform() {
        var a = SampleRandom(seed: 1, epoch: 2, index: 3), b = SampleRandom(seed: 1, epoch: 2, index: 3)
        XCTAssertEqual((0..<10).map { _ in a.next() }, (0..<10).map { _ in b.next() })
        var firsts = Set<UInt64>()
        for (s, e, i, d) in [(1, 2, 3, 0), (2, 2, 3, 0), (1, 3, 3, 0), (1, 2, 4, 0), (1, 2, 3, 1), (0, 0, 0, 0)] {
            var r = SampleRandom(seed: UInt64(s), epoch: e, index: i, draw: d)
            firsts.insert(r.next())
        }
        XCTAssertEqual(firsts.count, 6)
        // SplitMix64's published first output for seed 0.
        var reference = SplitMix64(seed: 0)
        XCTAssertEqual(reference.next(), 0xE220_A839_7B1D_CDAF)

        var r = SampleRandom(seed: 99)
        var buckets = [Int](repeating: 0, count: 10)
        for _ in 0..<50_000 {
            let u = r.unit()
            XCTAssertTrue(u >= 0 && u < 1)
            buckets[r.integer(in: 0..<10)] += 1
        }
        for n in buckets { XCTAssertEqual(Double(n), 5000, accuracy: 300) }
        XCTAssertEqual(r.permutation(50).sorted(), Array(0..<50))
    }

    // MARK: - Geometry

    func testRandomResizedCropFollowsTorchvisionBounds() throws {
        for seed in 0..<300 {
            var r = SampleRandom(seed: UInt64(seed))
            let p = RandomResizedCrop.parameters(imageHeight: 60, imageWidth: 100, scale: 0.08...1,
                                                 ratio: 0.75...(4.0 / 3), random: &r)
            XCTAssertTrue(p.top >= 0 && p.left >= 0 && p.top + p.height <= 60 && p.left + p.width <= 100, "\(p)")
            let area = Double(p.height * p.width) / 6000
            XCTAssertTrue(area > 0.06 && area <= 1.0, "area \(area)")
            let aspect = Double(p.width) / Double(p.height)
            if p.height < 60 { XCTAssertTrue(aspect > 0.7 && aspect < 1.42, "aspect \(aspect)") }
        }
        // When no attempt fits, the fallback is a centre crop clamped to the ratio range.
        var r = SampleRandom(seed: 1)
        let fallback = RandomResizedCrop.parameters(imageHeight: 40, imageWidth: 100, scale: 2...3,
                                                    ratio: 0.75...(4.0 / 3), random: &r)
        XCTAssertEqual([fallback.top, fallback.left, fallback.height, fallback.width], [0, 23, 40, 53])
        let crop = RandomResizedCrop(size: 24)
        let out = try crop.apply(TestData.pattern(seed: 3, width: 50, height: 30), random: &r)
        XCTAssertEqual([out.width, out.height, out.channels], [24, 24, 3])
    }

    func testFlipsResizeAndCrop() throws {
        let image = TestData.pattern(seed: 5, width: 4, height: 3)
        var r = SampleRandom(seed: 0)
        let h = try RandomHorizontalFlip(p: 1).apply(image, random: &r)
        let v = try RandomVerticalFlip(p: 1).apply(image, random: &r)
        for y in 0..<3 {
            for x in 0..<4 {
                for c in 0..<3 {
                    XCTAssertEqual(h.pixels[(y * 4 + x) * 3 + c], image.pixels[(y * 4 + 3 - x) * 3 + c])
                    XCTAssertEqual(v.pixels[(y * 4 + x) * 3 + c], image.pixels[((2 - y) * 4 + x) * 3 + c])
                }
            }
        }
        XCTAssertEqual(try RandomHorizontalFlip(p: 0).apply(image, random: &r), image)
        // Tensors in, tensors out.
        let flippedTensor = try RandomHorizontalFlip(p: 1).apply(chw: image.toTensor(), random: &r)
        XCTAssertEqual(try flippedTensor.toArray(UInt8.self), try image.toTensor().flip([2]).toArray(UInt8.self))
        // PIL NEAREST: 4 → 2 columns samples floor((x + 0.5) * 2) = 1, 3.
        let nearest = try image.resized(height: 3, width: 2, interpolation: .nearest)
        XCTAssertEqual(Array(nearest.pixels[0..<6]), Array(image.pixels[3..<6]) + Array(image.pixels[9..<12]))
        let crop = try image.cropped(top: 1, left: 2, height: 2, width: 2)
        XCTAssertEqual(Array(crop.pixels[0..<3]), Array(image.pixels[(1 * 4 + 2) * 3..<((1 * 4 + 2) * 3 + 3)]))
        XCTAssertThrowsError(try image.cropped(top: 2, left: 0, height: 2, width: 2))
        let bilinear = try TestData.pattern(seed: 1, width: 40, height: 30).resized(height: 15, width: 20)
        XCTAssertEqual([bilinear.width, bilinear.height], [20, 15])
    }

    func testAffineWarpIdentityRotationAndFill() throws {
        let image = TestData.pattern(seed: 2, width: 5, height: 5)
        let identity = RandomAffine.matrix(angle: 0, translate: (0, 0), scale: 1, shear: (0, 0), height: 5, width: 5)
        XCTAssertEqual(AffineWarp.warp(image, matrix: identity), image)
        // torchvision's F.affine: a positive angle turns the picture clockwise (y points down).
        let rotated = AffineWarp.warp(image, matrix: RandomAffine.matrix(angle: 90, translate: (0, 0), scale: 1,
                                                                          shear: (0, 0), height: 5, width: 5))
        for y in 0..<5 {
            for x in 0..<5 {
                let s = (((4 - x) * 5) + y) * 3
                XCTAssertEqual(Array(rotated.pixels[(y * 5 + x) * 3..<(y * 5 + x) * 3 + 3]), Array(image.pixels[s..<s + 3]))
            }
        }
        // A shift by 2 pixels to the right fills the first columns.
        let shift = RandomAffine.matrix(angle: 0, translate: (2, 0), scale: 1, shear: (0, 0), height: 5, width: 5)
        let filled = AffineWarp.warp(image, matrix: shift, fill: .constant(7))
        XCTAssertEqual(Array(filled.pixels[0..<6]), [7, 7, 7, 7, 7, 7])
        XCTAssertEqual(Array(filled.pixels[6..<9]), Array(image.pixels[0..<3]))
        let edge = AffineWarp.warp(image, matrix: shift, fill: .nearest)
        XCTAssertEqual(Array(edge.pixels[0..<3]), Array(image.pixels[0..<3]))
        let mirror = AffineWarp.warp(image, matrix: shift, fill: .reflect)
        XCTAssertEqual(Array(mirror.pixels[0..<3]), Array(image.pixels[3..<6]))    // b a | a b c
        let wrapped = AffineWarp.warp(image, matrix: shift, fill: .wrap)
        XCTAssertEqual(Array(wrapped.pixels[0..<3]), Array(image.pixels[9..<12]))  // d e | a b c
        var r = SampleRandom(seed: 4)
        let random = try RandomAffine(degrees: 30, translate: (0.1, 0.1), scale: 0.9...1.1, shear: 10).apply(image, random: &r)
        XCTAssertEqual([random.width, random.height], [5, 5])
    }

    func testColorJitterFormulas() throws {
        let image = try Image(rgb: [200, 100, 50, 0, 0, 0, 255, 0, 0, 90, 90, 90], width: 2, height: 2)
        func run(_ p: ColorJitter.Parameters) throws -> [UInt8] { try ColorJitter.apply(p, to: image).pixels }
        let bright = try run(.init(order: [0, 1, 2, 3], brightness: 1.2))
        XCTAssertEqual(bright, image.pixels.map { UInt8(min(255, (Double($0) * 1.2).rounded())) })
        // Saturation 0 gives the grayscale image.
        let gray = try run(.init(order: [2, 0, 1, 3], saturation: 0))
        for i in 0..<4 {
            let p = image.pixels[(3 * i)..<(3 * i + 3)].map(Double.init)
            let g = UInt8((0.2989 * p[0] + 0.587 * p[1] + 0.114 * p[2]).rounded())
            XCTAssertEqual(Array(gray[(3 * i)..<(3 * i + 3)]), [g, g, g])
        }
        // Contrast 0 gives the mean gray everywhere.
        let flat = try run(.init(order: [1, 0, 2, 3], contrast: 0))
        XCTAssertEqual(Set(flat).count, 1)
        // Hue: a third of a turn takes red to green; gray is unchanged.
        let hue = try run(.init(order: [3, 0, 1, 2], hue: 1.0 / 3))
        XCTAssertEqual(Array(hue[6..<9]), [0, 255, 0])
        XCTAssertEqual(Array(hue[9..<12]), [90, 90, 90])
        XCTAssertEqual(try run(.init(order: [0, 1, 2, 3])), image.pixels)
        var r = SampleRandom(seed: 3)
        let p = ColorJitter(brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.1).parameters(random: &r)
        XCTAssertEqual(p.order.sorted(), [0, 1, 2, 3])
        XCTAssertTrue((0.6...1.4).contains(p.brightness!) && (-0.1...0.1).contains(p.hue!))
    }

    // MARK: - Keras preset

    func keras(_ image: Image, _ p: KerasImageDataGenerator.Parameters,
               fill: FillMode = .nearest) -> [Float] {
        KerasImageDataGenerator(fillMode: fill, targetSize: (image.height, image.width)).transformed(image, parameters: p)
    }

    /// Checks a Keras warp of `linearImage` against `(row, col) → source (row, col)`, with Keras'
    /// default "nearest" fill (coordinates clamped to the image).
    func assertWarp(_ out: [Float], size: Int, _ source: (Double, Double) -> (Double, Double),
                    file: StaticString = #filePath, line: UInt = #line) {
        let clamp = { (v: Double) in min(Double(size - 1), max(0, v)) }
        for r in 0..<size {
            for c in 0..<size {
                let (sr, sc) = source(Double(r), Double(c))
                for k in 0..<3 {
                    let expected = Self.linearValue(row: clamp(sr), col: clamp(sc), channel: k)
                    XCTAssertEqual(Double(out[(r * size + c) * 3 + k]), expected, accuracy: 1e-3,
                                   "pixel (\(r), \(c)) channel \(k)", file: file, line: line)
                }
            }
        }
    }

    func testKerasGeometryOnAKnownImage() throws {
        let five = Self.linearImage(size: 5), seven = Self.linearImage(size: 7)
        XCTAssertEqual(keras(five, .init()), five.pixels.map(Float.init))
        // Zoom 0.5 (zoom *in*) about Keras' centre H/2 + 0.5 = 3.0 (not 2.0: Keras' own offset).
        assertWarp(keras(five, .init(zx: 0.5, zy: 0.5)), size: 5) { r, c in (3 + 0.5 * (r - 3), 3 + 0.5 * (c - 3)) }
        // Rows and columns zoom independently: zx scales rows, zy columns.
        assertWarp(keras(five, .init(zx: 1.5, zy: 0.5)), size: 5) { r, c in (3 + 1.5 * (r - 3), 3 + 0.5 * (c - 3)) }
        // Shear in degrees: source row = r - sin(s)(c - o), source column = o + cos(s)(c - o).
        let s = 30.0 * .pi / 180
        assertWarp(keras(seven, .init(shear: 30)), size: 7) { r, c in (r - sin(s) * (c - 4), 4 + cos(s) * (c - 4)) }
        // Rotation then zoom compose as Keras' matrices: rotation · zoom.
        assertWarp(keras(five, .init(theta: 90, zx: 0.5, zy: 0.5)), size: 5) { r, c in
            (3 - 0.5 * (c - 3), 3 + 0.5 * (r - 3))
        }
        // Shifts: tx moves rows, ty columns (source = destination + shift).
        assertWarp(keras(seven, .init(tx: 2, ty: -1)), size: 7) { r, c in (r + 2, c - 1) }
        // Horizontal flip after the warp.
        let flipped = keras(five, .init(flipHorizontal: true))
        XCTAssertEqual(Array(flipped[0..<3]), five.pixels[(4 * 3)..<(4 * 3 + 3)].map(Float.init))
        // Constant fill.
        let constant = keras(five, .init(zx: 2, zy: 2), fill: .constant(0))
        XCTAssertEqual(Array(constant[0..<3]), [0, 0, 0])
    }

    func testKerasRandomParametersAndRescale() throws {
        let generator = KerasImageDataGenerator(rescale: 1.0 / 255, shearRange: 0.2, zoomRange: 0.2, horizontalFlip: true,
                                                targetSize: (8, 6))
        var zooms: [(Double, Double)] = []
        var flips = 0
        for seed in 0..<400 {
            var r = SampleRandom(seed: UInt64(seed))
            let p = generator.randomParameters(height: 8, width: 6, random: &r)
            XCTAssertTrue(abs(p.shear) <= 0.2 && p.theta == 0 && p.tx == 0 && p.ty == 0 && !p.flipVertical)
            XCTAssertTrue((0.8...1.2).contains(p.zx) && (0.8...1.2).contains(p.zy))
            zooms.append((p.zx, p.zy))
            flips += p.flipHorizontal ? 1 : 0
        }
        XCTAssertTrue(zooms.filter { abs($0.0 - $0.1) > 0.05 }.count > 200, "zx and zy are drawn independently")
        XCTAssertEqual(Double(flips), 200, accuracy: 50)

        // No augmentation: nearest resize to the target, then x * rescale, CHW float32.
        let plain = KerasImageDataGenerator(rescale: 0.5, targetSize: (3, 2))
        let image = TestData.pattern(seed: 4, width: 4, height: 3)
        var r = SampleRandom(seed: 0)
        let t = try plain.tensor(from: image, random: &r)
        XCTAssertEqual(t.shape, [3, 3, 2])
        XCTAssertEqual(t.dtype, .float32)
        let resized = try image.resized(height: 3, width: 2, interpolation: .nearest)
        let expected = try resized.toTensor().to(.float32) * 0.5
        assertClose(t, expected, atol: 0)
        // Same seed, same output; another seed, another output.
        var a = SampleRandom(seed: 11), b = SampleRandom(seed: 11), c = SampleRandom(seed: 12)
        let big = TestData.pattern(seed: 9, width: 20, height: 16)
        let ta = try generator.tensor(from: big, random: &a), tb = try generator.tensor(from: big, random: &b)
        XCTAssertEqual(try ta.floats(), try tb.floats())
        XCTAssertNotEqual(try generator.tensor(from: big, random: &c).floats(), try ta.floats())
    }

    // MARK: - Pipelines

    func testTrainingTransformIsSeedDeterministic() throws {
        let preprocessing = Preprocessing(mean: [0.5, 0.4, 0.3], std: [0.2, 0.25, 0.3], resizeSize: 36, cropSize: 32)
        let transform = TrainingTransform.standard(preprocessing, colorJitter: ColorJitter(brightness: 0.3, hue: 0.05))
        XCTAssertEqual(transform.decodeMinSide, 64)
        let image = TestData.pattern(seed: 6, width: 50, height: 40)
        func run(_ seed: UInt64, index: Int = 0) throws -> [Float] {
            var r = SampleRandom(seed: seed, epoch: 0, index: index)
            return try transform.tensor(from: image, random: &r).floats()
        }
        let first = try run(1)
        XCTAssertEqual(first.count, 3 * 32 * 32)
        XCTAssertEqual(try run(1), first)
        XCTAssertNotEqual(try run(2), first)
        XCTAssertNotEqual(try run(1, index: 1), first)
        // Gray input works (replicated to RGB).
        var r = SampleRandom(seed: 0)
        let gray = try Image(gray: Array(repeating: 77, count: 40 * 40), width: 40, height: 40)
        XCTAssertEqual(try transform.tensor(from: gray, random: &r).shape, [3, 32, 32])
        // Rescale output.
        let rescaled = try TrainingTransform([Resize(height: 4, width: 4)], output: .rescale(1.0 / 255))
            .tensor(from: gray, random: &r)
        assertClose(rescaled, try Tensor.full([3, 4, 4], 77.0 / 255), atol: 1e-6)
    }

    func testEvaluationTransformIsThePreprocessing() throws {
        let preprocessing = Preprocessing(mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], resizeSize: 20,
                                          cropSize: 16)
        let image = TestData.pattern(seed: 8, width: 31, height: 23)
        var r = SampleRandom(seed: 0)
        let t = try EvaluationTransform(preprocessing).tensor(from: image, random: &r)
        assertClose(t, try preprocessing.evaluationTransform(image), atol: 0)
        XCTAssertEqual(t.shape, [3, 16, 16])
        XCTAssertEqual(EvaluationTransform(preprocessing).decodeMinSide, 0, "full-size decoding, as predict's")
        XCTAssertEqual(EvaluationTransform(preprocessing, decodeMinSide: 20).decodeMinSide, 20)
    }
}

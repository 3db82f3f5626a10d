import AtomicFiles
import Foundation
import Torch

/// Pixels of many same-sized 8-bit images held in one buffer (MNIST, CIFAR). Item `i` is
/// `image(at: i)`; nothing is decoded, so a whole training set costs its raw size in memory.
public final class ImageStore: @unchecked Sendable {
    /// How one image's bytes are laid out: interleaved (HWC, MNIST and most formats) or planar
    /// (CHW: all red, then all green, then all blue — CIFAR's layout).
    public enum Layout: Sendable { case hwc, chw }

    /// Number of images.
    public let count: Int
    /// Width of every image, in pixels.
    public let width: Int
    /// Height of every image, in pixels.
    public let height: Int
    /// 1 (gray) or 3 (RGB).
    public let channels: Int
    /// Byte order of each image (`.chw` for CIFAR's planes, `.hwc` otherwise).
    public let layout: Layout
    /// `count` images back to back, `width * height * channels` bytes each.
    public let bytes: [UInt8]

    /// Wraps `bytes` (no copy beyond the array's). Throws `DataError.invalidDataset` unless sizes are
    /// positive, `channels` is 1 or 3 and `bytes.count == count * width * height * channels`.
    public init(bytes: [UInt8], count: Int, width: Int, height: Int, channels: Int, layout: Layout = .hwc) throws {
        try Image.checkSize("an image store of \(count) images", count: count, width: width, height: height,
                            channels: channels, bytes: bytes.count)
        self.bytes = bytes
        self.count = count
        self.width = width
        self.height = height
        self.channels = channels
        self.layout = layout
    }

    /// `width * height * channels`.
    public var bytesPerImage: Int { width * height * channels }

    /// Image `index` as an `Image` (HWC; 1 or 3 channels as stored).
    public func image(at index: Int) throws -> Image {
        guard index >= 0, index < count else {
            throw DataError.invalidDataset("image index \(index) is out of range 0..<\(count)")
        }
        let n = bytesPerImage, base = index * n
        if layout == .hwc || channels == 1 {
            return try Image(width: width, height: height, channels: channels, pixels: Array(bytes[base..<base + n]))
        }
        let plane = width * height
        let pixels = [UInt8](unsafeUninitializedCapacity: n) { out, initialized in
            bytes.withUnsafeBufferPointer { src in
                for p in 0..<plane {
                    out[3 * p] = src[base + p]
                    out[3 * p + 1] = src[base + plane + p]
                    out[3 * p + 2] = src[base + 2 * plane + p]
                }
            }
            initialized = n
        }
        return try Image(width: width, height: height, channels: 3, pixels: pixels)
    }
}

/// Where a sample's pixels come from: an image file (decoded when loaded) or an in-memory store.
public enum ImageSource: Sendable, Equatable, CustomStringConvertible {
    /// An image file (JPEG or PNG) at this path, decoded on every load.
    case file(String)
    /// Image `index` of an in-memory store (MNIST, CIFAR).
    case memory(ImageStore, index: Int)

    /// The file path, for file sources.
    public var path: String? {
        if case .file(let p) = self { return p }
        return nil
    }

    /// The path, or "<in-memory image #i>".
    public var description: String {
        switch self {
        case .file(let p): return p
        case .memory(_, let i): return "<in-memory image #\(i)>"
        }
    }

    /// Same path, or the same store (by identity) and index.
    public static func == (lhs: ImageSource, rhs: ImageSource) -> Bool {
        switch (lhs, rhs) {
        case (.file(let a), .file(let b)): return a == b
        case (.memory(let s, let i), .memory(let t, let j)): return s === t && i == j
        default: return false
        }
    }

    /// Loads the pixels: files are decoded (JPEG/PNG; `minSide` enables JPEG DCT scaling and `fast` the
    /// fast IDCT, see `Image(contentsOfFile:minSide:fast:)`), store items are copied out. Errors are
    /// `DataError`s naming the file.
    public func load(minSide: Int = 0, fast: Bool = false) throws -> Image {
        switch self {
        case .file(let p): return try Image(contentsOfFile: p, minSide: minSide, fast: fast)
        case .memory(let store, let i): return try store.image(at: i)
        }
    }
}

/// One item of a dataset: where its image is and its class index (into `classNames`).
public struct LabeledSample: Sendable, Equatable {
    /// Where the pixels are.
    public var source: ImageSource
    /// The class index, into the dataset's `classNames`.
    public var label: Int

    /// A sample of `source` labelled `label`.
    public init(source: ImageSource, label: Int) {
        self.source = source
        self.label = label
    }
}

/// Whether a class name holds a line break (LF, VT, FF, CR, NEL, or the Unicode line and paragraph
/// separators). A class name is printed on a line of its own (predict, reports) and names metrics
/// (`pseudo_class_<name>` in history.csv): a line break in it split predict's output and failed a
/// pseudo-labelling run at its first epoch's end. Other control characters (a tab) are kept: runs
/// made with them must stay usable.
func breaksLine(_ name: String) -> Bool {
    name.unicodeScalars.contains { [0x0A, 0x0B, 0x0C, 0x0D, 0x85, 0x2028, 0x2029].contains($0.value) }
}

/// `name` with its control characters and line breaks written as `\u{…}` escapes (`\n`, `\r` and
/// `\t` as such), so that an error shows what the name holds, and a file name printed to a terminal
/// cannot move the cursor, change colours or forge a line of the report (an ESC in a name cleared
/// the screen).
public func escapedName(_ name: String) -> String {
    StandardStreams.displayable(name, escapingLineFeedsAndTabs: true)
}

/// A labelled image classification dataset: every source (class folders, CSV, IDX, CIFAR) produces
/// one, and splits, loaders and converters consume it.
public protocol ImageDataset: Sendable {
    /// The items, in a stable order (sorted class by class for folders, file order for CSV, …).
    var samples: [LabeledSample] { get }
    /// Class names; a sample's `label` indexes this list.
    var classNames: [String] { get }
}

extension ImageDataset {
    /// Number of samples.
    public var count: Int { samples.count }
    /// Every sample's class index, in sample order.
    public var labels: [Int] { samples.map(\.label) }

    /// Samples per class, indexed by class.
    public var classCounts: [Int] {
        var counts = [Int](repeating: 0, count: classNames.count)
        for s in samples where s.label >= 0 && s.label < counts.count { counts[s.label] += 1 }
        return counts
    }

    /// Decodes sample `index`'s image (see `ImageSource.load`); an index outside the samples is a thrown error.
    public func loadImage(at index: Int, minSide: Int = 0) throws -> Image {
        guard samples.indices.contains(index) else {
            throw DataError.invalidDataset("no sample \(index): the dataset has \(samples.count)")
        }
        return try samples[index].source.load(minSide: minSide)
    }
}

/// A dataset held as a plain list of samples: what splits and subsets produce, and the common
/// currency for sources that need no extra state.
public struct LabeledDataset: ImageDataset {
    /// The items, in order.
    public var samples: [LabeledSample]
    /// Names of the classes, indexed by label.
    public var classNames: [String]
    /// Files left out while building the dataset (empty for in-memory sources).
    public var skipped: SkippedFiles

    /// A dataset of `samples` (nothing is checked; labels should index `classNames`).
    public init(samples: [LabeledSample], classNames: [String], skipped: SkippedFiles = SkippedFiles()) {
        self.samples = samples
        self.classNames = classNames
        self.skipped = skipped
    }

    /// A copy of any dataset's samples and class names.
    public init(_ dataset: any ImageDataset) {
        self.init(samples: dataset.samples, classNames: dataset.classNames,
                  skipped: (dataset as? LabeledDataset)?.skipped ?? SkippedFiles())
    }
}

/// Sorting as Python sorts strings (by Unicode code points), so class indices agree with
/// torchvision's `ImageFolder` and Keras' `flow_from_directory` for any file names.
func codePointLess(_ a: String, _ b: String) -> Bool {
    a.unicodeScalars.lexicographicallyPrecedes(b.unicodeScalars) { $0.value < $1.value }
}

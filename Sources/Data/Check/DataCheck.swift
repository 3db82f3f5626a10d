import Foundation
import Hashing

/// Settings of `DataCheck.run`.
public struct DataCheckOptions: Sendable {
    /// Two images whose perceptual hashes differ in at most this many of their 64 bits are
    /// near-duplicates (re-encoded or resized copies of one photo differ in 0–4; distinct photos in
    /// about 32).
    public var nearDuplicateDistance: Int
    /// …and whose 32×32 grey thumbnails correlate at least this much (`ImageFingerprint.similarity`).
    public var nearDuplicateSimilarity: Double
    /// With an `ImageEmbedding`: two images are near-duplicates when the centred cosine similarity of
    /// their embeddings is at least this (`EmbeddingNeighbours`); the two settings above then apply
    /// only without one.
    public var nearDuplicateCosine: Double
    /// Class-count ratio (largest / smallest, training split) from which the classes count as imbalanced.
    public var imbalanceWarningRatio: Double
    /// Where the relative paths of a `path,label` CSV file resolve (nil: the CSV's folder), as
    /// `CSVDataset`'s `imageRoot`.
    public var imageRoot: String?

    /// Defaults: near-duplicates within 6 bits and a correlation of 0.99 (perceptual hash), or a centred
    /// cosine of 0.9 (embeddings); imbalance from a ratio of 1.5.
    public init(nearDuplicateDistance: Int = 6, nearDuplicateSimilarity: Double = 0.99, nearDuplicateCosine: Double = 0.9,
                imbalanceWarningRatio: Double = 1.5, imageRoot: String? = nil) {
        self.imageRoot = imageRoot
        self.nearDuplicateDistance = nearDuplicateDistance
        self.nearDuplicateSimilarity = nearDuplicateSimilarity
        self.nearDuplicateCosine = nearDuplicateCosine
        self.imbalanceWarningRatio = imbalanceWarningRatio
    }
}

/// What `DataCheck.run` found in a class-folder dataset (`finetune check-data`, the run report and
/// `train`'s one-line summary). Encodes with snake_case keys.
public struct DataCheckReport: Codable, Equatable, Sendable {
    /// One image file: its path, split (`train`, `val`, `test`, or `folder` without split folders) and class.
    public struct File: Codable, Equatable, Sendable {
        /// The file.
        public var path: String
        /// `train`, `val`, `test`, or `folder`.
        public var split: String
        /// Its class folder.
        public var className: String

        enum CodingKeys: String, CodingKey { case path, split, className = "class" }
    }

    /// A file that cannot be used, and why (the decoder's message).
    public struct Unreadable: Codable, Equatable, Sendable {
        /// The file.
        public var path: String
        /// `train`, `val`, `test`, or `folder`.
        public var split: String
        /// Why it cannot be used.
        public var reason: String
    }

    /// Images per class in one split.
    public struct Split: Codable, Equatable, Sendable {
        /// `train`, `val`, `test`, or `folder`.
        public var name: String
        /// Usable images.
        public var images: Int
        /// Images per class, in class order.
        public var classCounts: [Int]

        enum CodingKeys: String, CodingKey { case name, images, classCounts = "class_counts" }
    }

    /// Two images of different splits that are the same photo (re-encoded, resized): `cosine` is the
    /// centred cosine similarity of their embeddings (when the check embedded them), `distance` the
    /// Hamming distance of their perceptual hashes, `similarity` the correlation of their thumbnails.
    public struct NearDuplicate: Codable, Equatable, Sendable {
        /// The image found first (scan order).
        public var first: File
        /// Its copy in another split.
        public var second: File
        /// Differing bits of the two perceptual hashes (0…64).
        public var distance: Int
        /// Correlation of the two thumbnails (to 4 decimals).
        public var similarity: Double
        /// Centred cosine similarity of the two embeddings (to 4 decimals); nil without an embedding.
        public var cosine: Double?

        /// "FIRST ~ SECOND (cosine …, distance …, similarity …)", as the text and HTML reports list it.
        public var summary: String {
            "\(escapedName(first.path)) ~ \(escapedName(second.path)) (" + (cosine.map { "cosine \($0), " } ?? "")
                + "distance \(distance), similarity \(similarity))"
        }
    }

    /// The dataset root as given.
    public var root: String
    /// Class names in label order.
    public var classNames: [String]
    /// The splits found, train first.
    public var splits: [Split]
    /// Largest over smallest class count of the training split (infinite when a class has no image: `null`).
    public var imbalanceRatio: Double
    /// Files that fail to decode (or are not images at all), each named.
    public var unreadable: [Unreadable]
    /// JPEGs that decode, but only because the decoder made up part of the picture: scan data cut
    /// short or corrupt, which libjpeg (and so PIL) makes up (grey, smeared or blurred blocks) without an
    /// error. Training uses them as
    /// they decode; `reason` is libjpeg's warning.
    public var damaged: [Unreadable]
    /// Decoded images by stored mode: `RGB`, `grey`, `grey+alpha`, `RGBA`, `CMYK`, with ` 16-bit`
    /// appended for 16-bit PNGs.
    public var modes: [String: Int]
    /// Smallest and largest width and height of the decoded images ([min_w, min_h, max_w, max_h]), nil without any.
    public var sizeRange: [Int]?
    /// Groups of files with identical bytes (SHA-256), each group in scan order.
    public var exactDuplicates: [[File]]
    /// Pairs of files of different splits (within the one folder when there are no split folders)
    /// whose embeddings (or, without an embedding, perceptual hashes and thumbnails) are within the
    /// thresholds and whose bytes differ.
    public var nearDuplicates: [NearDuplicate]
    /// How near-duplicates were searched: the embedding and its threshold, or the perceptual hash's.
    public var nearDuplicateMethod: String
    /// Advice derived from the findings (imbalance, leaks, unusual modes).
    public var hints: [String]

    enum CodingKeys: String, CodingKey {
        case root, classNames = "class_names", splits, imbalanceRatio = "imbalance_ratio", unreadable, damaged, modes
        case sizeRange = "size_range", exactDuplicates = "exact_duplicates", nearDuplicates = "near_duplicates", hints
        case nearDuplicateMethod = "near_duplicate_method"
    }

    /// Encodes with snake_case keys; a non-finite `imbalanceRatio` as `null`.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(root, forKey: .root)
        try c.encode(classNames, forKey: .classNames)
        try c.encode(splits, forKey: .splits)
        if imbalanceRatio.isFinite { try c.encode(imbalanceRatio, forKey: .imbalanceRatio) } else {
            try c.encodeNil(forKey: .imbalanceRatio)
        }
        try c.encode(unreadable, forKey: .unreadable)
        try c.encode(damaged, forKey: .damaged)
        try c.encode(modes, forKey: .modes)
        try c.encode(sizeRange, forKey: .sizeRange)
        try c.encode(exactDuplicates, forKey: .exactDuplicates)
        try c.encode(nearDuplicates, forKey: .nearDuplicates)
        try c.encode(nearDuplicateMethod, forKey: .nearDuplicateMethod)
        try c.encode(hints, forKey: .hints)
    }

    /// Decodes what `encode(to:)` wrote (`null` imbalance: infinite).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        root = try c.decode(String.self, forKey: .root)
        classNames = try c.decode([String].self, forKey: .classNames)
        splits = try c.decode([Split].self, forKey: .splits)
        imbalanceRatio = try c.decodeIfPresent(Double.self, forKey: .imbalanceRatio) ?? .infinity
        unreadable = try c.decode([Unreadable].self, forKey: .unreadable)
        damaged = try c.decodeIfPresent([Unreadable].self, forKey: .damaged) ?? []
        modes = try c.decode([String: Int].self, forKey: .modes)
        sizeRange = try c.decodeIfPresent([Int].self, forKey: .sizeRange)
        exactDuplicates = try c.decode([[File]].self, forKey: .exactDuplicates)
        nearDuplicates = try c.decode([NearDuplicate].self, forKey: .nearDuplicates)
        nearDuplicateMethod = try c.decodeIfPresent(String.self, forKey: .nearDuplicateMethod) ?? ""
        hints = try c.decode([String].self, forKey: .hints)
    }

    init(root: String, classNames: [String], splits: [Split], imbalanceRatio: Double, unreadable: [Unreadable],
         damaged: [Unreadable], modes: [String: Int], sizeRange: [Int]?, exactDuplicates: [[File]], nearDuplicates: [NearDuplicate],
         nearDuplicateMethod: String, hints: [String]) {
        self.root = root
        self.classNames = classNames
        self.splits = splits
        self.imbalanceRatio = imbalanceRatio
        self.unreadable = unreadable
        self.damaged = damaged
        self.modes = modes
        self.sizeRange = sizeRange
        self.exactDuplicates = exactDuplicates
        self.nearDuplicates = nearDuplicates
        self.nearDuplicateMethod = nearDuplicateMethod
        self.hints = hints
    }

    /// Unreadable and damaged files, duplicate groups and near-duplicate pairs found.
    public var problemCount: Int { unreadable.count + damaged.count + exactDuplicates.count + nearDuplicates.count }

    /// One line: images, classes, imbalance and the problem counts.
    public var summaryLine: String {
        let images = splits.map(\.images).reduce(0, +)
        let ratio = imbalanceRatio.isFinite ? String(format: "%.2f", imbalanceRatio) : "∞"
        return "data check: \(images) images, \(classNames.count) classes (imbalance \(ratio)), "
            + "\(unreadable.count) unreadable, " + (damaged.isEmpty ? "" : "\(damaged.count) damaged, ")
            + "\(exactDuplicates.count) exact-duplicate group"
            + "\(exactDuplicates.count == 1 ? "" : "s"), \(nearDuplicates.count) near-duplicate pair"
            + "\(nearDuplicates.count == 1 ? "" : "s") across splits"
    }

    /// The report as text: counts per split and class, modes and sizes, then every problem and hint.
    public func rendered(limit: Int = 50) -> String {
        // Names as they are would reach the terminal raw: an ESC in a file name changed the window's
        // title and colours, and a line break forged a line of the report (probe W).
        let classNames = classNames.map(escapedName)
        var lines = ["Data check of \(escapedName(root))"]
        let width = max(5, classNames.map(\.count).max() ?? 5)
        lines.append("  " + "class".padding(toLength: width, withPad: " ", startingAt: 0) + "  "
                     + splits.map { $0.name.leftPadded(7) }.joined(separator: " "))
        for (i, name) in classNames.enumerated() {
            lines.append("  " + name.padding(toLength: width, withPad: " ", startingAt: 0) + "  "
                         + splits.map { String($0.classCounts[i]).leftPadded(7) }.joined(separator: " "))
        }
        lines.append(summaryLine)
        if !nearDuplicateMethod.isEmpty { lines.append("near-duplicates by " + nearDuplicateMethod) }
        lines.append("modes: " + modes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        if let s = sizeRange { lines.append("sizes: \(s[0])×\(s[1]) to \(s[2])×\(s[3])") }
        func section(_ title: String, _ items: [String]) {
            guard !items.isEmpty else { return }
            lines.append("\(title) (\(items.count)):")
            lines += items.prefix(limit).map { "  " + $0 }
            if items.count > limit { lines.append("  … and \(items.count - limit) more") }
        }
        section("unreadable files", unreadable.map { "\(escapedName($0.path)): \(escapedName($0.reason))" })
        section("damaged files (decoded with part of the picture made up)",
                damaged.map { "\(escapedName($0.path)): \(escapedName($0.reason))" })
        section("exact duplicates", exactDuplicates.map { $0.map { escapedName($0.path) }.joined(separator: " = ") })
        section("near-duplicates across splits", nearDuplicates.map(\.summary))
        lines += hints.map { "hint: " + $0 }
        return lines.joined(separator: "\n")
    }
}

private extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }
}

/// Checks a class-folder dataset before training: files that fail to decode, class counts and
/// imbalance, image modes and sizes, exact duplicates (SHA-256 of the bytes) and near-duplicates
/// across splits (close embeddings of a pretrained backbone, or without one, perceptual hashes of the
/// decoded pictures), which leak test images into training.
public enum DataCheck {
    /// Scans `root` (with train/ val/ test/ folders, one folder of class folders, or a `path,label`
    /// CSV file, one set named "csv") and decodes every image once. With `embedding`, near-duplicates
    /// are pairs whose embeddings' centred cosine similarity reaches `options.nearDuplicateCosine`;
    /// without, pairs within the perceptual-hash thresholds. Throws when `root` is not such a
    /// dataset, or when `embedding` fails.
    public static func run(_ root: String, options: DataCheckOptions = DataCheckOptions(),
                           embedding: (any ImageEmbedding)? = nil) throws -> DataCheckReport {
        var named: [(String, any ImageDataset)] = []
        var skipped: [(String, SkippedFiles)] = []
        let hasSplitFolders: Bool
        var unusedFolders: [String] = []
        if CSVDataset.isCSVFile(root) {
            let csv = try CSVDataset(csv: root, imageRoot: options.imageRoot)
            (named, skipped, hasSplitFolders) = ([("csv", csv)], [("csv", csv.skipped)], false)
        } else {
            let found = try ImageFolderDataset.splits(root: root)
            hasSplitFolders = found.hasSplitFolders
            unusedFolders = found.unusedFolders
            for (name, dataset) in [(hasSplitFolders ? "train" : "folder", found.train), ("val", found.validation),
                                    ("test", found.test)] {
                guard let dataset else { continue }
                named.append((name, dataset))
                skipped.append((name, dataset.skipped))
            }
        }
        let classNames = named[0].1.classNames

        var unreadable: [DataCheckReport.Unreadable] = skipped.flatMap { name, files in
            files.entries.map { .init(path: $0.path, split: name, reason: $0.reason) }
        }
        var files: [DataCheckReport.File] = []
        var positions: [(split: Int, sample: Int)] = []  // of each file: its dataset in `named`, its sample there
        for (k, (name, dataset)) in named.enumerated() {
            for (i, sample) in dataset.samples.enumerated() {
                guard let path = sample.source.path else { continue }
                files.append(.init(path: path, split: name, className: classNames[sample.label]))
                positions.append((k, i))
            }
        }
        let examined = examine(files.map(\.path))

        var modes: [String: Int] = [:]
        var sizes: [Int]?
        // Per set and class, the files that failed to decode: they are not usable images.
        var undecodable = named.map { [Int](repeating: 0, count: $0.1.classNames.count) }
        var byDigest: [String: [Int]] = [:]
        var digestOrder: [String] = []
        var hashed: [(index: Int, fingerprint: ImageFingerprint, digest: String)] = []
        var damaged: [DataCheckReport.Unreadable] = []
        for (i, result) in examined.enumerated() {
            switch result {
            case .failure(let reason):
                unreadable.append(.init(path: files[i].path, split: files[i].split, reason: reason.reason))
                let (k, sample) = positions[i]
                undecodable[k][named[k].1.samples[sample].label] += 1
            case .success(let e):
                if let damage = e.damage { damaged.append(.init(path: files[i].path, split: files[i].split, reason: damage)) }
                modes[e.mode, default: 0] += 1
                if let s = sizes {
                    sizes = [min(s[0], e.width), min(s[1], e.height), max(s[2], e.width), max(s[3], e.height)]
                } else {
                    sizes = [e.width, e.height, e.width, e.height]
                }
                if byDigest[e.digest] == nil { digestOrder.append(e.digest) }
                byDigest[e.digest, default: []].append(i)
                hashed.append((i, e.fingerprint, e.digest))
            }
        }
        let exact = digestOrder.compactMap { byDigest[$0]!.count > 1 ? byDigest[$0]!.map { files[$0] } : nil }

        // Near-duplicates: pairs from different splits (or any pair without split folders).
        var near: [DataCheckReport.NearDuplicate] = []
        func pair(_ x: Int, _ y: Int, cosine: Double?) -> DataCheckReport.NearDuplicate? {
            let (a, b) = (hashed[x], hashed[y])
            guard hasSplitFolders ? files[a.index].split != files[b.index].split : true, a.digest != b.digest else {
                return nil
            }
            return .init(first: files[a.index], second: files[b.index], distance: a.fingerprint.hash.distance(to: b.fingerprint.hash),
                         similarity: (a.fingerprint.similarity(to: b.fingerprint) * 1e4).rounded() / 1e4,
                         cosine: cosine.map { ($0 * 1e4).rounded() / 1e4 })
        }
        // Exact copies decode alike, so the search compares one image per digest and pairs the copies
        // afterwards (`pair` then keeps those of other splits). Comparing every copy with every other
        // made it quadratic in the copies: 5,000 of one placeholder took 100 s, 20,000 never ended
        // (probe W).
        func copies(of rows: [Int]) -> [String: [Int]] {
            var members: [String: [Int]] = [:]
            for h in rows { members[hashed[h].digest, default: []].append(h) }
            return members
        }
        func firstOfEachDigest(_ rows: [Int]) -> [Int] {
            var seen = Set<String>()
            return rows.filter { seen.insert(hashed[$0].digest).inserted }
        }
        func expand(_ r: Int, _ s: Int, _ members: [String: [Int]]) -> [(Int, Int)] {
            members[hashed[r].digest]!.flatMap { a in members[hashed[s].digest]!.map { b in (min(a, b), max(a, b)) } }
        }
        let method: String
        if let embedding {
            method = "\(embedding.name) embeddings, centred cosine ≥ \(options.nearDuplicateCosine)"
            var embedded: [(split: Int, features: [Float], valid: [Bool])] = []
            for (k, (_, dataset)) in named.enumerated() {
                let (features, valid) = try embedding.embed(dataset)
                embedded.append((k, try features.contiguous().floats(), valid))
            }
            // The decodable files (rows of `hashed`) that the embedding could read, with their vectors.
            var usable: [Int] = [], vectors: [[Float]] = []
            for (h, entry) in hashed.enumerated() {
                let (k, i) = positions[entry.index]
                let e = embedded[k], width = e.features.count / max(1, e.valid.count)
                guard i < e.valid.count, e.valid[i] else { continue }
                usable.append(h)
                vectors.append(Array(e.features[i * width..<(i + 1) * width]))
            }
            let unit = EmbeddingNeighbours.centredUnitRows(vectors)  // centred on every image, copies included
            let rowOf = Dictionary(uniqueKeysWithValues: usable.enumerated().map { ($0.element, $0.offset) })
            let representatives = firstOfEachDigest(usable).map { rowOf[$0]! }
            let members = copies(of: usable)
            var candidates: [(Int, Int, Double)] = []
            for (i, j, cosine) in try EmbeddingNeighbours.pairs(unit, representatives, representatives,
                                                               threshold: options.nearDuplicateCosine, sameSet: true) {
                candidates += expand(usable[i], usable[j], members).map { ($0.0, $0.1, cosine) }
            }
            near = candidates.sorted { ($0.0, $0.1) < ($1.0, $1.1) }.compactMap { pair($0.0, $0.1, cosine: $0.2) }
        } else {
            method = "perceptual hash (≤ \(options.nearDuplicateDistance) of 64 bits) and thumbnail correlation "
                + "≥ \(options.nearDuplicateSimilarity)"
            let representatives = firstOfEachDigest(Array(hashed.indices))
            let members = copies(of: Array(hashed.indices))
            var candidates: [(Int, Int)] = []
            for (k, r) in representatives.enumerated() {
                for s in representatives[(k + 1)...] {
                    let (x, y) = (hashed[r].fingerprint, hashed[s].fingerprint)
                    guard x.hash.distance(to: y.hash) <= options.nearDuplicateDistance,
                          x.similarity(to: y) >= options.nearDuplicateSimilarity else { continue }
                    candidates += expand(r, s, members)
                }
            }
            near = candidates.sorted { $0 < $1 }.compactMap { pair($0.0, $0.1, cosine: nil) }
        }

        let splits = named.enumerated().map { k, set in
            let counts = zip(set.1.classCounts, undecodable[k]).map { $0 - $1 }
            return DataCheckReport.Split(name: set.0, images: counts.reduce(0, +), classCounts: counts)
        }
        let trainCounts = splits[0].classCounts
        let ratio = Double(trainCounts.max() ?? 0) / Double(trainCounts.min() ?? 0)
        var hints: [String] = []
        let empty = zip(classNames, trainCounts).filter { $0.1 == 0 }.map(\.0)
        if !empty.isEmpty {
            // The ratio is infinite: "largest/smallest inf" said less than naming the classes.
            let listed = empty.prefix(10).map { "'\(escapedName($0))'" }.joined(separator: ", ") + (empty.count > 10 ? ", …" : "")
            hints.append("\(empty.count == 1 ? "class" : "\(empty.count) classes") \(listed) "
                + "\(empty.count == 1 ? "has" : "have") no usable image in \(splits[0].name == "folder" ? "the folder" : "the \(splits[0].name) split"): "
                + "the model cannot learn \(empty.count == 1 ? "it" : "them"); add images, or remove the class folder")
        } else if ratio >= options.imbalanceWarningRatio {
            hints.append(String(format: "the classes are imbalanced (largest/smallest %.2f): weight the loss by class "
                + "(train --class-weights auto), oversample the rare classes (train --sampler balanced), or collect "
                + "more of them; "
                + "judge the run by macro F1 and per-class recall rather than accuracy", ratio))
        }
        if !unusedFolders.isEmpty {
            hints.append("\(unusedFolders.joined(separator: ", ")) beside the split folders \(unusedFolders.count == 1 ? "is" : "are") "
                + "not read by any split (splits: train/, val/, test/); move class folders into each split")
        }
        if !unreadable.isEmpty {
            hints.append("\(unreadable.count) file\(unreadable.count == 1 ? "" : "s") cannot be used: training skips "
                + "them (--on-bad-image skip) or stops (--on-bad-image fail); fix or remove them")
        }
        if !damaged.isEmpty {
            hints.append("\(damaged.count) JPEG\(damaged.count == 1 ? " is" : "s are") damaged (cut short or corrupt): "
                + "the decoder makes the lost part up (grey, smeared or blurred "
                + "blocks), and training uses \(damaged.count == 1 ? "it" : "them") so; "
                + "replace or remove \(damaged.count == 1 ? "it" : "them")")
        }
        let crossSplit = exact.filter { Set($0.map(\.split)).count > 1 }.count
        if crossSplit > 0 || !near.isEmpty {
            hints.append("the same photo is in more than one split (\(crossSplit) exact, \(near.count) near): "
                + "remove the copies from val/test, or the test accuracy is inflated")
        }
        let odd = modes.keys.filter { $0 != "RGB" }.sorted()
        if !odd.isEmpty {
            hints.append("images other than 8-bit RGB (\(odd.joined(separator: ", "))) are converted to RGB when "
                + "decoded: alpha is dropped, grey is replicated, CMYK converted, 16-bit keeps its high byte")
        }
        return DataCheckReport(root: root, classNames: classNames, splits: splits, imbalanceRatio: ratio,
                               unreadable: unreadable, damaged: damaged, modes: modes, sizeRange: sizes, exactDuplicates: exact,
                               nearDuplicates: near, nearDuplicateMethod: method, hints: hints)
    }

    /// The cheap checks, from a scan alone (nothing decoded), as one line: images per split, classes,
    /// the imbalance ratio of the training split (with a hint from `imbalanceWarningRatio`), files the
    /// scan found unusable, and a pointer to `finetune check-data` for the rest. `train` prints it.
    /// `correction` names what the run already does about an imbalance (`--sampler balanced`): the line
    /// then says so instead of suggesting it.
    public static func quickSummary(train: any ImageDataset, validation: (any ImageDataset)?, test: (any ImageDataset)?,
                                    unusable: Int, correction: String? = nil,
                                    options: DataCheckOptions = DataCheckOptions()) -> String {
        let counts = train.classCounts
        let ratio = Double(counts.max() ?? 0) / Double(counts.min() ?? 0)
        var parts = ["\(train.count) train"]
        if let validation { parts.append("\(validation.count) val") }
        if let test { parts.append("\(test.count) test") }
        var line = "Data check: " + parts.joined(separator: " / ") + " images, \(train.classNames.count) classes, imbalance "
            + (ratio.isFinite ? String(format: "%.2f", ratio) : "∞") + " (largest/smallest class)"
        if ratio >= options.imbalanceWarningRatio {
            line += correction.map { " — imbalanced, corrected by \($0)" }
                ?? " — imbalanced: consider --class-weights auto or --sampler balanced"
        }
        if unusable > 0 { line += ", \(unusable) unusable file\(unusable == 1 ? "" : "s")" }
        return line + "; `finetune check-data` finds duplicates and leaks"
    }

    /// What one decoded file gave.
    struct Examined {
        var digest: String
        var fingerprint: ImageFingerprint
        var mode: String
        var width: Int
        var height: Int
        /// The decoder's warning when it made up part of the picture (`Image.decodeNotingDamage`).
        var damage: String?
    }

    /// Reads, hashes, probes and decodes each file (in parallel, every thread with the EXIF handling in
    /// force for the caller); a failure is the reason.
    static func examine(_ paths: [String]) -> [Result<Examined, ExamineFailure>] {
        var results = [Result<Examined, ExamineFailure>](repeating: .failure(ExamineFailure("not examined")),
                                                         count: paths.count)
        let orientation = ImageCodec.effectiveEXIFOrientation
        results.withUnsafeMutableBufferPointer { out in
            let base = out.baseAddress!
            DispatchQueue.concurrentPerform(iterations: paths.count) { i in
                base[i] = ImageCodec.withEXIFOrientation(orientation) { examine(paths[i]) }
            }
        }
        return results
    }

    struct ExamineFailure: Error {
        var reason: String
        init(_ reason: String) { self.reason = reason }
    }

    static func examine(_ path: String) -> Result<Examined, ExamineFailure> {
        do {
            // Up to the end of the image (a large file's trailing bytes were read into memory too).
            return .success(try ImageCodec.withFileBytes(path, maxBytes: 0) { bytes, fileSize in
                try examine(bytes, fileSize: fileSize, path: path)
            })
        } catch {
            return .failure(ExamineFailure(skipReason(error, path: path)))
        }
    }

    static func examine(_ bytes: UnsafeRawBufferPointer, fileSize: Int, path: String) throws -> Examined {
        let info = try ImageCodec.probe(bytes, label: path).dataValue()
        // JPEG: decode at a reduced DCT scale (the hash needs only 32×32); every scan line is still
        // decoded, so damage anywhere in the file is found.
        let (image, damage) = try Image.decodeNotingDamage(bytes, minSide: 64, label: path)
        var mode: String
        switch info.storedChannels {
        case 1: mode = "grey"
        case 2: mode = "grey+alpha"
        case 4: mode = info.format == .jpeg ? "CMYK" : "RGBA"
        default: mode = "RGB"
        }
        // PNG IHDR: the bit depth is byte 24 of the file.
        if info.format == .png, bytes.count > 24, bytes[24] == 16 { mode += " 16-bit" }
        // The digest is of the whole file (an exact duplicate is the same file), streamed when only
        // the image's part was read.
        let digest = bytes.count == fileSize ? SHA256Hasher.hexDigest(of: bytes) : try SHA256Hasher.hexDigest(ofFile: path)
        return Examined(digest: digest, fingerprint: try ImageFingerprint(image),
                        mode: mode, width: info.width, height: info.height, damage: damage)
    }
}

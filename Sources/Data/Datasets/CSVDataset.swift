import Foundation

/// Images listed in a CSV file of `path,label` rows.
///
/// * RFC 4180 quoting (`"a, b.jpg"`, `""` for a quote), LF or CRLF line ends, a UTF-8 BOM and blank
///   lines are accepted; fields are trimmed (read by `CSV`). Extra columns are ignored, but every
///   row has as many fields as the first (RFC 4180): a row with more is an unquoted comma in a path.
/// * Header: `header: nil` detects one when the first row's first field is a path-like column name
///   (path, file, filename, file_name, filepath, image, image_path, img) or its second field a
///   label-like one (label, labels, class, class_name, category, target, y). With a header, the path
///   and label columns are found by those names (else the first two columns are used).
/// * Relative paths resolve against `imageRoot`, by default the CSV's folder.
/// * Labels are class names (classes sorted by code point), or — when every label is a non-negative
///   integer — class indices (class names "0", "1", … up to the largest index, which must be below
///   `maxIntegerClasses`).
/// * Missing or unusable images are skipped and reported (`strict` throws on the first).
public struct CSVDataset: ImageDataset {
    /// How the label column was read: class names, or integer class indices (when every label is a
    /// non-negative integer).
    public enum LabelKind: Sendable { case names, integers }

    /// The CSV file read (relative image paths resolve against its folder).
    public let csvPath: String
    /// One sample per usable row, in file order, with absolute or CSV-relative file paths.
    public let samples: [LabeledSample]
    /// Names of the classes, indexed by label: the sorted distinct names, "0"…"N" for integer labels,
    /// or the list given to `init`.
    public let classNames: [String]
    /// Whether the labels were names or integers.
    public let labelKind: LabelKind
    /// Rows whose image was missing or unusable, and why.
    public let skipped: SkippedFiles

    static let pathColumnNames: Set<String> = ["path", "file", "filename", "file_name", "filepath", "image",
                                               "image_path", "img", "image_file"]
    static let labelColumnNames: Set<String> = ["label", "labels", "class", "class_name", "classname",
                                                "category", "target", "y"]

    /// Whether a dataset path names a CSV file (an existing file, not a folder) rather than a
    /// class-folder root: how `train`, the run report and the data check tell the two apart.
    public static func isCSVFile(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && !isDirectory.boolValue
    }

    /// The most classes integer labels may define (labels 0 … 65,535).
    public static let maxIntegerClasses = 1 << 16

    /// Reads `path`. `classNames`, when given, fixes the class list (name labels must be in it;
    /// integer labels must index it) and allows a single class. Relative image paths resolve against
    /// `imageRoot` (nil: the CSV's folder).
    public init(csv path: String, header: Bool? = nil, classNames fixed: [String]? = nil, imageRoot: String? = nil,
                options: ScanOptions = ScanOptions()) throws {
        csvPath = path
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DataError.unreadable(path: path, reason: FileKind(path: path).isDirectory
                                       ? "is a folder, not a CSV file" : "no such file or not readable")
        }
        guard var text = String(data: data, encoding: .utf8) else {
            throw DataError.corrupt(path: path, reason: "not UTF-8 text")
        }
        if text.hasPrefix("\u{FEFF}") { text.removeFirst() }
        var rows = try Self.parse(text, path: path)
        guard !rows.isEmpty else { throw DataError.invalidDataset("\(path) has no rows (expected path,label)") }

        // An unquoted comma in a path (`imgs/b,c.png,1`) read as path `imgs/b` and label `c.png`.
        if let odd = rows.first(where: { $0.fields.count != rows[0].fields.count }) {
            throw DataError.invalidDataset("\(path):\(odd.line): \(odd.fields.count) fields, but line \(rows[0].line) has "
                + "\(rows[0].fields.count); every row needs the same columns (quote a path that holds a comma: \"a,b.jpg\")")
        }
        var pathColumn = 0, labelColumn = 1
        let first = rows[0].fields.map { $0.lowercased() }
        let hasHeader = header ?? Self.isHeader(first)
        if hasHeader {
            let p = first.firstIndex(where: Self.pathColumnNames.contains)
            let l = first.firstIndex(where: Self.labelColumnNames.contains)
            pathColumn = p ?? first.indices.first { $0 != l } ?? 0
            labelColumn = l ?? first.indices.first { $0 != pathColumn } ?? 1
            rows.removeFirst()
        }
        guard !rows.isEmpty else { throw DataError.invalidDataset("\(path) has a header but no rows") }

        let folder = imageRoot ?? (path as NSString).deletingLastPathComponent
        var entries: [(path: String, label: String)] = []
        for row in rows {
            guard row.fields.count > max(pathColumn, labelColumn) else {
                throw DataError.invalidDataset("\(path):\(row.line): expected `path,label`, found " +
                                               "\(row.fields.count) field\(row.fields.count == 1 ? "" : "s")")
            }
            let file = row.fields[pathColumn], label = row.fields[labelColumn]
            guard !file.isEmpty, !label.isEmpty else {
                throw DataError.invalidDataset("\(path):\(row.line): empty \(file.isEmpty ? "path" : "label")")
            }
            guard !breaksLine(label) else {
                throw DataError.invalidDataset("\(path):\(row.line): the label \"\(escapedName(label))\" holds a line break; "
                    + "a class name must be one line of text")
            }
            let resolved = file.hasPrefix("/") || folder.isEmpty ? file : folder + "/" + file
            entries.append((resolved, label))
        }

        // Labels: integers when all are, else names.
        let integers = entries.map { Int($0.label) }
        var labels: [Int]
        if integers.allSatisfy({ $0 != nil && $0! >= 0 }) {
            labelKind = .integers
            labels = integers.map { $0! }
            let largest = labels.max() ?? 0
            if let fixed {
                guard largest < fixed.count else {
                    throw DataError.invalidDataset("\(path): label \(largest) is out of range for \(fixed.count) classes")
                }
                classNames = fixed
            } else {
                // Index N means N + 1 classes: a huge one would mean billions of empty classes (and
                // Int.max overflowed `0...largest`, found by fuzzing).
                guard largest < Self.maxIntegerClasses else {
                    throw DataError.invalidDataset("\(path): label \(largest) is too large: integer labels are class " +
                                                   "indices, and a CSV list defines at most \(Self.maxIntegerClasses) " +
                                                   "classes (use class names)")
                }
                classNames = (0...largest).map(String.init)
            }
        } else {
            labelKind = .names
            let names = fixed ?? Set(entries.map(\.label)).sorted(by: codePointLess)
            let index = Dictionary(names.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
            labels = try zip(entries, rows).map { entry, row in
                guard let i = index[entry.label] else {
                    throw DataError.invalidDataset("\(path):\(row.line): label '\(entry.label)' is not one of the " +
                                                   "\(names.count) classes")
                }
                return i
            }
            classNames = names
        }
        if fixed == nil && classNames.count < 2 {
            throw DataError.invalidDataset("\(path) names only one class (\(classNames.first ?? "")): a classifier " +
                                           "needs at least two classes")
        }

        // A file listed under two labels (through any spelling of its path) is left out of both, as a
        // file linked into two class folders is; it trained as both classes, with no word (probe AK).
        let twoLabels = FileIdentity.filesOfTwoLabels(zip(entries, labels).map { ($0.path, $1) })
        var leftOut = SkippedFiles()
        for i in twoLabels.keys.sorted() {
            let j = twoLabels[i]!
            let reason = "line \(rows[i].line) gives it the label '\(classNames[labels[i]])' and line \(rows[j].line) "
                + "'\(classNames[labels[j]])'\(entries[j].path == entries[i].path ? "" : " (as \(entries[j].path))"): "
                + "an image of two classes is left out of both"
            if options.strict { throw DataError.unreadable(path: entries[i].path, reason: reason) }
            if !leftOut.paths.contains(entries[i].path) { leftOut.append(path: entries[i].path, reason: reason) }
        }
        var (usable, unusable) = try verifyImageFiles(entries.map(\.path), options: options)
        for i in twoLabels.keys { usable[i] = false }
        var skipped = leftOut
        skipped.merge(unusable)
        self.skipped = skipped
        samples = zip(entries, zip(labels, usable)).compactMap { entry, pair in
            pair.1 ? LabeledSample(source: .file(entry.path), label: pair.0) : nil
        }
        guard !samples.isEmpty else {
            throw DataError.invalidDataset("\(path): none of its \(entries.count) images is usable"
                + (entries.first.map { " (the first resolves to \($0.path))" } ?? ""))
        }
        // A class whose rows all name missing or unusable files would be a class the model never
        // sees (class folders refuse it too); a class index no row names (integer labels) stays.
        var named = [Int](repeating: 0, count: classNames.count), kept = named
        for (label, ok) in zip(labels, usable) {
            named[label] += 1
            if ok { kept[label] += 1 }
        }
        if let empty = named.indices.first(where: { named[$0] > 0 && kept[$0] == 0 }),
           let i = labels.firstIndex(of: empty) {
            let line = rows[i].line, count = named[empty]
            let reason = skipped.entries.first { $0.path == entries[i].path }.map { " (\($0.path): \($0.reason))" } ?? ""
            throw DataError.invalidDataset("\(path): class '\(classNames[empty])' has no usable image: its \(count) "
                + "row\(count == 1 ? "" : "s") (from line \(line)) name\(count == 1 ? "s a file that is" : " files that are") "
                + "missing or unusable\(reason)"
                + (!hasHeader && i == 0 ? "; if line \(line) is a header, name its columns path and label" : ""))
        }
    }

    /// Whether a CSV's first row (lowercased) is a header: a field names the path column
    /// (`pathColumnNames`), or a field names the label column and no field is an image file name. A
    /// first row `cat.png,y` is data: `y` alone made it a header, and the row was lost.
    static func isHeader(_ first: [String]) -> Bool {
        if first.contains(where: pathColumnNames.contains) { return true }
        let imageSuffixes = [".jpg", ".jpeg", ".png"]
        return first.contains(where: labelColumnNames.contains)
            && !first.contains { field in imageSuffixes.contains { field.hasSuffix($0) } }
    }

    /// The CSV's records (RFC 4180, fields trimmed; see `CSV`), blank lines left out.
    static func parse(_ text: String, path: String) throws -> [CSV.Record] {
        do {
            return try CSV.parse(text, trimmingWhitespace: true).filter { $0.fields != [""] }
        } catch let error as CSV.ParseError {
            throw DataError.corrupt(path: path, reason: error.description)
        }
    }
}

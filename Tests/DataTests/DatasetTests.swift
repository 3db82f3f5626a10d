import Data
import Foundation
import TestSupport
import Torch
import XCTest

/// Dataset sources (class folders, CSV, IDX, CIFAR binary and pickled), bad-file handling, splits,
/// class balancing and conversion — all on data generated here (plus tiny pickles from
/// tools/fixtures/make_cifar.py).
final class DatasetTests: XCTestCase {
    // MARK: - Class folders

    func testImageFolderSortsClassesAndFindsImagesByExtension() throws {
        let root = try TestData.temporaryDirectory(self)
        let outside = try TestData.temporaryDirectory(self)
        try TestData.writePNG(root + "/b_dog/1.png", seed: 1)
        try TestData.writePNG(root + "/b_dog/2.PNG", seed: 2)
        try TestData.writePNG(root + "/b_dog/nested/deeper/3.jpeg", seed: 3)   // subfolders are searched
        try TestData.writePNG(root + "/a_cat/Ünïcödé ñame.Jpg", seed: 4)      // any case, non-ASCII
        try TestData.writePNG(root + "/a_cat/.hidden.png", seed: 5)             // hidden: ignored
        try TestData.write("notes", to: root + "/a_cat/readme.txt")             // not an image name: ignored
        try TestData.writePNG(root + "/.hidden_class/x.png", seed: 6)           // hidden folder: ignored
        try TestData.writePNG(root + "/Zebra/z.png", seed: 7)
        try TestData.writePNG(outside + "/target.png", seed: 8)
        try FileManager.default.createSymbolicLink(atPath: root + "/Zebra/link.png", withDestinationPath: outside + "/target.png")
        try TestData.writePNG(outside + "/linked_class/l.png", seed: 9)
        try FileManager.default.createSymbolicLink(atPath: root + "/ü_linked", withDestinationPath: outside + "/linked_class")
        try TestData.write("not a class", to: root + "/stray.txt")              // files at the root: ignored

        let dataset = try ImageFolderDataset(root: root)
        // Code-point order, as Python sorts: uppercase before lowercase, "ü" last.
        XCTAssertEqual(dataset.classNames, ["Zebra", "a_cat", "b_dog", "ü_linked"])
        let relative = dataset.samples.map { ($0.source.path!.replacingOccurrences(of: root + "/", with: ""), $0.label) }
        XCTAssertEqual(relative.map(\.0), ["Zebra/link.png", "Zebra/z.png", "a_cat/Ünïcödé ñame.Jpg", "b_dog/1.png",
                                           "b_dog/2.PNG", "b_dog/nested/deeper/3.jpeg", "ü_linked/l.png"])
        XCTAssertEqual(relative.map(\.1), [0, 0, 1, 2, 2, 2, 3])
        XCTAssertTrue(dataset.skipped.isEmpty, dataset.skipped.description)
        XCTAssertEqual(dataset.classCounts, [2, 1, 3, 1])
        // The images load, through the symlinks too.
        XCTAssertEqual(try dataset.loadImage(at: 0), TestData.pattern(seed: 8))
        XCTAssertEqual(try dataset.loadImage(at: 6), TestData.pattern(seed: 9))
    }

    /// A folder link inside a class that leads to the class folder or above (`up -> ..`) is left out and
    /// named: it gave the class every other class's images (probe AK). A class folder that is a link to
    /// nothing (a disk not mounted) is an error naming it: the class vanished without a word.
    func testLinksThatLeadAboveAClassOrToNothingAreNamed() throws {
        let root = try TestData.temporaryDirectory(self)
        try TestData.writePNG(root + "/Bag/1.png", seed: 1)
        try TestData.writePNG(root + "/Coat/2.png", seed: 2)
        try TestData.writePNG(root + "/Coat/inner/3.png", seed: 3)
        try FileManager.default.createSymbolicLink(atPath: root + "/Coat/up", withDestinationPath: "..")
        try FileManager.default.createSymbolicLink(atPath: root + "/Coat/inner/self", withDestinationPath: "..")
        let dataset = try ImageFolderDataset(root: root)
        XCTAssertEqual(dataset.classCounts, [1, 2])
        XCTAssertEqual(dataset.skipped.count, 2, dataset.skipped.description)
        XCTAssertTrue(dataset.skipped.description.contains("Coat/up: a link to \(URL(fileURLWithPath: root).resolvingSymlinksInPath().path)"),
                      dataset.skipped.description)

        try FileManager.default.createSymbolicLink(atPath: root + "/Sandal", withDestinationPath: root + "/nas/Sandal")
        XCTAssertThrowsError(try ImageFolderDataset(root: root)) { error in
            XCTAssertTrue("\(error)".contains("\(root)/Sandal: a symbolic link to \(root)/nas/Sandal, which does not exist"), "\(error)")
        }
    }

    /// Probe AK: a class folder that was a link to another class (`Handbag -> Bag`) made every Bag image a
    /// Handbag image too, and an image linked into two classes had two labels, with no word. The first is
    /// an error naming both folders; the second is left out of both classes and named (with
    /// `--on-bad-image fail`, an error); a class left with nothing says why.
    func testAClassThatIsAnotherClassIsRefusedAndAnImageOfTwoClassesIsLeftOut() throws {
        let root = try TestData.temporaryDirectory(self)
        let fm = FileManager.default
        for (k, name) in ["Bag/1.png", "Bag/2.png", "Coat/3.png", "Coat/4.png", "Shoe/5.png"].enumerated() {
            try TestData.writePNG(root + "/" + name, seed: k)
        }
        try fm.createSymbolicLink(atPath: root + "/Handbag", withDestinationPath: root + "/Bag")
        XCTAssertThrowsError(try ImageFolderDataset(root: root)) { error in
            XCTAssertTrue("\(error)".contains("class folders \(root)/Bag and \(root)/Handbag are one folder (\(root)/Handbag is a link to it)"),
                          "\(error)")
        }
        try fm.removeItem(atPath: root + "/Handbag")

        // One image linked into a second class, and one reached twice within its own class (kept once each).
        try fm.createSymbolicLink(atPath: root + "/Coat/also-a-bag.png", withDestinationPath: root + "/Bag/2.png")
        try fm.createSymbolicLink(atPath: root + "/Shoe/again.png", withDestinationPath: root + "/Shoe/5.png")
        let dataset = try ImageFolderDataset(root: root)
        XCTAssertEqual(dataset.classNames, ["Bag", "Coat", "Shoe"])
        XCTAssertEqual(dataset.samples.map { $0.source.path!.replacingOccurrences(of: root + "/", with: "") },
                       ["Bag/1.png", "Coat/3.png", "Coat/4.png", "Shoe/5.png", "Shoe/again.png"])
        XCTAssertEqual(dataset.skipped.entries.map(\.path).sorted(), [root + "/Bag/2.png", root + "/Coat/also-a-bag.png"])
        XCTAssertTrue(dataset.skipped.description.contains("the same file as \(root)/Bag/2.png, an image of class Bag"),
                      dataset.skipped.description)
        XCTAssertThrowsError(try ImageFolderDataset(root: root, options: ScanOptions(strict: true))) { error in
            XCTAssertTrue("\(error)".contains("an image of two classes is left out of both"), "\(error)")
        }

        // A class whose every image is another's.
        try fm.removeItem(atPath: root + "/Shoe/5.png")
        try fm.removeItem(atPath: root + "/Shoe/again.png")
        try fm.createSymbolicLink(atPath: root + "/Shoe/5.png", withDestinationPath: root + "/Coat/3.png")
        XCTAssertThrowsError(try ImageFolderDataset(root: root)) { error in
            XCTAssertTrue("\(error)".contains("class folder \(root)/Shoe contains no usable images (1 of its 1 image file is also "
                                              + "another class's, through a link, and left out of both)"), "\(error)")
        }
    }

    func testSplitFoldersShareTheTrainingClasses() throws {
        let root = try TestData.temporaryDirectory(self)
        for (split, classes) in [("train", ["cat", "dog", "owl"]), ("validation", ["dog", "owl"]), ("test", ["cat", "owl"])] {
            for (k, c) in classes.enumerated() { try TestData.writePNG("\(root)/\(split)/\(c)/\(k).png", seed: k) }
        }
        let splits = try ImageFolderDataset.splits(root: root)
        XCTAssertTrue(splits.hasSplitFolders)
        XCTAssertEqual(splits.train.classNames, ["cat", "dog", "owl"])
        XCTAssertEqual(splits.validation?.classNames, ["cat", "dog", "owl"])
        XCTAssertEqual(splits.validation?.labels, [1, 2])     // indices of the training classes
        XCTAssertEqual(splits.test?.labels, [0, 2])
        XCTAssertEqual(splits.train.count, 3)
        XCTAssertEqual(splits.unusedFolders, [])

        // A folder beside the split folders (a class put beside train/, a dev/ split) is read by no
        // split; it was dropped without a word and is now named (train warns, check-data hints).
        try TestData.writePNG("\(root)/dev/cat/9.png", seed: 9)
        try TestData.writePNG("\(root)/emu/1.png", seed: 10)
        XCTAssertEqual(try ImageFolderDataset.splits(root: root).unusedFolders, ["dev", "emu"])
        let report = try DataCheck.run(root)
        XCTAssertTrue(report.hints.contains { $0.hasPrefix("dev, emu beside the split folders are not read") }, "\(report.hints)")

        // "val/" works too; a root without split folders is all training data.
        let flat = try TestData.temporaryDirectory(self)
        try TestData.writePNG(flat + "/x/1.png", seed: 1)
        try TestData.writePNG(flat + "/y/1.png", seed: 2)
        let flatSplits = try ImageFolderDataset.splits(root: flat)
        XCTAssertFalse(flatSplits.hasSplitFolders)
        XCTAssertNil(flatSplits.validation)
        XCTAssertEqual(flatSplits.train.classNames, ["x", "y"])

        let val = try TestData.temporaryDirectory(self)
        try TestData.writePNG(val + "/train/a/1.png", seed: 1)
        try TestData.writePNG(val + "/train/b/1.png", seed: 2)
        try TestData.writePNG(val + "/val/a/1.png", seed: 3)
        XCTAssertEqual(try ImageFolderDataset.splits(root: val).validation?.count, 1)

        // A validation class unknown to training is an error naming the folder.
        try TestData.writePNG(val + "/val/zzz/1.png", seed: 4)
        XCTAssertThrowsError(try ImageFolderDataset.splits(root: val)) { error in
            XCTAssertTrue("\(error)".contains(val + "/val/zzz"), "\(error)")
        }
    }

    func testFolderErrorsNameThePath() throws {
        let root = try TestData.temporaryDirectory(self)
        let missing = root + "/does-not-exist"
        XCTAssertThrowsError(try ImageFolderDataset(root: missing)) { error in
            XCTAssertTrue("\(error)".contains(missing) && "\(error)".contains("does not exist"), "\(error)")
        }
        XCTAssertThrowsError(try ImageFolderDataset(root: root)) { error in      // no class folders
            XCTAssertTrue("\(error)".contains("no class folders in \(root)"), "\(error)")
        }
        try TestData.writePNG(root + "/only/1.png", seed: 1)
        XCTAssertThrowsError(try ImageFolderDataset(root: root)) { error in
            XCTAssertTrue("\(error)".contains("only one class folder (only) in \(root)"), "\(error)")
        }
        try FileManager.default.createDirectory(atPath: root + "/empty", withIntermediateDirectories: true)
        try TestData.write("x", to: root + "/empty/readme.txt")
        XCTAssertThrowsError(try ImageFolderDataset(root: root)) { error in
            XCTAssertTrue("\(error)".contains("class folder \(root)/empty contains no usable images"), "\(error)")
        }
        // A class folder whose only image is broken: the message says it was skipped.
        try TestData.write("", to: root + "/empty/broken.png")
        XCTAssertThrowsError(try ImageFolderDataset(root: root)) { error in
            XCTAssertTrue("\(error)".contains("\(root)/empty") && "\(error)".contains("1 image file skipped"), "\(error)")
        }
        XCTAssertThrowsError(try ImageFolderDataset(root: root + "/only/1.png")) { error in
            XCTAssertTrue("\(error)".contains("not a folder"), "\(error)")
        }
    }

    /// "café" composed (NFC) and decomposed (NFD) are two folders but one Swift string: every image
    /// went to one class, and the run's class list held a duplicate that predict, evaluate and resume
    /// refused. Such folders are an error naming both.
    func testClassFoldersNamedAlikeInTwoUnicodeFormsAreAnError() throws {
        let root = try TestData.temporaryDirectory(self)
        let composed = "caf\u{E9}", decomposed = "cafe\u{301}"
        XCTAssertEqual(composed, decomposed, "Swift compares them as equal")
        try TestData.writePNG(root + "/" + composed + "/1.png", seed: 1)
        try TestData.writePNG(root + "/" + decomposed + "/2.png", seed: 2)
        try TestData.writePNG(root + "/dog/3.png", seed: 3)
        let names = try FileManager.default.contentsOfDirectory(atPath: root)
        try XCTSkipIf(names.count < 3, "this file system folds the two forms into one name")
        XCTAssertThrowsError(try ImageFolderDataset(root: root)) { error in
            XCTAssertTrue("\(error)".contains("two Unicode forms"), "\(error)")
        }
    }

    /// A class folder named with a line break trained until the end of a pseudo-labelling run's
    /// first epoch, whose `pseudo_class_<name>` column history.csv refused: the run failed, its epoch
    /// lost. Such a folder is an error at the scan naming it, as such a CSV label is.
    func testAClassFolderNamedWithALineBreakIsAnErrorNamingIt() throws {
        let root = try TestData.temporaryDirectory(self)
        try TestData.writePNG(root + "/x\ny/1.png", seed: 1)
        try TestData.writePNG(root + "/dog/2.png", seed: 2)
        XCTAssertThrowsError(try ImageFolderDataset(root: root)) { error in
            XCTAssertTrue("\(error)".contains("class folder \(root)/x\\ny: its name holds a line break"), "\(error)")
        }
        // NEL and the Unicode line separator break lines too, and are shown escaped.
        for (name, shown) in [("x\u{85}y", "x\\u{85}y"), ("x\u{2028}y", "x\\u{2028}y")] {
            try FileManager.default.moveItem(atPath: root + "/" + (try FileManager.default.contentsOfDirectory(atPath: root)
                .first { $0 != "dog" })!, toPath: root + "/" + name)
            XCTAssertThrowsError(try ImageFolderDataset(root: root)) { error in
                XCTAssertTrue("\(error)".contains("class folder \(root)/\(shown): its name holds a line break"), "\(error)")
            }
        }
        // A tab is no line break: runs made with one stay usable.
        try FileManager.default.moveItem(atPath: root + "/x\u{2028}y", toPath: root + "/x\ty")
        XCTAssertEqual(try ImageFolderDataset(root: root).classNames, ["dog", "x\ty"])
    }

    /// Entries whose names are not UTF-8 cannot be opened through Foundation (it lists them with
    /// U+FFFD): a class folder so named vanished without a word, and an image so named was "No such
    /// file or directory". Folders of NAS boxes and archivers (`@eaDir`, `__MACOSX`) were classes.
    func testNamesThatAreNotUTF8AreNamedAndSystemFoldersAreNotClasses() throws {
        let root = try TestData.temporaryDirectory(self)
        try TestData.writePNG(root + "/cat/1.png", seed: 1)
        try TestData.writePNG(root + "/dog/2.png", seed: 2)
        for system in ["@eaDir", "__MACOSX", "cat/@eaDir"] { try TestData.writePNG(root + "/\(system)/thumb.png", seed: 3) }
        XCTAssertEqual(try ImageFolderDataset(root: root).classNames, ["cat", "dog"])
        XCTAssertEqual(try ImageFolderDataset(root: root).count, 2)

        func rawPath(_ folder: String, _ bytes: [UInt8]) -> [CChar] {
            (Array(folder.utf8) + [UInt8(ascii: "/")] + bytes + [0]).map { CChar(bitPattern: $0) }
        }
        let png = try Foundation.Data(contentsOf: URL(fileURLWithPath: root + "/cat/1.png"))
        func writeRaw(_ path: [CChar]) {
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o644)
            png.withUnsafeBytes { _ = write(fd, $0.baseAddress, $0.count) }
            close(fd)
        }
        // Files that are not images, so named, are not read, as any other (they made the dataset unusable).
        writeRaw(rawPath(root, [0x6E, 0xFF, 0x2E, 0x74, 0x78, 0x74]))                 // "n\xff.txt" beside the classes
        writeRaw(rawPath(root + "/cat", [0x6E, 0xFF, 0x2E, 0x74, 0x78, 0x74]))
        XCTAssertEqual(try ImageFolderDataset(root: root).skipped.count, 0)
        XCTAssertNoThrow(try ImageFolderDataset(root: root, options: ScanOptions(strict: true)))
        writeRaw(rawPath(root + "/cat", [0xE9, 0x74, 0xE9, 0x2E, 0x70, 0x6E, 0x67]))  // "été.png" in Latin-1
        let skipped = try ImageFolderDataset(root: root).skipped
        XCTAssertEqual(skipped.count, 1, skipped.description)
        XCTAssertTrue(skipped.description.contains("not valid UTF-8"), skipped.description)
        XCTAssertThrowsError(try ImageFolderDataset(root: root, options: ScanOptions(strict: true)))

        XCTAssertEqual(mkdir(rawPath(root, [0xFF, 0xFE]), 0o755), 0)
        XCTAssertThrowsError(try ImageFolderDataset(root: root)) { error in
            XCTAssertTrue("\(error)".contains("not valid UTF-8") && "\(error)".contains(root), "\(error)")
        }
    }

    func testBrokenFilesAreSkippedAndReportedOrFailInStrictMode() throws {
        let root = try TestData.temporaryDirectory(self)
        try TestData.writePNG(root + "/cat/good.png", seed: 1)
        try TestData.writePNG(root + "/dog/good.png", seed: 2)
        let bad = try TestData.brokenCorpus(in: root + "/cat")
        let dataset = try ImageFolderDataset(root: root)
        XCTAssertEqual(dataset.count, 2 + 1)   // the truncated JPEG passes the header check
        XCTAssertEqual(Set(dataset.skipped.paths), Set(bad.scanTime), dataset.skipped.description)
        XCTAssertEqual(dataset.skipped.count, 4)
        let warning = try XCTUnwrap(dataset.skipped.warning())
        XCTAssertTrue(warning.hasPrefix("warning: skipped 4 unusable files:"), warning)
        for path in bad.scanTime { XCTAssertTrue(warning.contains(path), "\(path) missing from\n\(warning)") }
        XCTAssertTrue(warning.contains("empty file (0 bytes)"), warning)
        XCTAssertTrue(warning.contains("is a directory"), warning)
        XCTAssertTrue(warning.contains("broken symbolic link"), warning)
        XCTAssertNil(SkippedFiles().warning())
        // The truncated JPEG is only found when decoded.
        let truncatedIndex = try XCTUnwrap(dataset.samples.firstIndex { $0.source.path == bad.loadTime })
        XCTAssertThrowsError(try dataset.loadImage(at: truncatedIndex))

        // Strict: the first bad file (in scan order) fails with its path.
        XCTAssertThrowsError(try ImageFolderDataset(root: root, options: ScanOptions(strict: true))) { error in
            XCTAssertTrue(bad.scanTime.contains { "\(error)".contains($0) }, "\(error)")
        }
        // A limit on the listing.
        var many = SkippedFiles()
        for i in 0..<30 { many.append(path: "/x/\(i).png", reason: "bad") }
        XCTAssertTrue(many.warning(limit: 5)!.hasSuffix("… and 25 more"))
    }

    // MARK: - CSV

    func testCSVWithNamesHeaderQuotingAndRelativePaths() throws {
        let root = try TestData.temporaryDirectory(self)
        try TestData.writePNG(root + "/imgs/a.png", seed: 1)
        try TestData.writePNG(root + "/imgs/b, with comma.png", seed: 2)
        try TestData.writePNG(root + "/abs.png", seed: 3)
        let csv = "\u{FEFF}filename,label,extra\r\nimgs/a.png,dog,1\r\n\"imgs/b, with comma.png\",cat,2\r\n" +
            "\n\(root)/abs.png , dog ,3\r\nimgs/missing.png,cat,4\r\n"
        try TestData.write(csv, to: root + "/labels.csv")
        let dataset = try CSVDataset(csv: root + "/labels.csv")
        XCTAssertEqual(dataset.labelKind, .names)
        XCTAssertEqual(dataset.classNames, ["cat", "dog"])
        XCTAssertEqual(dataset.samples.map { $0.source.path! },
                       [root + "/imgs/a.png", root + "/imgs/b, with comma.png", root + "/abs.png"])
        XCTAssertEqual(dataset.labels, [1, 0, 1])
        XCTAssertEqual(dataset.skipped.paths, [root + "/imgs/missing.png"])
        XCTAssertEqual(try dataset.loadImage(at: 1), TestData.pattern(seed: 2))

        XCTAssertThrowsError(try CSVDataset(csv: root + "/labels.csv", options: ScanOptions(strict: true))) { error in
            XCTAssertTrue("\(error)".contains(root + "/imgs/missing.png"), "\(error)")
        }
    }

    /// A file listed under two labels, by the same path or another spelling of it, is left out of both
    /// classes and named with its lines (it trained as both, with no word); listed twice under one
    /// label, it stays (kept twice, as listed). With `--on-bad-image fail`, an error.
    func testAnImageListedUnderTwoLabelsIsLeftOutOfBoth() throws {
        let root = try TestData.temporaryDirectory(self)
        for (k, name) in ["a.png", "b.png", "c.png", "d.png", "e.png"].enumerated() { try TestData.writePNG(root + "/" + name, seed: k) }
        try FileManager.default.createSymbolicLink(atPath: root + "/d-link.png", withDestinationPath: root + "/d.png")
        let rows = "a.png,cat\nb.png,dog\nc.png,cat\na.png,dog\nc.png,cat\nd.png,dog\nd-link.png,owl\n"
        try TestData.write("path,label\n" + rows + "e.png,owl\n", to: root + "/labels.csv")
        let dataset = try CSVDataset(csv: root + "/labels.csv")
        XCTAssertEqual(dataset.classNames, ["cat", "dog", "owl"])
        XCTAssertEqual(dataset.samples.map { $0.source.path!.replacingOccurrences(of: root + "/", with: "") },
                       ["b.png", "c.png", "c.png", "e.png"])
        XCTAssertEqual(dataset.labels, [1, 0, 0, 2])
        XCTAssertEqual(dataset.skipped.paths, [root + "/a.png", root + "/d.png", root + "/d-link.png"])
        XCTAssertEqual(dataset.skipped.entries.first?.reason,
                       "line 2 gives it the label 'cat' and line 5 'dog': an image of two classes is left out of both")
        XCTAssertEqual(dataset.skipped.entries.dropFirst().first?.reason, "line 7 gives it the label 'dog' and line 8 'owl' (as \(root)/d-link.png): "
                       + "an image of two classes is left out of both")
        XCTAssertThrowsError(try CSVDataset(csv: root + "/labels.csv", options: ScanOptions(strict: true))) { error in
            XCTAssertTrue("\(error)".contains("\(root)/a.png: line 2 gives it the label 'cat' and line 5 'dog'"), "\(error)")
        }
        // A class whose only row is such a file is a class with no usable image, and says why.
        try TestData.write("path,label\n" + rows, to: root + "/owl-shared.csv")
        XCTAssertThrowsError(try CSVDataset(csv: root + "/owl-shared.csv")) { error in
            XCTAssertTrue("\(error)".contains("class 'owl' has no usable image") && "\(error)".contains("line 8 gives it the label 'owl'"),
                          "\(error)")
        }
    }

    func testCSVWithIntegerLabelsAndNoHeader() throws {
        let root = try TestData.temporaryDirectory(self)
        for i in 0..<3 { try TestData.writePNG("\(root)/\(i).png", seed: i) }
        try TestData.write("0.png,2\n1.png,0\n2.png,2", to: root + "/l.csv")
        let dataset = try CSVDataset(csv: root + "/l.csv")
        XCTAssertEqual(dataset.labelKind, .integers)
        XCTAssertEqual(dataset.classNames, ["0", "1", "2"])
        XCTAssertEqual(dataset.labels, [2, 0, 2])
        XCTAssertEqual(dataset.count, 3)

        // Integer labels name classes 0…max, so "2, 2" still means three classes…
        try TestData.write("0.png,2\n1.png,2\n", to: root + "/twos.csv")
        XCTAssertEqual(try CSVDataset(csv: root + "/twos.csv").classNames, ["0", "1", "2"])
        // …while a single class is an error naming the file, unless the classes are given.
        try TestData.write("0.png,0\n1.png,0\n", to: root + "/one.csv")
        XCTAssertThrowsError(try CSVDataset(csv: root + "/one.csv")) { error in
            XCTAssertTrue("\(error)".contains(root + "/one.csv") && "\(error)".contains("only one class"), "\(error)")
        }
        XCTAssertEqual(try CSVDataset(csv: root + "/one.csv", classNames: ["a", "b"]).labels, [0, 0])
        try TestData.write("0.png,\"unterminated\n", to: root + "/bad.csv")
        XCTAssertThrowsError(try CSVDataset(csv: root + "/bad.csv")) { error in
            XCTAssertTrue("\(error)".contains(root + "/bad.csv"), "\(error)")
        }
        XCTAssertThrowsError(try CSVDataset(csv: root + "/nope.csv")) { error in
            XCTAssertTrue("\(error)".contains(root + "/nope.csv"), "\(error)")
        }
        // An unquoted comma in a path made a row of three fields, read as path "0" and label "x.png"
        // (a class of no image); rows of unlike length are an error naming the line.
        try TestData.write("0.png,0\n0,x.png,1\n1.png,1\n", to: root + "/comma.csv")
        XCTAssertThrowsError(try CSVDataset(csv: root + "/comma.csv")) { error in
            XCTAssertTrue("\(error)".contains(root + "/comma.csv:2: 3 fields, but line 1 has 2"), "\(error)")
        }
        // Extra columns on every row are still ignored.
        try TestData.write("path,label,note\n0.png,0,a\n1.png,1,b\n", to: root + "/extra.csv")
        XCTAssertEqual(try CSVDataset(csv: root + "/extra.csv").labels, [0, 1])
    }

    /// The header is found by its column names wherever they stand (`id,path,label` was read as data,
    /// its header an image of class "label"), and a first row of data whose label is `y` is data (it was
    /// taken for a header and lost). A class whose rows all name missing files is an error naming it,
    /// as an empty class folder is (it became a class the model never saw); an integer class no row
    /// names stays, as documented.
    func testCSVHeadersByNameAndClassesWithoutUsableImages() throws {
        let root = try TestData.temporaryDirectory(self)
        for i in 0..<4 { try TestData.writePNG("\(root)/\(i).png", seed: i) }
        try TestData.write("id,path,label\n1,0.png,cat\n2,1.png,dog\n", to: root + "/id.csv")
        let id = try CSVDataset(csv: root + "/id.csv")
        XCTAssertEqual(id.classNames, ["cat", "dog"])
        XCTAssertEqual(id.samples.map { $0.source.path! }, [root + "/0.png", root + "/1.png"])
        try TestData.write("label,file\ncat,0.png\ndog,1.png\n", to: root + "/swapped.csv")
        XCTAssertEqual(try CSVDataset(csv: root + "/swapped.csv").labels, [0, 1])
        try TestData.write("0.png,y\n1.png,y\n2.png,n\n3.png,n\n", to: root + "/yn.csv")
        let yn = try CSVDataset(csv: root + "/yn.csv")
        XCTAssertEqual(yn.count, 4, "the first row is data")
        XCTAssertEqual(yn.labels, [1, 1, 0, 0])
        try TestData.write("x,y\n0.png,a\n1.png,b\n", to: root + "/xy.csv")
        XCTAssertEqual(try CSVDataset(csv: root + "/xy.csv").count, 2, "x,y names no image: a header")

        try TestData.write("0.png,cat\n1.png,cat\ngone/a.png,dog\ngone/b.png,dog\n2.png,emu\n", to: root + "/gone.csv")
        XCTAssertThrowsError(try CSVDataset(csv: root + "/gone.csv")) { error in
            XCTAssertTrue("\(error)".contains("class 'dog' has no usable image: its 2 rows (from line 3)")
                          && "\(error)".contains(root + "/gone/a.png"), "\(error)")
        }
        // An unknown header: its first row names a file that does not exist, of a class of its own.
        try TestData.write("fname,breed\n0.png,cat\n1.png,dog\n", to: root + "/odd.csv")
        XCTAssertThrowsError(try CSVDataset(csv: root + "/odd.csv")) { error in
            XCTAssertTrue("\(error)".contains("class 'breed' has no usable image")
                          && "\(error)".contains("if line 1 is a header, name its columns path and label"), "\(error)")
        }
        // A quoted label with a line break (it split predict's lines) is an error naming the line.
        try TestData.write("0.png,\"two\nlines\"\n1.png,dog\n", to: root + "/break.csv")
        XCTAssertThrowsError(try CSVDataset(csv: root + "/break.csv")) { error in
            XCTAssertTrue("\(error)".contains(root + "/break.csv:1: the label") && "\(error)".contains("one line of text"), "\(error)")
        }
        try TestData.write("0.png,0\n1.png,2\n", to: root + "/gap.csv")
        XCTAssertEqual(try CSVDataset(csv: root + "/gap.csv").classNames, ["0", "1", "2"])
    }

    // MARK: - IDX

    func testMNISTFromPlainAndGzippedIDX() throws {
        for gzip in [false, true] {
            let root = try TestData.temporaryDirectory(self)
            let (images, labels) = try TestData.writeMNIST(in: root, train: 7, test: 3, width: 5, height: 4, gzip: gzip)
            let dataset = try MNISTDataset(directory: root, split: .train, variant: .fashionMNIST).imageDataset()
            XCTAssertEqual(dataset.count, 7)
            XCTAssertEqual(dataset.classNames, MNISTDataset.fashionClassNames)
            XCTAssertEqual(dataset.labels, labels.train)
            let third = try dataset.loadImage(at: 3)
            XCTAssertEqual([third.width, third.height, third.channels], [5, 4, 1])
            XCTAssertEqual(third.pixels, Array(images.train[(3 * 20)..<(4 * 20)]))
            let test = try MNISTDataset(directory: root, split: .test, variant: .mnist).imageDataset()
            XCTAssertEqual(test.labels, labels.test)
            XCTAssertEqual(test.classNames, (0...9).map(String.init))
        }
    }

    /// Broken IDX files are named with what is wrong, and a gzip file is read only as far as its header
    /// promises: 64 MiB of zeros behind a 2-image header (a 64 KiB file) stops after the promised
    /// bytes, and a header promising more than 4 GiB is refused before its data is read.
    func testBrokenIDXFilesAreNamedAndAGzipBombIsNotInflated() throws {
        let root = try TestData.temporaryDirectory(self)
        func gzip(_ name: String) throws -> String { try TestData.gzip(root + "/" + name) }
        func message(_ path: String) -> String {
            do {
                _ = try IDXFile(path: path)
                return "read"
            } catch { return "\(error)" }
        }
        let cases: [(String, [UInt8], String)] = [
            ("magic", [1, 0, 8, 1, 0, 0, 0, 1, 7], "not an IDX file (bad magic number)"),
            ("type", [0, 0, 0x42, 1, 0, 0, 0, 1, 7], "unknown IDX element type 0x42"),
            ("header", [0, 0, 8, 3, 0, 0, 0, 2], "truncated IDX header"),
            ("short", TestData.idx(3, [2, 28, 28], [UInt8](repeating: 1, count: 100)),
             "IDX header promises 1568 bytes of data for shape [2, 28, 28], the file has 100"),
            ("long", TestData.idx(2, [2, 2], [UInt8](repeating: 1, count: 5)),
             "IDX header promises 4 bytes of data for shape [2, 2], the file has more than that"),
            ("huge", TestData.idx(3, [70_000, 300, 300], [1, 2, 3]),
             "IDX header promises 6300000000 bytes of data for shape [70000, 300, 300], more than the " +
             "4294967296-byte limit"),
        ]
        for (name, bytes, expected) in cases {
            try TestData.write(bytes, to: root + "/" + name)
            XCTAssertEqual(message(root + "/" + name), root + "/" + name + ": " + expected, name)
            let zipped = try gzip(name)
            XCTAssertEqual(message(zipped), zipped + ": " + expected, name + ".gz")
        }

        var bomb = TestData.idx(3, [2, 28, 28], [])
        bomb += [UInt8](repeating: 0, count: 64 << 20)
        try TestData.write(bomb, to: root + "/bomb")
        let zipped = try gzip("bomb")
        XCTAssertLessThan(try FileManager.default.attributesOfItem(atPath: zipped)[.size] as? Int ?? .max, 1 << 20)
        XCTAssertEqual(message(zipped),
                       zipped + ": IDX header promises 1568 bytes of data for shape [2, 28, 28], the file has more than that")

        let good = TestData.idx(2, [2, 2], [1, 2, 3, 4])
        try TestData.write(good, to: root + "/good")
        let goodZipped = try gzip("good")
        let file = try IDXFile(path: goodZipped)
        XCTAssertEqual(file.shape, [2, 2])
        XCTAssertEqual(file.bytes, [1, 2, 3, 4])
        let whole = try XCTUnwrap(FileManager.default.contents(atPath: goodZipped))
        try TestData.write(Array(whole.prefix(whole.count - 6)), to: root + "/cut.gz")
        XCTAssertTrue(message(root + "/cut.gz").hasPrefix(root + "/cut.gz: corrupt or truncated gzip data: "),
                      message(root + "/cut.gz"))
        // The path once (probe AD: zlib's own message repeated it).
        XCTAssertEqual(message(root + "/cut.gz").components(separatedBy: root + "/cut.gz").count, 2, message(root + "/cut.gz"))
    }

    // MARK: - CIFAR

    func testCIFAR10BinaryBatches() throws {
        let root = try TestData.temporaryDirectory(self)
        let dir = root + "/cifar-10-batches-bin"
        let train1 = TestData.cifarRecords(count: 3, labelBytes: 1, start: 0)
        let train2 = TestData.cifarRecords(count: 2, labelBytes: 1, start: 3)
        try TestData.write(train1, to: dir + "/data_batch_1.bin")
        try TestData.write(train2, to: dir + "/data_batch_2.bin")
        try TestData.write(TestData.cifarRecords(count: 2, labelBytes: 1, start: 10), to: dir + "/test_batch.bin")

        let train = try CIFARDataset(directory: root, split: .train)
        XCTAssertEqual(train.variant, .cifar10)
        XCTAssertEqual(train.format, .binary)
        XCTAssertEqual(train.directory, dir)
        XCTAssertEqual(train.count, 5)
        XCTAssertEqual(train.labels, [0, 1, 2, 3, 4])
        XCTAssertEqual(train.classNames, CIFARDataset.cifar10ClassNames)
        try TestData.checkCIFARPixels(train, starts: [0, 1, 2, 3, 4])
        let test = try CIFARDataset(directory: dir, split: .test)
        XCTAssertEqual(test.labels, [0, 1])
        try TestData.checkCIFARPixels(test, starts: [10, 11])

        // Names from batches.meta.txt when present; a damaged batch names its file.
        try TestData.write((0..<10).map { "class \($0)" }.joined(separator: "\n") + "\n\n", to: dir + "/batches.meta.txt")
        XCTAssertEqual(try CIFARDataset(directory: dir, split: .test).classNames.last, "class 9")
        try TestData.write(Array(train2.dropLast()), to: dir + "/data_batch_2.bin")
        XCTAssertThrowsError(try CIFARDataset(directory: dir, split: .train)) { error in
            XCTAssertTrue("\(error)".contains(dir + "/data_batch_2.bin"), "\(error)")
        }
        XCTAssertThrowsError(try CIFARDataset(directory: root + "/nothing", split: .train))
    }

    func testCIFAR100BinaryBatchesWithCoarseLabels() throws {
        let dir = try TestData.temporaryDirectory(self)
        try TestData.write(TestData.cifarRecords(count: 4, labelBytes: 2, start: 0), to: dir + "/train.bin")
        try TestData.write(TestData.cifarRecords(count: 1, labelBytes: 2, start: 7), to: dir + "/test.bin")
        let train = try CIFARDataset(directory: dir, split: .train)
        XCTAssertEqual(train.variant, .cifar100)
        XCTAssertEqual(train.classNames.count, 100)
        XCTAssertEqual(train.classNames[0], "apple")
        XCTAssertEqual(train.coarseClassNames?.count, 20)
        // Records start with the coarse label, then the fine label (see cifarRecords).
        XCTAssertEqual(train.coarseLabels, [0, 1, 2, 3])
        XCTAssertEqual(train.labels, [0, 3, 6, 9])
        try TestData.checkCIFARPixels(train, starts: [0, 1, 2, 3])
        XCTAssertEqual(try CIFARDataset(directory: dir, split: .test).labels, [21])

        try TestData.write((0..<100).map { "f\($0)" }.joined(separator: "\n"), to: dir + "/fine_label_names.txt")
        try TestData.write((0..<20).map { "c\($0)" }.joined(separator: "\n"), to: dir + "/coarse_label_names.txt")
        let named = try CIFARDataset(directory: dir, split: .train)
        XCTAssertEqual(named.classNames[3], "f3")
        XCTAssertEqual(named.coarseClassNames?[19], "c19")
    }

    func testCIFARPythonBatchesFromNumpyPickles() throws {
        // Protocol 2 (with _codecs.encode bytes) for CIFAR-10; protocols 4 and 5 for CIFAR-100.
        let c10 = Fixtures.path("cifar/cifar-10-batches-py")
        let train = try CIFARDataset(directory: Fixtures.path("cifar"), split: .train)
        XCTAssertEqual(train.format, .python)
        XCTAssertEqual(train.variant, .cifar10)
        XCTAssertEqual(train.labels, [0, 1, 2, 3, 4, 5, 9])
        XCTAssertEqual(train.classNames.first, "plane")   // from batches.meta
        try TestData.checkNumpyFixturePixels(train, images: Array(0..<7))
        let test = try CIFARDataset(directory: c10, split: .test)
        XCTAssertEqual(test.labels, [9, 8])
        try TestData.checkNumpyFixturePixels(test, images: [100, 101])

        let c100 = Fixtures.path("cifar/cifar-100-python")
        let train100 = try CIFARDataset(directory: c100, split: .train)
        XCTAssertEqual(train100.variant, .cifar100)
        XCTAssertEqual(train100.labels, [0, 57, 99])
        XCTAssertEqual(train100.coarseLabels, [4, 7, 19])
        XCTAssertEqual(train100.classNames[57], "fine_57")
        XCTAssertEqual(train100.coarseClassNames?[19], "coarse_19")
        try TestData.checkNumpyFixturePixels(train100, images: [0, 1, 2])
        let test100 = try CIFARDataset(directory: c100, split: .test)
        XCTAssertEqual(test100.labels, [42, 1])
        XCTAssertEqual(test100.coarseLabels, [3, 1])   // an int64 numpy array in this batch
        try TestData.checkNumpyFixturePixels(test100, images: [50, 51])
    }

    func testCIFARPythonBatchAsPython2CPickleWritesIt() throws {
        // The real archive's layout: protocol 2 from Python 2, bytes keys, BINSTRING pixel data.
        let dir = try TestData.temporaryDirectory(self)
        let pixels = TestData.cifarRecords(count: 2, labelBytes: 0, start: 40)
        try TestData.write(TestData.python2CIFARBatch(pixels: pixels, labels: [7, 3]), to: dir + "/data_batch_1")
        try TestData.write(TestData.python2CIFARBatch(pixels: Array(pixels.prefix(3072)), labels: [5]), to: dir + "/test_batch")
        let train = try CIFARDataset(directory: dir, split: .train)
        XCTAssertEqual(train.format, .python)
        XCTAssertEqual(train.labels, [7, 3])
        XCTAssertEqual(train.classNames, CIFARDataset.cifar10ClassNames)   // no batches.meta: standard names
        try TestData.checkCIFARPixels(train, starts: [40, 41])
        XCTAssertEqual(try CIFARDataset(directory: dir, split: .test).labels, [5])

        // Hostile pickles are refused before anything could run, and garbage fails cleanly.
        let evil: [UInt8] = [0x80, 0x02] + Array("cos\nsystem\nU\u{02}ls\u{85}R.".utf8)
        try TestData.write(evil, to: dir + "/test_batch")
        XCTAssertThrowsError(try CIFARDataset(directory: dir, split: .test)) { error in
            XCTAssertTrue("\(error)".contains("os.system") && "\(error)".contains("refused"), "\(error)")
            XCTAssertTrue("\(error)".contains(dir + "/test_batch"), "\(error)")
        }
        for garbage: [UInt8] in [[], [0x80], [0x80, 0x02, 0x5D, 0x71], [0x80, 0x02, 0x28, 0x28, 0x2E],
                                 [0x54, 0xFF, 0xFF, 0xFF, 0x7F], Array(repeating: 0x5D, count: 100) + [0x61, 0x2E]] {
            try TestData.write(garbage, to: dir + "/test_batch")
            XCTAssertThrowsError(try CIFARDataset(directory: dir, split: .test, format: .python))
        }
        // Deep nesting is bounded.
        let deep: [UInt8] = [0x80, 0x02] + Array(repeating: 0x5D, count: 1) + Array(repeating: 0x85, count: 5000) + [0x2E]
        try TestData.write(deep, to: dir + "/test_batch")
        XCTAssertThrowsError(try CIFARDataset(directory: dir, split: .test, format: .python)) { error in
            XCTAssertTrue("\(error)".contains("nested more than"), "\(error)")
        }
    }

    /// The CIFAR allow-list holds numpy's array globals only: a batch naming anything else — a global
    /// that runs code, or one that only `.pth` checkpoints may use — is refused with its name.
    func testCIFARBatchNamingAnotherGlobalIsRefused() throws {
        let dir = try TestData.temporaryDirectory(self)
        let pixels = TestData.cifarRecords(count: 1, labelBytes: 0, start: 0)
        try TestData.write(TestData.python2CIFARBatch(pixels: pixels, labels: [1]), to: dir + "/data_batch_1")
        let marker = dir + "/ran"
        func refusal(_ bytes: [UInt8], _ dotted: String, file: StaticString = #filePath, line: UInt = #line) throws {
            try TestData.write(bytes, to: dir + "/test_batch")
            XCTAssertThrowsError(try CIFARDataset(directory: dir, split: .test), file: file, line: line) { error in
                XCTAssertEqual(error as? DataError, .unsupported("\(dir)/test_batch: the pickle references " +
                               "'\(dotted)', which is not numpy array data; refused (nothing was executed)"),
                               file: file, line: line)
            }
        }
        // os.system("touch …") by GLOBAL (protocol 2) and by STACK_GLOBAL (protocol 4).
        let command = Array("touch \(marker)".utf8)
        try refusal([0x80, 0x02, 0x63] + Array("os\nsystem\n".utf8) + [0x58] +
                    withUnsafeBytes(of: UInt32(command.count).littleEndian, Array.init) + command + [0x85, 0x52, 0x2E],
                    "os.system")
        try refusal([0x80, 0x04, 0x8C, 0x02] + Array("os".utf8) + [0x8C, 0x06] + Array("system".utf8) + [0x93, 0x8C,
                    UInt8(command.count)] + command + [0x85, 0x52, 0x2E], "os.system")
        try refusal([0x80, 0x02, 0x63] + Array("builtins\neval\n".utf8) + [0x29, 0x52, 0x2E], "builtins.eval")
        XCTAssertFalse(FileManager.default.fileExists(atPath: marker), "a refused pickle ran its payload")
        // The real batch layout with .pth-only globals in numpy's place.
        for (module, name) in [("torch._utils", "_rebuild_tensor_v2"), ("collections", "OrderedDict"),
                               ("torch", "FloatStorage")] {
            var bytes = TestData.python2CIFARBatch(pixels: pixels, labels: [1])
            let numpy = Array("numpy.core.multiarray\n_reconstruct\n".utf8)
            let other = Array("\(module)\n\(name)\n".utf8)
            let at = try XCTUnwrap((0...(bytes.count - numpy.count)).first { bytes[$0..<($0 + numpy.count)].elementsEqual(numpy) })
            bytes.replaceSubrange(at..<(at + numpy.count), with: other)
            try refusal(bytes, "\(module).\(name)")
        }
        // The unmodified batch still loads (the refusals above are about the globals alone).
        try TestData.write(TestData.python2CIFARBatch(pixels: pixels, labels: [4]), to: dir + "/test_batch")
        XCTAssertEqual(try CIFARDataset(directory: dir, split: .test).labels, [4])
    }

    // MARK: - Splits, limits, class balance

    func testStratifiedSplitIsPerClassDisjointAndSeeded() throws {
        let dataset = TestData.memoryDataset(counts: [50, 20, 7, 1])
        let (train, val) = try dataset.stratifiedSplit(validationFraction: 0.2, seed: 42)
        XCTAssertEqual(val.classCounts, [10, 4, 1, 0])   // round(0.2 n), at least 1 when n >= 2
        XCTAssertEqual(train.classCounts, [40, 16, 6, 1])
        let trainIDs = Set(train.samples.map(TestData.id)), valIDs = Set(val.samples.map(TestData.id))
        XCTAssertTrue(trainIDs.isDisjoint(with: valIDs))
        XCTAssertEqual(trainIDs.union(valIDs).count, dataset.count)
        XCTAssertEqual(val.samples.map(TestData.id), val.samples.map(TestData.id).sorted())   // dataset order kept

        let again = try dataset.stratifiedSplit(validationFraction: 0.2, seed: 42).validation
        XCTAssertEqual(again.samples.map(TestData.id), val.samples.map(TestData.id))
        let other = try dataset.stratifiedSplit(validationFraction: 0.2, seed: 43).validation
        XCTAssertNotEqual(other.samples.map(TestData.id), val.samples.map(TestData.id))
        XCTAssertThrowsError(try dataset.stratifiedSplit(validationFraction: 1, seed: 0))
    }

    func testLimitPerClassAndClassWeights() throws {
        let dataset = TestData.memoryDataset(counts: [6, 2, 4])
        let limited = dataset.limited(perClass: 3)
        XCTAssertEqual(limited.classCounts, [3, 2, 3])
        XCTAssertEqual(limited.samples.map(TestData.id), [0, 1, 2, 6, 7, 8, 9, 10])
        let random = dataset.limited(perClass: 3, seed: 5)
        XCTAssertEqual(random.classCounts, [3, 2, 3])
        XCTAssertEqual(random.samples.map(TestData.id), dataset.limited(perClass: 3, seed: 5).samples.map(TestData.id))

        // sklearn compute_class_weight('balanced'): n_samples / (n_classes * bincount).
        let weights = dataset.classWeights()
        XCTAssertEqual(weights[0], 12.0 / (3 * 6), accuracy: 1e-12)
        XCTAssertEqual(weights[1], 12.0 / (3 * 2), accuracy: 1e-12)
        XCTAssertEqual(weights[2], 12.0 / (3 * 4), accuracy: 1e-12)
        // A class with no samples: weight 0, and it does not count as a class.
        let gap = LabeledDataset(samples: dataset.samples, classNames: ["a", "b", "c", "d"])
        XCTAssertEqual(gap.classWeights(), weights + [0])
    }

    func testBalancedSamplerDrawsClassesEvenlyAndIsSeeded() throws {
        let dataset = TestData.memoryDataset(counts: [900, 90, 10])
        let sampler = BalancedSampler(dataset, numSamples: 30_000, seed: 7)
        let draws = sampler.indices(epoch: 0)
        XCTAssertEqual(draws.count, 30_000)
        var perClass = [0, 0, 0]
        for i in draws { perClass[dataset.samples[i].label] += 1 }
        for n in perClass { XCTAssertEqual(Double(n) / 30_000, 1.0 / 3, accuracy: 0.02, "\(perClass)") }
        // With replacement: the 10 rare images are each drawn many times.
        XCTAssertEqual(Set(draws.filter { dataset.samples[$0].label == 2 }).count, 10)
        XCTAssertEqual(sampler.indices(epoch: 0), draws)
        XCTAssertNotEqual(sampler.indices(epoch: 1), draws)
        XCTAssertNotEqual(BalancedSampler(dataset, numSamples: 30_000, seed: 8).indices(epoch: 0), draws)
        XCTAssertEqual(BalancedSampler(dataset, seed: 1).indices(epoch: 0).count, dataset.count)
    }

    // MARK: - Conversion

    func testConvertMNISTWritesClassFoldersThatReadBack() throws {
        let source = try TestData.temporaryDirectory(self)
        let destination = try TestData.temporaryDirectory(self) + "/out"
        let (images, labels) = try TestData.writeMNIST(in: source, train: 30, test: 10, width: 6, height: 5, gzip: true)
        var reports: [ConvertDataset.Progress] = []
        let summary = try ConvertDataset.run(.fashionMNIST, from: source, to: destination) { reports.append($0) }
        XCTAssertEqual(summary.written, 40)
        XCTAssertEqual(summary.folderNames[0], "T-shirt_top")
        XCTAssertEqual(reports.last?.split, "test")
        XCTAssertEqual(reports.last?.completed, 10)

        let splits = try ImageFolderDataset.splits(root: destination)
        XCTAssertTrue(splits.hasSplitFolders)
        XCTAssertEqual(splits.train.count, 30)
        XCTAssertEqual(splits.test?.count, 10)
        XCTAssertTrue(splits.train.classNames.contains("T-shirt_top"))
        // Every written PNG decodes to the original pixels (gray replicated to RGB by the decoder).
        for sample in splits.train.samples {
            let path = sample.source.path!
            let index = Int(URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent)!
            let className = splits.train.classNames[sample.label]
            XCTAssertEqual(ConvertDataset.folderName(for: MNISTDataset.fashionClassNames[labels.train[index]]), className)
            let decoded = try Image(contentsOfFile: path)
            XCTAssertEqual(decoded.pixels.enumerated().filter { $0.offset % 3 == 0 }.map(\.element),
                           Array(images.train[(index * 30)..<((index + 1) * 30)]), path)
        }
        // No temporary files are left behind.
        let leftovers = FileManager.default.enumerator(atPath: destination)!.compactMap { $0 as? String }
            .filter { $0.contains(".tmp") }
        XCTAssertEqual(leftovers, [])

        // limitPerClass and dry runs.
        let limited = try ConvertDataset.run(.fashionMNIST, from: source, to: destination + "2",
                                             options: .init(limitPerClass: 1, dryRun: true))
        XCTAssertEqual(limited.written, 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: destination + "2"))
        XCTAssertEqual(limited.counts["train"]?.reduce(0, +), Set(labels.train).count)
    }

    /// `convert` writes `<index>.png` names, so a destination that already held a user's files could
    /// have them overwritten (a same-named file) or mixed with class folders. It now writes only into a
    /// new or empty folder, or one it marked that holds exactly the files its marker records.
    func testConvertNeverWritesAmongFilesItDidNotWrite() throws {
        let source = try TestData.temporaryDirectory(self)
        _ = try TestData.writeMNIST(in: source, train: 12, test: 4, width: 6, height: 5, gzip: false)
        let root = try TestData.temporaryDirectory(self)

        // A user's folder: refused, untouched (its 0.png would have been overwritten).
        let mine = root + "/mine"
        try FileManager.default.createDirectory(atPath: mine + "/train/T-shirt_top", withIntermediateDirectories: true)
        try Foundation.Data("precious".utf8).write(to: URL(fileURLWithPath: mine + "/train/T-shirt_top/0.png"))
        try Foundation.Data("notes".utf8).write(to: URL(fileURLWithPath: mine + "/train/T-shirt_top/notes.txt"))
        XCTAssertThrowsError(try ConvertDataset.run(.fashionMNIST, from: source, to: mine)) { error in
            XCTAssertTrue("\(error)".contains("\(mine) holds train, and no \(ConvertDataset.markerName) says convert wrote it"), "\(error)")
        }
        XCTAssertThrowsError(try ConvertDataset.run(.fashionMNIST, from: source, to: mine, options: .init(dryRun: true)))
        XCTAssertEqual(try String(contentsOfFile: mine + "/train/T-shirt_top/0.png", encoding: .utf8), "precious")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: mine), ["train"])

        // Its own output, marked: a re-run rewrites it.
        let ours = root + "/ours"
        XCTAssertEqual(try ConvertDataset.run(.fashionMNIST, from: source, to: ours).written, 16)
        XCTAssertTrue(FileManager.default.fileExists(atPath: ours + "/" + ConvertDataset.markerName))
        XCTAssertEqual(try ConvertDataset.run(.fashionMNIST, from: source, to: ours).written, 16)
        XCTAssertEqual(try ImageFolderDataset.splits(root: ours).train.count, 12, "the marker is not read as data")

        // Images a user added to convert's output stop a re-run, which removed them with the earlier
        // images (the marker records each class folder's files now).
        let fm = FileManager.default
        try fm.createDirectory(atPath: ours + "/train/MyOwnClass", withIntermediateDirectories: false)
        try Foundation.Data("mine".utf8).write(to: URL(fileURLWithPath: ours + "/train/MyOwnClass/0.png"))
        XCTAssertThrowsError(try ConvertDataset.run(.fashionMNIST, from: source, to: ours)) {
            XCTAssertTrue("\($0)".contains("holds train/MyOwnClass, which finetune convert did not write"), "\($0)")
        }
        try fm.removeItem(atPath: ours + "/train/MyOwnClass")
        let bag = ours + "/train/" + (try fm.contentsOfDirectory(atPath: ours + "/train").sorted().first!)
        try Foundation.Data("mine".utf8).write(to: URL(fileURLWithPath: bag + "/99999.png"))
        XCTAssertThrowsError(try ConvertDataset.run(.fashionMNIST, from: source, to: ours)) {
            XCTAssertTrue("\($0)".contains("whose files are not those convert wrote there"), "\($0)")
        }
        XCTAssertEqual(try String(contentsOfFile: bag + "/99999.png", encoding: .utf8), "mine")
        try fm.removeItem(atPath: bag + "/99999.png")
        // A marker of an older version records no files: the folder's shape is checked, as then.
        try Foundation.Data("{\"format\":\"finetune-convert\",\"source\":\"fashion-mnist\"}\n".utf8)
            .write(to: URL(fileURLWithPath: ours + "/" + ConvertDataset.markerName))
        XCTAssertEqual(try ConvertDataset.run(.fashionMNIST, from: source, to: ours).written, 16)
        // Without the marker, numbered PNGs may be a user's (their names are convert's): refused, untouched.
        try fm.removeItem(atPath: ours + "/" + ConvertDataset.markerName)
        let unmarked = try fm.subpathsOfDirectory(atPath: ours).sorted()
        XCTAssertThrowsError(try ConvertDataset.run(.fashionMNIST, from: source, to: ours)) {
            XCTAssertTrue("\($0)".contains("no \(ConvertDataset.markerName) says convert wrote it"), "\($0)")
        }
        XCTAssertEqual(try fm.subpathsOfDirectory(atPath: ours).sorted(), unmarked)
        try fm.removeItem(atPath: ours)
        XCTAssertEqual(try ConvertDataset.run(.fashionMNIST, from: source, to: ours).written, 16)

        // A re-run with another limit (or source) replaces the earlier images instead of adding to them:
        // the folder held 16 + the new ones, a mix the summary did not report.
        let limited = try ConvertDataset.run(.fashionMNIST, from: source, to: ours, options: .init(limitPerClass: 1))
        let written = try ImageFolderDataset.splits(root: ours)
        XCTAssertEqual(written.train.count + (written.test?.count ?? 0), limited.written)
        XCTAssertEqual(written.train.classCounts.filter { $0 > 1 }, [], "one image per class")
        _ = try TestData.writeMNIST(in: source, train: 6, test: 2, width: 6, height: 5, gzip: false)
        XCTAssertEqual(try ConvertDataset.run(.mnist, from: source, to: ours).written, 8)
        for split in ["train", "test"] {
            let folders = Set(try FileManager.default.contentsOfDirectory(atPath: ours + "/" + split))
            XCTAssertTrue(folders.isSubset(of: Set((0...9).map(String.init))), "no Fashion-MNIST folder is left: \(folders)")
        }
        // A source that cannot be read leaves the earlier output as it was (it was removed first).
        let earlier = try FileManager.default.subpathsOfDirectory(atPath: ours).sorted()
        XCTAssertThrowsError(try ConvertDataset.run(.fashionMNIST, from: root + "/no-such-source", to: ours))
        XCTAssertEqual(try FileManager.default.subpathsOfDirectory(atPath: ours).sorted(), earlier)
        XCTAssertTrue(try String(contentsOfFile: ours + "/" + ConvertDataset.markerName, encoding: .utf8).contains("\"mnist\""))
        // A user's numbered PNGs without the marker: refused before anything is written (a same-named
        // file, 23.png of theirs, was overwritten).
        let numbered = root + "/numbered"
        try FileManager.default.createDirectory(atPath: numbered + "/train/MyClass", withIntermediateDirectories: true)
        try Foundation.Data("mine".utf8).write(to: URL(fileURLWithPath: numbered + "/train/MyClass/0.png"))
        XCTAssertThrowsError(try ConvertDataset.run(.mnist, from: source, to: numbered, options: .init(limitPerClass: 1)))
        XCTAssertEqual(try String(contentsOfFile: numbered + "/train/MyClass/0.png", encoding: .utf8), "mine")
        XCTAssertEqual(try FileManager.default.subpathsOfDirectory(atPath: numbered).sorted(), ["train", "train/MyClass", "train/MyClass/0.png"])
        // Leftovers of an interrupted run (hidden split folders) are convert's own: removed at the next run.
        let leftover = ours + "/.train.tmp-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: leftover + "/0", withIntermediateDirectories: true)
        XCTAssertEqual(try ConvertDataset.run(.mnist, from: source, to: ours).written, 8)
        XCTAssertFalse(FileManager.default.fileExists(atPath: leftover))
        // A file of the user's among them still stops it, and nothing is removed.
        try Foundation.Data("notes".utf8).write(to: URL(fileURLWithPath: ours + "/train/notes.txt"))
        let before = try FileManager.default.subpathsOfDirectory(atPath: ours).sorted()
        XCTAssertThrowsError(try ConvertDataset.run(.mnist, from: source, to: ours))
        XCTAssertEqual(try FileManager.default.subpathsOfDirectory(atPath: ours).sorted(), before)
    }

    /// Two converts into one DST: the second took the first one's hidden split folder for a leftover
    /// of an interrupted run and removed it, and the first failed. DST is now locked while a convert
    /// writes: the second is refused, and the first one's folder stays.
    /// Probe AD: a split of no image (an IDX header with N = 0) wrote no folder, and the conversion failed
    /// half-way: the marker and the new test split in place, train/ gone, the earlier conversion left
    /// aside as `.train.old-…`. Such a split is refused before DST changes.
    func testASplitOfNoImageIsRefusedBeforeTheDestinationChanges() throws {
        let source = try TestData.temporaryDirectory(self), empty = try TestData.temporaryDirectory(self)
        _ = try TestData.writeMNIST(in: source, train: 12, test: 4, width: 6, height: 5, gzip: false)
        _ = try TestData.writeMNIST(in: empty, train: 0, test: 4, width: 6, height: 5, gzip: false)
        let ours = try TestData.temporaryDirectory(self) + "/ours"
        XCTAssertEqual(try ConvertDataset.run(.mnist, from: source, to: ours).written, 16)
        func listing() throws -> [String] { try FileManager.default.subpathsOfDirectory(atPath: ours).sorted() }
        let before = try listing()
        let marker = FileManager.default.contents(atPath: ours + "/" + ConvertDataset.markerName)
        XCTAssertThrowsError(try ConvertDataset.run(.mnist, from: empty, to: ours)) { error in
            XCTAssertTrue("\(error)".contains("the train split of \(empty) holds no image"), "\(error)")
        }
        XCTAssertEqual(try listing(), before)
        XCTAssertEqual(FileManager.default.contents(atPath: ours + "/" + ConvertDataset.markerName), marker)
    }

    func testASecondConvertIntoTheSameFolderIsRefusedWhileTheFirstWrites() throws {
        let source = try TestData.temporaryDirectory(self)
        _ = try TestData.writeMNIST(in: source, train: 12, test: 4, width: 6, height: 5, gzip: false)
        let ours = try TestData.temporaryDirectory(self) + "/ours"
        XCTAssertEqual(try ConvertDataset.run(.mnist, from: source, to: ours).written, 16)
        // Another convert at work: its lock on the folder and its split being written.
        let other = open(ours, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        XCTAssertEqual(flock(other, LOCK_EX | LOCK_NB), 0)
        let staging = ours + "/.train.tmp-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: staging + "/0", withIntermediateDirectories: true)
        XCTAssertThrowsError(try ConvertDataset.run(.mnist, from: source, to: ours)) { error in
            XCTAssertTrue("\(error)".contains("\(ours): another finetune convert is writing into it"), "\(error)")
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: staging), "the other convert's split was removed")
        // The dry run reads only, and is not refused.
        XCTAssertNoThrow(try ConvertDataset.run(.mnist, from: source, to: ours, options: .init(dryRun: true)))
        // Once the other has ended (its lock gone with it), its folder is a leftover and goes.
        close(other)
        XCTAssertEqual(try ConvertDataset.run(.mnist, from: source, to: ours).written, 16)
        XCTAssertFalse(FileManager.default.fileExists(atPath: staging))
    }

    func testConvertCIFAR10Binary() throws {
        let source = try TestData.temporaryDirectory(self)
        try TestData.write(TestData.cifarRecords(count: 12, labelBytes: 1, start: 0), to: source + "/data_batch_1.bin")
        try TestData.write(TestData.cifarRecords(count: 3, labelBytes: 1, start: 20), to: source + "/test_batch.bin")
        let destination = try TestData.temporaryDirectory(self)
        let summary = try ConvertDataset.run(.cifar10, from: source, to: destination,
                                             options: .init(limitPerClass: 1, compressionLevel: 1))
        XCTAssertEqual(summary.counts["train"], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1])
        XCTAssertEqual(summary.counts["test"], [1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
        let original = try CIFARDataset(directory: source, split: .train)
        let written = try Image(contentsOfFile: destination + "/train/truck/9.png")
        XCTAssertEqual(written, try original.loadImage(at: 9))
        XCTAssertEqual(ConvertDataset.folderName(for: ".hidden/a\\b\u{1}"), "_hidden_a_b_")
    }

    /// Debian's dataset-fashion-mnist package, when installed: per-class counts of the full
    /// conversion (a dry run: 70,000 PNGs would take a while) and a limited real conversion.
    func testConvertDebianFashionMNIST() throws {
        let directory = MNISTDataset.debianFashionMNISTDirectory
        try XCTSkipUnless(FileManager.default.fileExists(atPath: directory), "\(directory) is not installed")
        let counts = try ConvertDataset.run(.fashionMNIST, from: directory, to: "/nonexistent",
                                            options: .init(dryRun: true))
        XCTAssertEqual(counts.counts["train"], Array(repeating: 6000, count: 10))
        XCTAssertEqual(counts.counts["test"], Array(repeating: 1000, count: 10))
        XCTAssertEqual(counts.folderNames, ["T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                            "Sneaker", "Bag", "Ankle boot"])

        let destination = try TestData.temporaryDirectory(self)
        let summary = try ConvertDataset.run(.fashionMNIST, from: directory, to: destination,
                                             options: .init(limitPerClass: 3))
        XCTAssertEqual(summary.written, 60)
        let splits = try ImageFolderDataset.splits(root: destination)
        XCTAssertEqual(splits.train.classCounts, Array(repeating: 3, count: 10))
        XCTAssertEqual(splits.test?.classCounts, Array(repeating: 3, count: 10))
        let original = try MNISTDataset(directory: directory, split: .test, variant: .fashionMNIST).imageDataset()
        for sample in splits.test!.samples {
            let path = sample.source.path!
            let index = Int(URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent)!
            XCTAssertEqual(try Image(contentsOfFile: path), try original.loadImage(at: index).rgb(), path)
            XCTAssertEqual(splits.test!.classNames[sample.label],
                           ConvertDataset.folderName(for: original.classNames[original.samples[index].label]))
        }
    }

    /// `Image` and `ImageStore` check their sizes the same way: a wrong byte count, a bad side or
    /// channel count, and a size whose byte count overflows `Int` are errors that say so (the overflow
    /// used to trap while the error message was being built).
    func testImageAndStoreSizesAreCheckedWithoutOverflow() throws {
        func message(_ body: () throws -> Any) -> String {
            do { _ = try body(); return "no error" } catch { return "\(error)" }
        }
        XCTAssertNoThrow(try Image(width: 2, height: 1, channels: 3, pixels: Array(repeating: 0, count: 6)))
        XCTAssertNoThrow(try ImageStore(bytes: [], count: 0, width: 2, height: 2, channels: 1))
        let short = message { try Image(width: 2, height: 1, channels: 3, pixels: [0]) }
        XCTAssertTrue(short.contains("an image of 2x1x3 needs 6 bytes, got 1"), short)
        let store = message { try ImageStore(bytes: [0, 0, 0], count: 2, width: 2, height: 1, channels: 1) }
        XCTAssertTrue(store.contains("an image store of 2 images of 2x1x1 needs 4 bytes, got 3"), store)
        let channels = message { try Image(width: 1, height: 1, channels: 2, pixels: [0, 0]) }
        XCTAssertTrue(channels.contains("is not a size"), channels)
        let huge = message { try Image(width: Int.max / 2, height: 2, channels: 3, pixels: []) }
        XCTAssertTrue(huge.contains("is too large"), huge)
        let hugeStore = message { try ImageStore(bytes: [], count: Int.max / 2, width: 4, height: 1, channels: 1) }
        XCTAssertTrue(hugeStore.contains("is too large"), hugeStore)
    }
}

// MARK: - Test data shared by the data tests

enum TestData {
    static func temporaryDirectory(_ test: XCTestCase) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("DataTests-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    /// A small RGB image that differs for every seed.
    static func pattern(seed: Int, width: Int = 12, height: Int = 9) -> Image {
        var pixels: [UInt8] = []
        for y in 0..<height {
            for x in 0..<width {
                pixels += [UInt8((x * 20 + seed * 37) & 255), UInt8((y * 25 + seed * 11) & 255), UInt8((x * y + seed) & 255)]
            }
        }
        return try! Image(rgb: pixels, width: width, height: height)
    }

    static func writePNG(_ path: String, seed: Int, width: Int = 12, height: Int = 9) throws {
        try write(pattern(seed: seed, width: width, height: height).pngData(), to: path)
    }

    static func write(_ data: Foundation.Data, to path: String) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        try data.write(to: URL(fileURLWithPath: path))
    }

    static func write(_ bytes: [UInt8], to path: String) throws { try write(Foundation.Data(bytes), to: path) }
    static func write(_ text: String, to path: String) throws { try write(Foundation.Data(text.utf8), to: path) }

    /// Zero-byte, text named .png, a folder named x.jpg, a dangling symlink (found by the scan) and
    /// a truncated JPEG (found when decoded), written into `folder`.
    static func brokenCorpus(in folder: String) throws -> (scanTime: [String], loadTime: String) {
        try write("", to: folder + "/zero.png")
        try write("this is not an image", to: folder + "/text.png")
        try FileManager.default.createDirectory(atPath: folder + "/x.jpg", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: folder + "/dangling.jpg", withDestinationPath: folder + "/gone.jpg")
        let truncated = folder + "/truncated.jpg"
        try FileManager.default.copyItem(atPath: Fixtures.path("images/truncated.jpg"), toPath: truncated)
        return ([folder + "/zero.png", folder + "/text.png", folder + "/x.jpg", folder + "/dangling.jpg"], truncated)
    }

    /// A dataset of in-memory 1×1 images whose pixel value is the sample's position (see `id`).
    static func memoryDataset(counts: [Int], side: Int = 1) -> LabeledDataset {
        let total = counts.reduce(0, +)
        var bytes: [UInt8] = []
        for i in 0..<total { bytes += Array(repeating: UInt8(i % 256), count: side * side) }
        let store = try! ImageStore(bytes: bytes, count: total, width: side, height: side, channels: 1)
        var samples: [LabeledSample] = []
        for (label, n) in counts.enumerated() {
            for _ in 0..<n { samples.append(LabeledSample(source: .memory(store, index: samples.count), label: label)) }
        }
        return LabeledDataset(samples: samples, classNames: counts.indices.map { "class\($0)" })
    }

    static func id(_ sample: LabeledSample) -> Int {
        if case .memory(_, let i) = sample.source { return i }
        return -1
    }

    // MARK: IDX

    static func idx(_ magic: UInt8, _ dims: [Int], _ payload: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0, 0, 0x08, magic]
        for d in dims { out += [UInt8(d >> 24 & 255), UInt8(d >> 16 & 255), UInt8(d >> 8 & 255), UInt8(d & 255)] }
        return out + payload
    }

    /// Replaces `path` by `path.gz` (/usr/bin/gzip) and returns the new path.
    static func gzip(_ path: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/gzip")
        process.arguments = ["-f", path]
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        return path + ".gz"
    }

    /// Writes the four MNIST files (optionally gzipped with /usr/bin/gzip); pixel k of image n is
    /// (n * 7 + k * 3) & 255 (test images continue the numbering after the training images).
    static func writeMNIST(in dir: String, train: Int, test: Int, width: Int, height: Int, gzip: Bool) throws
        -> (images: (train: [UInt8], test: [UInt8]), labels: (train: [Int], test: [Int])) {
        func pixels(_ first: Int, _ count: Int) -> [UInt8] {
            (first..<(first + count)).flatMap { n in (0..<(width * height)).map { UInt8((n * 7 + $0 * 3) & 255) } }
        }
        let trainPixels = pixels(0, train), testPixels = pixels(train, test)
        let trainLabels = (0..<train).map { ($0 * 3) % 10 }, testLabels = (0..<test).map { ($0 * 7) % 10 }
        let files: [(String, [UInt8])] = [
            ("train-images-idx3-ubyte", idx(3, [train, height, width], trainPixels)),
            ("train-labels-idx1-ubyte", idx(1, [train], trainLabels.map(UInt8.init))),
            ("t10k-images-idx3-ubyte", idx(3, [test, height, width], testPixels)),
            ("t10k-labels-idx1-ubyte", idx(1, [test], testLabels.map(UInt8.init))),
        ]
        for (name, bytes) in files {
            try write(bytes, to: dir + "/" + name)
            if gzip { XCTAssertTrue(FileManager.default.fileExists(atPath: try Self.gzip(dir + "/" + name))) }
        }
        return ((trainPixels, testPixels), (trainLabels, testLabels))
    }

    // MARK: CIFAR

    /// `count` CIFAR records: label bytes (CIFAR-100: coarse = n % 20, fine = 3n % 100; CIFAR-10:
    /// n % 10), then 3,072 pixel bytes with byte k = (n * 5 + k) & 255 for record number
    /// n = start + i. `labelBytes: 0` gives the bare pixels.
    static func cifarRecords(count: Int, labelBytes: Int, start: Int) -> [UInt8] {
        var out: [UInt8] = []
        for i in 0..<count {
            let n = start + i
            if labelBytes == 1 { out.append(UInt8(n % 10)) }
            if labelBytes == 2 { out += [UInt8(n % 20), UInt8((3 * n) % 100)] }
            out += (0..<3072).map { UInt8((n * 5 + $0) & 255) }
        }
        return out
    }

    /// Checks planar → RGB: pixel (y, x) channel c is byte c·1024 + 32y + x of record `starts[i]`.
    static func checkCIFARPixels(_ dataset: CIFARDataset, starts: [Int], file: StaticString = #filePath,
                                 line: UInt = #line) throws {
        for (i, n) in starts.enumerated() {
            let image = try dataset.loadImage(at: i)
            XCTAssertEqual([image.width, image.height, image.channels], [32, 32, 3], file: file, line: line)
            let expected = (0..<1024).flatMap { p in (0..<3).map { c in UInt8((n * 5 + c * 1024 + p) & 255) } }
            XCTAssertEqual(image.pixels, expected, "image \(i)", file: file, line: line)
        }
    }

    /// tools/fixtures/make_cifar.py: byte k of image n is (n * 31 + k * 7) % 256.
    static func checkNumpyFixturePixels(_ dataset: CIFARDataset, images: [Int], file: StaticString = #filePath,
                                        line: UInt = #line) throws {
        for (i, n) in images.enumerated() {
            let image = try dataset.loadImage(at: i)
            let expected = (0..<1024).flatMap { p in (0..<3).map { c in UInt8((n * 31 + (c * 1024 + p) * 7) % 256) } }
            XCTAssertEqual(image.pixels, expected, "image \(i)", file: file, line: line)
        }
    }

    /// A CIFAR-10 batch as Python 2's cPickle (protocol 2) writes the real files:
    /// `{'data': ndarray uint8 (N, 3072), 'labels': [...], 'batch_label': ..., 'filenames': [...]}`.
    static func python2CIFARBatch(pixels: [UInt8], labels: [Int]) -> [UInt8] {
        var p: [UInt8] = [0x80, 0x02, 0x7D, 0x71, 0x01, 0x28]             // PROTO 2, EMPTY_DICT, BINPUT 1, MARK
        func str(_ s: String) { p += [0x55, UInt8(s.utf8.count)] + Array(s.utf8) }   // SHORT_BINSTRING
        func int1(_ v: Int) { p += [0x4B, UInt8(v)] }
        func global(_ module: String, _ name: String) { p += [0x63] + Array("\(module)\n\(name)\n".utf8) }
        str("data")
        global("numpy.core.multiarray", "_reconstruct")
        global("numpy", "ndarray")
        int1(0); p += [0x85]                                               // (0,)
        str("b")
        p += [0x87, 0x52, 0x71, 0x02]                                      // TUPLE3, REDUCE, BINPUT 2
        p += [0x28]; int1(1)                                               // MARK, version 1
        p += [0x4D] + [UInt8(labels.count & 255), UInt8(labels.count >> 8)] // BININT2 N
        p += [0x4D, 0x00, 0x0C, 0x86]                                      // BININT2 3072, TUPLE2
        global("numpy", "dtype")
        str("u1"); int1(0); int1(1); p += [0x87, 0x52, 0x71, 0x03]         // dtype('u1', 0, 1), BINPUT 3
        p += [0x28]; int1(3); str("|"); p += [0x4E, 0x4E, 0x4E]
        p += [0x4A, 0xFF, 0xFF, 0xFF, 0xFF, 0x4A, 0xFF, 0xFF, 0xFF, 0xFF]; int1(0); p += [0x74, 0x62]  // TUPLE, BUILD
        p += [0x89]                                                        // NEWFALSE (C order)
        let n = pixels.count
        p += [0x54, UInt8(n & 255), UInt8(n >> 8 & 255), UInt8(n >> 16 & 255), UInt8(n >> 24 & 255)] + pixels
        p += [0x74, 0x62]                                                  // TUPLE, BUILD
        str("labels"); p += [0x5D, 0x71, 0x04, 0x28]                       // EMPTY_LIST, BINPUT 4, MARK
        for l in labels { int1(l) }
        p += [0x65]                                                        // APPENDS
        str("batch_label"); str("training batch 1 of 5")
        str("filenames"); p += [0x5D, 0x28]; for i in labels.indices { str("img_\(i).png") }; p += [0x65]
        str("copy_of_dtype"); p += [0x68, 0x03]                            // BINGET 3
        p += [0x75, 0x2E]                                                  // SETITEMS, STOP
        return p
    }
}

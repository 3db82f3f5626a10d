import AtomicFiles
import Data
import Foundation
import Training
import XCTest

/// CSV and JSON-lines loggers, and the TensorBoard event writer (checked by decoding its records
/// here; `tools/check_tensorboard.py` reads the same files with TensorBoard itself).
///
/// Set `FINETUNE_KEEP_TEST_LOGS=<folder>` to keep the TensorBoard log directory of
/// `testTensorBoardRunWithResume` there (for `tools/check_tensorboard.py <folder>`).
final class LoggerTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("finetune-logger-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    func contents(_ path: String) throws -> String { try String(contentsOfFile: path, encoding: .utf8) }

    // MARK: - CSV

    func testCSVHeaderColumnsAndPrecision() throws {
        let file = path("history.csv")
        let logger = try CSVLogger(path: file)
        try logger.log(epoch: 1, step: 100, metrics: ["train_loss": 0.1 + 0.2, "lr": 0.001])
        XCTAssertEqual(try contents(file), "epoch,step,lr,train_loss\n1,100,0.001,0.30000000000000004\n")
        // Values are flushed as they are logged: another reader sees them at once.
        try logger.log(epoch: 1, step: 200, metrics: ["train_loss": 1.0 / 3])
        XCTAssertEqual(try contents(file),
                       "epoch,step,lr,train_loss\n1,100,0.001,0.30000000000000004\n1,200,,0.3333333333333333\n")
        // A new metric appends a column; earlier rows get empty cells (the file is rewritten).
        try logger.log(epoch: 2, step: 300, metrics: ["val_accuracy": 0.5, "lr": .nan, "x,y": -.infinity])
        XCTAssertEqual(logger.columns, ["lr", "train_loss", "val_accuracy", "x,y"])
        XCTAssertEqual(try contents(file), """
            epoch,step,lr,train_loss,val_accuracy,"x,y"
            1,100,0.001,0.30000000000000004,,
            1,200,,0.3333333333333333,,
            2,300,nan,,0.5,-inf

            """)
        let rows = try logger.read()
        XCTAssertEqual(rows.count, 3)
        XCTAssertEqual(rows[0].metrics["train_loss"], 0.30000000000000004)
        XCTAssertEqual(rows[1].metrics["train_loss"], 1.0 / 3)
        XCTAssertTrue(rows[2].metrics["lr"]!.isNaN)
        XCTAssertEqual(rows[2].metrics["x,y"], -.infinity)
        XCTAssertNil(rows[1].metrics["lr"])
        XCTAssertThrowsError(try logger.log(epoch: 1, step: 1, metrics: ["step": 1]))
        // No temporary files are left behind.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["history.csv"])
    }

    func testCSVResumeTruncatesAndAppends() throws {
        let file = path("history.csv")
        do {
            let logger = try CSVLogger(path: file)
            for step in 1...5 { try logger.log(epoch: step, step: step * 10, metrics: ["loss": Double(step)]) }
            logger.close()
        }
        // A crash left half a line.
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: file))
        handle.seekToEndOfFile()
        handle.write(Data("6,60,0.12".utf8))
        handle.closeFile()

        let resumed = try CSVLogger(path: file, resume: true)
        XCTAssertEqual(resumed.columns, ["loss"])
        XCTAssertEqual(try resumed.read().map(\.step), [10, 20, 30, 40, 50])  // partial line dropped
        try resumed.truncate(afterStep: 30)
        try resumed.log(epoch: 4, step: 40, metrics: ["loss": 0.25, "acc": 0.5])
        XCTAssertEqual(try contents(file), "epoch,step,loss,acc\n1,10,1.0,\n2,20,2.0,\n3,30,3.0,\n4,40,0.25,0.5\n")

        // Without resume the file is replaced at the first write.
        let fresh = try CSVLogger(path: file)
        try fresh.log(epoch: 1, step: 1, metrics: ["a": 1])
        XCTAssertEqual(try contents(file), "epoch,step,a\n1,1,1.0\n")
        // Resume refuses a file that is not a history.
        try "hello\n".write(toFile: path("other.csv"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try CSVLogger(path: path("other.csv"), resume: true))
        // Resume of a missing file starts a new one.
        let missing = try CSVLogger(path: path("sub/new.csv"), resume: true)
        try missing.log(epoch: 0, step: 0, metrics: ["a": 2])
        XCTAssertEqual(try contents(path("sub/new.csv")), "epoch,step,a\n0,0,2.0\n")
    }

    /// history.csv is RFC 4180: the shared reader (`Data.CSV`) reads back exactly what was logged, and
    /// the logger reads fields that hold quotes, commas and line breaks.
    func testCSVLoggerFileReadBackByTheCSVReader() throws {
        let file = path("history.csv")
        let logger = try CSVLogger(path: file)
        let names = ["val \"top-1\"", "a,b", "精度 🙂", "loss"]
        try logger.log(epoch: 1, step: 10, metrics: [names[0]: 0.5, names[1]: 1.0 / 3, names[2]: .nan, names[3]: 2])
        try logger.log(epoch: 2, step: 20, metrics: [names[1]: -.infinity, names[3]: 1e-300])
        logger.close()
        let records = try CSV.parse(try contents(file))
        XCTAssertEqual(records.map(\.fields), [
            ["epoch", "step"] + names.sorted(),
            ["1", "10", "0.3333333333333333", "2.0", "0.5", "nan"],
            ["2", "20", "-inf", "1e-300", "", ""],
        ])

        // A header cell with a line break (quoted) and a quoted comma survive a resume.
        let written = CSV.text([["epoch", "step", "two\nlines", "x,y"], ["1", "5", "0.25", "1.5"]], lineEnding: .crlf)
        try written.write(toFile: path("multi.csv"), atomically: true, encoding: .utf8)
        let resumed = try CSVLogger(path: path("multi.csv"), resume: true)
        XCTAssertEqual(resumed.columns, ["two\nlines", "x,y"])
        XCTAssertEqual(try resumed.read().first?.metrics, ["two\nlines": 0.25, "x,y": 1.5])
        try resumed.log(epoch: 2, step: 6, metrics: ["x,y": 3])
        XCTAssertEqual(try CSV.parse(try contents(path("multi.csv"))).map(\.fields),
                       [["epoch", "step", "two\nlines", "x,y"], ["1", "5", "0.25", "1.5"], ["2", "6", "", "3.0"]])
        // Cut off inside a quoted cell by a crash: the partial row is dropped on resume.
        try (CSV.text([["epoch", "step", "note"], ["1", "5", "ok"]]) + "2,6,\"half\nwritten")
            .write(toFile: path("cut.csv"), atomically: true, encoding: .utf8)
        let cut = try CSVLogger(path: path("cut.csv"), resume: true)
        XCTAssertEqual(try cut.read().map(\.step), [5])
        XCTAssertEqual(try contents(path("cut.csv")), "epoch,step,note\n1,5,ok\n")
    }

    // MARK: - The write loop the loggers, checkpoints and atomic files share

    func testFileDescriptorWriterWritesEverythingOrReportsTheError() throws {
        // 4 MiB through a pipe (64 KiB of buffer) while another thread reads it. The write end is
        // non-blocking, as another program may hand a stdout pipe over: a full pipe was EAGAIN, an error.
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        XCTAssertEqual(fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK), 0)
        let payload = (0..<(4 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 13) }
        final class Received: @unchecked Sendable { var bytes: [UInt8] = [] }
        let received = Received()
        let done = DispatchSemaphore(value: 0)
        let reader = fds[0]
        Thread.detachNewThread {
            var buffer = [UInt8](repeating: 0, count: 50_000)
            while true {
                let n = read(reader, &buffer, buffer.count)
                if n <= 0 { break }
                received.bytes += buffer[0..<n]
            }
            done.signal()
        }
        try payload.withUnsafeBytes { try FileDescriptorWriter.writeAll(fd: fds[1], $0) }
        close(fds[1])
        done.wait()
        close(fds[0])
        XCTAssertEqual(received.bytes.count, payload.count)
        XCTAssertTrue(received.bytes == payload)

        // A failed write names the system's reason.
        XCTAssertThrowsError(try FileDescriptorWriter.writeAll(fd: -1, Data([1]))) { error in
            XCTAssertEqual((error as? FileWriteError)?.code, EBADF, "\(error)")
        }
        let full = open("/dev/full", O_WRONLY)
        if full >= 0 {
            defer { close(full) }
            XCTAssertThrowsError(try FileDescriptorWriter.writeAll(fd: full, Data("x".utf8))) { error in
                XCTAssertEqual((error as? FileWriteError)?.code, ENOSPC, "\(error)")
                XCTAssertEqual("\(error)", String(cString: strerror(ENOSPC)))
            }
        }
        // Nothing to write is no call at all.
        XCTAssertNoThrow(try FileDescriptorWriter.writeAll(fd: -1, Data()))
    }

    // MARK: - JSON lines

    func testJSONLinesEventsAndResume() throws {
        let file = path("events.jsonl")
        let logger = try JSONLinesLogger(path: file)
        let time = Date(timeIntervalSince1970: 1_700_000_000.5)
        try logger.log(event: "train", epoch: 1, step: 10, metrics: ["loss": 0.1 + 0.2], wallTime: time)
        try logger.log(event: "validation", epoch: 1, step: 20, metrics: ["accuracy": 0.75, "auc": .nan],
                       info: ["split": "val/a"], wallTime: time)
        try logger.log(event: "note", wallTime: time)
        let lines = try contents(file).split(separator: "\n").map(String.init)
        XCTAssertEqual(lines, [
            #"{"epoch":1,"event":"train","metrics":{"loss":0.30000000000000004},"step":10,"wall_time":1700000000.5}"#,
            #"{"epoch":1,"event":"validation","info":{"split":"val/a"},"metrics":{"accuracy":0.75,"auc":"NaN"},"step":20,"wall_time":1700000000.5}"#,
            #"{"event":"note","metrics":{},"wall_time":1700000000.5}"#,
        ])
        struct Custom: Encodable { var step: Int; var message: String }
        try logger.log(Custom(step: 30, message: "hi"))
        XCTAssertThrowsError(try logger.log([1, 2]))  // not an object
        XCTAssertEqual(try logger.read().count, 4)
        logger.close()

        // Resume: a partial line is dropped, later steps truncated, events without a step kept.
        try (try contents(file) + #"{"event":"tr"#).write(toFile: file, atomically: true, encoding: .utf8)
        let resumed = try JSONLinesLogger(path: file, resume: true)
        XCTAssertEqual(try resumed.read().count, 4)
        try resumed.truncate(afterStep: 15)
        try resumed.log(event: "train", step: 16, metrics: ["loss": 1])
        let events = try resumed.read()
        XCTAssertEqual(events.map { $0["event"] as? String }, ["train", "note", "train"])
        XCTAssertEqual(events.last?["step"] as? Int, 16)
        // Without resume the file starts empty.
        _ = try JSONLinesLogger(path: file)
        XCTAssertEqual(try contents(file), "")
    }

    // MARK: - TensorBoard

    func testCRC32C() {
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8]()), 0)
        // RFC 3720 (iSCSI) test vectors.
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
        XCTAssertEqual(CRC32C.checksum((0..<32).map(UInt8.init)), 0x46DD_794E)
        // Incremental equals one shot.
        let bytes = Array("hello, tensorboard".utf8)
        XCTAssertEqual(CRC32C.checksum(bytes[7...], continuing: CRC32C.checksum(bytes[..<7])), CRC32C.checksum(bytes))
        // Masking: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
        XCTAssertEqual(CRC32C.masked(0), 0xA282_EAD8)
        XCTAssertEqual(CRC32C.masked(0xE306_9283), 0xC78A_B0E5)  // (0x0001C60D | 0x25060000) + 0xA282EAD8
    }

    /// A minimal protobuf reader for the events the writer produces.
    struct Decoded {
        var wallTime: Double?
        var step: Int64 = 0
        var fileVersion: String?
        var values: [(tag: String, value: Float)] = []
        var sessionStatus: Int?
    }

    static func fields(_ bytes: [UInt8]) -> [(field: Int, wire: Int, varint: UInt64, bytes: [UInt8])] {
        var out: [(Int, Int, UInt64, [UInt8])] = [], i = 0
        func varint() -> UInt64 {
            var v: UInt64 = 0, shift: UInt64 = 0
            while true {
                let b = bytes[i]; i += 1
                v |= UInt64(b & 0x7F) << shift
                if b < 0x80 { return v }
                shift += 7
            }
        }
        while i < bytes.count {
            let key = varint(), field = Int(key >> 3), wire = Int(key & 7)
            switch wire {
            case 0: out.append((field, wire, varint(), []))
            case 1: out.append((field, wire, 0, Array(bytes[i..<i + 8]))); i += 8
            case 5: out.append((field, wire, 0, Array(bytes[i..<i + 4]))); i += 4
            case 2:
                let n = Int(varint())
                out.append((field, wire, 0, Array(bytes[i..<i + n]))); i += n
            default: XCTFail("unexpected wire type \(wire)"); return out
            }
        }
        return out
    }

    static func decode(_ data: Data) -> Decoded {
        var event = Decoded()
        for f in fields([UInt8](data)) {
            switch (f.field, f.wire) {
            case (1, 1): event.wallTime = Double(bitPattern: f.bytes.reversed().reduce(0) { $0 << 8 | UInt64($1) })
            case (2, 0): event.step = Int64(bitPattern: f.varint)
            case (3, 2): event.fileVersion = String(decoding: f.bytes, as: UTF8.self)
            case (5, 2):
                for value in fields(f.bytes) where value.field == 1 {
                    var tag = "", number: Float = .nan
                    for part in fields(value.bytes) {
                        if part.field == 1 { tag = String(decoding: part.bytes, as: UTF8.self) }
                        if part.field == 2 && part.wire == 5 {
                            number = Float(bitPattern: part.bytes.reversed().reduce(0) { $0 << 8 | UInt32($1) })
                        }
                    }
                    event.values.append((tag, number))
                }
            case (7, 2): event.sessionStatus = fields(f.bytes).first { $0.field == 1 }.map { Int($0.varint) }
            default: XCTFail("unexpected field \(f.field)")
            }
        }
        return event
    }

    func testTensorBoardEventFile() throws {
        let date = Date(timeIntervalSince1970: 1_700_000_123.25)
        let file = try TensorBoardEventFile(directory: path("tb/train"), date: date, hostname: "box")
        XCTAssertEqual(file.path, path("tb/train") + "/events.out.tfevents.1700000123.box")
        try file.addScalar("loss", 0.5, step: 3, wallTime: date)
        try file.addScalars([("acc", 0.25), ("lr", 1e-3)], step: 300, wallTime: date)
        // Every record is on disk as soon as it is written (no close needed).
        let records = try TensorBoardEventFile.readRecords(at: file.path)
        XCTAssertEqual(records.count, 3)
        let version = Self.decode(records[0])
        XCTAssertEqual(version.fileVersion, "brain.Event:2")
        XCTAssertEqual(version.wallTime, 1_700_000_123.25)
        let first = Self.decode(records[1])
        XCTAssertEqual(first.step, 3)
        XCTAssertEqual(first.wallTime, 1_700_000_123.25)
        XCTAssertEqual(first.values.map(\.tag), ["loss"])
        XCTAssertEqual(first.values.map(\.value), [0.5])
        let second = Self.decode(records[2])
        XCTAssertEqual(second.step, 300)  // a multi-byte varint
        XCTAssertEqual(second.values.map(\.tag), ["acc", "lr"])
        XCTAssertEqual(second.values.map(\.value), [0.25, Float(1e-3)])

        // Exact bytes of the first scalar event: wall_time (field 1, double), step (field 2,
        // varint 3), summary (field 5) { value (field 1) { tag (field 1) "loss", simple_value
        // (field 2, float 0.5) } }.
        let expected: [UInt8] = [0x09] + withUnsafeBytes(of: (1_700_000_123.25).bitPattern.littleEndian) { Array($0) }
            + [0x10, 0x03, 0x2A, 0x0D, 0x0A, 0x0B, 0x0A, 0x04] + Array("loss".utf8) + [0x15, 0x00, 0x00, 0x00, 0x3F]
        XCTAssertEqual([UInt8](records[1]), expected)

        // Framing: length (uint64 LE) + masked CRC of it + data + masked CRC of the data.
        let raw = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file.path)))
        let length = Int(raw[0]) | Int(raw[1]) << 8
        XCTAssertEqual(length, records[0].count)
        XCTAssertEqual(Array(raw[8..<12]), withUnsafeBytes(of: CRC32C.masked(CRC32C.checksum(raw[0..<8])).littleEndian) { Array($0) })
        XCTAssertEqual(Array(raw[(12 + length)..<(16 + length)]),
                       withUnsafeBytes(of: CRC32C.masked(CRC32C.checksum(raw[12..<(12 + length)])).littleEndian) { Array($0) })
        // A corrupted byte is detected.
        var corrupted = raw
        corrupted[14] ^= 1
        try Data(corrupted).write(to: URL(fileURLWithPath: path("bad.tfevents")))
        XCTAssertThrowsError(try TensorBoardEventFile.readRecords(at: path("bad.tfevents")))
        // A second file in the same second gets a distinct name.
        let again = try TensorBoardEventFile(directory: path("tb/train"), date: date, hostname: "box")
        XCTAssertEqual(again.path, file.path + ".1")
    }

    func testTensorBoardRunWithResume() throws {
        let keep = ProcessInfo.processInfo.environment["FINETUNE_KEEP_TEST_LOGS"]
        let logdir = keep.map { URL(fileURLWithPath: $0).appendingPathComponent("tensorboard").path } ?? path("runs")
        if keep != nil { try? FileManager.default.removeItem(atPath: logdir) }

        let writer = try TensorBoardWriter(logDirectory: logdir)
        for step in 1...4 {
            try writer.addScalars(["loss": 1.0 / Double(step), "lr": 0.1], step: step * 100, run: .train)
        }
        for epoch in 1...2 {
            try writer.addScalars(["loss": 0.9 / Double(epoch), "accuracy": 0.5 + 0.1 * Double(epoch)],
                                  step: epoch * 200, run: .validation)
        }
        writer.close()
        // The run is interrupted after step 400 but resumes from the checkpoint at step 200: the new
        // files hide the old events after step 200 (SessionLog START at step 201).
        let resumed = try TensorBoardWriter(logDirectory: logdir, resumeAfterStep: 200)
        for step in 3...5 {
            try resumed.addScalar("loss", 2.0 / Double(step), step: step * 100, run: .train)
        }
        try resumed.addScalar("accuracy", 0.75, step: 400, run: "validation")
        XCTAssertThrowsError(try resumed.addScalar("x", 1, step: 1, run: "../escape"))
        let paths = resumed.paths
        resumed.close()

        let trainFiles = try FileManager.default.contentsOfDirectory(atPath: logdir + "/train").sorted()
        XCTAssertEqual(trainFiles.count, 2)
        XCTAssertTrue(trainFiles.allSatisfy { $0.hasPrefix("events.out.tfevents.") })
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: logdir + "/validation").count, 2)
        let events = try TensorBoardEventFile.readRecords(at: paths[.train]!).map(Self.decode)
        XCTAssertEqual(events[0].fileVersion, "brain.Event:2")
        XCTAssertEqual(events[1].sessionStatus, 1)  // START
        XCTAssertEqual(events[1].step, 201)
        XCTAssertEqual(events[2...].map(\.step), [300, 400, 500])
        XCTAssertEqual(events[4].values.map(\.value), [Float(0.4)])
    }
}

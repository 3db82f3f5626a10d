import CImageCodecs

/// A file read as a stream, gunzipped on the way when it is gzip data (plain files pass through):
/// the IDX and CIFAR readers. Callers read what they need, so a small file that inflates to gigabytes
/// costs no more memory than they ask for.
final class GzipReader {
    /// The file, as given.
    let path: String
    private let stream: OpaquePointer

    /// Where each read lands before it is appended (zero-filling a large array per read was slow).
    private let chunk: UnsafeMutableBufferPointer<UInt8>

    init(path: String) throws {
        self.path = path
        var message = [CChar](repeating: 0, count: 256)
        var stream: OpaquePointer?
        guard ic_gzip_open(path, &stream, &message, message.count) == 0, let stream else {
            throw DataError.unreadable(path: path, reason: String(cString: message))
        }
        self.stream = stream
        chunk = .allocate(capacity: 1 << 18)
    }

    deinit {
        ic_gzip_close(stream)
        chunk.deallocate()
    }

    /// Appends up to `count` bytes to `bytes`; fewer only at the end of the data. Returns how many.
    @discardableResult
    func read(_ count: Int, appendingTo bytes: inout [UInt8]) throws -> Int {
        var total = 0
        var message = [CChar](repeating: 0, count: 256)
        while total < count {
            var got = 0
            guard ic_gzip_read(stream, chunk.baseAddress, min(count - total, chunk.count), &got, &message,
                               message.count) == 0 else {
                throw DataError.corrupt(path: path, reason: String(cString: message))
            }
            if got == 0 { break }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: chunk[..<got]))
            total += got
        }
        return total
    }

    /// Reads to the end of the data, refusing more than `limit` bytes (a file over it is named).
    func readToEnd(limit: Int) throws -> [UInt8] {
        var bytes: [UInt8] = []
        while try read(min(1 << 24, limit + 1 - bytes.count), appendingTo: &bytes) > 0 {
            guard bytes.count <= limit else {
                throw DataError.unreadable(path: path, reason: "larger than the \(limit)-byte limit")
            }
        }
        return bytes
    }

    /// Whether the data has ended (reads one byte to find out).
    func atEnd() throws -> Bool {
        var probe: [UInt8] = []
        return try read(1, appendingTo: &probe) == 0
    }
}

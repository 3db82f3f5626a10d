import AtomicFiles

/// The streamed writes of `SafeTensors.write(streaming:)` and `NumPy.write(streaming:)`: atomically
/// (`AtomicFile.write`), `header` and then exactly `dataBytes` bytes that `body` appends, in as many
/// pieces as it likes. A body that appends more, or fewer, fails with `mismatch(written, tooMany)`
/// (`written`: the data bytes appended so far), leaving `path` untouched.
func writeStreamed(to path: String, header: [UInt8], dataBytes: Int,
                   mismatch: @escaping (_ written: Int, _ tooMany: Bool) -> Error,
                   _ body: (_ append: (UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
    try AtomicFile.write(to: path) { write in
        try header.withUnsafeBytes(write)
        var written = 0
        try withoutActuallyEscaping(write) { append in
            try body { bytes in
                guard written + bytes.count <= dataBytes else { throw mismatch(written + bytes.count, true) }
                written += bytes.count
                try append(bytes)
            }
        }
        guard written == dataBytes else { throw mismatch(written, false) }
    }
}

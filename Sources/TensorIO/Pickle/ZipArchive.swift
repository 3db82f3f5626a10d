import CZlib
import Foundation

/// A minimal, read-only zip reader for `torch.save` archives: it parses the central directory
/// (zip64 included) and locates *stored* entries; compressed or encrypted entries are refused.
/// All offsets and sizes come from the file and are bounds-checked before use.
struct ZipArchive {
    struct Entry {
        let name: String
        let method: UInt16
        let flags: UInt16
        let crc32: UInt32
        let compressedSize: Int
        let uncompressedSize: Int
        let localHeaderOffset: Int
    }

    let entries: [Entry]
    private let byName: [String: Int]

    static func looksLikeZip(_ buffer: UnsafeRawBufferPointer) -> Bool {
        buffer.count >= 4 && buffer[0] == 0x50 && buffer[1] == 0x4B &&
            ((buffer[2] == 0x03 && buffer[3] == 0x04) || (buffer[2] == 0x05 && buffer[3] == 0x06))
    }

    init(_ buffer: UnsafeRawBufferPointer) throws {
        // End of central directory: 22 bytes plus a comment of up to 65535 bytes, at the very end.
        let eocdSize = 22
        guard buffer.count >= eocdSize else {
            throw PickleError.truncated("the zip archive is cut off (\(buffer.count) bytes, no end-of-central-directory record)")
        }
        var eocd = -1
        var i = buffer.count - eocdSize
        let lowest = max(0, buffer.count - eocdSize - 0xFFFF)
        while i >= lowest {
            if buffer[i] == 0x50, buffer[i + 1] == 0x4B, buffer[i + 2] == 0x05, buffer[i + 3] == 0x06 { eocd = i; break }
            i -= 1
        }
        guard eocd >= 0 else {
            throw PickleError.truncated("the zip archive has no end-of-central-directory record; the file is " +
                                        "truncated or not a zip archive")
        }
        var r = try ByteReader(buffer, from: eocd + 4, what: "the zip end-of-central-directory record")
        _ = try r.u16("the disk number"); _ = try r.u16("the central directory disk")
        _ = try r.u16("the entry count on this disk")
        var count = Int(try r.u16("the entry count"))
        var directorySize = Int(try r.u32("the central directory size"))
        var directoryOffset = Int(try r.u32("the central directory offset"))

        // zip64: a locator just before the end record points at the zip64 end record.
        if eocd >= 20 {
            var loc = try ByteReader(buffer, from: eocd - 20, to: eocd, what: "the zip64 locator")
            if try loc.u32("a signature") == 0x0706_4B50 {
                _ = try loc.u32("the disk number")
                let recordOffset = try loc.length64("the zip64 end record offset")
                var z = try ByteReader(buffer, from: min(recordOffset, buffer.count), what: "the zip64 end record")
                guard try z.u32("a signature") == 0x0606_4B50 else {
                    throw PickleError.malformed("the zip64 end-of-central-directory record is missing or corrupt")
                }
                _ = try z.u64("the record size"); _ = try z.u16("the version"); _ = try z.u16("the version needed")
                _ = try z.u32("the disk number"); _ = try z.u32("the central directory disk")
                _ = try z.u64("the entry count on this disk")
                count = try z.length64("the entry count")
                directorySize = try z.length64("the central directory size")
                directoryOffset = try z.length64("the central directory offset")
            }
        }
        let directoryEnd = try Checked.add(directoryOffset, directorySize, "the zip central directory extent")
        guard directoryEnd <= buffer.count else {
            throw PickleError.truncated("the zip central directory (bytes \(directoryOffset)..<\(directoryEnd)) lies " +
                                        "past the end of the file (\(buffer.count) bytes): truncated")
        }
        guard count <= directorySize / 46 else {
            throw PickleError.malformed("the zip archive claims \(count) entries in a \(directorySize)-byte directory")
        }

        var d = try ByteReader(buffer, from: directoryOffset, to: directoryEnd, what: "the zip central directory")
        var entries: [Entry] = []
        var byName: [String: Int] = [:]
        entries.reserveCapacity(count)
        for _ in 0..<count {
            guard try d.u32("an entry signature") == 0x0201_4B50 else {
                throw PickleError.malformed("corrupt zip central directory entry at byte \(d.position - 4)")
            }
            _ = try d.u16("the version"); _ = try d.u16("the version needed")
            let flags = try d.u16("the flags")
            let method = try d.u16("the compression method")
            _ = try d.u16("the time"); _ = try d.u16("the date")
            let crc = try d.u32("the CRC-32")
            var compressed = Int(try d.u32("the compressed size"))
            var uncompressed = Int(try d.u32("the size"))
            let nameLength = Int(try d.u16("the name length"))
            let extraLength = Int(try d.u16("the extra length"))
            let commentLength = Int(try d.u16("the comment length"))
            _ = try d.u16("the disk number"); _ = try d.u16("the internal attributes"); _ = try d.u32("the attributes")
            var offset = Int(try d.u32("the local header offset"))
            let nameBytes = try d.bytes(nameLength, "an entry name")
            let extra = try d.range(extraLength, "an extra field")
            try d.skip(commentLength, "an entry comment")
            guard let name = String(bytes: nameBytes, encoding: .utf8) else {
                throw PickleError.malformed("a zip entry name is not valid UTF-8")
            }
            // zip64 extended information (id 1): only the fields whose 32-bit value is 0xFFFFFFFF.
            var e = try ByteReader(buffer, from: extra.lowerBound, to: extra.upperBound, what: "the extra field of '\(name)'")
            while e.remaining >= 4 {
                let id = try e.u16("an extra id")
                let size = Int(try e.u16("an extra size"))
                let field = try e.range(size, "an extra field")
                guard id == 0x0001 else { continue }
                var z = try ByteReader(buffer, from: field.lowerBound, to: field.upperBound, what: "the zip64 field of '\(name)'")
                if uncompressed == 0xFFFF_FFFF { uncompressed = try z.length64("the zip64 size") }
                if compressed == 0xFFFF_FFFF { compressed = try z.length64("the zip64 compressed size") }
                if offset == 0xFFFF_FFFF { offset = try z.length64("the zip64 offset") }
            }
            // One name, one entry: readers disagree on which of two entries of one name is read
            // (Python's zipfile takes the last), so the same file would load as two models.
            guard byName[name] == nil else {
                throw PickleError.malformed("the zip archive holds two entries named '\(name)'")
            }
            byName[name] = entries.count
            entries.append(Entry(name: name, method: method, flags: flags, crc32: crc, compressedSize: compressed,
                                 uncompressedSize: uncompressed, localHeaderOffset: offset))
        }
        self.entries = entries
        self.byName = byName
    }

    func entry(_ name: String) -> Entry? { byName[name].map { entries[$0] } }

    /// The byte range of a stored entry's data, after checking its local header and (optionally) CRC.
    func dataRange(_ entry: Entry, in buffer: UnsafeRawBufferPointer, verify: Bool = true) throws -> Range<Int> {
        guard entry.flags & 1 == 0 else { throw PickleError.unsupported("zip entry '\(entry.name)' is encrypted") }
        guard entry.method == 0 else {
            let method = entry.method == 8 ? "deflate" : "method \(entry.method)"
            throw PickleError.unsupported("zip entry '\(entry.name)' is compressed (\(method)); only stored " +
                                          "(uncompressed) entries, as torch.save writes them, are supported")
        }
        guard entry.compressedSize == entry.uncompressedSize else {
            throw PickleError.malformed("stored zip entry '\(entry.name)' has different sizes " +
                                        "(\(entry.compressedSize) and \(entry.uncompressedSize))")
        }
        var h = try ByteReader(buffer, from: min(entry.localHeaderOffset, buffer.count),
                               what: "the zip local header of '\(entry.name)'")
        guard try h.u32("a signature") == 0x0403_4B50 else {
            throw PickleError.malformed("corrupt zip local header for '\(entry.name)' at byte \(entry.localHeaderOffset)")
        }
        try h.skip(22, "the local header")
        let nameLength = Int(try h.u16("the name length"))
        let extraLength = Int(try h.u16("the extra length"))
        try h.skip(nameLength + extraLength, "the local name and extra field")
        let data = try h.range(entry.uncompressedSize, "the data of '\(entry.name)'")
        if verify {
            let bytes = UnsafeRawBufferPointer(rebasing: buffer[data])
            let crc = cz_crc32(0, bytes.baseAddress, bytes.count)
            guard crc == entry.crc32 else {
                throw PickleError.malformed("zip entry '\(entry.name)' fails its CRC-32 check: the file is corrupt")
            }
        }
        return data
    }
}

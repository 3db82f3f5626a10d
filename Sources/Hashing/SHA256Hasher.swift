import AtomicFiles
import Crypto
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// SHA-256 as lowercase hex: the project's one home for hashing. It verifies and content-addresses
/// weight files (Vision's `WeightsCache`) and keys the feature caches (Training's `FeatureCache`).
///
/// The hashing itself is swift-crypto's `SHA256` (BoringSSL on Linux, with its SHA-NI and AVX2 code
/// paths; CryptoKit on Apple platforms): security code comes from a maintained library, and this
/// type only adds streaming file reads and hex output.
public struct SHA256Hasher {
    private var hasher = Crypto.SHA256()

    /// A hasher that has seen no bytes yet.
    public init() {}

    /// Hashes `bytes` after everything given before (any split of the input gives the same digest).
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        hasher.update(bufferPointer: bytes)
    }

    /// Hashes `data` (`[UInt8]`, `Data`, a slice…) after everything given before.
    public mutating func update<D: DataProtocol>(_ data: D) {
        hasher.update(data: data)
    }

    /// The digest of everything given to `update` so far, as 64 lowercase hex characters.
    public func finalizeHex() -> String {
        Self.hex(hasher.finalize())
    }

    /// The digest of `bytes`, as 64 lowercase hex characters.
    public static func hexDigest<D: DataProtocol>(of bytes: D) -> String {
        hex(Crypto.SHA256.hash(data: bytes))
    }

    /// The digest of a whole file, read in 1 MiB chunks into one reused buffer (constant memory,
    /// whatever the file's size). Only a regular file is read: a FIFO or a device (which would
    /// block or never end) is `HashingError.unreadable`.
    public static func hexDigest(ofFile path: String) throws -> String {
        try hexDigest(ofFile: path, copyingTo: nil)
    }

    /// Copies the regular file at `source` to a new file at `destination` (which must not exist;
    /// it is flushed to disk) and returns the digest of the bytes written: what is checked is what
    /// was copied, whatever happens to `source` meanwhile. On failure `destination` is removed.
    public static func copy(_ source: String, to destination: String) throws -> String {
        let fd = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw HashingError.unwritable(path: destination, reason: String(cString: strerror(errno))) }
        do {
            let digest = try hexDigest(ofFile: source, copyingTo: (fd, destination))
            guard fsync(fd) == 0 else {
                throw HashingError.unwritable(path: destination, reason: String(cString: strerror(errno)))
            }
            close(fd)
            return digest
        } catch {
            close(fd)
            unlink(destination)
            throw error
        }
    }

    private static func hexDigest(ofFile path: String, copyingTo copy: (fd: Int32, path: String)?) throws -> String {
        let fd: Int32
        do {
            fd = try RegularFile.openForReading(path)
        } catch let error as RegularFileError {
            throw HashingError.unreadable(path: path, reason: error.reason)
        }
        defer { close(fd) }
        var hasher = SHA256Hasher()
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
        defer { chunk.deallocate() }
        while true {
            let count = read(fd, chunk.baseAddress, chunk.count)
            if count > 0 {
                let bytes = UnsafeRawBufferPointer(rebasing: chunk[..<count])
                hasher.update(bytes)
                if let copy {
                    do {
                        try FileDescriptorWriter.writeAll(fd: copy.fd, bytes)
                    } catch let error as FileWriteError {
                        throw HashingError.unwritable(path: copy.path, reason: error.reason)
                    }
                }
            } else if count == 0 {
                return hasher.finalizeHex()
            } else if errno != EINTR {
                throw HashingError.unreadable(path: path, reason: String(cString: strerror(errno)))
            }
        }
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// Whether `text` is a digest as `finalizeHex` writes it: 64 lowercase ASCII hex digits.
    public static func isHexDigest<S: StringProtocol>(_ text: S) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { hexDigits.contains($0) }
    }

    private static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        var text: [UInt8] = []
        text.reserveCapacity(64)
        for byte in digest {
            text.append(hexDigits[Int(byte >> 4)])
            text.append(hexDigits[Int(byte & 0x0f)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}

/// Why a file could not be hashed.
public enum HashingError: Error, CustomStringConvertible {
    /// The file could not be opened or read.
    case unreadable(path: String, reason: String)
    /// The copy could not be created or written (`copy(_:to:)`).
    case unwritable(path: String, reason: String)

    /// "cannot read PATH: REASON", as `WeightsError.unreadable` words it.
    public var description: String {
        switch self {
        case .unreadable(let path, let reason): return "cannot read \(path): \(reason)"
        case .unwritable(let path, let reason): return "cannot write \(path): \(reason)"
        }
    }
}

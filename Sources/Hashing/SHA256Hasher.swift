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
    /// whatever the file's size).
    public static func hexDigest(ofFile path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw HashingError.unreadable(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var hasher = SHA256Hasher()
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
        defer { chunk.deallocate() }
        while true {
            let count = read(fd, chunk.baseAddress, chunk.count)
            if count > 0 {
                hasher.update(UnsafeRawBufferPointer(rebasing: chunk[..<count]))
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

    /// "cannot read PATH: REASON", as `WeightsError.unreadable` words it.
    public var description: String {
        switch self {
        case .unreadable(let path, let reason): return "cannot read \(path): \(reason)"
        }
    }
}

import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A pause of a data-parallel group, asked for by the process that started it (Ctrl-Z of the
/// `--nproc-per-node` launcher): the first byte of a file the launcher and its workers share by an
/// inherited descriptor, 1 while the launcher is stopped. The ranks read it at each training batch's
/// agreement (`DataParallel.agreeOnBatch`): when any rank saw 1, every rank waits, between two
/// collectives, until it is 0 again, so no collective is pending while the group is paused. (Stopping
/// the workers with SIGSTOP stopped them inside a collective, and a pause longer than `--dist-timeout`
/// then failed the run, 1 time in 3, with Gloo's "Operation timed out".)
public final class GroupPause: @unchecked Sendable {
    /// The environment variable that gives a worker the descriptor's number.
    public static let descriptorVariable = "FINETUNE_PAUSE_FD"

    /// The shared file, opened by the launcher and inherited by its workers.
    public let descriptor: Int32

    /// The pause of descriptor `descriptor` when it is what `makeShared` makes (an open regular file of
    /// one byte, with no name left), else nil: a stray `FINETUNE_PAUSE_FD` naming another open file
    /// must not read as a pause asked for at every batch.
    public init?(descriptor: Int32) {
        var info = stat()
        guard descriptor >= 0, fstat(descriptor, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG,
              info.st_size == 1, info.st_nlink == 0 else { return nil }
        self.descriptor = descriptor
    }

    /// The pause of the descriptor named by `descriptorVariable` in `environment`, if any.
    public convenience init?(environment: [String: String]) {
        guard let text = environment[Self.descriptorVariable], let descriptor = Int32(text) else { return nil }
        self.init(descriptor: descriptor)
    }

    /// A new shared file for a launcher to pass to the workers it starts (not closed on exec), its
    /// byte 0, and already unlinked: nothing is left behind however the processes end. Nil when no
    /// temporary file can be made.
    public static func makeShared() -> GroupPause? {
        var template = Array((FileManager.default.temporaryDirectory.path + "/finetune-pause-XXXXXX").utf8CString)
        let descriptor = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard descriptor >= 0 else { return nil }
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        guard set(descriptor, paused: false) else { close(descriptor); return nil }
        return GroupPause(descriptor: descriptor)
    }

    /// Writes the state into the shared file of `descriptor`. Async-signal-safe (one `pwrite`): the
    /// launcher calls it from its SIGTSTP handler.
    @discardableResult
    public static func set(_ descriptor: Int32, paused: Bool) -> Bool {
        var byte: UInt8 = paused ? 1 : 0
        return pwrite(descriptor, &byte, 1, 0) == 1
    }

    /// Whether the launcher asks the group to pause now.
    public var isRequested: Bool {
        var byte: UInt8 = 0
        return pread(descriptor, &byte, 1, 0) == 1 && byte != 0
    }

    /// Waits while a pause is asked for, or until `stop` is triggered (the launcher passed on a Ctrl-C or
    /// SIGTERM, or ended).
    public func waitWhileRequested(unless stop: SignalStop?) {
        while isRequested && stop?.isTriggered != true { usleep(20_000) }
    }
}

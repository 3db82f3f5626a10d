import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Standard output and standard error, written with `FileDescriptorWriter`. A failed write (a full
/// disk behind `>`, a closed descriptor) is not a trap, as Foundation's `FileHandle.write(_:)` is
/// (`try!` in swift-corelibs-foundation: `2>/dev/full` ended a command with SIGILL); text that cannot
/// be written to standard error is dropped, and standard output's first failure is kept for the
/// exit status (`outputFailure`).
public enum StandardStreams {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var firstOutputFailure: FileWriteError?

    /// Writes `text` to standard output, after what `print` holds in its buffer.
    public static func writeOutput(_ text: String) {
        fflush(stdout)
        do { try FileDescriptorWriter.writeAll(fd: STDOUT_FILENO, Data(text.utf8)) } catch let error as FileWriteError {
            lock.withLock { if firstOutputFailure == nil { firstOutputFailure = error } }
        } catch {}
    }

    /// Writes `text` to standard error; a failure is ignored (there is nowhere left to report it).
    public static func writeError(_ text: String) {
        try? FileDescriptorWriter.writeAll(fd: STDERR_FILENO, Data(text.utf8))
    }

    /// Why standard output could not be written, if it could not: the first failure of
    /// `writeOutput`, or of flushing the C library's buffer (where Swift's `print` writes), which
    /// this flushes.
    public static func outputFailure() -> FileWriteError? {
        if let failure = lock.withLock({ firstOutputFailure }) { return failure }
        if fflush(stdout) != 0 || ferror(stdout) != 0 { return FileWriteError(code: errno == 0 ? EIO : errno) }
        return nil
    }

    /// `text` as a terminal can show it harmlessly: its control characters (ESC, BEL, a carriage
    /// return, backspace, C1 codes such as CSI, DEL) and the Unicode line and paragraph separators are
    /// written as escapes (`\r`, `\u{1b}`), so that a name in a message cannot move the cursor,
    /// change colours, retitle the window or overwrite a line already printed. Line feeds and tabs
    /// are kept, as a message's own layout, unless `escapingLineFeedsAndTabs` (a name on a line of its
    /// own, where a line feed would forge a second line: `\n`, `\t`). Text already escaped is
    /// returned unchanged. The CLI passes every line it prints for a reader through this; JSON
    /// output escapes control characters itself.
    public static func displayable(_ text: String, escapingLineFeedsAndTabs: Bool = false) -> String {
        func escaped(_ scalar: Unicode.Scalar) -> Bool {
            if scalar == "\n" || scalar == "\t" { return escapingLineFeedsAndTabs }
            return scalar.properties.generalCategory == .control || scalar.value == 0x2028 || scalar.value == 0x2029
        }
        guard text.unicodeScalars.contains(where: escaped) else { return text }
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            guard escaped(scalar) else { out.append(scalar); continue }
            switch scalar {
            case "\n": out.append(contentsOf: "\\n".unicodeScalars)
            case "\r": out.append(contentsOf: "\\r".unicodeScalars)
            case "\t": out.append(contentsOf: "\\t".unicodeScalars)
            default: out.append(contentsOf: "\\u{\(String(scalar.value, radix: 16))}".unicodeScalars)
            }
        }
        return String(out)
    }

    /// From now on in this process, a write to a pipe whose reader has gone fails (EPIPE, kept as any
    /// failed write of standard output is) instead of ending the process with SIGPIPE. For commands
    /// that must reach their own end after Ctrl-C: in `finetune train … | tee log`, Ctrl-C ended `tee` at
    /// once, and train's next progress line ended train before it wrote its checkpoint (status 141,
    /// `config.json` left `running`).
    public static func surviveClosedPipes() {
        signal(SIGPIPE, SIG_IGN)
    }

    /// Opens /dev/null on whichever of descriptors 0, 1 and 2 is closed: a file the process opens
    /// next would otherwise get that number, and output meant for the terminal would go into it
    /// (a run directory's lock file received the training progress).
    public static func openClosedDescriptors() {
        for fd in [STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO] where fcntl(fd, F_GETFD) == -1 && errno == EBADF {
            let opened = open("/dev/null", O_RDWR)
            if opened >= 0 && opened != fd { _ = dup2(opened, fd); close(opened) }
        }
    }
}

import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs `body`, which starts a process, with `signals` ignored (as under `nohup`) or at their default
/// action, whatever this test process has: the process started inherits that (a test run under
/// `nohup` passes SIGHUP on ignored, a background job SIGINT, and a test runner may ignore SIGPIPE).
public func withSignals<T>(_ signals: [Int32], ignored: Bool, _ body: () throws -> T) rethrows -> T {
    var previous: [sigaction] = []
    for number in signals {
        var chosen = sigaction(), saved = sigaction()
        #if canImport(Darwin)
        chosen.__sigaction_u.__sa_handler = ignored ? SIG_IGN : SIG_DFL
        #else
        chosen.__sigaction_handler.sa_handler = ignored ? SIG_IGN : SIG_DFL
        #endif
        sigaction(number, &chosen, &saved)
        previous.append(saved)
    }
    defer { for (number, saved) in zip(signals, previous) { var saved = saved; sigaction(number, &saved, nil) } }
    return try body()
}

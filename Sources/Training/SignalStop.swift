import Dispatch
import Foundation

/// Turns SIGINT/SIGTERM and the notice signals (`noticeSignals`: SIGHUP, SIGUSR1, SIGUSR2, SIGXCPU)
/// into a flag the trainer polls after every batch: the trainer then writes a resumable checkpoint
/// (to `TrainingConfiguration.checkpointDirectory`/last) and `fit` returns `.interrupted`. Signals are
/// received with `DispatchSourceSignal`s (no code of ours runs in signal context). A second SIGINT or
/// SIGTERM while the first signal is pending restores the default disposition and re-sends it, so the
/// process ends as users expect from a second Ctrl-C (unless `forceOnSecondSignal` is false). A notice
/// signal never counts as that second signal: each may arrive more than once for one cause. Once
/// cancelled (or deinitialised) the instance no longer catches anything. While a `SignalStop` listens
/// for a signal, it takes the signal from whatever handled it before (the default action, `SIG_IGN`,
/// the handler of an application that embeds a run); once none listens, that handling is back.
public final class SignalStop: @unchecked Sendable {
    /// SIGINT (Ctrl-C), SIGTERM (`kill`, container shutdown) and each of `noticeSignals` that is not
    /// handled elsewhere (`isHandledElsewhere`: ignored because `nohup` started the process, which asks
    /// the run to go on after a hang-up, or caught by the application that embeds the run, a daemon
    /// reloading its settings on SIGHUP).
    public static var defaultSignals: [Int32] { [SIGINT, SIGTERM] + noticeSignals.filter { !isHandledElsewhere($0) } }

    /// Signals that tell a process its time is up without a person pressing Ctrl-C, and whose default
    /// action ends it at once: SIGHUP (the terminal closed: an ssh connection dropped), SIGUSR1 and
    /// SIGUSR2 (a batch scheduler's warning before the job's end: Slurm's `--signal`, Grid Engine's
    /// `-notify`) and SIGXCPU (the CPU-time limit: `ulimit -t`, a cluster's CPU limit). A run stops on
    /// each as on Ctrl-C, with its checkpoint. None counts as the second Ctrl-C that ends the process
    /// at once: a hang-up often arrives twice (from the kernel to the terminal's foreground processes,
    /// and from the shell to its jobs), and SIGXCPU comes again every second of CPU time past the soft
    /// limit. Until 2026-12-07 each of them ended a run at once, with no checkpoint since the last one
    /// and `config.json` still saying `running`.
    public static let noticeSignals: [Int32] = [SIGHUP, SIGUSR1, SIGUSR2, SIGXCPU]

    /// Whether `signal` is ignored (`SIG_IGN`) or caught by a handler that is not a `SignalStop`'s (while
    /// one listens: was, before it took the signal): a parent asked so (`nohup` ignores SIGHUP) or the
    /// application handles it, and listening for it would take it from them while the run lasts.
    public static func isHandledElsewhere(_ signal: Int32) -> Bool { SignalHub.shared.isHandledElsewhere(signal) }

    /// As process 1 (a container's entrypoint started without `--init`: `docker run -it … finetune
    /// evaluate …`) the kernel gives SIGINT, SIGTERM and the notice signals no default action: Ctrl-C and
    /// `docker stop` did nothing to a command that does not listen for them (evaluate, predict, bench …), until
    /// Docker's SIGKILL 10 s later. Here each that is at its default action gets a stand-in for it, which
    /// ends the process with status 128 + its number; the stand-in counts as the default action, so a
    /// `SignalStop` (train) or the server still takes the signal over as anywhere else. Elsewhere this
    /// does nothing.
    public static func standInForDefaultActionsAsProcessOne() {
        guard getpid() == 1 else { return }
        for number in [SIGINT, SIGTERM] + noticeSignals where !isHandledElsewhere(number) {
            Foundation.signal(number, SignalHub.endAsDefaultAction)
        }
    }

    /// The signals listened for (empty: only `trigger()` sets the flag).
    public let signals: [Int32]
    /// Whether a second signal while the first is pending ends the process with the default action.
    public let forceOnSecondSignal: Bool
    private let lock = NSLock()
    private var received: Int32?
    /// Signals received since the last `reset` (not `trigger` calls).
    private var count = 0
    private var listening = false

    /// Starts listening for `signals` (none: only `trigger()` sets the flag). Returns once the
    /// dispatch sources are registered, so a signal sent after `init` is never missed.
    public init(signals: [Int32] = SignalStop.defaultSignals, forceOnSecondSignal: Bool = true) {
        self.signals = signals
        self.forceOnSecondSignal = forceOnSecondSignal
        if !signals.isEmpty {
            listening = true
            SignalHub.shared.subscribe(self, to: signals)
        }
    }

    deinit { cancel() }

    fileprivate func receive(_ number: Int32) {
        let n: Int = lock.withLock {
            if !Self.noticeSignals.contains(number) { count += 1 }
            if received == nil { received = number }
            return count
        }
        if n >= 2 && forceOnSecondSignal { SignalHub.terminate(with: number) }
    }

    /// Whether a signal (or `trigger`) has asked training to stop.
    public var isTriggered: Bool { lock.withLock { received != nil } }

    /// The signal received (`0` for `trigger()`), nil before.
    public var receivedSignal: Int32? { lock.withLock { received } }

    /// Sets the flag as a signal would (for programmatic interruption, another rank's stop, and
    /// tests). It does not count as a received signal: the first real signal after it still stops
    /// gracefully, and only a second real one ends the process.
    public func trigger(signal number: Int32 = 0) {
        lock.withLock {
            if received == nil { received = number }
        }
    }

    /// Clears the flag (after the trainer has handled it).
    public func reset() {
        lock.withLock {
            received = nil
            count = 0
        }
    }

    /// From now on in this process, `signals` that no `SignalStop` listens for are ignored instead of
    /// taking their default action. A data-parallel worker sets it for SIGTERM as its run starts: the
    /// launcher's SIGTERM (sent when another worker failed) killed it between the run's end and its
    /// exit, while it printed why it stopped.
    public static func ignoreWhenUnheard(_ signals: [Int32]) { SignalHub.shared.ignoreWhenUnheard(signals) }

    /// Called while a signal's source is being set up, before it is registered (a test sends the
    /// signal there).
    nonisolated(unsafe) static var beforeRegistrationForTesting: ((Int32) -> Void)?

    /// Stops listening.
    public func cancel() {
        let wasListening = lock.withLock { () -> Bool in
            defer { listening = false }
            return listening
        }
        if wasListening { SignalHub.shared.unsubscribe(self) }
    }
}

/// One dispatch source per signal for the life of the process, shared by every `SignalStop`.
/// (Sources are never cancelled: on Linux, libdispatch routes a signal to its signalfd through a
/// handler it installs once per signal; tearing that down and re-creating sources would leave
/// signals ignored or stuck.)
///
/// A signal is routed to the sources only while a `SignalStop` listens for it (it is *heard*). When
/// the first listener takes it, the hub keeps the action it had (the default, ignored, the embedding
/// application's handler) and installs libdispatch's; when the last one leaves, that action comes
/// back. Until stop 52 the sources kept every signal they had once heard for the life of the process,
/// and one that no `SignalStop` listened for took its default action: an application that embeds a
/// run lost its own SIGTERM or SIGINT handling after the run (its handler never ran again, a signal it
/// ignored ended it, and its own dispatch source's graceful shutdown was cut short by the process's end).
private final class SignalHub: @unchecked Sendable {
    static let shared = SignalHub()

    private let lock = NSLock()
    private let queue = DispatchQueue(label: "finetune.signal-stop")
    private var sources: [Int32: DispatchSourceSignal] = [:]
    private var listeners: [ObjectIdentifier: (stop: Weak, signals: [Int32])] = [:]
    private var ignoredWhenUnheard: Set<Int32> = []
    /// libdispatch's action for each signal with a source: installed while the signal is heard.
    private var dispatchActions: [Int32: sigaction] = [:]
    /// The action each heard signal had before a listener took it: installed again once none listens.
    private var priorActions: [Int32: sigaction] = [:]

    /// Whether a listener takes `number` (with the lock held).
    private func isHeard(_ number: Int32) -> Bool { listeners.values.contains { $0.signals.contains(number) } }

    /// Whether `action` runs nobody's code: the default action (or process 1's stand-in for it) or `SIG_IGN`.
    private static func runsNoHandler(_ action: sigaction) -> Bool {
        let address = handlerAddress(action)
        return address == 0 || address == unsafeBitCast(SIG_IGN, to: Int.self)
            || address == unsafeBitCast(endAsDefaultAction, to: Int.self)
    }

    private static func currentAction(_ number: Int32) -> sigaction? {
        var current = sigaction()
        return sigaction(number, nil, &current) == 0 ? current : nil
    }

    private static func handlerAddress(_ action: sigaction) -> Int {
        #if canImport(Darwin)
        let handler = action.__sigaction_u.__sa_handler
        #else
        let handler = action.__sigaction_handler.sa_handler
        #endif
        return handler.map { unsafeBitCast($0, to: Int.self) } ?? 0  // SIG_DFL is a null function pointer
    }

    /// Whether `action` is libdispatch's for `number`: the signal goes to the dispatch sources (this
    /// hub's, and any of the application's own).
    private func isDispatchAction(_ action: sigaction, for number: Int32) -> Bool {
        dispatchActions[number].map { Self.handlerAddress($0) == Self.handlerAddress(action) } ?? false
    }

    func isHandledElsewhere(_ number: Int32) -> Bool {
        lock.withLock {
            // While heard, the action the signal had before (the application's) decides.
            guard let action = isHeard(number) ? priorActions[number] : Self.currentAction(number) else { return false }
            // Anything but SIG_DFL (SIG_IGN, a handler, the application's own dispatch source) is someone's
            // choice, but for process 1's stand-in for the default action.
            let address = Self.handlerAddress(action)
            return address != 0 && address != unsafeBitCast(Self.endAsDefaultAction, to: Int.self)
        }
    }

    func ignoreWhenUnheard(_ signals: [Int32]) {
        lock.withLock {
            ignoredWhenUnheard.formUnion(signals)
            // Ignored until a listener takes the signal over; where one has, once it leaves.
            for number in signals where !isHeard(number) { Foundation.signal(number, SIG_IGN) }
        }
    }

    struct Weak {
        weak var value: SignalStop?
    }

    /// One flag per signal number, set by `noteWhileRegistering` in signal context (a plain store to
    /// memory allocated before any handler is installed).
    private static let arrivedWhileRegistering: UnsafeMutablePointer<sig_atomic_t> = {
        let flags = UnsafeMutablePointer<sig_atomic_t>.allocate(capacity: 65)
        flags.initialize(repeating: 0, count: 65)
        return flags
    }()

    /// The handler of a signal whose source is being registered: it notes the signal, which the hub
    /// then delivers. (It was `SIG_IGN`, which threw away a Ctrl-C or SIGTERM sent in that gap, and
    /// the run trained to its end: probe AI.) libdispatch installs its own handler at registration.
    private static let noteWhileRegistering: @convention(c) (Int32) -> Void = { number in
        if (1..<65).contains(number) { SignalHub.arrivedWhileRegistering[Int(number)] = 1 }
    }

    func subscribe(_ stop: SignalStop, to signals: [Int32]) {
        var created: [(number: Int32, source: DispatchSourceSignal)] = []
        _ = Self.arrivedWhileRegistering  // allocated before a handler can use it
        lock.withLock {
            let taken = Set(signals.filter { !isHeard($0) })
            listeners[ObjectIdentifier(stop)] = (Weak(value: stop), signals)
            for number in taken {
                let prior = Self.currentAction(number)
                priorActions[number] = prior
                if var action = dispatchActions[number] {
                    sigaction(number, &action, nil)  // back to the sources
                } else if sources[number] == nil {
                    // Noted until the source is registered: no default action (termination) meanwhile,
                    // and nothing lost. A handler stays: the application's takes a signal in that gap,
                    // and libdispatch's (the application's own dispatch source) is not installed again.
                    if prior.map(Self.runsNoHandler) ?? true { Foundation.signal(number, Self.noteWhileRegistering) }
                    let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
                    source.setEventHandler { [weak self] in self?.deliver(number) }
                    sources[number] = source
                    created.append((number, source))
                }
            }
        }
        for (number, source) in created {
            SignalStop.beforeRegistrationForTesting?(number)
            let registered = DispatchSemaphore(value: 0)
            source.setRegistrationHandler { registered.signal() }
            source.resume()
            _ = registered.wait(timeout: .now() + 2)
            lock.withLock {
                if let action = Self.currentAction(number),
                   Self.handlerAddress(action) != unsafeBitCast(Self.noteWhileRegistering, to: Int.self) {
                    dispatchActions[number] = action
                }
            }
            if (1..<65).contains(number) && Self.arrivedWhileRegistering[Int(number)] != 0 {
                Self.arrivedWhileRegistering[Int(number)] = 0
                queue.async { [weak self] in self?.deliver(number) }
            }
        }
    }

    func unsubscribe(_ stop: SignalStop) {
        lock.withLock {
            guard let left = listeners.removeValue(forKey: ObjectIdentifier(stop)) else { return }
            for number in Set(left.signals) where !isHeard(number) {
                defer { priorActions[number] = nil }
                // Unless someone has installed a handler since (it stays).
                guard let current = Self.currentAction(number), isDispatchAction(current, for: number) else { continue }
                if ignoredWhenUnheard.contains(number) {
                    Foundation.signal(number, SIG_IGN)
                } else if var prior = priorActions[number] {
                    sigaction(number, &prior, nil)
                }
            }
        }
    }

    private func deliver(_ number: Int32) {
        let (targets, routedToSources): ([SignalStop], Bool) = lock.withLock {
            (listeners.values.filter { $0.signals.contains(number) }.compactMap { $0.stop.value },
             Self.currentAction(number).map { isDispatchAction($0, for: number) } ?? false)
        }
        if targets.isEmpty {
            // The last listener left after the signal arrived: raised again, it meets the action
            // restored (the default, ignored, the application's handler). Unless the signal still goes
            // to the dispatch sources: then the application's own source has it.
            if !routedToSources { kill(getpid(), number) }
            return
        }
        for stop in targets { stop.receive(number) }
    }

    /// Process 1's stand-in for a signal's default action (`standInForDefaultActionsAsProcessOne`).
    static let endAsDefaultAction: @convention(c) (Int32) -> Void = { _exit(128 + $0) }

    /// The signal's default action (normally: the process ends). Process 1 (a container's entrypoint)
    /// gets no default action from the kernel, so it exits with status 128 + the signal's number, as a
    /// shell reports a process the signal ended (a second Ctrl-C did nothing there).
    static func terminate(with number: Int32) {
        Foundation.signal(number, SIG_DFL)
        kill(getpid(), number)
        if getpid() == 1 { endAsDefaultAction(number) }
    }
}

/// The flags of a `train --resume` command line that the resumed run does not use: it keeps the
/// settings saved in its run directory (bit-exact resume), so `--lr 0.5` or `--batch-size 4` there
/// changed nothing, and said nothing.
enum ResumeFlags {
    /// What `--resume` honours (docs/cli.md): where the data is, the epoch total, how the work is
    /// spread, how bad images are handled, the output format, and data-parallel launching.
    static let honoured: Set<String> = [
        "--resume", "--epochs", "--workers", "--on-bad-image", "--threads", "--image-root", "--json",
        "--nproc-per-node", "--master-addr", "--master-port", "--dist-timeout",
    ]

    /// The long flags among `arguments` (the command line without the program) that `--resume`
    /// ignores, each once, in order; `--` ends the flags.
    static func ignored(_ arguments: [String]) -> [String] {
        var names: [String] = []
        for argument in arguments {
            if argument == "--" { break }
            guard argument.hasPrefix("--") else { continue }
            let name = String(argument.prefix { $0 != "=" })
            if !honoured.contains(name), !names.contains(name) { names.append(name) }
        }
        return names
    }

    /// Warns on standard error (rank 0 only) when the command line gives flags the resume ignores.
    static func warnAboutIgnored(rank: Int, arguments: [String] = Array(CommandLine.arguments.dropFirst())) {
        let names = ignored(arguments)
        guard rank == 0, !names.isEmpty else { return }
        printError("warning: --resume continues with the run's saved settings; ignored: "
                   + names.joined(separator: ", ") + " (to change them, start a new run)")
    }
}

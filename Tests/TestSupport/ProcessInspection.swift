import Foundation

/// What /proc says of other processes (Linux), for tests that start them.
public enum ProcessInspection {
    /// The processes whose parent is `parent`, in no particular order.
    public static func children(of parent: pid_t) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap(pid_t.init).filter { statusField("PPid", of: $0) == String(parent) }
    }

    /// The one-letter state of process `pid` (`R`, `S`, `T` for stopped, `Z`, …), nil once it is gone.
    public static func state(of pid: pid_t) -> Character? {
        statusField("State", of: pid)?.first
    }

    /// Whether process `pid` catches `signal` (its `SigCgt` mask).
    public static func catches(_ pid: pid_t, _ signal: Int32) -> Bool {
        guard let field = statusField("SigCgt", of: pid), let mask = UInt64(field, radix: 16) else { return false }
        return mask & (1 << UInt64(signal - 1)) != 0
    }

    /// The value of line `name:` of /proc/PID/status, trimmed; nil when there is none.
    public static func statusField(_ name: String, of pid: pid_t) -> String? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return nil }
        return line.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces)
    }
}

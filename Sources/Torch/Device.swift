import CTorch

/// Where a tensor lives. CUDA and MPS code paths always compile; availability is checked at run time.
public enum Device: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// Host memory; always available.
    case cpu
    /// The NVIDIA GPU with this index (`torch.device("cuda:N")`); check `Runtime.cudaIsAvailable` first.
    case cuda(Int)
    /// Apple's Metal GPU (`torch.device("mps")`), when LibTorch was built with MPS.
    case mps

    /// The best device the linked LibTorch offers: CUDA, then MPS, then CPU.
    public static var auto: Device {
        if Runtime.cudaIsAvailable { return .cuda(0) }
        if Runtime.mpsIsAvailable { return .mps }
        return .cpu
    }

    /// Parses "cpu", "cuda", "cuda:1", "mps" or "auto".
    public init(parsing text: String) throws {
        let lower = text.lowercased()
        switch lower {
        case "cpu": self = .cpu
        case "mps": self = .mps
        case "auto": self = .auto
        case "cuda": self = .cuda(0)
        default:
            if lower.hasPrefix("cuda:"), let n = Int(lower.dropFirst(5)), n >= 0 {
                self = .cuda(n)
            } else {
                throw TorchError("unknown device '\(text)': expected cpu, cuda, cuda:N, mps or auto")
            }
        }
    }

    /// Throws, naming what is missing, unless the linked LibTorch can run tensors here: a CUDA build
    /// that sees this GPU, or an MPS build on a Mac that has Metal. (Without the check, the first
    /// tensor op fails with the dispatcher's list of every registered backend.)
    public func checkAvailable() throws {
        switch self {
        case .cpu:
            return
        case .cuda(let index):
            let count = Runtime.cudaDeviceCount
            if count == 0 {
                throw TorchError("\(self) is not available: this LibTorch (\(Runtime.libTorchVersion)) has no CUDA "
                    + "backend or sees no NVIDIA GPU (a CUDA build keeps it in libtorch_cuda beside libtorch_cpu)")
            }
            if index >= count {
                throw TorchError("\(self) is not available: LibTorch sees \(count) CUDA GPU\(count == 1 ? "" : "s") "
                    + "(cuda:0 to cuda:\(count - 1))")
            }
        case .mps:
            if !Runtime.mpsIsAvailable {
                throw TorchError("mps is not available: this LibTorch (\(Runtime.libTorchVersion)) has no Metal backend")
            }
        }
    }

    /// PyTorch's spelling: "cpu", "cuda:N" or "mps"; `Device(parsing:)` reads it back.
    public var description: String {
        switch self {
        case .cpu: return "cpu"
        case .cuda(let i): return "cuda:\(i)"
        case .mps: return "mps"
        }
    }

    var c: ct_device {
        switch self {
        case .cpu: return ct_device(type: Int32(CT_CPU.rawValue), index: -1)
        case .cuda(let i): return ct_device(type: Int32(CT_CUDA.rawValue), index: Int32(i))
        case .mps: return ct_device(type: Int32(CT_MPS.rawValue), index: -1)
        }
    }

    init(_ d: ct_device) {
        switch d.type {
        case Int32(CT_CUDA.rawValue): self = .cuda(Int(max(d.index, 0)))
        case Int32(CT_MPS.rawValue): self = .mps
        default: self = .cpu
        }
    }
}

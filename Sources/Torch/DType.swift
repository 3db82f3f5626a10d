import CTorch

/// Tensor element types. Raw values are the shim's stable `ct_dtype` codes.
public enum DType: Int32, CaseIterable, Sendable, CustomStringConvertible {
    /// Floating-point types: `float32` (the default for parameters and images), `float64`, `float16` and
    /// `bfloat16` (8-bit exponent like float32, used by CPU autocast), as `torch.float32` etc.
    case float32 = 0, float64 = 1, float16 = 2, bfloat16 = 3
    /// Integer and boolean types: `int64` (class labels and indices, `torch.long`), `int32`, `uint8`
    /// (decoded image bytes), `int8`, `bool` (comparison results, masks) and `int16`.
    case int64 = 4, int32 = 5, uint8 = 6, int8 = 7, bool = 8, int16 = 9

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .float64, .int64: return 8
        case .float32, .int32: return 4
        case .float16, .bfloat16, .int16: return 2
        case .uint8, .int8, .bool: return 1
        }
    }

    /// True for float32, float64, float16 and bfloat16 (`dtype.is_floating_point`): the types that can
    /// require gradients.
    public var isFloatingPoint: Bool {
        switch self {
        case .float32, .float64, .float16, .bfloat16: return true
        default: return false
        }
    }

    /// PyTorch's name, e.g. `torch.float32` → "float32".
    public var description: String {
        switch self {
        case .float32: return "float32"
        case .float64: return "float64"
        case .float16: return "float16"
        case .bfloat16: return "bfloat16"
        case .int64: return "int64"
        case .int32: return "int32"
        case .uint8: return "uint8"
        case .int8: return "int8"
        case .bool: return "bool"
        case .int16: return "int16"
        }
    }
}

/// Swift element types that map one-to-one onto a `DType`.
public protocol TensorScalar {
    static var dtype: DType { get }
}
extension Float: TensorScalar { public static var dtype: DType { .float32 } }
extension Double: TensorScalar { public static var dtype: DType { .float64 } }
extension Int64: TensorScalar { public static var dtype: DType { .int64 } }
extension Int32: TensorScalar { public static var dtype: DType { .int32 } }
extension Int16: TensorScalar { public static var dtype: DType { .int16 } }
extension UInt8: TensorScalar { public static var dtype: DType { .uint8 } }
extension Int8: TensorScalar { public static var dtype: DType { .int8 } }
extension Bool: TensorScalar { public static var dtype: DType { .bool } }

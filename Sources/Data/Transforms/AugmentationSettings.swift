import Foundation

/// The checks the augmentations run on their own settings before they touch an image: a value that
/// would turn into NaN, infinity or a reversed range (a ratio of 0, one bin, a negative operation
/// count) is a thrown error naming the augmentation and the field. They trapped the process; the CLI
/// validates its flags first, so only library users met that.
enum AugmentationSettings {
    /// Throws unless the area fraction `scale` is within 0...1 and the aspect `ratio` positive and at
    /// most 1e6 (the ranges `RandomResizedCrop` and `RandomErasing` draw from).
    static func checkScaleAndRatio(_ scale: ClosedRange<Double>, _ ratio: ClosedRange<Double>,
                                   of augmentation: String) throws {
        func check(_ range: ClosedRange<Double>, _ field: String, within allowed: ClosedRange<Double>,
                   _ allowedText: String) throws {
            guard range.lowerBound.isFinite, range.upperBound.isFinite,
                  allowed.contains(range.lowerBound), allowed.contains(range.upperBound) else {
                throw DataError.invalidDataset("\(augmentation): \(field) must be \(allowedText), got "
                    + "\(range.lowerBound)...\(range.upperBound)")
            }
        }
        try check(scale, "scale", within: 0...1, "within 0...1")
        try check(ratio, "ratio", within: .leastNormalMagnitude...1e6, "positive, at most 1e6")
    }

    /// Throws unless `value` is finite and inside `allowed`.
    static func check(_ value: Double, _ field: String, of augmentation: String, within allowed: ClosedRange<Double>) throws {
        guard value.isFinite, allowed.contains(value) else {
            throw DataError.invalidDataset("\(augmentation): \(field) must be within \(allowed.lowerBound)..."
                + "\(allowed.upperBound), got \(value)")
        }
    }

    /// Throws unless `value` is inside `allowed`.
    static func check(_ value: Int, _ field: String, of augmentation: String, within allowed: ClosedRange<Int>) throws {
        guard allowed.contains(value) else {
            throw DataError.invalidDataset("\(augmentation): \(field) must be within \(allowed.lowerBound)..."
                + "\(allowed.upperBound), got \(value)")
        }
    }

    /// `x` rounded half to even as a side or offset in pixels, or nil when it is not finite or no
    /// image could have it (beyond 2⁴⁰).
    static func pixels(_ x: Double) -> Int? {
        let rounded = x.rounded(.toNearestOrEven)
        return rounded.isFinite && abs(rounded) <= 0x1p40 ? Int(rounded) : nil
    }
}

import ArgumentParser
import Foundation
import Training

/// The version written into run directories.
let finetuneVersion = "0.1.0"

/// An `EvaluationReport` as a JSON-ready dictionary with snake_case keys.
func reportDictionary(_ report: EvaluationReport) throws -> [String: Any] {
    let encoder = JSONEncoder()
    encoder.keyEncodingStrategy = .convertToSnakeCase
    encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity",
                                                                  negativeInfinity: "-Infinity", nan: "NaN")
    let data = try encoder.encode(report)
    return try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
}

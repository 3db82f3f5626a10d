import ArgumentParser
import Data
import Training
import Vision

// Library option types the command line parses directly: help lists their values and
// swift-argument-parser names the flag when a value is unknown.

extension BadImagePolicy: ExpressibleByArgument {}
extension OptimizerConfig.Kind: ExpressibleByArgument {}
extension RecipeName: ExpressibleByArgument {}
extension Augmentation: ExpressibleByArgument {}
extension FeatureCacheMode: ExpressibleByArgument {}
extension MonitorMetric: ExpressibleByArgument {}
extension GlobalPooling: ExpressibleByArgument {}
extension EXIFOrientation: ExpressibleByArgument {}

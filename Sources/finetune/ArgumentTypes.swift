import ArgumentParser
import Data

// Library option types the command line parses directly: help lists their values and
// swift-argument-parser names the flag when a value is unknown.

extension BadImagePolicy: ExpressibleByArgument {}

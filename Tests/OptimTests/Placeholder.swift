import XCTest
final class OptimTestsPlaceholder: XCTestCase { func testNothing() {} }

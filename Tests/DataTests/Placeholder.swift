import XCTest
final class DataTestsPlaceholder: XCTestCase { func testNothing() {} }

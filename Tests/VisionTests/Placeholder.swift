import XCTest
final class VisionPlaceholder: XCTestCase { func testNothing() {} }

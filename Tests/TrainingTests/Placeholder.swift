import XCTest
final class TrainingPlaceholder: XCTestCase { func testNothing() {} }

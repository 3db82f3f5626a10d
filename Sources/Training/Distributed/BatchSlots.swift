import Data

/// An epoch's batches as the trainer goes through them, from batch `from` on.
///
/// With `planned` (a data-parallel rank: the epoch's planned batch count) every batch number of the
/// plan comes in order, with its batch, or with nil where every file of it was skipped on this rank:
/// the ranks must all take part in every batch, or their collectives would pair with the wrong ones.
/// Without it (one process), only the batches the stream delivers.
struct BatchSlots {
    private let stream: any BatchStream
    private let planned: Int?
    private var number: Int
    private var waiting: Batch?
    private var ended = false

    init(_ stream: any BatchStream, planned: Int?, from start: Int) {
        self.stream = stream
        self.planned = planned
        number = start
    }

    /// The next batch number and its batch (nil: none reached this rank); nil at the epoch's end.
    mutating func next() throws -> (number: Int, batch: Batch?)? {
        guard let planned else { return try stream.nextBatch().map { ($0.number, $0) } }
        guard number < planned else { return nil }
        if waiting == nil && !ended {
            waiting = try stream.nextBatch()
            ended = waiting == nil
        }
        defer { number += 1 }
        guard let batch = waiting, batch.number == number else { return (number, nil) }
        waiting = nil
        return (number, batch)
    }
}

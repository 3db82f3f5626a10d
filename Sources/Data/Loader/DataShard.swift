/// One process's part of every epoch in data-parallel training, as PyTorch's `DistributedSampler`
/// with `set_epoch` does it: every rank computes the same epoch order (the loader's seed and the
/// epoch), and rank `r` of `count` takes the positions `r, r + count, r + 2·count, …` of it.
///
/// The remainder rule: with `padded` (training), the order is first extended by repeating its own
/// beginning until its length is a multiple of `count`, so every rank gets ⌈n / count⌉ samples and
/// the same number of batches (a few samples are seen twice per epoch, as `drop_last=False` does);
/// without it (evaluation), the first `n mod count` ranks get one sample more, and every sample is
/// seen exactly once. With batch size B on each rank, batch b of all ranks together holds exactly the
/// positions of batch b of a single process at batch size B·count.
public struct DataShard: Codable, Equatable, Sendable {
    /// This process's rank, 0..<count.
    public var rank: Int
    /// The number of processes sharing the data.
    public var count: Int
    /// Whether the order is padded to a multiple of `count` (see the remainder rule above).
    public var padded: Bool

    /// Rank `rank` of `count`; `padded` for training, not for evaluation. Precondition (a programming
    /// error, as an index out of range is): `count` ≥ 1 and `rank` in `0..<count`; `DataParallel`, the
    /// one maker of shards from outside input, checks both first.
    public init(rank: Int, count: Int, padded: Bool) {
        precondition(count >= 1 && (0..<count).contains(rank), "rank \(rank) outside a world of \(count)")
        self.rank = rank
        self.count = count
        self.padded = padded
    }

    /// This rank's part of `order`.
    public func select(_ order: [Int]) -> [Int] {
        guard count > 1, !order.isEmpty else { return order }
        var all = order
        if padded && order.count % count != 0 {
            let extra = count - order.count % count
            all += (0..<extra).map { order[$0 % order.count] }
        }
        return stride(from: rank, to: all.count, by: count).map { all[$0] }
    }

    /// How many of `total` samples this rank gets.
    public func size(of total: Int) -> Int {
        guard count > 1, total > 0 else { return total }
        if padded { return (total + count - 1) / count }
        return total / count + (rank < total % count ? 1 : 0)
    }
}

import NN
import Torch

/// Grad-CAM (Selvaraju et al., 2017) at a model's last convolutional stage (`featureLayer`): where in
/// the image the evidence for a class lies.
///
/// With A = the maps `forwardFeatures` returns ([1, K, h, w]) and y = the class's logit computed from
/// them, each map's weight is the spatial mean of ∂y/∂A_k, and the map is ReLU(Σ_k α_k A_k). This is
/// what a PyTorch forward hook and a tensor hook on the same layer compute (`pytorch-grad-cam`'s
/// `GradCAM`), checked against one in `Tests/VisionTests/GradCAMTests.swift`. For a binary head (one
/// output z) the score is z for class 1 and −z for class 0.
public struct GradCAM {
    /// The layer whose maps were used (`ImageClassifier.featureLayer`, e.g. `layer4`, `features.18`).
    public var layer: String
    /// The class explained.
    public var classIndex: Int
    /// The model's logits for the image, [outputs].
    public var logits: Tensor
    /// ReLU(Σ_k α_k A_k) at the layer's resolution, [h, w], float32.
    public var map: Tensor
    /// `map` resized to the input's size (bilinear, `align_corners=False`) and scaled to [0, 1] by its
    /// minimum and maximum (all zeros when the map is constant), [H, W].
    public var heatmap: Tensor

    /// Grad-CAM of one preprocessed image `input` ([1, 3, H, W] or [3, H, W]) for `classIndex`
    /// (nil: the predicted class). The model runs in eval mode (its mode is restored after); no
    /// parameter's gradient is changed.
    public static func compute(_ model: ImageClassifier, input: Tensor, classIndex: Int? = nil) throws -> GradCAM {
        guard model.options.includeTop else {
            throw NNError.invalidArgument("\(model.architecture) was built without a top: Grad-CAM needs class logits")
        }
        let x = input.rank == 3 ? try input.unsqueeze(dim: 0) : input
        guard x.rank == 4, x.shape[0] == 1 else {
            throw NNError.invalidArgument("Grad-CAM takes one image [1, 3, H, W], got \(input.shape)")
        }
        let wasTraining = model.isTraining
        _ = model.eval()
        defer { _ = model.train(wasTraining) }
        // The maps as a leaf that wants its gradient; the head's parameters are detached for the backward
        // pass by running it with their gradients switched off, so their `.grad` stays as it was.
        let maps = try withNoGrad { try model.forwardFeatures(model.laidOut(x)) }
        let leaf = try maps.detach().to(.float32).setRequiresGrad(true)
        let saved = model.parameters().map { ($0, $0.requiresGrad) }
        for (p, _) in saved where p.requiresGrad { try p.setRequiresGrad(false) }
        defer { for (p, flag) in saved where flag { _ = try? p.setRequiresGrad(true) } }
        return try withGradEnabled(true) {
            let logits = try model.classify(model.embedding(fromFeatures: leaf)).select(dim: 0, index: 0)
            let outputs = logits.shape[0]
            let target: Int
            let score: Tensor
            if outputs == 1 {
                let z = try logits.select(dim: 0, index: 0)
                target = try classIndex ?? (z.item() > 0 ? 1 : 0)
                guard target == 0 || target == 1 else {
                    throw NNError.invalidArgument("class \(target) is out of range for a binary head")
                }
                score = target == 1 ? z : try 0 - z
            } else {
                target = try classIndex ?? logits.argmax(dim: 0).itemInt()
                guard (0..<outputs).contains(target) else {
                    throw NNError.invalidArgument("class \(target) is out of range for \(outputs) outputs")
                }
                score = try logits.select(dim: 0, index: target)
            }
            try score.backward()
            guard let gradient = leaf.grad else { throw NNError.invalidArgument("no gradient reached \(model.featureLayer)") }
            return try withNoGrad {
                let weights = try gradient.mean(dims: [2, 3], keepDim: true)
                let map = try (weights * leaf.detach()).sum(dim: 1).relu().contiguous()   // [1, h, w]
                let size = (x.shape[2], x.shape[3])
                let up = try Functional.interpolate(map.unsqueeze(dim: 1), size: size, mode: .bilinear,
                                                    alignCorners: false).reshape([size.0, size.1])
                let lo = try up.min().item(), hi = try up.max().item()
                let heatmap = hi > lo ? try (up - lo) / (hi - lo) : try up * 0
                return GradCAM(layer: model.featureLayer, classIndex: target, logits: try logits.detach(),
                               map: try map.reshape([map.shape[1], map.shape[2]]), heatmap: try heatmap.contiguous())
            }
        }
    }
}

"""ReLU6 for bf16 autocast training on LibTorch 1.13, shared by the PyTorch peers of the benchmarks
(model_bench_pytorch.py, distributed_pytorch.py): it clamps bfloat16 tensors, as finetune's ReLU6
does."""
import torch
import torch.nn.functional as F


class ClampingReLU6(torch.nn.Module):
    """ReLU6 that clamps bfloat16 tensors, as finetune's does: LibTorch 1.13's CPU hardtanh backward
    (what nn.ReLU6 differentiates through) has no bf16 kernel, so bf16 autocast training of
    MobileNetV2 fails with stock torchvision ("hardshrink_backward_cpu" not implemented for 'BFloat16')."""

    def __init__(self, inplace):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        if x.dtype == torch.bfloat16:
            return x.clamp_(0, 6) if self.inplace else x.clamp(0, 6)
        return F.relu6(x, inplace=self.inplace)


def clamp_relu6(model):
    """Replaces every nn.ReLU6 by ClampingReLU6; returns how many were replaced."""
    count = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.ReLU6):
                setattr(module, name, ClampingReLU6(child.inplace))
                count += 1
    return count

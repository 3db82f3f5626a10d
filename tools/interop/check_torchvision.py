#!/usr/bin/env python3
"""Judge of a run's model.safetensors: torchvision's own model of the same architecture, with the head
replaced the same way, loads it with load_state_dict(strict=True) and gives the same logits.

Usage: check_torchvision.py MODEL.safetensors CONFIG.json INPUTS.safetensors EXPECTED.safetensors [TOLERANCE]
  (run with .venv-interop/bin/python; torchvision is Debian's python3-torchvision, seen through the venv)

CONFIG.json is the run's config.json: its architecture and head (`head.spec`: outputs, batchNorm,
dropout, hiddenUnits, as `HeadSpec.makeLayers` builds them). INPUTS holds "input" [N, 3, H, W],
EXPECTED holds "output", finetune's logits for them. Prints one JSON line; exits 1 on any mismatch.
"""
import json
import sys

import torch
import torchvision
from safetensors.torch import load_file

# Where torchvision keeps each architecture's final Linear (finetune's `headPath`).
HEAD_PATHS = {"mobilenet_v2": "classifier.1", "alexnet": "classifier.6", "googlenet": "fc", "inception_v3": "fc"}
for name in ["vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]:
    HEAD_PATHS[name] = "classifier.6"
for name in ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]:
    HEAD_PATHS[name] = "fc"
for name in ["efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3"]:
    HEAD_PATHS[name] = "classifier.1"


def custom_head(in_features, spec):
    """The nn.Sequential `HeadSpec.makeLayers` builds: [BatchNorm1d] → ([Dropout] → Linear → ReLU)* → [Dropout] → Linear."""
    layers = []
    if spec.get("batchNorm"):
        layers.append(torch.nn.BatchNorm1d(in_features))
    width = in_features
    dropout = spec.get("dropout")
    for units in spec.get("hiddenUnits", []):
        if dropout is not None:
            layers.append(torch.nn.Dropout(dropout))
        layers += [torch.nn.Linear(width, units), torch.nn.ReLU()]
        width = units
    if dropout is not None:
        layers.append(torch.nn.Dropout(dropout))
    layers.append(torch.nn.Linear(width, spec["outputs"]))
    return torch.nn.Sequential(*layers)


def set_module(model, path, module):
    parent = model
    parts = path.split(".")
    for part in parts[:-1]:
        parent = parent[int(part)] if part.isdigit() else getattr(parent, part)
    if parts[-1].isdigit():
        parent[int(parts[-1])] = module
    else:
        setattr(parent, parts[-1], module)


def main():
    if len(sys.argv) not in (5, 6):
        print(__doc__, file=sys.stderr)
        return 2
    weights_path, config_path, inputs_path, expected_path = sys.argv[1:5]
    tolerance = float(sys.argv[5]) if len(sys.argv) == 6 else 1e-4
    with open(config_path) as f:
        config = json.load(f)
    arch = config["architecture"]
    head = config["head"]
    spec = head.get("spec") or {"outputs": head["numClasses"]}
    outputs = spec["outputs"]
    kwargs = {"aux_logits": False, "init_weights": False} if arch in ("googlenet", "inception_v3") else {}
    model = getattr(torchvision.models, arch)(weights=None, num_classes=outputs, **kwargs)
    plain = not spec.get("batchNorm") and spec.get("dropout") is None and not spec.get("hiddenUnits")
    if not plain:
        path = HEAD_PATHS[arch]
        linear = model.get_submodule(path)
        set_module(model, path, custom_head(linear.in_features, spec))
    if spec.get("pooling", "avg") != "avg":
        print(json.dumps({"ok": False, "problems": ["max head pooling has no torchvision module to replace"]}))
        return 1
    state = load_file(weights_path)
    problems = []
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        problems.append(f"load_state_dict(strict=True) failed: {error}")
    model.eval()
    inputs = load_file(inputs_path)["input"]
    expected = load_file(expected_path)["output"]
    with torch.no_grad():
        got = model(inputs)
    scale = float(expected.abs().max())
    max_diff = float((got - expected).abs().max())
    relative = max_diff / scale if scale > 0 else max_diff
    if got.shape != expected.shape:
        problems.append(f"logits shape {tuple(got.shape)}, finetune's {tuple(expected.shape)}")
    elif not relative <= tolerance:
        problems.append(f"max |torchvision - finetune| = {max_diff:.3g} is {relative:.3g} of the scale {scale:.3g}")
    same_top1 = int((got.argmax(1) == expected.argmax(1)).sum()) if outputs > 1 else int(((got > 0) == (expected > 0)).sum())
    print(json.dumps({"architecture": arch, "head": spec, "keys": len(state), "max_abs_diff": max_diff,
                      "relative": relative, "top1_equal": same_top1, "images": len(inputs),
                      "problems": problems, "ok": not problems}))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())

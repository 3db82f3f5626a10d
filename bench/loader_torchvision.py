"""torchvision + PIL + DataLoader doing what `finetune bench loader` does, for bench/compare_data_loader.

Reads a class-folder dataset with ImageFolder, applies RandomResizedCrop + horizontal flip (train) or
Resize + CenterCrop (eval), ToTensor and Normalize, batches with a DataLoader using the same number of
worker processes, and prints one JSON line with images/s (first batch excluded as warm-up).
"""
import argparse
import json
import time

import torch
import torchvision.transforms as T
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

ap = argparse.ArgumentParser()
ap.add_argument("--data", required=True)
ap.add_argument("--workers", type=int, default=2)
ap.add_argument("--batch-size", type=int, default=32)
ap.add_argument("--size", type=int, default=224)
ap.add_argument("--augment", choices=["train", "eval"], default="train")
args = ap.parse_args()

torch.set_num_threads(1)
normalize = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
if args.augment == "train":
    transform = T.Compose([T.RandomResizedCrop(args.size), T.RandomHorizontalFlip(), T.ToTensor(), normalize])
else:
    transform = T.Compose([T.Resize(args.size * 8 // 7), T.CenterCrop(args.size), T.ToTensor(), normalize])
loader = DataLoader(ImageFolder(args.data, transform=transform), batch_size=args.batch_size, shuffle=True,
                    num_workers=args.workers, persistent_workers=False)
images, start = 0, None
for x, y in loader:
    if start is None:
        start = time.perf_counter()
        continue
    images += x.shape[0]
seconds = time.perf_counter() - start
print(json.dumps({"images": images, "seconds": seconds, "images_per_second": images / seconds,
                  "workers": args.workers, "torch": torch.__version__}))

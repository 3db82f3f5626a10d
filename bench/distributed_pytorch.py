"""The PyTorch DDP peer of bench/compare_distributed: torchvision's MobileNetV2 (random init), full
fine-tune with Adam, DistributedDataParallel over Gloo, N processes x 1 thread, DistributedSampler,
ImageFolder + DataLoader (1 worker per rank). Prints one JSON line: the per-epoch seconds of rank 0.
--bf16 runs forward and loss under torch.autocast("cpu", torch.bfloat16), with ReLU6 clamping bf16
tensors as finetune's does (relu6_bf16.clamp_relu6; LibTorch 1.13 cannot differentiate
nn.ReLU6 in bf16).
    python3 bench/distributed_pytorch.py DATA --nproc 2 --batch-size 16 --epochs 3 --input-size 224 [--bf16]
"""
import argparse, json, os, sys, time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torchvision
from torchvision import transforms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from relu6_bf16 import clamp_relu6  # noqa: E402


def worker(rank, args):
    torch.set_num_threads(args.threads)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(args.port))
    dist.init_process_group("gloo", rank=rank, world_size=args.nproc)
    size = args.input_size
    transform = transforms.Compose([transforms.Resize(size * 256 // 224), transforms.CenterCrop(size),
                                    transforms.ToTensor(),
                                    transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    data = torchvision.datasets.ImageFolder(args.data, transform=transform)
    sampler = torch.utils.data.distributed.DistributedSampler(data, shuffle=True, seed=0)
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch_size, sampler=sampler, num_workers=args.workers)
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(num_classes=len(data.classes))
    if args.bf16:
        clamp_relu6(model)
    model = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    seconds = []
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        model.train()
        dist.barrier()
        start = time.perf_counter()
        for images, labels in loader:
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                loss = loss_fn(model(images), labels)
            loss.backward()
            optimizer.step()
        dist.barrier()
        seconds.append(time.perf_counter() - start)
    if rank == 0:
        print(json.dumps({"epoch_seconds": seconds, "images": len(data)}), flush=True)
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--port", type=int, default=29655)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (finetune's --precision bf16)")
    args = p.parse_args()
    mp.spawn(worker, args=(args,), nprocs=args.nproc, join=True)


if __name__ == "__main__":
    sys.exit(main())

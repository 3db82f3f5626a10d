"""PyTorch + torchvision doing what `finetune bench --json` does, for bench/compare_pytorch.

Same workload, same measurement, same JSON: torchvision models with random weights, random inputs
and labels, cross-entropy, SGD(lr=0.01, momentum=0.9). Each model runs --warmup untimed steps and
--iterations timed ones, written as a tutorial writes a training step:

    out = model(x); loss = F.cross_entropy(out, y)          # forward_ms
    loss.backward()                                        # backward_ms
    optimizer.step(); optimizer.zero_grad(set_to_none=True) # optimizer_ms

then eval() + torch.inference_mode() forwards (inference_ms). Medians are reported. --dtype bf16 runs
the forward passes under torch.autocast("cpu", torch.bfloat16) and, like finetune, makes ReLU6 clamp
bf16 tensors (LibTorch 1.13 cannot differentiate nn.ReLU6 in bf16; --stock-relu6 keeps it);
--channels-last converts the model and the input with memory_format=torch.channels_last. --device cuda
runs on the GPU (as `finetune bench --device cuda`), waiting for the GPU (torch.cuda.synchronize) at
each timer read; bf16 there is torch.autocast("cuda", torch.bfloat16). Prints one JSON object.
"""
import argparse
import contextlib
import json
import statistics
import time

import torch
import torch.nn.functional as F
import torchvision

from relu6_bf16 import clamp_relu6

ap = argparse.ArgumentParser()
ap.add_argument("--models", default="mobilenet_v2,resnet50")
ap.add_argument("--batch-size", type=int, default=16)
ap.add_argument("--dtype", choices=["fp32", "bf16", "both"], default="fp32")
ap.add_argument("--channels-last", action="store_true")
ap.add_argument("--iterations", type=int, default=10)
ap.add_argument("--warmup", type=int, default=2)
ap.add_argument("--input-size", type=int, default=None)
ap.add_argument("--threads", type=int, default=None,
                help="torch.set_num_threads (default: leave PyTorch's own default)")
ap.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N)")
ap.add_argument("--no-inference", action="store_true")
ap.add_argument("--stock-relu6", action="store_true",
                help="keep torchvision's nn.ReLU6 under bf16 (training MobileNetV2 then fails on LibTorch 1.13)")
args = ap.parse_args()

if args.threads:
    torch.set_num_threads(args.threads)
device = torch.device(args.device)


def sync():
    """Waits for queued GPU work, so a timer read after it measures the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(name):
    ctor = getattr(torchvision.models, name)
    if name in ("googlenet", "inception_v3"):  # as finetune's random-weights variants: no aux heads
        return ctor(weights=None, aux_logits=False, init_weights=True), 299 if name == "inception_v3" else 224
    return ctor(weights=None), 224


def libtorch_path():
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                if "libtorch_cpu" in line:
                    return line.split()[-1]
    except OSError:
        pass
    return None


def measure(name, bf16):
    model, side = build(name)
    side = args.input_size or side
    patched = clamp_relu6(model) if bf16 and not args.stock_relu6 else 0
    model = model.to(device)
    x = torch.randn(args.batch_size, 3, side, side, device=device)
    y = torch.randint(0, 1000, (args.batch_size,), device=device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    cast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    result = {"model": name, "dtype": "bf16" if bf16 else "fp32", "channels_last": args.channels_last,
              "input_size": side, "forward_ms": None, "backward_ms": None, "optimizer_ms": None, "total_ms": None,
              "step_ms": None, "images_per_second": None, "inference_ms": None, "inference_images_per_second": None}
    errors = []
    try:
        model.train()
        fwd, bwd, opt = [], [], []
        for i in range(args.warmup + args.iterations):
            sync()
            t0 = time.perf_counter()
            with cast():
                out = model(x)
                loss = F.cross_entropy(out.float(), y)
            sync()
            t1 = time.perf_counter()
            loss.backward()
            sync()
            t2 = time.perf_counter()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            sync()
            t3 = time.perf_counter()
            if i >= args.warmup:
                fwd.append((t1 - t0) * 1e3)
                bwd.append((t2 - t1) * 1e3)
                opt.append((t3 - t2) * 1e3)
        f, b, o = statistics.median(fwd), statistics.median(bwd), statistics.median(opt)
        result.update(forward_ms=f, backward_ms=b, optimizer_ms=o, total_ms=f + b, step_ms=f + b + o,
                      images_per_second=args.batch_size * 1e3 / (f + b + o))
    except RuntimeError as e:  # e.g. an operator this libtorch lacks for bf16
        optimizer.zero_grad(set_to_none=True)
        errors.append(f"training step: {e}")
    if not args.no_inference:
        try:
            model.eval()
            times = []
            with torch.inference_mode():
                for i in range(args.warmup + args.iterations):
                    sync()
                    t0 = time.perf_counter()
                    with cast():
                        model(x)
                    sync()
                    if i >= args.warmup:
                        times.append((time.perf_counter() - t0) * 1e3)
            m = statistics.median(times)
            result["inference_ms"] = m
            result["inference_images_per_second"] = args.batch_size * 1e3 / m
        except RuntimeError as e:
            errors.append(f"inference: {e}")
    if patched:
        result["relu6_clamp"] = True
    if errors:
        result["error"] = "; ".join(errors)
    return result


dtypes = ["fp32", "bf16"] if args.dtype == "both" else [args.dtype]
results = [measure(name, dt == "bf16") for name in args.models.split(",") for dt in dtypes]
print(json.dumps({"batch_size": args.batch_size, "device": args.device, "threads": torch.get_num_threads(),
                  "libtorch": torch.__version__, "libtorch_path": libtorch_path(), "iterations": args.iterations,
                  "warmup": args.warmup, "results": results}))

#!/usr/bin/env python3
"""Times onnxruntime's CPU inference of an ONNX file: warm-up runs, then the median of timed runs.

Usage: onnxruntime_infer.py MODEL.onnx --batch-size N [--iterations 10] [--warmup 2] [--threads 2]
Prints one JSON object: {"inference_ms": median ms per batch, "runs_ms": [...], "onnxruntime": version}.
Random input of the model's own [batch, 3, H, W] shape; the session as a user makes it (all graph
optimisations, CPU provider), with intra-op threads fixed as finetune's are.
"""
import argparse
import json
import statistics
import time

import numpy as np
import onnxruntime as ort

parser = argparse.ArgumentParser()
parser.add_argument("model")
parser.add_argument("--batch-size", type=int, required=True)
parser.add_argument("--iterations", type=int, default=10)
parser.add_argument("--warmup", type=int, default=2)
parser.add_argument("--threads", type=int, default=2)
args = parser.parse_args()

options = ort.SessionOptions()
options.intra_op_num_threads = args.threads
options.inter_op_num_threads = 1
session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
spec = session.get_inputs()[0]
shape = [args.batch_size] + [int(d) for d in spec.shape[1:]]
x = np.random.RandomState(0).rand(*shape).astype(np.float32)
for _ in range(args.warmup):
    session.run(None, {spec.name: x})
runs = []
for _ in range(args.iterations):
    start = time.perf_counter()
    session.run(None, {spec.name: x})
    runs.append((time.perf_counter() - start) * 1000)
print(json.dumps({"inference_ms": statistics.median(runs), "runs_ms": runs, "onnxruntime": ort.__version__}))

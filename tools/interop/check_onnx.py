#!/usr/bin/env python3
"""Judge of finetune's ONNX exports: onnx's own checker and onnxruntime, against finetune's outputs.

Usage: check_onnx.py MANIFEST.json   (run with .venv-interop/bin/python; the interop tests call it)
       check_onnx.py -               (cases as JSON lines on standard input, judged as they arrive, so the
                                      caller can export the next model meanwhile; an empty line ends)

The manifest is a JSON list of cases:
  {"name": str, "onnx": path, "inputs": safetensors path (key "input": [N, 3, H, W] float32),
   "expected": safetensors path (key "output": finetune's outputs for those inputs),
   "tolerance": relative tolerance (max |ort - ours| <= tolerance * max |ours|),
   "batches": [1, 7], "classes": int, "binary": bool, "output": "logits" | "probabilities",
   "remove": bool (delete the case's files once judged; optional)}

For each case it checks, and reports as one JSON line:
  - onnx.checker.check_model(full_check=True) passes (with shape inference);
  - metadata_props has the preprocessing (mean, std, resize, crop, interpolation, value range),
    the class names (a JSON list of `classes` names), the architecture and finetune's version;
  - the graph has one input [batch, 3, H, W] float32 whose batch dimension is symbolic;
  - onnxruntime's outputs, run at every batch size in `batches` (the images split into chunks of that
    size, the last chunk possibly smaller), have the same top-1 as finetune's on every image
    (for a binary head: the same side of 0 for logits, of 0.5 for probabilities) and are within
    the tolerance of their scale.
Exits 1 if any case fails, 2 on a usage error.
"""
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from safetensors.numpy import load_file

REQUIRED_METADATA = [
    "architecture", "class_names", "finetune_version", "preprocessing.mean", "preprocessing.std",
    "preprocessing.resize", "preprocessing.crop", "preprocessing.interpolation", "preprocessing.value_range",
]


def top1(outputs, binary, kind):
    if binary:
        return (outputs[:, 0] > (0.5 if kind == "probabilities" else 0.0)).astype(np.int64)
    return outputs.argmax(axis=1)


def check_case(case):
    problems = []
    # The checker reads the file itself (no Python copy of a model of hundreds of MB).
    try:
        onnx.checker.check_model(case["onnx"], full_check=True)
    except Exception as error:  # the checker's own message is the finding
        problems.append(f"onnx.checker.check_model(full_check=True) failed: {error}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(case["onnx"], options, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta()
    metadata = meta.custom_metadata_map
    missing = [k for k in REQUIRED_METADATA if k not in metadata]
    if missing:
        problems.append(f"metadata_props lacks {missing}")
    else:
        names = json.loads(metadata["class_names"])
        if len(names) != case["classes"]:
            problems.append(f"class_names has {len(names)} names, expected {case['classes']}")
        if len(json.loads(metadata["preprocessing.mean"])) != 3 or len(json.loads(metadata["preprocessing.std"])) != 3:
            problems.append("preprocessing mean/std are not 3 values each")
    graph_input = session.get_inputs()[0]
    shape = graph_input.shape
    if len(shape) != 4 or not isinstance(shape[0], str) or shape[1] != 3:
        problems.append(f"input shape is {shape}, expected [batch, 3, H, W] with a symbolic batch")
    if graph_input.type != "tensor(float)":
        problems.append(f"input is {graph_input.type}, not float32")

    inputs = load_file(case["inputs"])["input"]
    expected = load_file(case["expected"])["output"]
    input_name = graph_input.name
    scale = float(np.abs(expected).max())
    # A graph whose output does not depend on the image would match trivially: the test must be able to fail.
    if len(inputs) > 1 and float(expected.std(axis=0).max()) <= 1e-6 * max(scale, 1e-30):
        problems.append("finetune's outputs are the same for every image: the comparison would prove nothing")
    report = {"name": case["name"], "scale": scale, "batches": {}}
    for batch in case["batches"]:
        chunks = [session.run(None, {input_name: inputs[i:i + batch]})[0] for i in range(0, len(inputs), batch)]
        got = np.concatenate(chunks, axis=0)
        if got.shape != expected.shape:
            problems.append(f"batch {batch}: onnxruntime output shape {got.shape}, finetune's {expected.shape}")
            continue
        max_diff = float(np.abs(got - expected).max())
        relative = max_diff / scale if scale > 0 else max_diff
        same_top1 = int((top1(got, case["binary"], case["output"]) == top1(expected, case["binary"], case["output"])).sum())
        report["batches"][str(batch)] = {"max_abs_diff": max_diff, "relative": relative,
                                         "top1_equal": same_top1, "images": len(inputs)}
        if same_top1 != len(inputs):
            problems.append(f"batch {batch}: top-1 equal on {same_top1}/{len(inputs)} images")
        if not relative <= case["tolerance"]:
            problems.append(f"batch {batch}: max |ort - finetune| = {max_diff:.3g} is {relative:.3g} of the scale "
                            f"{scale:.3g}, over the tolerance {case['tolerance']}")
    report["problems"] = problems
    report["ok"] = not problems
    return report


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    if sys.argv[1] == "-":
        cases = (json.loads(line) for line in iter(sys.stdin.readline, "") if line.strip())
    else:
        with open(sys.argv[1]) as f:
            cases = json.load(f)
    failed = count = 0
    for case in cases:
        count += 1
        try:
            report = check_case(case)
        except Exception as error:
            report = {"name": case.get("name"), "ok": False, "problems": [f"{type(error).__name__}: {error}"]}
        if case.get("remove"):
            for key in ("onnx", "inputs", "expected"):
                if os.path.exists(case[key]):
                    os.remove(case[key])
        failed += 0 if report["ok"] else 1
        print(json.dumps(report), flush=True)
    print(json.dumps({"cases": count, "failed": failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

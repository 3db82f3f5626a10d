#!/usr/bin/env python3
"""Judge of a run's TensorBoard event files: TensorBoard's own EventAccumulator reads them, and their
epoch scalars equal history.csv.

Usage: check_history_tensorboard.py RUN_DIR   (run with .venv-interop/bin/python)

history.csv has `epoch,step,<metrics>`; each metric of each row must be in the event files at that
step: `val_<m>` as `epoch_<m>` in the `validation` run, `lr` as `epoch_learning_rate` and every other
metric `<m>` as `epoch_<m>` in the `train` run (Keras' naming, as finetune's TensorBoardCallback
writes them). Values are float32 in TensorBoard, so they agree to float32's precision. Prints one
JSON line; exits 1 on any mismatch.
"""
import csv
import json
import math
import os
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    run = sys.argv[1]
    logdir = os.path.join(run, "tensorboard")
    accumulators = {}
    for name in ("train", "validation"):
        folder = os.path.join(logdir, name)
        if os.path.isdir(folder):
            accumulator = EventAccumulator(folder, size_guidance={"scalars": 0})
            accumulator.Reload()
            accumulators[name] = accumulator
    problems, compared = [], 0
    with open(os.path.join(run, "history.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        problems.append("history.csv has no rows")
    for row in rows:
        step = int(row["step"])
        for column, text in row.items():
            if column in ("epoch", "step") or text == "":
                continue
            if column.startswith("val_"):
                where, tag = "validation", "epoch_" + column[4:]
            elif column == "lr":
                where, tag = "train", "epoch_learning_rate"
            else:
                where, tag = "train", "epoch_" + column
            accumulator = accumulators.get(where)
            if accumulator is None or tag not in accumulator.Tags()["scalars"]:
                problems.append(f"{column}: no scalar {tag} in the {where} run")
                continue
            values = {e.step: e.value for e in accumulator.Scalars(tag)}
            if step not in values:
                problems.append(f"{column}: {tag} has no value at step {step}")
                continue
            expected = float(text)
            if not math.isclose(values[step], expected, rel_tol=1e-6, abs_tol=1e-7):
                problems.append(f"{column} at step {step}: TensorBoard {values[step]!r}, history.csv {expected!r}")
            compared += 1
    tags = {name: sorted(a.Tags()["scalars"]) for name, a in accumulators.items()}
    print(json.dumps({"rows": len(rows), "compared": compared, "tags": tags, "problems": problems,
                      "ok": not problems and compared > 0}))
    return 0 if not problems and compared > 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Full-network training step in Keras (TensorFlow backend), measured the way a user would:
`keras.applications.<Model>(weights=None)` with its 1000-class top, compiled with SGD (momentum 0.9)
and sparse categorical cross-entropy, then `train_on_batch` on one random batch at 224 px.
The first steps (tracing, oneDNN primitive creation) are warm-up and excluded; the median of the
rest is reported. With --inference-batch-size N (> 0), the same model's inference is timed too:
`predict_on_batch` on a random batch of N, the median of --steps calls after --warmup.

    python bench/keras_step.py [--models mobilenet_v2,resnet50] [--batch-size 16] [--steps 10] [--warmup 3]
                               [--inference-batch-size 32]

Prints one JSON object: {"results": [{"model", "step_ms", "images_per_second", "steps_ms", ...}], ...}.
"""
import argparse
import json
import statistics
import sys
import time

import keras
import numpy as np
import tensorflow as tf

MODELS = {
    "mobilenet_v2": lambda: keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3)),
    "resnet50": lambda: keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3)),
}


def time_inference(model, batch_size, steps, warmup):
    """Median ms of `predict_on_batch` (inference: BatchNorm uses its moving statistics)."""
    rng = np.random.default_rng(1)
    x = tf.constant(rng.standard_normal((batch_size, 224, 224, 3), dtype=np.float32))
    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        np.asarray(model.predict_on_batch(x))
        if i >= warmup:
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), times


def bench(name, batch_size, steps, warmup, inference_batch_size=0):
    keras.utils.set_random_seed(0)
    t0 = time.time()
    model = MODELS[name]()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy())
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((batch_size, 224, 224, 3), dtype=np.float32))
    y = tf.constant(rng.integers(0, 1000, size=(batch_size,)), dtype=tf.int64)
    build_seconds = time.time() - t0
    warm = []
    for _ in range(warmup):
        t = time.perf_counter()
        model.train_on_batch(x, y)
        warm.append((time.perf_counter() - t) * 1000)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        loss = model.train_on_batch(x, y)
        float(np.asarray(loss).ravel()[0])  # the step has finished
        times.append((time.perf_counter() - t) * 1000)
    ms = statistics.median(times)
    result = {"model": name, "framework": "keras", "dtype": "float32", "channels_last": True,
              "batch_size": batch_size, "step_ms": ms, "images_per_second": batch_size * 1000 / ms,
              "steps_ms": [round(t, 1) for t in times], "warmup_ms": [round(t, 1) for t in warm],
              "build_seconds": build_seconds, "parameters": int(model.count_params())}
    if inference_batch_size > 0:
        inference_ms, runs = time_inference(model, inference_batch_size, steps, warmup)
        result.update({"inference_batch_size": inference_batch_size, "inference_ms": inference_ms,
                       "inference_images_per_second": inference_batch_size * 1000 / inference_ms,
                       "inference_runs_ms": [round(t, 1) for t in runs]})
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="mobilenet_v2,resnet50")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--inference-batch-size", type=int, default=0, help="also time inference at this batch size")
    a = p.parse_args()
    names = [m for m in a.models.split(",") if m]
    for m in names:
        if m not in MODELS:
            p.error(f"unknown model {m!r}: expected one of {', '.join(MODELS)}")
    results = [bench(m, a.batch_size, a.steps, a.warmup, a.inference_batch_size) for m in names]
    print(json.dumps({"results": results, "keras_version": keras.__version__,
                      "tensorflow_version": tf.__version__, "backend": keras.backend.backend()},
                     sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())

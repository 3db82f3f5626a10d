"""The seeds' frozen-base job in Keras, written the way the Keras / TensorFlow transfer-learning
tutorials write it: a class-folder dataset read with `keras.utils.image_dataset_from_directory`
(PNG decode, grey -> RGB, bilinear resize to 224), `prefetch(AUTOTUNE)`, MobileNetV2 without its
top and frozen (`base.trainable = False`, called with `training=False`), global average pooling, a
Dense(10) head, Adam + sparse categorical cross-entropy, `fit` for 5 epochs and `evaluate` on test/.

    python bench/keras_frozen.py --data DIR [--epochs 5] [--batch-size 32] [--no-autotune]
                                 [--weights none|imagenet] [--result FILE]

DIR holds train/<class>/*.png and test/<class>/*.png (bench/compare_keras builds it). There is no
internet here, so the base gets random weights (`weights=None`) unless Keras' cache already holds
the ImageNet file: the time per step is the same, the accuracy is not (random features).
--no-autotune switches tf.data autotuning off (`options.autotune.enabled = False`), which the
tutorials do not do; it is reported as a variant, not as the baseline.

Writes one JSON object (to --result, or standard output): seconds for the phases, the accuracies,
and the versions. The end-to-end time of the whole process is measured by the caller.
"""
import argparse
import json
import os
import sys
import time

T0 = time.time()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

T_IMPORT = time.time()


def load(directory, batch_size, shuffle, autotune):
    ds = keras.utils.image_dataset_from_directory(
        directory, labels="inferred", label_mode="int", color_mode="rgb",
        batch_size=batch_size, image_size=(224, 224), shuffle=shuffle, seed=0)
    class_names = ds.class_names
    ds = ds.prefetch(tf.data.AUTOTUNE)
    if not autotune:
        options = tf.data.Options()
        options.autotune.enabled = False
        ds = ds.with_options(options)
    return ds, class_names


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--weights", choices=["none", "imagenet"], default="none")
    p.add_argument("--no-autotune", action="store_true")
    p.add_argument("--verbose", type=int, default=2, help="Keras fit/evaluate verbosity (2: a line per epoch)")
    p.add_argument("--result", help="write the JSON result here instead of standard output")
    a = p.parse_args()

    train, class_names = load(os.path.join(a.data, "train"), a.batch_size, True, not a.no_autotune)
    test, _ = load(os.path.join(a.data, "test"), a.batch_size, False, not a.no_autotune)
    num_classes = len(class_names)
    t_data = time.time()

    base = keras.applications.MobileNetV2(
        input_shape=(224, 224, 3), include_top=False,
        weights="imagenet" if a.weights == "imagenet" else None)
    base.trainable = False
    inputs = keras.Input(shape=(224, 224, 3))
    x = keras.applications.mobilenet_v2.preprocess_input(inputs)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes)(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    t_model = time.time()

    history = model.fit(train, epochs=a.epochs, verbose=a.verbose)
    t_fit = time.time()
    test_loss, test_accuracy = model.evaluate(test, verbose=a.verbose)
    t_eval = time.time()

    result = {
        "framework": "keras", "keras_version": keras.__version__, "tensorflow_version": tf.__version__,
        "backend": keras.backend.backend(), "weights": a.weights, "autotune": not a.no_autotune,
        "epochs": a.epochs, "batch_size": a.batch_size, "num_classes": num_classes,
        "train_accuracy": float(history.history["accuracy"][-1]),
        "test_accuracy": float(test_accuracy), "test_loss": float(test_loss),
        "import_seconds": T_IMPORT - T0, "data_seconds": t_data - T_IMPORT, "model_seconds": t_model - t_data,
        "fit_seconds": t_fit - t_model, "evaluate_seconds": t_eval - t_fit,
        "fit_evaluate_seconds": t_eval - t_model, "python_seconds": t_eval - T0,
        "threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                    "inter_op": tf.config.threading.get_inter_op_parallelism_threads()},
    }
    text = json.dumps(result, sort_keys=True)
    if a.result:
        with open(a.result, "w") as f:
            f.write(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    sys.exit(main())

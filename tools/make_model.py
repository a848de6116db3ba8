"""Dev-only: train the project's small shape classifier and write it as TFLite.

Trains on synthetic frames from hardware_sim/camera.py (labels known by
construction), then writes

    models/shapes_float.tflite   float32 in/out, input = RGB / 255
    models/shapes_int8.tflite    int8 in/out (full integer quantisation)
                                 (both with TFLite metadata: normalisation mean 0,
                                 std 255, and labels.txt embedded; the detector too)
    models/labels.txt            one label per line, in output order
    models/shapes_detect.tflite  (--detect) SSD-style outputs (boxes, classes,
                                 scores, count; one box) for the same shapes,
    models/detect_labels.txt     int8 inside, float in/out; labels circle,
                                 square, triangle
    models/bench_int8.tflite     (--bench) an untrained, Pi-sized load for
                                 benchmarks/bench_inference.py: same outputs,
                                 320x320 input, ~2.5 G multiply-adds (~20 ms
                                 on a desktop core, like a real model on a Pi 5);
                                 its answers mean nothing

TensorFlow is used here and nowhere else: the gateway only needs a TFLite
runtime (ai-edge-litert). Run it from a separate virtualenv, outside the repo:

    python3 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu numpy ai-edge-litert
    /tmp/tfvenv/bin/python tools/make_model.py            # ~2-4 min on 2 cores

Nothing is downloaded from a model hub; the seed makes the data reproducible
(the trained weights still vary slightly with TensorFlow's thread scheduling).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gateway.inference.image import prepare  # noqa: E402
from hardware_sim.camera import LABELS, dataset  # noqa: E402
from tools.tflite_build import add_metadata, shapes_metadata  # noqa: E402

INPUT = 64  # model input is INPUT x INPUT x 3
BENCH_INPUT = 320
BENCH_DEPTH = 6  # extra full-resolution layers


def frames_to_batch(images: list[np.ndarray]) -> np.ndarray:
    return np.stack([prepare(img, INPUT, INPUT) for img in images]).astype(np.float32) / 255.0


def build(tf: object) -> object:
    keras = tf.keras  # type: ignore[attr-defined]
    layers = keras.layers
    model = keras.Sequential([
        keras.Input(shape=(INPUT, INPUT, 3), name="image"),
        layers.Conv2D(8, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(16, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.GlobalAveragePooling2D(),
        layers.Dense(len(LABELS), activation="softmax", name="scores"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def build_bench(tf: object) -> object:
    """Untrained, heavier network: a CPU load shaped like a real camera model."""
    keras = tf.keras  # type: ignore[attr-defined]
    layers = keras.layers
    return keras.Sequential([
        keras.Input(shape=(BENCH_INPUT, BENCH_INPUT, 3), name="image"),
        # Few weights (the file stays small), many multiply-adds at full resolution.
        layers.Conv2D(16, 3, padding="same", activation="relu"),
        *[layers.Conv2D(16, 3, padding="same", activation="relu") for _ in range(BENCH_DEPTH)],
        layers.MaxPooling2D(2),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, padding="same", activation="relu"),
        layers.Conv2D(64, 3, padding="same", activation="relu"),
        layers.GlobalAveragePooling2D(),
        layers.Dense(len(LABELS), activation="softmax", name="scores"),
    ])


def write_bench(tf: object, out: Path, seed: int) -> Path:
    model = build_bench(tf)
    rng = np.random.default_rng(seed)

    def representative() -> object:
        for _ in range(50):
            yield [rng.uniform(0, 1, size=(1, BENCH_INPUT, BENCH_INPUT, 3)).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)  # type: ignore[attr-defined]
    conv.optimizations = [tf.lite.Optimize.DEFAULT]  # type: ignore[attr-defined]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]  # type: ignore[attr-defined]
    conv.inference_input_type = tf.int8  # type: ignore[attr-defined]
    conv.inference_output_type = tf.int8  # type: ignore[attr-defined]
    path = out / "bench_int8.tflite"
    path.write_bytes(conv.convert())
    print(f"{path}: {path.stat().st_size / 1024:.1f} KiB (untrained benchmark load)")
    return path


DETECT_LABELS = LABELS[1:]  # "empty" is no detection


def write_detector(tf: object, out: Path, seed: int, n_train: int, epochs: int) -> Path:
    """A single-box detector with the standard 4 detection outputs."""
    keras = tf.keras  # type: ignore[attr-defined]
    layers = keras.layers
    images, truths = dataset(n_train, seed=seed + 7)
    x = frames_to_batch(images)
    y_cls = np.array([LABELS.index(t.label) for t in truths], dtype=np.int64)
    y_box = np.array([t.box if t.box is not None else (0.0, 0.0, 0.0, 0.0) for t in truths],
                     dtype=np.float32)
    has_box = (y_cls != 0).astype(np.float32)

    inp = keras.Input(shape=(INPUT, INPUT, 3), name="image")
    h = inp
    for ch in (8, 16, 32):
        h = layers.Conv2D(ch, 3, padding="same", activation="relu")(h)
        h = layers.MaxPooling2D(2)(h)
    h = layers.Conv2D(16, 3, padding="same", activation="relu")(h)  # 8x8x16 keeps "where"
    h = layers.Flatten()(h)
    h = layers.Dense(48, activation="relu")(h)
    cls = layers.Dense(len(LABELS), activation="softmax", name="cls")(h)
    box = layers.Dense(4, activation="sigmoid", name="box")(h)
    model = keras.Model(inp, {"cls": cls, "box": box})
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss={"cls": "sparse_categorical_crossentropy", "box": "mse"},
                  loss_weights={"cls": 1.0, "box": 20.0})
    model.fit(x, {"cls": y_cls, "box": y_box}, sample_weight={"cls": np.ones_like(has_box),
              "box": has_box}, batch_size=64, epochs=epochs, verbose=2)

    ops = keras.ops

    class SsdOutputs(layers.Layer):  # type: ignore[misc, name-defined]
        """Class probabilities + box -> boxes [1,1,4], classes [1,1], scores [1,1], count [1]."""

        def call(self, p: object, b: object) -> tuple[object, ...]:
            score = 1.0 - p[:, 0:1]  # type: ignore[index]
            # tf.argmax, not keras.ops.argmax (which adds ops TFLite lacks).
            label = ops.expand_dims(ops.cast(tf.argmax(p[:, 1:], axis=-1), "float32"), -1)  # type: ignore[index, attr-defined]
            return ops.reshape(b, (-1, 1, 4)), label, score, ops.ones_like(score[:, 0])

    image = keras.Input(shape=(INPUT, INPUT, 3), batch_size=1, name="image")
    out_now = model(image)
    export = keras.Model(image, list(SsdOutputs()(out_now["cls"], out_now["box"])))

    def representative() -> object:
        for i in range(200):
            yield [x[i : i + 1]]

    conv = tf.lite.TFLiteConverter.from_keras_model(export)  # type: ignore[attr-defined]
    conv.optimizations = [tf.lite.Optimize.DEFAULT]  # type: ignore[attr-defined]
    conv.representative_dataset = representative
    path = out / "shapes_detect.tflite"
    raw = conv.convert()
    from gateway.inference.validate import detection_outputs

    interp = tf.lite.Interpreter(model_content=raw)  # type: ignore[attr-defined]
    classes = detection_outputs(interp.get_output_details())[1]
    path.write_bytes(add_metadata(raw, shapes_metadata(classes)))
    (out / "detect_labels.txt").write_text("".join(f"{label}\n" for label in DETECT_LABELS))
    print(f"{path}: {path.stat().st_size / 1024:.1f} KiB")
    return path


def tflite_accuracy(tf: object, path: Path, x: np.ndarray, y: np.ndarray) -> float:
    interp = tf.lite.Interpreter(model_path=str(path))  # type: ignore[attr-defined]
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    correct = 0
    for xi, yi in zip(x, y, strict=True):
        if inp["dtype"] == np.int8:
            scale, zp = inp["quantization"]
            q = np.clip(np.round(xi / scale + zp), -128, 127).astype(np.int8)
        else:
            q = xi.astype(np.float32)
        interp.set_tensor(inp["index"], q[None])
        interp.invoke()
        correct += int(np.argmax(interp.get_tensor(out["index"])[0]) == yi)
    return correct / len(y)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "models")
    ap.add_argument("--train", type=int, default=8000, help="training frames")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=20261125)
    ap.add_argument("--detect", action="store_true",
                    help="only write models/shapes_detect.tflite (single-box detector)")
    ap.add_argument("--bench", action="store_true",
                    help="only write models/bench_int8.tflite (untrained benchmark load)")
    args = ap.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.keras.utils.set_random_seed(args.seed)
    if args.bench:
        write_bench(tf, args.out, args.seed)
        return 0
    if args.detect:
        write_detector(tf, args.out, args.seed, args.train, args.epochs + 8)
        return 0
    t0 = time.monotonic()
    images, truths = dataset(args.train, seed=args.seed)
    x = frames_to_batch(images)
    y = np.array([LABELS.index(t.label) for t in truths], dtype=np.int64)
    vimages, vtruths = dataset(800, seed=args.seed + 1)
    vx = frames_to_batch(vimages)
    vy = np.array([LABELS.index(t.label) for t in vtruths], dtype=np.int64)
    print(f"data: {len(x)} train / {len(vx)} validation frames in {time.monotonic() - t0:.1f} s")

    model = build(tf)
    model.fit(x, y, batch_size=64, epochs=args.epochs, validation_data=(vx, vy),  # type: ignore[attr-defined]
              verbose=2)

    args.out.mkdir(parents=True, exist_ok=True)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    float_path = args.out / "shapes_float.tflite"
    float_path.write_bytes(add_metadata(conv.convert(), shapes_metadata()))

    def representative() -> object:
        for i in range(0, 400):
            yield [x[i : i + 1]]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    int8_path = args.out / "shapes_int8.tflite"
    int8_path.write_bytes(add_metadata(conv.convert(), shapes_metadata()))

    (args.out / "labels.txt").write_text("".join(f"{label}\n" for label in LABELS))

    for p in (float_path, int8_path):
        acc = tflite_accuracy(tf, p, vx, vy)
        print(f"{p.relative_to(REPO) if p.is_relative_to(REPO) else p}: "
              f"{p.stat().st_size / 1024:.1f} KiB, validation accuracy {acc:.3f}")
    print(f"done in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

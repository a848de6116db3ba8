"""A loaded TFLite model: frame in, small JSON-ready result out.

Two tasks, told apart by the model's outputs (or `inference.task`):

- classification: one output of class scores -> top-k `labels` [{label, score}]
  at or above the score threshold;
- detection: the standard SSD postprocess outputs (TFLite_Detection_PostProcess):
  boxes [1,N,4] (ymin, xmin, ymax, xmax, 0..1), classes [1,N], scores [1,N],
  count [1] -> `detections` [{label, score, box}].

Input conventions: a float input gets RGB / 255 (0..1); a uint8 input gets the
raw pixels (the usual convention of quantised models); an int8 input gets
RGB / 255 quantised with the tensor's own scale and zero point (what a model
converted with 0..1 representative data, like ours, expects). Quantised
outputs are dequantised with their scale and zero point.

With a region of interest only that part of the frame is fed to the model;
detection boxes are mapped back to whole-frame coordinates.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from gateway.inference.image import Roi, as_rgb, crop, resize
from gateway.inference.runtime import RuntimeMissing, make_interpreter

Task = Literal["classification", "detection"]
FloatArray = npt.NDArray[np.float64]


def read_labels(path: Path | None) -> list[str]:
    """One label per line; blank lines skipped. No file: an empty list (class_N names)."""
    if path is None:
        return []
    return [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()
            if line.strip()]


def label_name(labels: list[str], index: int) -> str:
    return labels[index] if 0 <= index < len(labels) else f"class_{index}"


def dequantize(raw: npt.NDArray[Any], detail: dict[str, Any]) -> FloatArray:
    """Real values of an output tensor (scale 0 means it is not quantised)."""
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if raw.dtype in (np.uint8, np.int8, np.int16, np.int32) and scale:
        return (raw.astype(np.float64) - float(zero_point)) * float(scale)
    return raw.astype(np.float64)


def quantize_input(pixels: npt.NDArray[np.uint8], detail: dict[str, Any]) -> npt.NDArray[Any]:
    """Model-sized RGB uint8 -> what the input tensor expects (see module doc)."""
    dtype = np.dtype(detail["dtype"])
    if dtype == np.uint8:
        return pixels
    real = pixels.astype(np.float32) / 255.0
    if dtype == np.int8:
        scale, zero_point = detail.get("quantization", (0.0, 0))
        if not scale:
            raise ValueError("int8 input without quantisation parameters")
        q = np.round(real / float(scale) + float(zero_point))
        return np.clip(q, -128, 127).astype(np.int8)
    if dtype in (np.float32, np.float16):
        return real.astype(dtype)
    raise ValueError(f"unsupported input type {dtype}")


def top_k_labels(scores: FloatArray, labels: list[str], k: int,
                 threshold: float) -> list[dict[str, Any]]:
    flat = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-flat, kind="stable")[:k]
    return [{"label": label_name(labels, int(i)), "score": round(float(flat[i]), 3)}
            for i in order if flat[i] >= threshold]


def unmap_box(box: FloatArray, roi: Roi | None) -> list[float]:
    """A box relative to the ROI -> relative to the whole frame, clipped to 0..1."""
    b = np.clip(np.asarray(box, dtype=np.float64), 0.0, 1.0)
    if roi is not None:
        ymin, xmin, ymax, xmax = roi
        h, w = ymax - ymin, xmax - xmin
        b = np.array([ymin + b[0] * h, xmin + b[1] * w, ymin + b[2] * h, xmin + b[3] * w])
    return [round(float(v), 4) for v in b]


def decode_detections(boxes: npt.ArrayLike, classes: npt.ArrayLike, scores: npt.ArrayLike,
                      count: npt.ArrayLike, labels: list[str], threshold: float,
                      top_k: int, roi: Roi | None = None) -> list[dict[str, Any]]:
    """The standard SSD postprocess outputs -> [{label, score, box}], best first."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    c = np.asarray(classes, dtype=np.float64).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    n = min(int(np.asarray(count).reshape(-1)[0]), len(s), len(c), len(b))
    keep = [i for i in range(n) if s[i] >= threshold]
    keep.sort(key=lambda i: -s[i])
    return [
        {"label": label_name(labels, int(np.rint(c[i]))), "score": round(float(s[i]), 3),
         "box": unmap_box(b[i], roi)}
        for i in keep[:top_k]
    ]


def _output_position(name: str) -> int:
    _, sep, suffix = name.rpartition(":")
    return int(suffix) if sep and suffix.isdigit() else 0


def _detection_outputs(details: list[dict[str, Any]]) -> tuple[int, int, int, int]:
    """Which output is boxes, classes, scores, count (positions in `details`).

    TF1 exports order them boxes, classes, scores, count; TF2 exports differ.
    Boxes end in 4 and count has one element; classes vs scores by name when the
    names say, otherwise in the TF1 order.
    """
    boxes = next(i for i, d in enumerate(details) if len(d["shape"]) == 3 and d["shape"][-1] == 4)
    # count is [1]; classes and scores are [1, N] (N may be 1, so go by rank, not size).
    count = next(i for i, d in enumerate(details) if len(d["shape"]) <= 1 and i != boxes)
    rest = [i for i in range(4) if i not in (boxes, count)]
    names = [str(details[i].get("name", "")).lower() for i in rest]
    if "class" in names[1] and "class" not in names[0]:
        rest.reverse()
    elif not any(w in n for n in names for w in ("class", "score")):
        # Unnamed outputs ("StatefulPartitionedCall:2", "TFLite_Detection_PostProcess:1"):
        # the suffix is the position the model declared them in (boxes, classes, scores, count).
        rest.sort(key=lambda i: _output_position(str(details[i].get("name", ""))))
    return boxes, rest[0], rest[1], count


@dataclass(frozen=True, slots=True)
class Result:
    inference_ms: float
    #: {"labels": [...]} or {"detections": [...]}
    values: dict[str, Any]

    def payload(self) -> dict[str, Any]:
        return {"inference_ms": self.inference_ms, **self.values}


class Model:
    """An interpreter plus everything needed to turn a frame into a result."""

    def __init__(self, path: Path, labels: Path | None = None, task: str = "auto",
                 num_threads: int = 1, score_threshold: float = 0.5, top_k: int = 3,
                 roi: Roi | None = None) -> None:
        self.path = Path(path)
        self.interpreter = make_interpreter(self.path, num_threads)
        if labels is None and (self.path.parent / "labels.txt").is_file():
            labels = self.path.parent / "labels.txt"
        self.labels = read_labels(labels)
        self.score_threshold = score_threshold
        self.top_k = top_k
        self.roi = roi
        inputs = self.interpreter.get_input_details()
        if len(inputs) != 1 or len(inputs[0]["shape"]) != 4:
            raise ValueError(f"{self.path}: expected one NHWC image input, got "
                             f"{[list(d['shape']) for d in inputs]}")
        self.input = inputs[0]
        _, self.height, self.width, channels = (int(v) for v in self.input["shape"])
        if channels != 3:
            raise ValueError(f"{self.path}: expected an RGB input, got {channels} channels")
        # quantize_input() of every possible pixel value: indexing this table with a frame
        # gives the input tensor's values (identical to quantising pixel by pixel).
        self._lut = quantize_input(np.arange(256, dtype=np.uint8), self.input)
        self.outputs = self.interpreter.get_output_details()
        if task == "auto":
            task = "detection" if len(self.outputs) == 4 else "classification"
        if task == "detection":
            if len(self.outputs) != 4:
                raise ValueError(f"{self.path}: a detection model has 4 outputs "
                                 f"(boxes, classes, scores, count), this one has "
                                 f"{len(self.outputs)}")
            self._det = _detection_outputs(self.outputs)
        elif task != "classification":
            raise ValueError(f"unknown task {task!r}")
        self.task: Task = "detection" if task == "detection" else "classification"

    def describe(self) -> str:
        dt = np.dtype(self.input["dtype"]).name
        return (f"{self.path.name}: {self.task}, input {self.height}x{self.width}x3 {dt}, "
                f"{len(self.labels)} labels")

    def run(self, frame: npt.NDArray[Any]) -> Result:
        """Infer on one frame (H x W x 3 RGB uint8; other layouts converted)."""
        return self.infer(self.prepare(frame))

    def prepare(self, frame: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """The input tensor for one frame. Touches no interpreter state, so it may run
        in another thread while `infer` runs (the worker captures ahead that way)."""
        # Map pixel values through the 256-entry table on the (small) camera frame, then
        # resize: one pass each, instead of float arithmetic on the model-sized tensor.
        src = crop(as_rgb(frame), self.roi)
        tensor: npt.NDArray[Any] = resize(self._lut[src], self.height, self.width)[None]
        return tensor

    def infer(self, tensor: npt.NDArray[Any]) -> Result:
        """Run the model on a tensor from `prepare` (invoke() releases the GIL)."""
        self.interpreter.set_tensor(self.input["index"], tensor)
        t0 = time.perf_counter()
        self.interpreter.invoke()
        ms = round((time.perf_counter() - t0) * 1000.0, 2)
        return Result(ms, self.decode())

    def output(self, i: int) -> FloatArray:
        d = self.outputs[i]
        return dequantize(self.interpreter.get_tensor(d["index"]), d)

    def decode(self) -> dict[str, Any]:
        if self.task == "classification":
            return {"labels": top_k_labels(self.output(0), self.labels, self.top_k,
                                           self.score_threshold)}
        b, c, s, n = self._det
        return {"detections": decode_detections(
            self.output(b), self.output(c), self.output(s), self.output(n), self.labels,
            self.score_threshold, self.top_k, self.roi)}


def check_model(path: Path, task: str = "auto") -> str | None:
    """Why `path` cannot serve as the inference model (one line), or None if it loads."""
    try:
        with _quiet_stderr():  # the runtime prints an INFO banner from C++ on load
            Model(path, task=task)
    except RuntimeMissing as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    except ValueError as exc:
        return " ".join(str(exc).split())  # keep it to one line
    return None


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (not just sys.stderr) for the duration."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)

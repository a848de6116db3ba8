"""A loaded TFLite model: frame in, small JSON-ready result out.

Two tasks, told apart by the model's outputs (or `inference.task`), checked at
load by gateway.inference.validate (a model that does not fit is refused there):

- classification: one output of class scores -> top-k `labels` [{label, score}]
  at or above the score threshold (scores are probabilities, 0..1: logits get a
  softmax);
- detection: the standard SSD postprocess outputs (TFLite_Detection_PostProcess):
  boxes [1,N,4] (ymin, xmin, ymax, xmax, 0..1), classes [1,N], scores [1,N],
  count [1] -> `detections` [{label, score, box}].

Per frame: crop to the region of interest, resize to the model input
(bilinear by default; `inference.resize`), then convert pixels to input values
with a 256-entry table per channel (gateway.inference.preprocess: the model's
normalisation, then its input quantisation; nothing at all for a uint8 model that
takes raw pixels). Quantised outputs are dequantised with their scale and zero point.
Detection boxes are mapped back to whole-frame coordinates.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.inference.image import ResizeMethod, Roi, as_rgb, crop, resize
from gateway.inference.preprocess import apply_tables, input_tables, to_grey
from gateway.inference.runtime import make_interpreter
from gateway.inference.tflite_file import TfliteInfo, read_tflite
from gateway.inference.validate import (
    ModelPlan,
    ModelProblem,
    Task,
    detection_outputs,
    plan_model,
    read_labels,
    validate_model,
)

FloatArray = npt.NDArray[np.float64]
log = logging.getLogger("gateway.inference")

__all__ = ["Model", "ModelProblem", "Result", "check_model", "decode_detections", "dequantize",
           "detection_outputs", "read_labels", "top_k_labels", "validate_model"]


def label_name(labels: list[str], index: int) -> str:
    return labels[index] if 0 <= index < len(labels) and labels[index] else f"class_{index}"


def dequantize(raw: npt.NDArray[Any], detail: dict[str, Any]) -> FloatArray:
    """Real values of an output tensor (scale 0 means it is not quantised)."""
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if raw.dtype in (np.uint8, np.int8, np.int16, np.int32) and scale:
        return (raw.astype(np.float64) - float(zero_point)) * float(scale)
    return raw.astype(np.float64)


def as_probabilities(scores: FloatArray, kind: str) -> FloatArray:
    """Class scores as probabilities 0..1 (see validate: logits get a softmax)."""
    if kind == "logits":
        e = np.exp(scores - np.max(scores))
        out: FloatArray = e / np.sum(e)
        return out
    if kind == "log_probabilities":
        return np.exp(scores)
    return scores


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


@dataclass(frozen=True, slots=True)
class Result:
    inference_ms: float
    #: {"labels": [...]} or {"detections": [...]}
    values: dict[str, Any]

    def payload(self) -> dict[str, Any]:
        return {"inference_ms": self.inference_ms, **self.values}


class BadFrame(ValueError):
    """This frame cannot be used (wrong shape or type, or the model's answer was not
    finite): skip it and count it; the next frame may be fine."""


class Model:
    """An interpreter plus everything needed to turn a frame into a result.

    Raises ModelProblem (a ValueError, one line per problem) when the model does
    not fit its task or labels, OSError/ValueError when the file cannot be loaded.
    """

    def __init__(self, path: Path, labels: Path | None = None, task: str = "auto",
                 num_threads: int = 1, score_threshold: float = 0.5, top_k: int = 3,
                 roi: Roi | None = None, *, preset: str | None = None,
                 mean: list[float] | None = None, std: list[float] | None = None,
                 resize: ResizeMethod = "bilinear") -> None:
        self.path = Path(path)
        self.interpreter = make_interpreter(self.path, num_threads)
        try:
            self.info = read_tflite(self.path)
        except ValueError as exc:
            # The interpreter accepted the file, so it is a model; only the extras
            # (metadata, output operators) are unknown. Say so once and carry on.
            log.warning("%s: cannot read the model's metadata (%s); using the defaults",
                        self.path, exc)
            self.info = TfliteInfo()
        inputs = self.interpreter.get_input_details()
        self.outputs = self.interpreter.get_output_details()
        self.plan: ModelPlan = plan_model(inputs, self.outputs, self.info, model_path=self.path,
                                          task=task, labels=labels, preset=preset, mean=mean,
                                          std=std)
        self.input = inputs[0]
        self.task: Task = self.plan.task
        self.height, self.width, self.channels = (self.plan.height, self.plan.width,
                                                  self.plan.channels)
        self.labels = self.plan.labels
        self.score_threshold = score_threshold
        self.top_k = top_k
        self.roi = roi
        self.resize_method: ResizeMethod = resize
        # Pixel value -> input tensor value, per channel (None: the pixels as they are).
        self._tables = input_tables(self.input, self.plan.normalization, self.channels)
        self._input_dtype = np.dtype(self.input["dtype"])

    def describe(self) -> str:
        dt = self._input_dtype.name
        norm = (self.plan.normalization.describe() if self.plan.normalization is not None
                else "raw pixels" if self._input_dtype == np.uint8 else "pixel-128")
        what = (f"{self.plan.classes} classes, {self.plan.scores}"
                if self.task == "classification" else "SSD outputs")
        return (f"{self.path.name}: {self.task} ({what}), input {self.height}x{self.width}x"
                f"{self.channels} {dt}, {norm}, {self.resize_method} resize, "
                f"{len(self.labels)} labels ({self.plan.labels_source})")

    def run(self, frame: npt.NDArray[Any]) -> Result:
        """Infer on one frame (H x W x 3 RGB uint8; other layouts converted)."""
        return self.infer(self.prepare(frame))

    def prepare(self, frame: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """The input tensor for one frame. Touches no interpreter state, so it may run
        in another thread while `infer` runs (the worker captures ahead that way).

        Crop, resize, then convert: the pixel conversion touches only the model-sized
        image. A frame that is not an image raises BadFrame."""
        try:
            src = crop(as_rgb(frame), self.roi)
        except (ValueError, TypeError) as exc:
            raise BadFrame(f"unusable frame: {exc}") from exc
        if src.shape[0] < 1 or src.shape[1] < 1:
            raise BadFrame(f"empty frame {src.shape}")
        small = resize(src, self.height, self.width, self.resize_method)
        if self.channels == 1:
            small = to_grey(small)
        tensor: npt.NDArray[Any] = apply_tables(small, self._tables)[None]
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

    def scores(self) -> FloatArray:
        """Class scores of the last inference, as probabilities (classification)."""
        raw = self.output(0).reshape(-1)
        if not np.all(np.isfinite(raw)):
            raise BadFrame("the model's scores are not finite numbers")
        return as_probabilities(raw, self.plan.scores)

    def decode(self) -> dict[str, Any]:
        if self.task == "classification":
            return {"labels": top_k_labels(self.scores(), self.labels, self.top_k,
                                           self.score_threshold)}
        assert self.plan.detection is not None
        b, c, s, n = self.plan.detection
        boxes, classes, scores, count = (self.output(b), self.output(c), self.output(s),
                                         self.output(n))
        if not all(np.all(np.isfinite(x)) for x in (boxes, classes, scores, count)):
            raise BadFrame("the model's detections are not finite numbers")
        return {"detections": decode_detections(
            boxes, classes, scores, count, self.labels,
            self.score_threshold, self.top_k, self.roi)}


def check_model(path: Path, task: str = "auto", labels: Path | None = None, *,
                preset: str | None = None, mean: list[float] | None = None,
                std: list[float] | None = None) -> str | None:
    """Why `path` cannot serve as the inference model (one line), or None if it fits.

    The same checks as a running worker makes (validate_model), with the runtime's
    C++ banner on stderr silenced."""
    with _quiet_stderr():
        problems = validate_model(path, task, labels, preset=preset, mean=mean, std=std)
    return "; ".join(problems) if problems else None


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

"""Does this model fit its task? Checked once at load, never per frame.

`plan_model` looks at what the interpreter reports (input and output tensors) and
what the file says about itself (gateway.inference.tflite_file: the operator that
produces each output, TFLite metadata, embedded label files) and returns either a
plan (task, input geometry, normalisation, labels, how to read the outputs) or
one clear line per problem. `validate_model(path, ...)` is the same as a pure
function of a file, for `edge-gateway check` (in whatever process it runs it).

What is accepted:

- input: one tensor, rank 4 NHWC, 1 (grey) or 3 (RGB) channels, float32/float16/
  uint8/int8 (integer types with quantisation parameters when normalised);
- classification: one output of class scores, [N], [1, N] (or [1, 1, 1, N]); scores
  are probabilities when the graph ends in SOFTMAX/LOGISTIC (looking through
  (de)quantise and reshape) or the quantised output can only hold 0..1; otherwise
  they are logits and get a softmax (LOG_SOFTMAX: exp), so published scores are
  always 0..1 and `score_threshold` means the same for every model;
- detection: the four SSD postprocess outputs, boxes [1, N, 4], classes [1, N],
  scores [1, N], count [1], in the TF1 order (boxes, classes, scores, count) or
  the TF2 order (scores, boxes, count, classes), told apart by shape and then by
  name (`class`/`score` in the name, or the `:k` suffix of unnamed exports);
- labels: `inference.labels`, else the model's embedded label file, else
  labels.txt next to the model, else none (class_N). Their count must fit the
  model: a classifier with N classes needs N labels (N - 1 or N + 1 is called out
  as the usual background-line mix-up); a detector whose postprocess operator says
  it has C classes needs C labels, or C + 1 with a background line first (skipped).

Anything else (a pose or segmentation model, an SSD forced to classification) is
refused with one line, so it never publishes a stream of nonsense.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from gateway.inference.preprocess import Normalization, choose_normalization, normalization_problem
from gateway.inference.tflite_file import (
    DETECTION_POSTPROCESS,
    TENSOR_AXIS_LABELS,
    TENSOR_VALUE_LABELS,
    TfliteInfo,
    parse_labels,
)

Task = Literal["classification", "detection"]
ScoreKind = Literal["probabilities", "logits", "log_probabilities"]

#: First label lines that mean "background / no class" in common label maps.
BACKGROUND_NAMES = frozenset({"background", "__background__", "???", "bg", "none", "0"})


class ModelProblem(ValueError):
    """The model (or its labels) does not fit the task: `problems` has one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(slots=True)
class ModelPlan:
    task: Task
    height: int
    width: int
    channels: int
    normalization: Normalization | None
    labels: list[str] = field(default_factory=list)
    labels_source: str = "none"
    classes: int | None = None
    scores: ScoreKind = "probabilities"
    #: Positions of boxes, classes, scores, count among the outputs (detection).
    detection: tuple[int, int, int, int] | None = None


def read_labels(path: Path | None) -> list[str]:
    """A labels file: one label per line, in index order (see parse_labels)."""
    if path is None:
        return []
    return parse_labels(Path(path).read_text(encoding="utf-8"))


def _shape(d: dict[str, Any]) -> list[int]:
    return [int(v) for v in d["shape"]]


def _shapes(details: list[dict[str, Any]]) -> str:
    return ", ".join(str(_shape(d)) for d in details)


def _looks_like_ssd(outputs: list[dict[str, Any]]) -> bool:
    return len(outputs) == 4 and any(len(_shape(d)) == 3 and _shape(d)[-1] == 4 for d in outputs)


def _output_position(name: str) -> int | None:
    _, sep, suffix = name.rpartition(":")
    return int(suffix) if sep and suffix.isdigit() else None


def detection_outputs(details: list[dict[str, Any]]) -> tuple[int, int, int, int]:
    """Positions of boxes, classes, scores, count; ValueError when not SSD-shaped."""
    shapes = [_shape(d) for d in details]
    boxes = [i for i, s in enumerate(shapes) if len(s) == 3 and s[0] == 1 and s[-1] == 4]
    counts = [i for i, s in enumerate(shapes) if len(s) <= 1 and int(np.prod(s)) == 1]
    if len(details) != 4 or len(boxes) != 1 or len(counts) != 1:
        raise ValueError("not the SSD detection outputs")
    n = shapes[boxes[0]][1]
    rest = [i for i in range(4) if i not in (boxes[0], counts[0])]
    if any(shapes[i] != [1, n] for i in rest):
        raise ValueError("not the SSD detection outputs")
    names = [str(details[i].get("name", "")).lower() for i in rest]
    if any("class" in x or "score" in x for x in names):
        # Named outputs (detection_classes, detection_scores, ...): go by the name.
        if "class" in names[1] or "score" in names[0]:
            rest.reverse()
    else:
        positions = [_output_position(str(details[i].get("name", ""))) for i in rest]
        if None not in positions and len(set(positions)) == 2:
            # Unnamed exports ("StatefulPartitionedCall:2", "TFLite_Detection_PostProcess:1"):
            # the suffix is the position the model declared them in (boxes, classes,
            # scores, count).
            rest.sort(key=lambda i: _output_position(str(details[i].get("name", ""))) or 0)
        elif boxes[0] == 1 and counts[0] == 2:
            rest = [3, 0]  # the TF2 file order: scores, boxes, count, classes
        # otherwise the TF1 order: boxes, classes, scores, count
    return boxes[0], rest[0], rest[1], counts[0]


def _score_kind(detail: dict[str, Any], producer: str | None) -> ScoreKind:
    if producer in ("SOFTMAX", "LOGISTIC", DETECTION_POSTPROCESS):
        return "probabilities"
    if producer == "LOG_SOFTMAX":
        return "log_probabilities"
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if dtype.kind in "iu" and scale:
        info = np.iinfo(dtype)
        lo, hi = (info.min - zero_point) * scale, (info.max - zero_point) * scale
        if lo >= -1e-6 and hi <= 1.0 + 1e-6:
            return "probabilities"  # the tensor cannot hold anything but 0..1
    return "logits"


def _labels_problem(source: str, labels: list[str], classes: int) -> str | None:
    n = len(labels)
    if n == 0 or n == classes:
        return None
    if n == classes - 1:
        return (f"{source} has {n} lines but the model has {classes} classes: "
                f"is the first line 'background' missing?")
    if n == classes + 1:
        return (f"{source} has {n} lines but the model has {classes} classes: "
                f"is the first line {labels[0]!r} a background class the model does not have?")
    return f"{source} has {n} labels but the model has {classes} classes"


def plan_model(inputs: list[dict[str, Any]], outputs: list[dict[str, Any]], info: TfliteInfo,
               *, model_path: Path, task: str = "auto", labels: Path | None = None,
               preset: str | None = None, mean: list[float] | None = None,
               std: list[float] | None = None) -> ModelPlan:
    """The plan for running this model, or ModelProblem (one line per problem)."""
    problems: list[str] = []
    # -- input ------------------------------------------------------------------------
    if len(inputs) != 1:
        raise ModelProblem([f"expected one image input, the model has {len(inputs)} "
                            f"({_shapes(inputs)})"])
    shape = _shape(inputs[0])
    dtype = np.dtype(inputs[0]["dtype"])
    if len(shape) != 4 or shape[0] != 1 or shape[3] not in (1, 3):
        raise ModelProblem([f"expected an image input [1, height, width, 1 or 3], got {shape}"])
    _, height, width, channels = shape
    if dtype.name not in ("float32", "float16", "uint8", "int8"):
        problems.append(f"input type {dtype.name} is not an image (float32, uint8 or int8)")
    try:
        norm = choose_normalization(dtype, preset=preset, mean=mean, std=std,
                                    metadata=info.normalization)
    except ValueError as exc:
        problems.append(str(exc))
        norm = None
    if norm is not None:
        why = normalization_problem(norm.mean, norm.std, channels)
        if why is not None:
            problems.append(f"normalisation ({norm.source}): {why}")
        scale = inputs[0].get("quantization", (0.0, 0))[0]
        if dtype.kind in "iu" and not scale:
            problems.append(f"{dtype.name} input without quantisation parameters")
    # -- outputs ----------------------------------------------------------------------
    if task == "auto":
        task = "detection" if len(outputs) == 4 else "classification"
    plan = ModelPlan("classification", height, width, channels, norm)
    if task == "classification":
        if _looks_like_ssd(outputs):
            raise ModelProblem([f"the model has the 4 outputs of an SSD detector "
                                f"({_shapes(outputs)}), not class scores: "
                                f"use task: detection (or auto)"])
        if len(outputs) != 1:
            raise ModelProblem([f"not an image classifier or SSD detector: {len(outputs)} "
                                f"outputs ({_shapes(outputs)}); a classifier has one output "
                                f"of class scores [1, N]"])
        out_shape = _shape(outputs[0])
        if not out_shape or any(v != 1 for v in out_shape[:-1]) or out_shape[-1] < 1:
            raise ModelProblem([f"not an image classifier: its output {out_shape} is not a "
                                f"vector of class scores [1, N] (a pose, segmentation or "
                                f"other model?)"])
        if np.dtype(outputs[0]["dtype"]).name not in ("float32", "float16", "uint8", "int8",
                                                     "int16"):
            raise ModelProblem([f"not class scores: output type "
                                f"{np.dtype(outputs[0]['dtype']).name}"])
        plan.classes = out_shape[-1]
        plan.scores = _score_kind(outputs[0], info.output_ops.get(int(outputs[0]["index"])))
        embedded = info.labels(0, TENSOR_AXIS_LABELS)
    elif task == "detection":
        plan.task = "detection"
        try:
            plan.detection = detection_outputs(outputs)
        except ValueError:
            raise ModelProblem([f"not an SSD detector: outputs {_shapes(outputs)}; expected "
                                f"boxes [1,N,4], classes [1,N], scores [1,N], count [1]"]
                               ) from None
        plan.classes = info.detection_classes
        embedded = info.labels(plan.detection[1], TENSOR_VALUE_LABELS) or info.labels(
            plan.detection[1], TENSOR_AXIS_LABELS)
    else:
        raise ModelProblem([f"unknown task {task!r}"])
    # -- labels -----------------------------------------------------------------------
    if labels is not None:
        source = Path(labels).name
        try:
            names = read_labels(labels)
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelProblem([*problems, f"cannot read labels {labels}: {exc}"]) from None
        plan.labels_source = str(labels)
    elif embedded is not None:
        source, names = f"the model's embedded {embedded[0]}", embedded[1]
        plan.labels_source = f"embedded {embedded[0]}"
    elif (model_path.parent / "labels.txt").is_file():
        source = "labels.txt"
        names = read_labels(model_path.parent / "labels.txt")
        plan.labels_source = str(model_path.parent / "labels.txt")
    else:
        source, names = "", []
    if plan.classes is not None and names:
        if (plan.task == "detection" and len(names) == plan.classes + 1
                and names[0].strip().lower() in BACKGROUND_NAMES):
            names = names[1:]  # class id 0 is the first real class, after the background
            plan.labels_source += " (first line, background, skipped)"
        why = _labels_problem(source, names, plan.classes)
        if why is not None:
            problems.append(why)
    plan.labels = names
    if problems:
        raise ModelProblem(problems)
    return plan


def validate_model(path: Path, task: str = "auto", labels: Path | None = None, *,
                   preset: str | None = None, mean: list[float] | None = None,
                   std: list[float] | None = None) -> list[str]:
    """One line per reason `path` cannot serve as the inference model (empty: it can).

    Loads the model in this process (the runtime prints a banner on fd 2; callers
    that care run this where that does not matter, or silence it).
    """
    from gateway.inference.runtime import RuntimeMissing, make_interpreter
    from gateway.inference.tflite_file import read_tflite

    try:
        interp = make_interpreter(Path(path), 1)
    except RuntimeMissing as exc:
        return [str(exc)]
    except OSError as exc:
        return [f"cannot read {path}: {exc.strerror or exc}"]
    except ValueError as exc:
        return [" ".join(str(exc).split())]
    try:
        info = read_tflite(Path(path))
    except (OSError, ValueError):
        info = TfliteInfo()  # the interpreter read it: run without the extras
    try:
        plan_model(interp.get_input_details(), interp.get_output_details(), info,
                   model_path=Path(path), task=task, labels=labels, preset=preset, mean=mean,
                   std=std)
    except ModelProblem as exc:
        return [" ".join(p.split()) for p in exc.problems]
    return []

"""Dev/test-only: write tiny TFLite models whose math a test can compute with numpy.

No TensorFlow: the model FlatBuffer is built with the TFLite schema's generated
Python object API that ai-edge-litert ships (`ai_edge_litert.schema_py_generated`,
on the `flatbuffers` runtime package it depends on), and the TFLite metadata
(tensorflow_lite_support/metadata/metadata_schema.fbs, file identifier "M001")
with `flatbuffers.Builder` by field id. Label files are appended to the model as a
zip archive, as the TFLite metadata tools do.

The models are what the gateway must accept or refuse (tests/test_inference_models.py):

- `classifier`: image -> RESHAPE -> FULLY_CONNECTED -> SOFTMAX (or logits),
  float input, or uint8/int8 input (a DEQUANTIZE in front) with optionally a
  quantised output (QUANTIZE at the end, scale 1/256 as real classifiers do);
  metadata normalisation and embedded labels optional;
- `detector`: four SSD-style outputs (boxes [1,N,4], classes [1,N], scores [1,N],
  count [1]) in the TF1 order or the TF2 order (scores, boxes, count, classes);
- `other`: a pose-shaped [1,1,17,3] or segmentation-shaped [1,H,W,C] output.

Run as a script to write a few into a folder:
    .venv/bin/python tools/tflite_build.py /tmp/models
"""

from __future__ import annotations

import io
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
import numpy.typing as npt
from ai_edge_litert import schema_py_generated as S

F32 = npt.NDArray[np.float32]

_TYPES = {"float32": S.TensorType.FLOAT32, "uint8": S.TensorType.UINT8, "int8": S.TensorType.INT8,
          "int32": S.TensorType.INT32}


@dataclass
class Metadata:
    """What to put in the model's TFLite metadata."""

    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    #: label file name -> (output position, AssociatedFileType, labels)
    labels: dict[str, tuple[int, int, list[str]]] | None = None
    n_outputs: int = 1


class _Graph:
    def __init__(self) -> None:
        self.buffers: list[Any] = [S.BufferT()]  # buffer 0: the empty sentinel
        self.tensors: list[Any] = []
        self.ops: list[Any] = []
        self.codes: list[int | tuple[str, str]] = []

    def tensor(self, shape: Sequence[int], dtype: str, name: str,
               data: npt.NDArray[Any] | None = None,
               quant: tuple[float, int] | None = None) -> int:
        t = S.TensorT()
        t.shape = [int(v) for v in shape]
        t.type = _TYPES[dtype]
        t.name = name
        t.buffer = 0
        if data is not None:
            b = S.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), dtype=np.uint8)
            self.buffers.append(b)
            t.buffer = len(self.buffers) - 1
        if quant is not None:
            q = S.QuantizationParametersT()
            q.scale = [float(quant[0])]
            q.zeroPoint = [int(quant[1])]
            t.quantization = q
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(self, code: int, inputs: list[int], outputs: list[int], options_type: int = 0,
           options: Any = None) -> None:
        if code not in self.codes:
            self.codes.append(code)
        o = S.OperatorT()
        o.opcodeIndex = self.codes.index(code)
        o.inputs = inputs
        o.outputs = outputs
        o.builtinOptionsType = options_type
        o.builtinOptions = options
        self.ops.append(o)

    def reshape(self, src: int, shape: Sequence[int], name: str) -> int:
        shape_t = self.tensor([len(shape)], "int32", f"{name}/shape",
                              np.array(shape, dtype=np.int32))
        out = self.tensor(shape, "float32", name)
        opts = S.ReshapeOptionsT()
        opts.newShape = list(shape)
        self.op(S.BuiltinOperator.RESHAPE, [src, shape_t], [out], S.BuiltinOptions.ReshapeOptions,
                opts)
        return out

    def dense(self, src: int, weights: F32, bias: F32, name: str) -> int:
        w = self.tensor(weights.shape, "float32", f"{name}/weights", weights.astype(np.float32))
        b = self.tensor(bias.shape, "float32", f"{name}/bias", bias.astype(np.float32))
        out = self.tensor([1, weights.shape[0]], "float32", name)
        opts = S.FullyConnectedOptionsT()
        self.op(S.BuiltinOperator.FULLY_CONNECTED, [src, w, b], [out],
                S.BuiltinOptions.FullyConnectedOptions, opts)
        return out

    def unary(self, code: int, src: int, shape: Sequence[int], name: str, dtype: str = "float32",
              quant: tuple[float, int] | None = None) -> int:
        out = self.tensor(shape, dtype, name, quant=quant)
        if code == S.BuiltinOperator.SOFTMAX:
            opts = S.SoftmaxOptionsT()
            opts.beta = 1.0
            self.op(code, [src], [out], S.BuiltinOptions.SoftmaxOptions, opts)
        else:
            self.op(code, [src], [out])
        return out

    def custom(self, name: str, inputs: list[int], outputs: list[int], options: bytes) -> None:
        code = ("custom", name)
        if code not in self.codes:
            self.codes.append(code)  # type: ignore[arg-type]
        o = S.OperatorT()
        o.opcodeIndex = self.codes.index(code)  # type: ignore[arg-type]
        o.inputs = inputs
        o.outputs = outputs
        o.customOptions = np.frombuffer(options, dtype=np.uint8)
        o.customOptionsFormat = S.CustomOptionsFormat.FLEXBUFFERS
        self.ops.append(o)

    def serialize(self, inputs: list[int], outputs: list[int],
                  metadata: Metadata | None = None) -> bytes:
        sg = S.SubGraphT()
        sg.tensors, sg.inputs, sg.outputs, sg.operators = self.tensors, inputs, outputs, self.ops
        sg.name = "main"
        model = S.ModelT()
        model.version = 3
        model.description = "tools/tflite_build.py"
        codes = []
        for c in self.codes:
            oc = S.OperatorCodeT()
            if isinstance(c, tuple):  # a custom operator, by name
                oc.builtinCode = oc.deprecatedBuiltinCode = S.BuiltinOperator.CUSTOM
                oc.customCode = c[1]
            else:
                oc.builtinCode = c
                oc.deprecatedBuiltinCode = min(c, 127)
            oc.version = 1
            codes.append(oc)
        model.operatorCodes = codes
        model.subgraphs = [sg]
        buffers = list(self.buffers)
        if metadata is not None:
            b = S.BufferT()
            b.data = np.frombuffer(metadata_flatbuffer(metadata), dtype=np.uint8)
            buffers.append(b)
            md = S.MetadataT()
            md.name = "TFLITE_METADATA"
            md.buffer = len(buffers) - 1
            model.metadata = [md]
        model.buffers = buffers
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        data = bytes(builder.Output())
        if metadata is not None and metadata.labels:
            data += _zip({name: "".join(f"{x}\n" for x in labels)
                          for name, (_, _, labels) in metadata.labels.items()})
        return data


def add_metadata(model: bytes, md: Metadata) -> bytes:
    """`model` (a .tflite file's bytes, without metadata) with `md` added: a
    TFLITE_METADATA entry and buffer, and the label files appended as a zip."""
    m = S.ModelT.InitFromPackedBuf(model, 0)
    b = S.BufferT()
    b.data = np.frombuffer(metadata_flatbuffer(md), dtype=np.uint8)
    m.buffers = [*(m.buffers or []), b]
    entry = S.MetadataT()
    entry.name = "TFLITE_METADATA"
    entry.buffer = len(m.buffers) - 1
    m.metadata = [x for x in (m.metadata or []) if x.name != b"TFLITE_METADATA"] + [entry]
    builder = flatbuffers.Builder(len(model) + 4096)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    data = bytes(builder.Output())
    if md.labels:
        data += _zip({name: "".join(f"{x}\n" for x in labels)
                      for name, (_, _, labels) in md.labels.items()})
    return data


def _zip(files: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in files.items():
            z.writestr(name, text)
    return out.getvalue()


# -- metadata_schema.fbs, by field id ---------------------------------------------------


def metadata_flatbuffer(md: Metadata) -> bytes:
    b = flatbuffers.Builder(256)

    def floats(values: Sequence[float]) -> int:
        b.StartVector(4, len(values), 4)
        for v in reversed(values):
            b.PrependFloat32(float(v))
        return int(b.EndVector())

    def offsets(items: list[int]) -> int:
        b.StartVector(4, len(items), 4)
        for o in reversed(items):
            b.PrependUOffsetTRelative(o)
        return int(b.EndVector())

    def table(fields: dict[int, tuple[str, Any]]) -> int:
        b.StartObject(max(fields) + 1 if fields else 0)
        for fid, (kind, value) in fields.items():
            if kind == "ref":
                b.PrependUOffsetTRelativeSlot(fid, value, 0)
            elif kind == "byte":
                b.PrependInt8Slot(fid, value, 0)
            elif kind == "ubyte":
                b.PrependUint8Slot(fid, value, 0)
        return int(b.EndObject())

    # Input tensor: a NormalizationOptions process unit (ProcessUnitOptions member 1).
    input_fields: dict[int, tuple[str, Any]] = {}
    if md.mean is not None and md.std is not None:
        norm = table({0: ("ref", floats(md.mean)), 1: ("ref", floats(md.std))})
        unit = table({0: ("ubyte", 1), 1: ("ref", norm)})
        input_fields[4] = ("ref", offsets([unit]))
    name_in = b.CreateString("image")
    input_fields[0] = ("ref", name_in)
    input_tm = table(input_fields)
    outputs = []
    for i in range(md.n_outputs):
        fields: dict[int, tuple[str, Any]] = {0: ("ref", b.CreateString(f"output{i}"))}
        files = []
        for fname, (pos, kind, _labels) in (md.labels or {}).items():
            if pos == i:
                files.append(table({0: ("ref", b.CreateString(fname)), 2: ("byte", kind)}))
        if files:
            fields[6] = ("ref", offsets(files))
        outputs.append(table(fields))
    sg = table({2: ("ref", offsets([input_tm])), 3: ("ref", offsets(outputs))})
    name = b.CreateString("tflite_build test model")
    root = table({0: ("ref", name), 3: ("ref", offsets([sg])),
                  7: ("ref", b.CreateString("1.0.0"))})
    b.Finish(root, file_identifier=b"M001")
    return bytes(b.Output())


# -- the models ---------------------------------------------------------------------------


def classifier(weights: F32, bias: F32, *, size: tuple[int, int] = (8, 8), channels: int = 3,
               input_dtype: str = "float32", input_quant: tuple[float, int] | None = None,
               output_dtype: str = "float32", softmax: bool = True,
               output_shape: Sequence[int] | None = None,
               metadata: Metadata | None = None) -> bytes:
    """image [1,H,W,C] -> flatten -> x @ weights.T + bias -> softmax (unless logits).

    Quantised input: a DEQUANTIZE in front (real = (q - zp) * scale). Quantised output:
    QUANTIZE with scale 1/256 and the zero point that puts 0.0 at the bottom of the type.
    """
    h, w = size
    n = weights.shape[0]
    assert weights.shape[1] == h * w * channels
    g = _Graph()
    x = g.tensor([1, h, w, channels], input_dtype, "image", quant=input_quant)
    real = x
    if input_dtype != "float32":
        real = g.unary(S.BuiltinOperator.DEQUANTIZE, x, [1, h, w, channels], "image/real")
    flat = g.reshape(real, [1, h * w * channels], "flat")
    y = g.dense(flat, weights, bias, "logits")
    if softmax:
        y = g.unary(S.BuiltinOperator.SOFTMAX, y, [1, n], "probabilities")
    if output_dtype != "float32":
        zp = 0 if output_dtype == "uint8" else -128
        y = g.unary(S.BuiltinOperator.QUANTIZE, y, [1, n], "scores", output_dtype, (1 / 256, zp))
    if output_shape is not None:
        y = g.reshape(y, output_shape, "scores/reshaped")
    return g.serialize([x], [y], metadata)


def detector(w_boxes: F32, w_scores: F32, classes: Sequence[float], *, order: str = "tf1",
             names: str = "tf1", size: tuple[int, int] = (8, 8),
             metadata: Metadata | None = None) -> bytes:
    """Four SSD-style outputs from one flattened float image x (K values):

    boxes = sigmoid(x @ w_boxes.T).reshape(1, N, 4), scores = sigmoid(x @ w_scores.T),
    classes = the constant `classes` (a dense layer with zero weights), count = N.
    `order` tf1: boxes, classes, scores, count; tf2: scores, boxes, count, classes.
    `names` tf1: TFLite_Detection_PostProcess[:i]; tf2: StatefulPartitionedCall:i with i
    the position in (boxes, classes, scores, count); words: detection_boxes, ...;
    none: all outputs named "output".
    """
    h, w = size
    k = h * w * 3
    n = len(classes)
    assert w_boxes.shape == (4 * n, k) and w_scores.shape == (n, k)
    g = _Graph()
    x = g.tensor([1, h, w, 3], "float32", "image")
    flat = g.reshape(x, [1, k], "flat")
    tf1_names = {
        "tf1": ["TFLite_Detection_PostProcess", "TFLite_Detection_PostProcess:1",
                "TFLite_Detection_PostProcess:2", "TFLite_Detection_PostProcess:3"],
        "tf2": [f"StatefulPartitionedCall:{i}" for i in range(4)],
        "words": ["detection_boxes", "detection_classes", "detection_scores", "num_detections"],
        "none": ["output"] * 4,
    }[names]
    b = g.unary(S.BuiltinOperator.LOGISTIC, g.dense(flat, w_boxes, np.zeros(4 * n, np.float32),
                                                     "box_logits"), [1, 4 * n], "box_sigmoid")
    boxes = g.reshape(b, [1, n, 4], tf1_names[0])
    cls = g.reshape(g.dense(flat, np.zeros((n, k), np.float32), np.asarray(classes, np.float32),
                            "class_dense"), [1, n], tf1_names[1])
    scores = g.unary(S.BuiltinOperator.LOGISTIC, g.dense(flat, w_scores, np.zeros(n, np.float32),
                                                         "score_logits"), [1, n], tf1_names[2])
    count = g.reshape(g.dense(flat, np.zeros((1, k), np.float32), np.array([n], np.float32),
                              "count_dense"), [1], tf1_names[3])
    outs = [boxes, cls, scores, count] if order == "tf1" else [scores, boxes, count, cls]
    return g.serialize([x], outs, metadata)


#: TFLite_Detection_PostProcess scales (the usual SSD values).
SSD_SCALES = {"y_scale": 10.0, "x_scale": 10.0, "h_scale": 5.0, "w_scale": 5.0}


def ssd(w_boxes: F32, w_classes: F32, anchors: F32, num_classes: int, *,
        max_detections: int = 10, score_threshold: float = 0.01,
        size: tuple[int, int] = (8, 8), metadata: Metadata | None = None) -> bytes:
    """A real SSD head: the TFLite_Detection_PostProcess custom operator (what TF1
    object-detection exports end in) on box encodings and class scores from one
    flattened float image x:

    box_encodings = (x @ w_boxes.T).reshape(1, A, 4)   (ty, tx, th, tw per anchor)
    class_scores = sigmoid(x @ w_classes.T).reshape(1, A, num_classes + 1)  (0: background)

    anchors [A, 4] are (ycenter, xcenter, h, w). Fast (not regular) NMS, one class
    per detection; outputs boxes, classes, scores, count, named as TF1 exports do.
    """
    from flatbuffers import flexbuffers

    h, w = size
    k = h * w * 3
    a = anchors.shape[0]
    assert w_boxes.shape == (4 * a, k) and w_classes.shape == (a * (num_classes + 1), k)
    g = _Graph()
    x = g.tensor([1, h, w, 3], "float32", "image")
    flat = g.reshape(x, [1, k], "flat")
    enc = g.reshape(g.dense(flat, w_boxes, np.zeros(4 * a, np.float32), "box_dense"),
                    [1, a, 4], "box_encodings")
    logits = g.dense(flat, w_classes, np.zeros(a * (num_classes + 1), np.float32), "cls_dense")
    probs = g.unary(S.BuiltinOperator.LOGISTIC, logits, [1, a * (num_classes + 1)], "cls_sigmoid")
    cls = g.reshape(probs, [1, a, num_classes + 1], "class_predictions")
    anc = g.tensor([a, 4], "float32", "anchors", anchors.astype(np.float32))
    d = max_detections
    names = ["TFLite_Detection_PostProcess"] + [f"TFLite_Detection_PostProcess:{i}"
                                                for i in (1, 2, 3)]
    outs = [g.tensor([1, d, 4], "float32", names[0]), g.tensor([1, d], "float32", names[1]),
            g.tensor([1, d], "float32", names[2]), g.tensor([1], "float32", names[3])]
    options = flexbuffers.Dumps({
        "max_detections": d, "max_classes_per_detection": 1, "detections_per_class": 100,
        "use_regular_nms": False, "nms_score_threshold": float(score_threshold),
        "nms_iou_threshold": 0.6, "num_classes": num_classes, **SSD_SCALES})
    g.custom("TFLite_Detection_PostProcess", [enc, cls, anc], outs, bytes(options))
    return g.serialize([x], outs, metadata)


def other(kind: str, *, size: tuple[int, int] = (8, 8)) -> bytes:
    """A model of another kind: `pose` [1,1,17,3] or `segmentation` [1,4,4,5] output."""
    h, w = size
    k = h * w * 3
    shape = [1, 1, 17, 3] if kind == "pose" else [1, 4, 4, 5]
    n = int(np.prod(shape))
    rng = np.random.default_rng(3)
    g = _Graph()
    x = g.tensor([1, h, w, 3], "float32", "image")
    flat = g.reshape(x, [1, k], "flat")
    y = g.dense(flat, rng.normal(0, 0.01, (n, k)).astype(np.float32), np.zeros(n, np.float32),
                "head")
    out = g.reshape(y, shape, "heatmap" if kind == "pose" else "segmentation")
    return g.serialize([x], [out])


#: What the shipped shape models were trained on: RGB / 255 (tools/make_model.py).
SHAPES_LABELS = ["empty", "circle", "square", "triangle"]


def shapes_metadata(classes_output: int | None = None) -> Metadata:
    """Metadata of the shipped models: input p/255, labels embedded (a classifier's
    labels annotate the scores axis; a detector's label the class values, at output
    position `classes_output`)."""
    if classes_output is not None:
        return Metadata(mean=[0.0], std=[255.0], n_outputs=4,
                        labels={"labels.txt": (classes_output, 3, SHAPES_LABELS[1:])})
    return Metadata(mean=[0.0], std=[255.0], labels={"labels.txt": (0, 2, SHAPES_LABELS)})


def main(argv: list[str]) -> int:
    if len(argv) > 1 and argv[1] == "--shipped":
        # Add metadata to the shipped models in models/ (made by tools/make_model.py).
        models = Path(__file__).resolve().parent.parent / "models"
        for name, detector in (("shapes_float", False), ("shapes_int8", False),
                               ("shapes_detect", True)):
            path = models / f"{name}.tflite"
            raw = path.read_bytes()
            end = raw.rfind(b"PK\x05\x06")
            if end != -1:  # already has files appended: start from the bare model
                raise SystemExit(f"{path} already carries metadata")
            classes = None
            if detector:
                from ai_edge_litert.interpreter import Interpreter

                from gateway.inference.validate import detection_outputs

                classes = detection_outputs(Interpreter(model_content=raw).get_output_details())[1]
            path.write_bytes(add_metadata(raw, shapes_metadata(classes)))
            print(path, path.stat().st_size)
        return 0
    out = Path(argv[1] if len(argv) > 1 else "models/test")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.05, (4, 192)).astype(np.float32)
    labels = {"labels.txt": (0, 2, ["empty", "circle", "square", "triangle"])}
    (out / "tiny_float_meta.tflite").write_bytes(classifier(
        w, np.zeros(4, np.float32), metadata=Metadata(mean=[127.5], std=[127.5], labels=labels)))
    (out / "tiny_pose.tflite").write_bytes(other("pose"))
    for p in sorted(out.glob("*.tflite")):
        print(p, p.stat().st_size)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""What a .tflite file says about itself, read without TensorFlow or a flatbuffers package.

A .tflite file is a FlatBuffer (tensorflow/lite/schema/schema.fbs). The few facts
the gateway needs and the interpreter does not report are read here with a small
table walker (the FlatBuffer binary format: a table starts with a signed offset
to its vtable, whose uint16 entries give each field's offset in the table,
0 = absent; references are uint32 offsets relative to where they are stored;
vectors and strings are a uint32 length then the elements):

- which operator produces each graph output (a SOFTMAX/LOGISTIC at the end means
  the scores are probabilities; a TFLite_Detection_PostProcess means an SSD
  detector, and its `num_classes` is in its custom options, a FlexBuffer map);
- the TFLite metadata (the `TFLITE_METADATA` entry of `Model.metadata`, a
  FlatBuffer of tensorflow_lite_support/metadata/metadata_schema.fbs): the input's
  NormalizationOptions (mean, std) and the names of the label files of the outputs;
- the associated files (labels) that the metadata tools append to the model as a
  zip archive, read with `zipfile` (which finds an archive behind other data).

Field ids below are the declaration order in those schemas. Every offset is bounds
checked: a malformed file gives ValueError, never a crash or a wrong answer.
"""

from __future__ import annotations

import io
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

# -- schema.fbs field ids -------------------------------------------------------------
_MODEL_OPERATOR_CODES, _MODEL_SUBGRAPHS, _MODEL_BUFFERS, _MODEL_METADATA = 1, 2, 4, 6
_SUBGRAPH_OUTPUTS, _SUBGRAPH_OPERATORS = 2, 3
_OPERATOR_OPCODE, _OPERATOR_INPUTS, _OPERATOR_OUTPUTS, _OPERATOR_CUSTOM_OPTIONS = 0, 1, 2, 5
_OPCODE_DEPRECATED_BUILTIN, _OPCODE_CUSTOM, _OPCODE_BUILTIN = 0, 1, 3
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2
_METADATA_NAME, _METADATA_BUFFER = 0, 1

#: BuiltinOperator values (schema.fbs) the gateway cares about.
BUILTIN_NAMES = {0: "ADD", 1: "AVERAGE_POOL_2D", 2: "CONCATENATION", 3: "CONV_2D",
                 4: "DEPTHWISE_CONV_2D", 6: "DEQUANTIZE", 9: "FULLY_CONNECTED", 14: "LOGISTIC",
                 22: "RESHAPE", 25: "SOFTMAX", 32: "CUSTOM", 40: "MEAN", 43: "SQUEEZE",
                 50: "LOG_SOFTMAX", 53: "CAST", 114: "QUANTIZE"}
#: Operators that keep the meaning of their input (looked through to find a softmax).
PASSTHROUGH = frozenset({"DEQUANTIZE", "QUANTIZE", "RESHAPE", "SQUEEZE", "CAST"})
DETECTION_POSTPROCESS = "TFLite_Detection_PostProcess"

# -- metadata_schema.fbs field ids ----------------------------------------------------
_MM_SUBGRAPH_METADATA, _MM_ASSOCIATED_FILES = 3, 6
_SGM_INPUT_TENSORS, _SGM_OUTPUT_TENSORS, _SGM_ASSOCIATED_FILES = 2, 3, 4
_TM_PROCESS_UNITS, _TM_ASSOCIATED_FILES = 4, 6
_PU_OPTIONS_TYPE, _PU_OPTIONS = 0, 1
_NORMALIZATION_OPTIONS = 1  # ProcessUnitOptions union member
_NO_MEAN, _NO_STD = 0, 1
_AF_NAME, _AF_TYPE = 0, 2
#: AssociatedFileType
TENSOR_AXIS_LABELS, TENSOR_VALUE_LABELS = 2, 3


class _Table:
    """One FlatBuffer table in `buf` at `pos`."""

    __slots__ = ("buf", "pos", "vsize", "vtable")

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf = buf
        self.pos = pos
        self.vtable = pos - _i32(buf, pos)
        self.vsize = _u16(buf, self.vtable)

    def _field(self, fid: int) -> int:
        """Absolute position of field `fid`, or 0 when absent."""
        o = 4 + 2 * fid
        if o + 2 > self.vsize:
            return 0
        rel = _u16(self.buf, self.vtable + o)
        return self.pos + rel if rel else 0

    def _ref(self, fid: int) -> int:
        p = self._field(fid)
        return p + _u32(self.buf, p) if p else 0

    def scalar(self, fid: int, fmt: str, default: int | float = 0) -> int | float:
        p = self._field(fid)
        if not p:
            return default
        value: int | float = _unpack(fmt, self.buf, p)
        return value

    def table(self, fid: int) -> _Table | None:
        p = self._ref(fid)
        return _Table(self.buf, p) if p else None

    def string(self, fid: int) -> str | None:
        raw = self.bytes(fid)
        return None if raw is None else raw.decode("utf-8", "replace")

    def bytes(self, fid: int) -> bytes | None:
        p = self._ref(fid)
        if not p:
            return None
        n = _u32(self.buf, p)
        if p + 4 + n > len(self.buf):
            raise ValueError("vector runs past the end of the file")
        return self.buf[p + 4 : p + 4 + n]

    def scalars(self, fid: int, fmt: str) -> list[int | float]:
        p = self._ref(fid)
        if not p:
            return []
        n = _u32(self.buf, p)
        size = struct.calcsize("<" + fmt)
        if p + 4 + n * size > len(self.buf):
            raise ValueError("vector runs past the end of the file")
        return list(struct.unpack_from(f"<{n}{fmt}", self.buf, p + 4))

    def tables(self, fid: int) -> list[_Table]:
        p = self._ref(fid)
        if not p:
            return []
        n = _u32(self.buf, p)
        if p + 4 + 4 * n > len(self.buf):
            raise ValueError("vector runs past the end of the file")
        return [_Table(self.buf, e + _u32(self.buf, e)) for e in range(p + 4, p + 4 + 4 * n, 4)]


def _unpack(fmt: str, buf: bytes, pos: int) -> int | float:
    try:
        value: int | float = struct.unpack_from("<" + fmt, buf, pos)[0]
    except struct.error as exc:
        raise ValueError(f"offset {pos} outside the file") from exc
    if pos < 0:
        raise ValueError(f"offset {pos} outside the file")
    return value


def _u16(buf: bytes, pos: int) -> int:
    return int(_unpack("H", buf, pos))


def _u32(buf: bytes, pos: int) -> int:
    return int(_unpack("I", buf, pos))


def _i32(buf: bytes, pos: int) -> int:
    return int(_unpack("i", buf, pos))


def _root(buf: bytes) -> _Table:
    return _Table(buf, _u32(buf, 0))


@dataclass(frozen=True, slots=True)
class LabelFile:
    name: str
    kind: int  # TENSOR_AXIS_LABELS or TENSOR_VALUE_LABELS


@dataclass(slots=True)
class TfliteInfo:
    """What the gateway reads from a .tflite file besides what the interpreter reports."""

    #: Operator producing each output tensor (by tensor index), looking through
    #: (de)quantise/reshape: "SOFTMAX", "LOGISTIC", "TFLite_Detection_PostProcess", ...
    output_ops: dict[int, str] = field(default_factory=dict)
    #: num_classes of a TFLite_Detection_PostProcess operator (None: none, or unreadable).
    detection_classes: int | None = None
    #: Input NormalizationOptions from the metadata: (mean, std), per channel or one value.
    normalization: tuple[list[float], list[float]] | None = None
    #: Label files named in the output tensors' metadata, by output position.
    output_label_files: dict[int, list[LabelFile]] = field(default_factory=dict)
    #: Files in the zip appended to the model (name -> content).
    associated_files: dict[str, bytes] = field(default_factory=dict)
    has_metadata: bool = False

    def labels(self, output: int, kind: int) -> tuple[str, list[str]] | None:
        """(file name, labels) of the first label file of `kind` for output `output`."""
        for f in self.output_label_files.get(output, []):
            if f.kind == kind and f.name in self.associated_files:
                return f.name, parse_labels(self.associated_files[f.name].decode("utf-8",
                                                                                    "replace"))
        return None


def parse_labels(text: str) -> list[str]:
    """One label per line, in index order. Blank lines at the end are dropped; a blank
    line inside keeps its place (dropping it would shift every label after it)."""
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def read_tflite(path: Path) -> TfliteInfo:
    """Parse what the gateway needs from a model file (ValueError if malformed)."""
    data = Path(path).read_bytes()
    return parse_tflite(data)


def parse_tflite(data: bytes) -> TfliteInfo:
    info = TfliteInfo()
    if len(data) < 8:
        raise ValueError("file too short to be a TFLite model")
    model = _root(data)
    codes = []
    for oc in model.tables(_MODEL_OPERATOR_CODES):
        builtin = max(int(oc.scalar(_OPCODE_DEPRECATED_BUILTIN, "b")),
                      int(oc.scalar(_OPCODE_BUILTIN, "i")))
        custom = oc.string(_OPCODE_CUSTOM)
        codes.append(custom if builtin == 32 and custom else BUILTIN_NAMES.get(builtin,
                                                                               f"op{builtin}"))
    subgraphs = model.tables(_MODEL_SUBGRAPHS)
    if subgraphs:
        _read_graph(subgraphs[0], codes, info)
    buffers = model.tables(_MODEL_BUFFERS)
    for md in model.tables(_MODEL_METADATA):
        if md.string(_METADATA_NAME) != "TFLITE_METADATA":
            continue
        index = int(md.scalar(_METADATA_BUFFER, "I"))
        if index >= len(buffers):
            raise ValueError(f"metadata names buffer {index} of {len(buffers)}")
        _read_metadata(_buffer_bytes(data, buffers[index]), info)
    info.associated_files = _appended_zip(data)
    return info


def _buffer_bytes(data: bytes, buf: _Table) -> bytes:
    inline = buf.bytes(_BUFFER_DATA)
    if inline:
        return inline
    # Large models keep buffer contents after the flatbuffer: offset/size from the file start.
    offset, size = int(buf.scalar(_BUFFER_OFFSET, "Q")), int(buf.scalar(_BUFFER_SIZE, "Q"))
    if offset > 1 and offset + size <= len(data):
        return data[offset : offset + size]
    return b""


def _read_graph(graph: _Table, codes: list[str], info: TfliteInfo) -> None:
    producer: dict[int, tuple[str, list[int], _Table]] = {}
    for op in graph.tables(_SUBGRAPH_OPERATORS):
        code = int(op.scalar(_OPERATOR_OPCODE, "I"))
        name = codes[code] if code < len(codes) else f"op#{code}"
        inputs = [int(i) for i in op.scalars(_OPERATOR_INPUTS, "i")]
        for t in op.scalars(_OPERATOR_OUTPUTS, "i"):
            producer[int(t)] = (name, inputs, op)
        if name == DETECTION_POSTPROCESS:
            info.detection_classes = _num_classes(op.bytes(_OPERATOR_CUSTOM_OPTIONS))
    for out in graph.scalars(_SUBGRAPH_OUTPUTS, "i"):
        t, name = int(out), "INPUT"
        for _ in range(16):  # look through (de)quantise and reshapes
            if t not in producer:
                break
            name, inputs, _op = producer[t]
            if name not in PASSTHROUGH or not inputs:
                break
            t = inputs[0]
        info.output_ops[int(out)] = name


def _num_classes(options: bytes | None) -> int | None:
    """num_classes from a detection postprocess op's custom options (a FlexBuffer map).

    Read with flatbuffers.flexbuffers when that package is installed (ai-edge-litert
    depends on it); without it the check that uses this is skipped.
    """
    if not options:
        return None
    try:
        from flatbuffers import flexbuffers
    except ImportError:
        return None
    try:
        value = flexbuffers.Loads(options).get("num_classes")
    except Exception:  # noqa: BLE001 - any decoding failure means "unknown", not a crash
        return None
    return int(value) if isinstance(value, int) and value > 0 else None


def _read_metadata(buf: bytes, info: TfliteInfo) -> None:
    if len(buf) < 8 or buf[4:8] != b"M001":
        return  # not metadata_schema.fbs (its file identifier is M001)
    info.has_metadata = True
    root = _root(buf)
    graphs = root.tables(_MM_SUBGRAPH_METADATA)
    if not graphs:
        return
    sg = graphs[0]
    inputs = sg.tables(_SGM_INPUT_TENSORS)
    if inputs:
        for unit in inputs[0].tables(_TM_PROCESS_UNITS):
            if int(unit.scalar(_PU_OPTIONS_TYPE, "B")) != _NORMALIZATION_OPTIONS:
                continue
            opts = unit.table(_PU_OPTIONS)
            if opts is not None:
                mean = [float(v) for v in opts.scalars(_NO_MEAN, "f")]
                std = [float(v) for v in opts.scalars(_NO_STD, "f")]
                if mean and std:
                    info.normalization = (mean, std)
            break
    for i, tensor in enumerate(sg.tables(_SGM_OUTPUT_TENSORS)):
        files = [LabelFile(f.string(_AF_NAME) or "", int(f.scalar(_AF_TYPE, "b")))
                 for f in tensor.tables(_TM_ASSOCIATED_FILES)]
        labels = [f for f in files if f.kind in (TENSOR_AXIS_LABELS, TENSOR_VALUE_LABELS)]
        if labels:
            info.output_label_files[i] = labels


def _appended_zip(data: bytes) -> dict[str, bytes]:
    if b"PK\x05\x06" not in data[-65_557:]:  # no end-of-central-directory record
        return {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return {n: z.read(n) for n in z.namelist() if not n.endswith("/")}
    except (zipfile.BadZipFile, OSError, KeyError, NotImplementedError, EOFError):
        return {}

"""Real TFLite models made by tools/tflite_build.py, checked against numpy references.

Each model is tiny (8x8 input, one dense layer) so its math can be recomputed here
exactly: the published result must equal preprocessing done independently in this
file (float bilinear, the model's normalisation and quantisation) followed by the
model's own arithmetic. Models that do not fit their task or labels must be refused
with one clear line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.inference.camera import ImageFolder
from gateway.inference.image import resize
from gateway.inference.model import BadFrame, Model, ModelProblem, check_model
from gateway.inference.tflite_file import BUILTIN_NAMES, parse_tflite, read_tflite
from gateway.inference.validate import validate_model
from tools.tflite_build import SSD_SCALES, Metadata, classifier, detector, other, ssd

REPO = Path(__file__).resolve().parent.parent
K = 8 * 8 * 3
Arr = npt.NDArray[Any]


# -- independent references -------------------------------------------------------------


def ref_bilinear(img: Arr, h_out: int, w_out: int) -> Arr:
    """Float bilinear with aligned pixel centres, pixel by pixel (slow, obviously right)."""
    h, w = img.shape[:2]
    out = np.zeros((h_out, w_out, img.shape[2]))
    for i in range(h_out):
        sy = min(max((i + 0.5) * h / h_out - 0.5, 0.0), h - 1)
        y0 = int(sy)
        y1, fy = min(y0 + 1, h - 1), sy - int(sy)
        for j in range(w_out):
            sx = min(max((j + 0.5) * w / w_out - 0.5, 0.0), w - 1)
            x0 = int(sx)
            x1, fx = min(x0 + 1, w - 1), sx - int(sx)
            out[i, j] = ((1 - fy) * ((1 - fx) * img[y0, x0] + fx * img[y0, x1])
                         + fy * ((1 - fx) * img[y1, x0] + fx * img[y1, x1]))
    return out


def softmax(z: Arr) -> Arr:
    e = np.exp(z - z.max())
    out: Arr = e / e.sum()
    return out


def sigmoid(z: Arr) -> Arr:
    out: Arr = 1.0 / (1.0 + np.exp(-z))
    return out


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def weights(n: int, seed: int = 1, scale: float = 0.05) -> tuple[Arr, Arr]:
    rng = np.random.default_rng(seed)
    return (rng.normal(0, scale, (n, K)).astype(np.float32),
            rng.normal(0, 0.1, n).astype(np.float32))


def frame(seed: int = 0, h: int = 8, w: int = 8) -> Arr:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def scores_of(result: dict[str, Any]) -> dict[str, float]:
    return {x["label"]: x["score"] for x in result["labels"]}


# -- preprocessing matches training -------------------------------------------------------

MEAN, STD = [120.0, 110.0, 100.0], [60.0, 50.0, 40.0]


def test_float_model_uses_its_metadata_normalisation_and_labels(tmp_path: Path) -> None:
    w, b = weights(4)
    names = ["ant", "bee", "cat", "dog"]
    path = write(tmp_path, "m.tflite", classifier(w, b, metadata=Metadata(
        mean=MEAN, std=STD, labels={"classes.txt": (0, 2, names)})))
    model = Model(path, score_threshold=0.0, top_k=4)
    assert model.labels == names and "embedded classes.txt" in model.describe()
    assert model.plan.normalization is not None
    assert model.plan.normalization.source == "metadata"
    for seed in range(5):
        img = frame(seed)  # already the model size: no resampling in the way
        x = (img.astype(np.float64) - MEAN) / STD
        expected = softmax(w.astype(np.float64) @ x.reshape(-1) + b)
        got = scores_of(model.run(img).values)
        assert got == {n: round(float(expected[i]), 3) for i, n in enumerate(names)}


def test_float_model_resized_frame_matches_the_reference(tmp_path: Path) -> None:
    w, b = weights(4, scale=0.02)
    path = write(tmp_path, "m.tflite", classifier(w, b, metadata=Metadata(mean=MEAN, std=STD)))
    model = Model(path, score_threshold=0.0, top_k=4)
    for seed in range(4):
        img = frame(seed, 45, 61)
        x = (ref_bilinear(img.astype(np.float64), 8, 8) - MEAN) / STD
        expected = softmax(w.astype(np.float64) @ x.reshape(-1) + b)
        got = scores_of(model.run(img).values)
        # The resize works in 8-bit fixed point: within 2 levels of exact, so a score
        # moves by at most sum|w| * 2 / min(std) * max slope of softmax (< 0.01 here).
        for i in range(4):
            assert abs(got[f"class_{i}"] - expected[i]) < 0.01


def test_float_model_without_metadata_gets_minus_one_to_one(tmp_path: Path) -> None:
    w, b = weights(3)
    model = Model(write(tmp_path, "m.tflite", classifier(w, b)), score_threshold=0.0, top_k=3)
    img = frame(7)
    model.run(img)
    fed = model.interpreter.get_tensor(model.input["index"])[0]
    assert np.allclose(fed, (img.astype(np.float64) - 127.5) / 127.5, atol=1e-6)
    # A configured preset or mean/std wins over the default (and over metadata).
    unit = Model(write(tmp_path, "m.tflite", classifier(w, b)), preset="unit")
    unit.run(img)
    assert np.allclose(unit.interpreter.get_tensor(unit.input["index"])[0], img / 255.0,
                       atol=1e-6)
    cfg = Model(write(tmp_path, "m2.tflite", classifier(w, b, metadata=Metadata(
        mean=MEAN, std=STD))), mean=[10.0], std=[2.0])
    cfg.run(img)
    assert np.allclose(cfg.interpreter.get_tensor(cfg.input["index"])[0], (img - 10.0) / 2.0)


def test_uint8_quantised_model_takes_raw_pixels(tmp_path: Path) -> None:
    w, b = weights(5)
    path = write(tmp_path, "q.tflite", classifier(
        w, b, input_dtype="uint8", input_quant=(1 / 128, 128), output_dtype="uint8"))
    model = Model(path, score_threshold=0.0, top_k=5)
    assert model._tables is None  # no per-frame conversion at all
    for seed in range(4):
        img = frame(seed)
        got = scores_of(model.run(img).values)
        assert np.array_equal(model.interpreter.get_tensor(model.input["index"])[0], img)
        x = (img.astype(np.float64) - 128) / 128  # the input tensor's own dequantisation
        p = softmax(w.astype(np.float64) @ x.reshape(-1) + b)
        expected = np.clip(np.rint(p * 256), 0, 255) / 256  # quantised output, dequantised
        for i in range(5):
            assert abs(got[f"class_{i}"] - expected[i]) <= 1 / 256 + 5e-4


def test_int8_model_with_metadata_is_normalised_then_quantised(tmp_path: Path) -> None:
    w, b = weights(3)
    scale, zp = 1 / 128, 0  # real input -1..1
    path = write(tmp_path, "q8.tflite", classifier(
        w, b, input_dtype="int8", input_quant=(scale, zp), output_dtype="int8",
        metadata=Metadata(mean=[127.5], std=[127.5])))
    model = Model(path, score_threshold=0.0, top_k=3)
    img = frame(3)
    got = scores_of(model.run(img).values)
    q = np.clip(np.rint((img.astype(np.float64) - 127.5) / 127.5 / scale + zp), -128, 127)
    assert np.array_equal(model.interpreter.get_tensor(model.input["index"])[0], q)
    p = softmax(w.astype(np.float64) @ ((q - zp) * scale).reshape(-1) + b)
    for i in range(3):
        assert abs(got[f"class_{i}"] - p[i]) <= 1 / 256 + 5e-4
    # Without metadata an int8 input gets pixel - 128 (the quantised-model convention).
    bare = Model(write(tmp_path, "b8.tflite", classifier(
        w, b, input_dtype="int8", input_quant=(1 / 255, -128))))
    bare.run(img)
    assert np.array_equal(bare.interpreter.get_tensor(bare.input["index"])[0],
                          img.astype(np.int16) - 128)


def test_logits_get_a_softmax_so_scores_are_probabilities(tmp_path: Path) -> None:
    w, b = weights(4, scale=0.2)
    model = Model(write(tmp_path, "l.tflite", classifier(w, b, softmax=False)),
                  score_threshold=0.0, top_k=4)
    assert model.plan.scores == "logits"
    img = frame(2)
    x = (img.astype(np.float64) - 127.5) / 127.5
    expected = softmax(w.astype(np.float64) @ x.reshape(-1) + b)
    got = scores_of(model.run(img).values)
    assert all(abs(got[f"class_{i}"] - expected[i]) < 1e-3 for i in range(4))
    assert all(0.0 <= s <= 1.0 for s in got.values())


def test_grey_model_gets_luma(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    w = rng.normal(0, 0.05, (2, 64)).astype(np.float32)
    model = Model(write(tmp_path, "g.tflite", classifier(w, np.zeros(2, np.float32), channels=1)),
                  score_threshold=0.0, top_k=2)
    img = frame(4)
    model.run(img)
    luma = img.astype(np.float64) @ [0.299, 0.587, 0.114]
    fed = model.interpreter.get_tensor(model.input["index"])[0, :, :, 0]
    assert np.abs(fed - (luma - 127.5) / 127.5).max() <= 1.0 / 127.5 + 1e-6


# -- labels against classes -------------------------------------------------------------


def test_1001_class_head_with_a_1000_line_labels_file_is_refused(tmp_path: Path) -> None:
    w, b = weights(1001, scale=0.01)
    path = write(tmp_path, "imagenet.tflite", classifier(w, b))
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"label{i}\n" for i in range(1000)))
    problems = validate_model(path, labels=labels)
    assert problems == ["labels.txt has 1000 lines but the model has 1001 classes: "
                        "is the first line 'background' missing?"]
    with pytest.raises(ModelProblem, match="1000 lines but the model has 1001 classes"):
        Model(path, labels=labels)
    labels.write_text("background\n" + "".join(f"label{i}\n" for i in range(1001)))
    assert "is the first line 'background' a background class" in validate_model(
        path, labels=labels)[0]
    # The right file: the published top-1 is the reference's.
    labels.write_text("background\n" + "".join(f"label{i}\n" for i in range(1000)))
    assert validate_model(path, labels=labels) == []
    model = Model(path, labels=labels, score_threshold=0.0, top_k=1)
    img = frame(9)
    x = (img.astype(np.float64) - 127.5) / 127.5
    top = int(np.argmax(w.astype(np.float64) @ x.reshape(-1) + b))
    assert model.run(img).values["labels"][0]["label"] == ("background" if top == 0
                                                           else f"label{top - 1}")


def test_embedded_labels_config_labels_and_none(tmp_path: Path) -> None:
    w, b = weights(3)
    md = Metadata(labels={"labels.txt": (0, 2, ["red", "green", "blue"])})
    path = write(tmp_path, "e.tflite", classifier(w, b, metadata=md))
    assert Model(path).labels == ["red", "green", "blue"]
    mine = tmp_path / "mine.txt"
    mine.write_text("a\nb\nc\n\n")  # a trailing blank line is not a label
    assert Model(path, labels=mine).labels == ["a", "b", "c"]  # the configured file wins
    bare_dir = tmp_path / "bare"
    bare_dir.mkdir()
    bare = Model(write(bare_dir, "n.tflite", classifier(w, b)), score_threshold=0.0, top_k=3)
    assert bare.labels == []
    assert {x["label"] for x in bare.run(frame()).values["labels"]} == {
        "class_0", "class_1", "class_2"}


# -- detection: both output orders ---------------------------------------------------------


@pytest.mark.parametrize(("order", "names"), [
    ("tf1", "tf1"), ("tf2", "tf2"), ("tf2", "words"), ("tf2", "none"), ("tf1", "none")])
def test_detector_outputs_in_either_order(tmp_path: Path, order: str, names: str) -> None:
    n = 5
    rng = np.random.default_rng(11)
    wb = rng.normal(0, 0.05, (4 * n, K)).astype(np.float32)
    ws = rng.normal(0, 0.1, (n, K)).astype(np.float32)
    classes = [2.0, 0.0, 1.0, 2.0, 1.0]
    labels = ["cat", "dog", "fox"]
    cls_pos = 1 if order == "tf1" else 3
    md = Metadata(n_outputs=4, labels={"map.txt": (cls_pos, 3, labels)})
    path = write(tmp_path, "d.tflite", detector(wb, ws, classes, order=order, names=names,
                                                 metadata=md))
    model = Model(path, score_threshold=0.3, top_k=10)
    assert model.task == "detection" and model.labels == labels
    img = frame(21)
    x = ((img.astype(np.float64) - 127.5) / 127.5).reshape(-1)
    boxes = sigmoid(wb.astype(np.float64) @ x).reshape(n, 4)
    scores = sigmoid(ws.astype(np.float64) @ x)
    order_ = sorted((i for i in range(n) if scores[i] >= 0.3), key=lambda i: -scores[i])
    got = model.run(img).values["detections"]
    assert len(got) == len(order_) > 0
    for g, i in zip(got, order_, strict=True):
        assert g["label"] == labels[int(classes[i])]
        assert abs(g["score"] - scores[i]) <= 0.001
        assert np.allclose(g["box"], boxes[i], atol=2e-4)


def test_real_ssd_postprocess_operator_against_the_reference(tmp_path: Path) -> None:
    # The TFLite_Detection_PostProcess custom operator itself (as in TF1 SSD exports),
    # with a labelmap whose first line is the background ("???"), embedded.
    a, c = 3, 2
    anchors = np.array([[0.2, 0.2, 0.2, 0.2], [0.5, 0.7, 0.2, 0.2], [0.8, 0.3, 0.2, 0.2]],
                       np.float32)  # far apart: non-max suppression removes nothing
    rng = np.random.default_rng(17)
    wb = rng.normal(0, 0.05, (4 * a, K)).astype(np.float32)
    wc = rng.normal(0, 0.1, (a * (c + 1), K)).astype(np.float32)
    md = Metadata(n_outputs=4, labels={"labelmap.txt": (1, 3, ["???", "cat", "dog"])})
    path = write(tmp_path, "ssd.tflite", ssd(wb, wc, anchors, c, max_detections=3,
                                              metadata=md))
    model = Model(path, score_threshold=0.3, top_k=10)
    assert model.plan.classes == 2 and model.labels == ["cat", "dog"]  # background skipped
    for seed in range(3):
        img = frame(seed)
        x = ((img.astype(np.float64) - 127.5) / 127.5).reshape(-1)
        enc = (wb.astype(np.float64) @ x).reshape(a, 4)
        prob = sigmoid(wc.astype(np.float64) @ x).reshape(a, c + 1)
        expected = []
        for i in range(a):
            k = int(np.argmax(prob[i, 1:]))
            yc, xc, h, w = anchors[i].astype(np.float64)
            cy = enc[i, 0] / SSD_SCALES["y_scale"] * h + yc
            cx = enc[i, 1] / SSD_SCALES["x_scale"] * w + xc
            hh = np.exp(enc[i, 2] / SSD_SCALES["h_scale"]) * h
            ww = np.exp(enc[i, 3] / SSD_SCALES["w_scale"]) * w
            box = np.clip([cy - hh / 2, cx - ww / 2, cy + hh / 2, cx + ww / 2], 0, 1)
            expected.append((prob[i, 1 + k], ["cat", "dog"][k], box))
        expected = sorted((e for e in expected if e[0] >= 0.3), key=lambda e: -e[0])
        got = model.run(img).values["detections"]
        assert len(got) == len(expected)
        for g, (score, label, box) in zip(got, expected, strict=True):
            assert g["label"] == label and abs(g["score"] - score) <= 0.001
            assert np.allclose(g["box"], box, atol=2e-4)
    # A labels file that does not fit the operator's class count is refused.
    wrong = tmp_path / "coco.txt"
    wrong.write_text("".join(f"c{i}\n" for i in range(5)))
    assert validate_model(path, labels=wrong) == [
        "coco.txt has 5 labels but the model has 2 classes"]


def test_detector_label_count_against_its_postprocess_classes() -> None:
    from gateway.inference.tflite_file import TfliteInfo
    from gateway.inference.validate import plan_model

    outs = [{"shape": [1, 10, 4], "name": "TFLite_Detection_PostProcess", "index": 1},
            {"shape": [1, 10], "name": "TFLite_Detection_PostProcess:1", "index": 2},
            {"shape": [1, 10], "name": "TFLite_Detection_PostProcess:2", "index": 3},
            {"shape": [1], "name": "TFLite_Detection_PostProcess:3", "index": 4}]
    inp = [{"shape": [1, 300, 300, 3], "dtype": np.uint8, "quantization": (1 / 128, 128),
            "index": 0}]
    info = TfliteInfo(detection_classes=90)
    info.associated_files = {"labelmap.txt": b"???\n" + b"".join(
        b"c%d\n" % i for i in range(90))}
    from gateway.inference.tflite_file import LabelFile

    info.output_label_files = {1: [LabelFile("labelmap.txt", 3)]}
    plan = plan_model(inp, outs, info, model_path=Path("/nonexistent/m.tflite"))
    assert plan.labels[0] == "c0" and len(plan.labels) == 90  # background line skipped
    info.associated_files = {"labelmap.txt": b"".join(b"c%d\n" % i for i in range(80))}
    with pytest.raises(ModelProblem, match="has 80 labels but the model has 90 classes"):
        plan_model(inp, outs, info, model_path=Path("/nonexistent/m.tflite"))


# -- models of another kind are refused, in one line -------------------------------------


@pytest.mark.parametrize(("make", "task", "message"), [
    (lambda: other("pose"), "auto", "its output [1, 1, 17, 3] is not a vector of class scores"),
    (lambda: other("segmentation"), "auto", "its output [1, 4, 4, 5] is not a vector"),
    (lambda: other("pose"), "detection", "not an SSD detector"),
    (lambda: detector(np.zeros((8, K), np.float32), np.zeros((2, K), np.float32), [0, 1]),
     "classification", "the 4 outputs of an SSD detector"),
    (lambda: classifier(*weights(3)), "detection", "not an SSD detector: outputs [1, 3]"),
])
def test_models_of_another_kind_are_refused(tmp_path: Path, make: Any, task: str,
                                            message: str) -> None:
    path = write(tmp_path, "x.tflite", make())
    why = check_model(path, task)
    assert why is not None and message in why and "\n" not in why
    with pytest.raises(ModelProblem):
        Model(path, task=task)


def test_check_command_reports_a_label_mismatch_in_one_line(tmp_path: Path) -> None:
    w, b = weights(1001, scale=0.01)
    path = write(tmp_path, "net.tflite", classifier(w, b))
    labels = tmp_path / "imagenet.txt"
    labels.write_text("".join(f"l{i}\n" for i in range(1000)))
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(f"gateway:\n  id: x\ninference:\n  enabled: true\n  model: {path}\n"
                   f"  labels: {labels}\n")
    out = subprocess.run([sys.executable, "-m", "gateway", "check", "-c", str(cfg)],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 2, out
    lines = [x for x in out.stderr.splitlines() if "inference" in x]
    assert len(lines) == 1, out.stderr
    assert "imagenet.txt has 1000 lines but the model has 1001 classes" in lines[0]
    assert "Traceback" not in out.stderr


def test_a_frame_that_is_not_an_image_is_a_bad_frame(tmp_path: Path) -> None:
    model = Model(write(tmp_path, "m.tflite", classifier(*weights(2))))
    for junk in (np.zeros((4, 4, 7), np.uint8), np.zeros((3,), np.uint8),
                 np.zeros((0, 5, 3), np.uint8)):
        with pytest.raises(BadFrame):
            model.prepare(junk)


# -- the file reader ------------------------------------------------------------------------


def test_reader_agrees_with_the_tflite_schema_object_api(tmp_path: Path) -> None:
    # ai-edge-litert's generated schema code is an independent reader of the same files.
    from ai_edge_litert import schema_py_generated as schema

    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    through = {"DEQUANTIZE", "QUANTIZE", "RESHAPE", "SQUEEZE", "CAST"}
    md = Metadata(mean=[1.0, 2.0, 3.0], std=[4.0, 5.0, 6.0],
                  labels={"l.txt": (0, 2, ["x", "y"])})
    made = write(tmp_path, "m.tflite", classifier(*weights(2), input_dtype="uint8",
                                                  input_quant=(0.5, 3), output_dtype="uint8",
                                                  metadata=md))
    paths = [REPO / "models" / f"{n}.tflite"
             for n in ("shapes_float", "shapes_int8", "shapes_detect", "bench_int8")]
    for path in [*paths, made]:
        m = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
        g = m.subgraphs[0]
        producer = {int(t): op for op in g.operators for t in op.outputs}

        def name_of(op: Any, m: Any = m) -> str:
            code = m.operatorCodes[op.opcodeIndex]
            builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
            if code.customCode:
                return str(code.customCode.decode())
            # The reader names the operators it cares about, the rest by number.
            return op_names[builtin] if builtin in BUILTIN_NAMES else f"op{builtin}"

        expected = {}
        for out in g.outputs:
            t, name = int(out), "INPUT"
            while t in producer:
                name = name_of(producer[t])
                if name not in through:
                    break
                t = int(producer[t].inputs[0])
            expected[int(out)] = name
        info = read_tflite(path)
        assert info.output_ops == expected, path.name
        meta = [x for x in (m.metadata or []) if x.name == b"TFLITE_METADATA"]
        assert info.has_metadata == bool(meta), path.name
    info = read_tflite(made)
    assert info.normalization == ([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert info.labels(0, 2) == ("l.txt", ["x", "y"])


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=300), st.integers(0, 299))
def test_reader_survives_garbage(blob: bytes, cut: int) -> None:
    data = (REPO / "models" / "shapes_int8.tflite").read_bytes()
    for candidate in (blob, data[:cut] + blob, blob[:4] + b"M001" + blob[8:]):
        try:
            parse_tflite(candidate)
        except ValueError:
            pass  # the only way it may fail


# -- resizing ---------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 40), st.integers(2, 40), st.integers(1, 30), st.integers(1, 30),
       st.integers(0, 2**31))
def test_bilinear_is_within_three_levels_of_exact(h: int, w: int, oh: int, ow: int,
                                                seed: int) -> None:
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    got = resize(img, oh, ow).astype(np.float64)
    # Two separable passes, each with 7-bit weights (error up to 255/256 between its two
    # taps) and a rounding (0.5): at most ~3 levels from exact; 2.04 has been seen.
    assert np.abs(got - ref_bilinear(img.astype(np.float64), oh, ow)).max() <= 3.0


def test_area_averages_whole_blocks() -> None:
    img = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    got = resize(img, 12, 16, "area")
    blocks = img.reshape(12, 4, 16, 4, 3).astype(np.float64).mean(axis=(1, 3))
    assert np.abs(got - blocks).max() <= 0.5 + 1e-9
    # A fractional factor: whole blocks of 2, then bilinear from 24x32 to 20x30.
    frac = resize(img, 20, 30, "area")
    assert frac.shape == (20, 30, 3)
    halves = img.reshape(24, 2, 32, 2, 3).astype(np.float64).mean(axis=(1, 3))
    assert np.abs(frac - ref_bilinear(np.rint(halves), 20, 30)).max() <= 2.0


# -- bad frames: skipped, counted, the folder goes on ------------------------------------------


def test_image_folder_skips_an_undecodable_file(tmp_path: Path) -> None:
    imgs = [frame(i, 12, 16) for i in range(3)]
    np.save(tmp_path / "a.npy", imgs[0])
    (tmp_path / "b.ppm").write_bytes(b"P6\n16 12\n255\n" + b"\x00" * 10)  # truncated
    np.save(tmp_path / "c.npy", imgs[2])
    (tmp_path / "d.pgm").write_bytes(b"garbage")
    cam = ImageFolder(tmp_path)
    got = [cam.read() for _ in range(4)]
    assert [np.array_equal(g, e) for g, e in zip(got, [imgs[0], imgs[2]] * 2,
                                                 strict=True)] == [True] * 4
    assert cam.bad_frames == 2  # each bad file counted once, not re-read while unchanged
    assert cam.last_bad is not None and "d.pgm" in cam.last_bad
    # A restart begins where the last worker was, not at the first file.
    assert np.array_equal(ImageFolder(tmp_path, start=2).read(), imgs[2])


def test_worker_goes_on_past_bad_files_and_a_restart_keeps_the_position(
        tmp_path: Path) -> None:
    from gateway.config.model import InferenceSection
    from gateway.health import DeviceHealth
    from gateway.inference.supervisor import InferenceSupervisor
    from gateway.readers.base import ReaderContext
    from hardware_sim.camera import render

    folder = tmp_path / "frames"
    folder.mkdir()
    shapes = ["circle", "square", "triangle", "empty"]
    for i, shape in enumerate(shapes):
        np.save(folder / f"{i}a.npy", render(np.random.default_rng(i), 160, 120, shape).image)
        (folder / f"{i}b.jpg").write_bytes(b"not a jpeg")  # undecodable (or no OpenCV)
    seen: list[str] = []
    cond = threading.Condition()

    def put(r: Any) -> bool:
        with cond:
            seen.append(r.values["labels"][0]["label"] if r.values["labels"] else "")
            cond.notify_all()
        return True

    cfg = InferenceSection(enabled=True, model=REPO / "models" / "shapes_int8.tflite",
                           camera=str(folder), fps=4.0, publish_interval=0.0,
                           score_threshold=0.0, top_k=1, heartbeat_timeout=10.0)
    sup = InferenceSupervisor(cfg, ReaderContext(put=put, health=DeviceHealth("cam", "inference")),
                              restart_base=0.2, restart_cap=1.0)
    sup.start()
    try:
        with cond:
            assert cond.wait_for(lambda: len(seen) >= 6, 60), sup.last_error
        assert seen[:6] == shapes + shapes[:2]  # every good file, in order, past the bad ones
        assert sup.bad_frames >= 4 and sup.restarts == 0
        assert sup.ctx.health.counters["bad_frames"] == sup.bad_frames
        pid = sup.worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # freeze, let its last messages land, then kill
        time.sleep(0.5)
        with cond:
            n = len(seen)
            position = sup._camera_position
        assert position is not None
        os.kill(pid, signal.SIGKILL)
        with cond:
            assert cond.wait_for(lambda: len(seen) >= n + 2, 60), sup.last_error
            after = seen[n]
        assert sup.restarts == 1
        # The next good file from where the killed worker stood (files alternate good, bad).
        assert after == shapes[((position + 1) // 2) % 4]
    finally:
        sup.stop()


@pytest.mark.parametrize(("extra", "message"), [
    ("  mean: [127.5]\n", "inference.mean and inference.std go together"),
    ("  mean: [1, 2]\n  std: [1, 2]\n", "1 value, or 3"),
    ("  mean: [0]\n  std: [0]\n", "must be > 0"),
    ("  preset: unit\n  mean: [0]\n  std: [1]\n", "not both"),
    ("  preset: torch\n", "inference.preset"),
    ("  resize: cubic\n", "inference.resize"),
])
def test_config_refuses_bad_normalisation_settings(tmp_path: Path, extra: str,
                                                   message: str) -> None:
    from gateway.config import ConfigError, load_config

    cfg = tmp_path / "gw.yaml"
    cfg.write_text(f"gateway:\n  id: x\ninference:\n  enabled: true\n"
                   f"  model: {REPO / 'models' / 'shapes_int8.tflite'}\n{extra}")
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert message in "\n".join(str(p) for p in err.value.problems)


def test_config_normalisation_reaches_the_worker() -> None:
    from gateway.config.model import InferenceSection
    from gateway.inference.supervisor import settings_for

    s = settings_for(InferenceSection(enabled=True, model=REPO / "models" / "shapes_int8.tflite",
                                      mean=[1, 2, 3], std=[4, 5, 6], resize="area"))
    assert (s.mean, s.std, s.resize, s.preset) == ((1, 2, 3), (4, 5, 6), "area", None)


def test_non_finite_model_output_is_a_bad_frame_and_the_worker_goes_on(tmp_path: Path) -> None:
    import multiprocessing

    from gateway.inference.camera import open_camera
    from gateway.inference.worker import WorkerSettings, _loop

    w = np.full((2, K), np.inf, np.float32)  # inf * pixel: the logits are not numbers
    path = write(tmp_path, "nan.tflite", classifier(w, np.zeros(2, np.float32), softmax=False))
    model = Model(path)
    with pytest.raises(BadFrame, match="not finite"):
        model.run(frame())
    parent, child = multiprocessing.Pipe()
    camera = open_camera("sim")
    code: list[int] = []
    loop = threading.Thread(target=lambda: code.append(_loop(
        child, WorkerSettings(model=str(path), fps=50.0), model, camera)), name="test-loop")
    loop.start()
    kinds: list[tuple[Any, ...]] = []
    try:
        while sum(m[0] == "bad" for m in kinds) < 3 and parent.poll(30):
            kinds.append(parent.recv())
    finally:
        parent.send("stop")
        loop.join(30)
    assert code == [0]  # stopped when told, never crashed
    bad = [m for m in kinds if m[0] == "bad"]
    assert len(bad) >= 3 and "not finite" in bad[0][1]
    assert bad[-1][2]["bad"] >= 3  # counted in the stats the supervisor reads

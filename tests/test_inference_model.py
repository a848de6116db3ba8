"""The shipped models on the real TFLite interpreter, pre/postprocessing, camera sources."""

from __future__ import annotations

import sys
import unittest.mock
from pathlib import Path

import numpy as np
import pytest

from gateway.inference.camera import CameraError, ImageFolder, open_camera, read_pnm
from gateway.inference.image import crop, prepare, resize
from gateway.inference.model import (
    Model,
    check_model,
    decode_detections,
    dequantize,
    detection_outputs,
    read_labels,
)
from gateway.inference.preprocess import PRESETS, Normalization, apply_tables, input_tables
from gateway.inference.runtime import RUNTIME
from hardware_sim.camera import LABELS, SimCamera, dataset, render

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"
FLOAT = MODELS / "shapes_float.tflite"
INT8 = MODELS / "shapes_int8.tflite"
#: Stated accuracy floor on frames the model never saw (measured 0.99+ for both files).
MIN_ACCURACY = 0.95
#: tools/make_model.py trains on seed 20261125 and validates on 20261126: use others.
HELD_OUT_SEEDS = (7, 4242)


def accuracy(model: Model, seed: int, n: int = 200) -> float:
    images, truths = dataset(n, seed=seed)
    right = 0
    for img, truth in zip(images, truths, strict=True):
        labels = model.run(img).values["labels"]
        right += bool(labels) and labels[0]["label"] == truth.label
    return right / n


def test_runtime_is_the_one_the_extra_pins_here() -> None:
    # The `inference` extra picks one runtime per platform (tests/test_markers.py); it
    # must be the one in use (ai-edge-litert on x86_64 CI, tflite-runtime on bookworm ARM).
    import platform
    import sys

    from tests.test_markers import env, runtime_of, selected

    here = env(platform.machine(), f"{sys.version_info.major}.{sys.version_info.minor}")
    assert runtime_of(selected("inference", here)) == RUNTIME


def test_shipped_models_are_small_and_labelled() -> None:
    for p in (FLOAT, INT8):
        assert 4_000 < p.stat().st_size < 200_000, p
    assert read_labels(MODELS / "labels.txt") == list(LABELS)


@pytest.mark.parametrize("path", [FLOAT, INT8], ids=["float", "int8"])
def test_accuracy_on_held_out_simulator_frames(path: Path) -> None:
    model = Model(path, score_threshold=0.0, top_k=1)
    assert model.task == "classification"
    assert model.labels == list(LABELS)
    for seed in HELD_OUT_SEEDS:
        acc = accuracy(model, seed)
        assert acc >= MIN_ACCURACY, f"{path.name} seed {seed}: accuracy {acc:.3f}"


def test_scenes_from_the_running_sim_camera_are_classified() -> None:
    model = Model(INT8, score_threshold=0.0, top_k=1)
    cam = SimCamera(seed=99, hold=1)
    right = 0
    for _ in range(100):
        frame = cam.read()
        right += model.run(frame.image).values["labels"][0]["label"] == frame.truth.label
    assert right >= 95


def test_int8_input_is_quantised_with_the_tensor_scale_and_zero_point() -> None:
    model = Model(INT8)
    detail = model.input
    assert np.dtype(detail["dtype"]) == np.int8
    scale, zp = detail["quantization"]
    # Converted with 0..1 representative data: real = (q - zp) * scale covers 0..1.
    assert scale == pytest.approx(1 / 255, rel=1e-3)
    assert zp == -128
    pixels = np.array([[[0, 128, 255]]], dtype=np.uint8)
    # The model's metadata says p/255 (as it was trained).
    assert model.plan.normalization == Normalization((0.0,), (255.0,), "metadata")
    q = apply_tables(pixels, input_tables(detail, model.plan.normalization, 3))
    assert q.dtype == np.int8
    # q = round(p/255/scale + zp), worked by hand: 0 -> -128, 128 -> 0, 255 -> 127.
    assert q.tolist() == [[[-128, 0, 127]]]


@pytest.mark.parametrize("path", [FLOAT, INT8], ids=["float", "int8"])
def test_input_tensor_is_the_quantised_frame(path: Path) -> None:
    # The model maps pixels through a lookup table; the tensor it feeds must equal
    # quantising the resized frame value by value.
    model = Model(path, roi=(0.1, 0.2, 0.9, 0.8))
    frame = render(np.random.default_rng(21), 160, 120, "triangle").image
    model.run(frame)
    fed = model.interpreter.get_tensor(model.input["index"])[0]
    real = prepare(frame, 64, 64, (0.1, 0.2, 0.9, 0.8)).astype(np.float64) / 255.0  # metadata
    if np.dtype(model.input["dtype"]) == np.int8:
        scale, zp = model.input["quantization"]
        expected = np.clip(np.rint(real / scale + zp), -128, 127).astype(np.int8)
    else:
        expected = real.astype(np.float32)
    assert fed.dtype == expected.dtype
    assert np.allclose(fed.astype(np.float64), expected.astype(np.float64), atol=1e-6)


def test_uint8_and_float_inputs() -> None:
    pixels = np.array([[[0, 51, 255]]], dtype=np.uint8)
    mobilenet = Normalization(*PRESETS["mobilenet"], "test")
    u8 = {"dtype": np.uint8, "quantization": (0.0078125, 128)}
    assert input_tables(u8, None, 3) is None  # uint8 models take raw pixels
    # ... also when the normalisation is known and the quantisation encodes it (within 1).
    assert input_tables(u8, mobilenet, 3) is None
    unit = Normalization(*PRESETS["unit"], "test")
    f = apply_tables(pixels, input_tables({"dtype": np.float32, "quantization": (0.0, 0)},
                                          unit, 3))
    assert f.dtype == np.float32
    assert f.tolist()[0][0] == pytest.approx([0.0, 0.2, 1.0])
    m = apply_tables(pixels, input_tables({"dtype": np.float32}, mobilenet, 3))
    assert m.tolist()[0][0] == pytest.approx([-1.0, (51 - 127.5) / 127.5, 1.0])


def test_int8_output_is_dequantised_like_the_float_model() -> None:
    f_model = Model(FLOAT, score_threshold=0.0, top_k=4)
    q_model = Model(INT8, score_threshold=0.0, top_k=4)
    out = q_model.outputs[0]
    scale, zp = out["quantization"]
    assert np.dtype(out["dtype"]) == np.int8 and scale > 0
    images, _ = dataset(40, seed=31)
    for img in images:
        q_model.run(img)
        raw = q_model.interpreter.get_tensor(out["index"]).astype(np.float64)
        expected = (raw - zp) * scale
        got = dequantize(q_model.interpreter.get_tensor(out["index"]), out)
        assert np.allclose(got, expected)
        assert abs(float(got.sum()) - 1.0) < 0.05  # softmax survives quantisation
        f_model.run(img)
        f_scores = f_model.output(0).reshape(-1)
        assert np.max(np.abs(f_scores - got.reshape(-1))) < 0.1


def test_threshold_and_top_k() -> None:
    images, _ = dataset(8, seed=5)
    strict = Model(INT8, score_threshold=1.01, top_k=3)  # nothing can pass
    loose = Model(INT8, score_threshold=0.0, top_k=3)
    for img in images:
        assert strict.run(img).values == {"labels": []}
        labels = loose.run(img).values["labels"]
        assert len(labels) == 3
        scores = [x["score"] for x in labels]
        assert scores == sorted(scores, reverse=True)


def test_region_of_interest_selects_what_the_model_sees() -> None:
    rng = np.random.default_rng(12)
    left = render(rng, 160, 120, "empty").image
    right = render(rng, 160, 120, "circle").image
    wide = np.concatenate([left, right], axis=1)  # 120 x 320
    on_left = Model(FLOAT, roi=(0.0, 0.0, 1.0, 0.5), top_k=1, score_threshold=0.0)
    on_right = Model(FLOAT, roi=(0.0, 0.5, 1.0, 1.0), top_k=1, score_threshold=0.0)
    assert on_left.run(wide).values["labels"][0]["label"] == "empty"
    assert on_right.run(wide).values["labels"][0]["label"] == "circle"


def test_crop_and_resize() -> None:
    img = np.arange(12 * 8 * 3, dtype=np.uint8).reshape(12, 8, 3)
    assert crop(img, (0.25, 0.5, 0.75, 1.0)).shape == (6, 4, 3)
    assert np.array_equal(crop(img, (0.25, 0.5, 0.75, 1.0)), img[3:9, 4:8])
    small = resize(img, 6, 4, "nearest")  # exact 2x: every second pixel, from 1
    assert np.array_equal(small, img[1::2, 1::2])
    # Bilinear, exact 2x: the source point falls between 2x2 pixels: their mean (within 1).
    block_mean = img.reshape(6, 2, 4, 2, 3).astype(np.float64).mean(axis=(1, 3))
    assert np.abs(resize(img, 6, 4).astype(np.float64) - block_mean).max() <= 1.0
    grey = np.zeros((10, 10), dtype=np.uint8)
    assert prepare(grey, 5, 5).shape == (5, 5, 3)


# -- detection postprocess (the standard TFLite_Detection_PostProcess outputs) ----------


def test_detection_postprocess_on_synthetic_tensors() -> None:
    labels = ["person", "car", "dog"]
    boxes = np.array([[[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.2, 0.3], [0.3, 0.3, 0.4, 0.4],
                       [0.5, 0.5, 0.9, 0.9]]], dtype=np.float32)
    classes = np.array([[1.0, 0.0, 2.0, 7.0]], dtype=np.float32)
    scores = np.array([[0.62, 0.91, 0.3, 0.8]], dtype=np.float32)
    count = np.array([3.0], dtype=np.float32)  # the 4th slot is padding and must be ignored
    got = decode_detections(boxes, classes, scores, count, labels, threshold=0.5, top_k=10)
    assert got == [
        {"label": "person", "score": 0.91, "box": [0.0, 0.0, 1.0, 0.3]},  # clipped to 0..1
        {"label": "car", "score": 0.62, "box": [0.1, 0.2, 0.5, 0.6]},
    ]
    assert len(decode_detections(boxes, classes, scores, count, labels, 0.5, top_k=1)) == 1
    # All four with count 4: the unknown class index becomes class_7.
    everything = decode_detections(boxes, classes, scores, np.array([4.0]), labels, 0.0, 10)
    assert [d["label"] for d in everything] == ["person", "class_7", "car", "dog"]


def test_detection_boxes_map_back_from_the_roi() -> None:
    roi = (0.2, 0.4, 0.6, 1.0)  # ymin, xmin, ymax, xmax of the frame
    box = np.array([[[0.5, 0.5, 1.0, 1.0]]])
    got = decode_detections(box, np.array([[0.0]]), np.array([[0.9]]), np.array([1.0]),
                            ["a"], 0.5, 5, roi=roi)
    # Centre of the ROI to its bottom-right corner, in frame coordinates (by hand):
    # y: 0.2 + 0.5*0.4 = 0.4 .. 0.6; x: 0.4 + 0.5*0.6 = 0.7 .. 1.0.
    assert got[0]["box"] == [0.4, 0.7, 0.6, 1.0]


def test_detection_outputs_found_by_shape_and_name() -> None:
    tf1 = [{"shape": [1, 10, 4], "name": "TFLite_Detection_PostProcess"},
           {"shape": [1, 10], "name": "TFLite_Detection_PostProcess:1"},
           {"shape": [1, 10], "name": "TFLite_Detection_PostProcess:2"},
           {"shape": [1], "name": "TFLite_Detection_PostProcess:3"}]
    assert detection_outputs(tf1) == (0, 1, 2, 3)
    tf2 = [{"shape": [1, 10], "name": "detection_scores"},
           {"shape": [1, 10, 4], "name": "detection_boxes"},
           {"shape": [1], "name": "num_detections"},
           {"shape": [1, 10], "name": "detection_classes"}]
    assert detection_outputs(tf2) == (1, 3, 0, 2)


def test_check_model_reports_a_corrupt_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    why = check_model(bad)
    assert why is not None and "not a usable TFLite model" in why and "\n" not in why
    assert check_model(INT8) is None
    assert "cannot read" in (check_model(tmp_path / "missing.tflite") or "")
    # A classifier is not a detector: forcing the task is refused clearly.
    assert "not an SSD detector" in (check_model(INT8, task="detection") or "")


# -- the simulated camera --------------------------------------------------------------


def test_sim_camera_is_deterministic_and_holds_scenes() -> None:
    a, b = SimCamera(seed=3, hold=4), SimCamera(seed=3, hold=4)
    fa = [a.read() for _ in range(8)]
    fb = [b.read() for _ in range(8)]
    for x, y in zip(fa, fb, strict=True):
        assert np.array_equal(x.image, y.image) and x.truth == y.truth
    assert len({f.truth for f in fa[:4]}) == 1  # one scene for `hold` frames
    assert not np.array_equal(fa[0].image, fa[1].image)  # re-noised each frame


@pytest.mark.parametrize("label", ["circle", "square", "triangle"])
def test_sim_truth_box_matches_the_drawn_pixels(label: str) -> None:
    frame = render(np.random.default_rng(8), 160, 120, label, noise=0.0)
    img = frame.image.astype(int)
    # The background is a colour plus a smooth ramp (< 25 per axis); the shape differs by
    # more than 100 in colour distance, so a large jump from the corner colour finds it.
    diff = np.linalg.norm(img - img[0, 0], axis=2) > 60
    ys, xs = np.nonzero(diff)
    assert frame.truth.box is not None
    ymin, xmin, ymax, xmax = frame.truth.box
    assert abs(ys.min() / 120 - ymin) < 0.03 and abs((ys.max() + 1) / 120 - ymax) < 0.03
    assert abs(xs.min() / 160 - xmin) < 0.03 and abs((xs.max() + 1) / 160 - xmax) < 0.03


# -- camera sources ---------------------------------------------------------------------


def test_image_folder_replays_npy_and_ppm(tmp_path: Path) -> None:
    a = render(np.random.default_rng(1), 40, 30, "square").image
    b = render(np.random.default_rng(2), 40, 30, "circle").image
    np.save(tmp_path / "a.npy", a)
    header = b"P6\n# made by the test\n40 30\n255\n"
    (tmp_path / "b.ppm").write_bytes(header + b.tobytes())
    (tmp_path / "notes.txt").write_text("not an image")
    assert np.array_equal(read_pnm(tmp_path / "b.ppm"), b)
    cam = open_camera(str(tmp_path))
    assert isinstance(cam, ImageFolder)
    got = [cam.read() for _ in range(3)]
    assert np.array_equal(got[0], a) and np.array_equal(got[1], b)
    assert np.array_equal(got[2], a)  # loops


def test_cameras_that_cannot_open_say_why(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="no such device"):
        open_camera("/dev/video99")
    with pytest.raises(CameraError, match="not sim, picamera2"):
        open_camera(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CameraError, match="has no images"):
        open_camera(str(tmp_path / "empty"))


def test_picamera2_missing_is_a_clear_error() -> None:
    # picamera2 comes from apt on a Pi; make sure it is absent here whatever is installed.
    with unittest.mock.patch.dict(sys.modules, {"picamera2": None}), \
            pytest.raises(CameraError, match="picamera2 is not importable"):
        open_camera("picamera2")


@pytest.mark.parametrize(("roi", "message"), [
    ("[0.5, 0.25, 0.4, 0.75]", "ymin < ymax"),
    ("[0.0, 0.0, 1.5, 1.0]", "0..1"),
])
def test_config_refuses_a_bad_roi(tmp_path: Path, roi: str, message: str) -> None:
    from gateway.config import ConfigError, load_config

    cfg = tmp_path / "gw.yaml"
    cfg.write_text(f"gateway:\n  id: x\ninference:\n  enabled: true\n  model: {INT8}\n"
                   f"  roi: {roi}\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    text = "\n".join(str(p) for p in err.value.problems)
    assert "inference.roi" in text and message in text and ":6:" in text


# -- the shipped single-box detector (SSD-style outputs) --------------------------------

DETECT = MODELS / "shapes_detect.tflite"
DETECT_LABELS = MODELS / "detect_labels.txt"


def iou(a: list[float] | tuple[float, ...], b: list[float] | tuple[float, ...]) -> float:
    """Intersection over union of two [ymin, xmin, ymax, xmax] boxes."""
    ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iw = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ih * iw
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def test_detector_finds_the_shape_and_its_box() -> None:
    model = Model(DETECT, labels=DETECT_LABELS, top_k=3)
    assert model.task == "detection"  # recognised by its 4 outputs
    assert model.labels == ["circle", "square", "triangle"]
    images, truths = dataset(300, seed=8080)
    hits = objects = empty_ok = empties = 0
    for img, truth in zip(images, truths, strict=True):
        dets = model.run(img).values["detections"]
        for d in dets:
            assert set(d) == {"label", "score", "box"} and len(d["box"]) == 4
        if truth.box is None:
            empties += 1
            empty_ok += not dets
        else:
            objects += 1
            hits += bool(dets) and dets[0]["label"] == truth.label and iou(
                dets[0]["box"], truth.box) > 0.5
    assert hits / objects >= 0.9, f"{hits}/{objects} found with IoU > 0.5"
    assert empty_ok / empties >= 0.9, f"{empty_ok}/{empties} empty frames left empty"


def test_detector_box_is_mapped_back_from_the_roi() -> None:
    rng = np.random.default_rng(5)
    left = render(rng, 160, 120, "empty").image
    right = render(rng, 160, 120, "square")
    wide = np.concatenate([left, right.image], axis=1)  # the square is in the right half
    assert right.truth.box is not None
    ymin, xmin, ymax, xmax = right.truth.box
    truth_in_wide = (ymin, 0.5 + xmin / 2, ymax, 0.5 + xmax / 2)
    model = Model(DETECT, labels=DETECT_LABELS, roi=(0.0, 0.5, 1.0, 1.0))
    dets = model.run(wide).values["detections"]
    assert dets and dets[0]["label"] == "square"
    assert iou(dets[0]["box"], truth_in_wide) > 0.5
    assert dets[0]["box"][1] >= 0.5  # in whole-frame coordinates, inside the ROI


def test_unnamed_detection_outputs_follow_their_declared_positions() -> None:
    # What a Keras export looks like: the order in the file is shuffled, the suffix is
    # the declared position (boxes, classes, scores, count).
    shuffled = [{"shape": [1, 1], "name": "StatefulPartitionedCall_1:1"},
                {"shape": [1], "name": "StatefulPartitionedCall_1:3"},
                {"shape": [1, 1, 4], "name": "StatefulPartitionedCall_1:0"},
                {"shape": [1, 1], "name": "StatefulPartitionedCall_1:2"}]
    assert detection_outputs(shuffled) == (2, 0, 3, 1)

"""Camera sources, opened and read inside the inference worker process.

`open_camera(spec)` understands the `inference.camera` setting:

- ``sim``: hardware_sim's synthetic camera (known labels and boxes);
- ``/dev/videoN`` (or a bare index ``N``): a V4L2 device through OpenCV
  (the ``camera`` extra), its buffer kept at one frame so a slow model always
  sees the newest frame instead of a queue of old ones;
- ``picamera2``: the Raspberry Pi camera stack, when importable (from apt);
- a directory: an image folder replayed in name order, looping (``.npy``,
  binary ``.ppm``/``.pgm`` with numpy alone; ``.png``/``.jpg`` need OpenCV);
  a file that cannot be decoded is skipped and counted (`bad_frames`) and not
  read again until it changes;
- any other file: a video replayed through OpenCV at its own frame rate,
  skipping the frames that went by while the model was busy.

Every source returns H x W x 3 RGB uint8 frames from `read()` and raises
`CameraError` (a clear, one-line reason) when it cannot deliver.
OpenCV and picamera2 are imported lazily: neither is needed for `sim`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from gateway.inference.image import as_rgb

Frame = npt.NDArray[np.uint8]

IMAGE_SUFFIXES = (".npy", ".ppm", ".pgm", ".png", ".jpg", ".jpeg", ".bmp")


class CameraError(RuntimeError):
    """The camera cannot be opened or read."""


class Source(Protocol):
    #: Camera frames that went by unseen (a video replayed slower than it plays).
    skipped: int
    #: Frames that could not be used (undecodable files), skipped and counted.
    bad_frames: int

    def read(self) -> Frame: ...

    def close(self) -> None: ...


def _cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise CameraError(
            "OpenCV is needed for this camera source: pip install 'edge-gateway[camera]'"
        ) from exc
    return cv2


class SimSource:
    def __init__(self, seed: int = 0, width: int = 160, height: int = 120, hold: int = 5) -> None:
        # The synthetic camera (`camera: sim`) is the simulator's; this is the one place
        # the product reaches into hardware_sim (an allowed exception in pyproject's contract).
        from hardware_sim.camera import SimCamera

        self.cam = SimCamera(width=width, height=height, seed=seed, hold=hold)
        self.skipped = 0
        self.bad_frames = 0

    def read(self) -> Frame:
        return self.cam.read().image

    def close(self) -> None:
        self.cam.close()


class OpenCVDevice:
    """A V4L2 device (or anything cv2.VideoCapture opens live)."""

    def __init__(self, device: str | int) -> None:
        cv2 = _cv2()
        self.cv2 = cv2
        self.name = str(device)
        self.cap = cv2.VideoCapture(device, cv2.CAP_V4L2) if isinstance(device, int) or str(
            device).startswith("/dev/") else cv2.VideoCapture(device)
        if not self.cap.isOpened():
            self.cap.release()
            raise CameraError(f"cannot open camera {self.name} (missing, busy, or no permission: "
                              "the user needs the 'video' group)")
        # Keep only the newest frame in the driver: frames are dropped, never queued.
        self.cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self.skipped = 0
        self.bad_frames = 0

    def read(self) -> Frame:
        ok, bgr = self.cap.read()
        if not ok or bgr is None:
            raise CameraError(f"camera {self.name}: no frame (unplugged?)")
        rgb: Frame = self.cv2.cvtColor(bgr, self.cv2.COLOR_BGR2RGB)
        return rgb

    def close(self) -> None:
        self.cap.release()


class VideoFile:
    """A video file replayed in real time at its own frame rate, looping."""

    def __init__(self, path: Path) -> None:
        cv2 = _cv2()
        self.cv2 = cv2
        self.path = path
        self.cap = cv2.VideoCapture(str(path))
        if not self.cap.isOpened():
            self.cap.release()
            raise CameraError(f"cannot open video {path}")
        fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0 < fps < 1000 else 25.0
        self.started = time.monotonic()
        self.position = 0  # frames consumed since started
        self.skipped = 0
        self.bad_frames = 0

    def read(self) -> Frame:
        # Skip (grab without decoding) the frames that played while we were busy.
        target = int((time.monotonic() - self.started) * self.fps)
        while self.position < target:
            if not self.cap.grab():
                self._rewind()
                break
            self.position += 1
            self.skipped += 1
        ok, bgr = self.cap.read()
        if not ok:
            self._rewind()
            ok, bgr = self.cap.read()
            if not ok:
                raise CameraError(f"video {self.path}: no frames")
        self.position += 1
        rgb: Frame = self.cv2.cvtColor(bgr, self.cv2.COLOR_BGR2RGB)
        return rgb

    def _rewind(self) -> None:
        self.cap.set(self.cv2.CAP_PROP_POS_FRAMES, 0)
        self.started = time.monotonic()
        self.position = 0

    def close(self) -> None:
        self.cap.release()


def read_pnm(path: Path) -> Frame:
    """Binary PPM (P6) or PGM (P5), 8 bits per sample (netpbm formats)."""
    data = path.read_bytes()
    try:
        return _parse_pnm(path, data)
    except (IndexError, ValueError) as exc:  # a truncated or garbled header or body
        raise CameraError(f"{path}: not a readable PPM/PGM ({exc})") from exc


def _parse_pnm(path: Path, data: bytes) -> Frame:
    fields: list[bytes] = []
    pos = 0
    while len(fields) < 4:
        while pos < len(data) and data[pos : pos + 1].isspace():
            pos += 1
        if data[pos : pos + 1] == b"#":  # comment to end of line
            pos = data.index(b"\n", pos) + 1
            continue
        start = pos
        while pos < len(data) and not data[pos : pos + 1].isspace():
            pos += 1
        fields.append(data[start:pos])
    magic, width, height, maxval = fields[0], int(fields[1]), int(fields[2]), int(fields[3])
    if magic not in (b"P5", b"P6") or maxval > 255:
        raise CameraError(f"{path}: only binary 8-bit PPM (P6) / PGM (P5) are supported")
    channels = 3 if magic == b"P6" else 1
    pixels = np.frombuffer(data, dtype=np.uint8, count=width * height * channels, offset=pos + 1)
    return pixels.reshape(height, width, channels)


def read_image(path: Path) -> Frame:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
        return np.asarray(arr, dtype=np.uint8)
    if suffix in (".ppm", ".pgm"):
        return read_pnm(path)
    cv2 = _cv2()
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise CameraError(f"{path}: cannot decode image")
    rgb: Frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return rgb


class ImageFolder:
    """Images in a directory, in name order, looping.

    An unreadable or undecodable file is skipped (counted in `bad_frames`, its reason
    in `last_bad`) and the next one is read in the same call; it is not tried again
    while its size and modification time stay the same. `position` is the index of
    the next file, so a restarted worker can go on where the last one stopped.
    """

    def __init__(self, path: Path, start: int = 0) -> None:
        self.path = path
        self.files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise CameraError(f"image folder {path} has no images ({', '.join(IMAGE_SUFFIXES)})")
        self.position = start % len(self.files)
        self.skipped = 0
        self.bad_frames = 0
        self.last_bad: str | None = None
        self._bad: dict[Path, tuple[int, int]] = {}  # file -> (size, mtime_ns) when it failed

    def read(self) -> Frame:
        for _ in range(len(self.files)):
            p = self.files[self.position]
            self.position = (self.position + 1) % len(self.files)
            try:
                st = p.stat()
                if self._bad.get(p) == (st.st_size, st.st_mtime_ns):
                    continue  # known bad and unchanged
                frame = as_rgb(read_image(p))
            except (OSError, ValueError, EOFError, IndexError, CameraError) as exc:
                self.bad_frames += 1
                self.last_bad = f"{p.name}: {exc}" if p.name not in str(exc) else str(exc)
                try:
                    st = p.stat()
                    self._bad[p] = (st.st_size, st.st_mtime_ns)
                except OSError:
                    pass  # gone: it will fail (and be counted) again next time round
                continue
            self._bad.pop(p, None)
            return frame
        raise CameraError(f"image folder {self.path}: none of its {len(self.files)} images "
                          f"can be read ({self.last_bad})")

    def close(self) -> None:
        """Nothing held open between frames."""


class PiCamera:
    """The Raspberry Pi camera through picamera2 (installed from apt, not PyPI)."""

    def __init__(self, width: int = 640, height: int = 480) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise CameraError("picamera2 is not importable (on Raspberry Pi OS: apt install "
                              "python3-picamera2, and a venv with --system-site-packages)"
                              ) from exc
        try:
            self.cam = Picamera2()
            config = self.cam.create_video_configuration(
                main={"size": (width, height), "format": "RGB888"}, buffer_count=2)
            self.cam.configure(config)
            self.cam.start()
        except (RuntimeError, OSError, IndexError) as exc:
            raise CameraError(f"cannot open the Pi camera: {exc}") from exc
        self.skipped = 0
        self.bad_frames = 0

    def read(self) -> Frame:
        # picamera2's "RGB888" is B, G, R in memory; flip to RGB.
        arr = self.cam.capture_array("main")
        rgb: Frame = np.ascontiguousarray(arr[:, :, 2::-1])
        return rgb

    def close(self) -> None:
        self.cam.stop()
        self.cam.close()


def open_camera(spec: str, seed: int = 0, start: int = 0) -> Source:
    """The camera source for an `inference.camera` setting (raises CameraError).

    `start`: the position to begin at, for sources that have one (an image folder)."""
    if spec == "sim":
        return SimSource(seed=seed)
    if spec == "picamera2":
        return PiCamera()
    if spec.isdigit():
        return OpenCVDevice(int(spec))
    if spec.startswith("/dev/"):
        if not os.path.exists(spec):
            raise CameraError(f"cannot open camera {spec}: no such device")
        return OpenCVDevice(spec)
    path = Path(spec)
    if path.is_dir():
        return ImageFolder(path, start)
    if path.is_file():
        return VideoFile(path)
    raise CameraError(f"camera {spec!r}: not sim, picamera2, a /dev/video device, "
                      "a video file or an image folder")

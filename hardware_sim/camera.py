"""A synthetic camera: noisy frames with one simple object whose label and box are known.

Every frame is a solid-ish background (random colour plus per-pixel noise and a
gentle brightness gradient) with at most one shape drawn on it: a ``circle``,
``square`` or ``triangle`` of a random contrasting colour and size, or nothing
(``empty``). The ground truth (label, normalised box) travels with the frame, so
a model's answer can be scored. Everything is drawn with numpy from a seeded
generator: the same seed gives the same frames.

`SimCamera.read()` is what the inference worker calls; it holds each scene for
`hold` frames (re-noised every frame) so a running demo looks like a camera
watching a slowly changing scene rather than a slideshow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: Class names in model output order (index i is line i of models/labels.txt).
LABELS: tuple[str, ...] = ("empty", "circle", "square", "triangle")

Image = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class Truth:
    label: str
    #: (ymin, xmin, ymax, xmax) normalised to 0..1; None for "empty".
    box: tuple[float, float, float, float] | None


@dataclass(frozen=True, slots=True)
class SimFrame:
    image: Image  # H x W x 3, RGB, uint8
    truth: Truth


def _contrasting_colour(rng: np.random.Generator, background: npt.NDArray[np.float64]) -> (
        npt.NDArray[np.float64]):
    """A colour at least ~100 (of 255) away from the background, so the shape is visible."""
    while True:
        colour = rng.uniform(0, 255, size=3)
        if float(np.linalg.norm(colour - background)) > 100.0:
            return colour


def _shape_mask(label: str, h: int, w: int, cy: float, cx: float,
                r: float) -> npt.NDArray[np.bool_]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    if label == "circle":
        return bool_mask((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r)
    if label == "square":
        return bool_mask((np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r))
    if label == "triangle":
        # Upright isosceles triangle inscribed in the 2r x 2r box: apex at the top centre.
        top, bottom = cy - r, cy + r
        frac = (yy - top) / (2 * r)  # 0 at the apex, 1 at the base
        inside_y = (yy >= top) & (yy <= bottom)
        return bool_mask(inside_y & (np.abs(xx - cx) <= frac * r))
    raise ValueError(f"unknown shape {label!r}")


def bool_mask(a: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    return np.asarray(a, dtype=np.bool_)


def render(rng: np.random.Generator, width: int, height: int, label: str | None = None,
           noise: float = 12.0) -> SimFrame:
    """One frame. `label` None picks one of LABELS uniformly."""
    if label is None:
        label = LABELS[int(rng.integers(len(LABELS)))]
    if label not in LABELS:
        raise ValueError(f"unknown label {label!r}; expected one of {', '.join(LABELS)}")
    h, w = height, width
    background = rng.uniform(0, 255, size=3)
    img = np.empty((h, w, 3), dtype=np.float64)
    img[:] = background
    # A soft lighting gradient so the background is not perfectly flat.
    gy, gx = rng.uniform(-25, 25, size=2)
    ramp = (np.linspace(-0.5, 0.5, h)[:, None] * gy + np.linspace(-0.5, 0.5, w)[None, :] * gx)
    img += ramp[:, :, None]
    box: tuple[float, float, float, float] | None = None
    if label != "empty":
        short = min(h, w)
        r = rng.uniform(0.12, 0.3) * short
        cy = rng.uniform(r, h - r)
        cx = rng.uniform(r, w - r)
        mask = _shape_mask(label, h, w, cy, cx, r)
        img[mask] = _contrasting_colour(rng, background)
        box = (
            float(max(0.0, (cy - r) / h)), float(max(0.0, (cx - r) / w)),
            float(min(1.0, (cy + r) / h)), float(min(1.0, (cx + r) / w)),
        )
    if noise > 0:
        img += rng.normal(0.0, noise, size=img.shape)
    image = np.clip(img, 0, 255).astype(np.uint8)
    return SimFrame(image, Truth(label, box))


class SimCamera:
    """A deterministic camera: `read()` returns the next frame of a slowly changing scene."""

    def __init__(self, width: int = 160, height: int = 120, seed: int = 0, hold: int = 5,
                 noise: float = 12.0) -> None:
        if width < 16 or height < 16:
            raise ValueError("the simulated camera needs at least 16x16 pixels")
        self.width = width
        self.height = height
        self.hold = max(1, hold)
        self.noise = noise
        self._rng = np.random.default_rng(seed)
        self._scene_seed = 0
        self._frame_in_scene = 0
        self._clean: npt.NDArray[np.int16] | None = None
        bank_rng = np.random.default_rng((seed, 1))
        self._noise_bank = np.rint(bank_rng.normal(0.0, noise, size=(8, height, width, 3))
                                   ).astype(np.int16)
        self.frames = 0
        self.truth: Truth | None = None

    def read(self) -> SimFrame:
        """The next frame. A scene (background, object, place) lasts `hold` frames."""
        if self._clean is None or self._frame_in_scene >= self.hold:
            # A new scene: draw it once, without noise; each frame adds fresh noise.
            self._scene_seed = int(self._rng.integers(2**63 - 1))
            self._frame_in_scene = 0
            clean = render(np.random.default_rng(self._scene_seed), self.width, self.height,
                           noise=0.0)
            self._clean = clean.image.astype(np.int16)
            self.truth = clean.truth
        # Sensor noise from a bank drawn once (cheap per frame, so capture costs little
        # next to inference), rolled by a per-frame offset so frames never repeat exactly.
        shift = int(self._rng.integers(self._noise_bank.shape[1]))
        noise = np.roll(self._noise_bank[self.frames % len(self._noise_bank)], shift, axis=0)
        noisy = self._clean + noise
        self._frame_in_scene += 1
        self.frames += 1
        assert self.truth is not None
        return SimFrame(np.clip(noisy, 0, 255).astype(np.uint8), self.truth)

    def close(self) -> None:
        """Nothing to release; present so every camera source has the same shape."""


def dataset(n: int, seed: int, width: int = 160, height: int = 120,
            noise: float = 12.0) -> tuple[list[Image], list[Truth]]:
    """`n` independent frames with balanced labels (for training and held-out evaluation)."""
    rng = np.random.default_rng(seed)
    images: list[Image] = []
    truths: list[Truth] = []
    for i in range(n):
        f = render(rng, width, height, LABELS[i % len(LABELS)], noise=noise)
        images.append(f.image)
        truths.append(f.truth)
    return images, truths

"""Frame preprocessing with numpy only: region of interest and resize.

Shared by the runtime (gateway.inference.model) and the dev-only model builder
(tools/make_model.py) so the model is trained on exactly what it will see.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]
Roi = tuple[float, float, float, float]  # ymin, xmin, ymax, xmax, 0..1


def as_rgb(frame: npt.NDArray[np.generic]) -> Image:
    """H x W x 3 uint8, whatever came in (grey, RGBA, other integer widths)."""
    a = np.asarray(frame)
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3:
        raise ValueError(f"expected an H x W x C image, got shape {a.shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:
        a = a[:, :, :3]
    elif a.shape[2] != 3:
        raise ValueError(f"expected 1, 3 or 4 channels, got {a.shape[2]}")
    return a


def crop(frame: npt.NDArray[Any], roi: Roi | None) -> npt.NDArray[Any]:
    """The region of interest (normalised corners); the whole frame when None."""
    if roi is None:
        return frame
    h, w = frame.shape[:2]
    ymin, xmin, ymax, xmax = roi
    y0, x0 = round(ymin * h), round(xmin * w)
    y1, x1 = max(round(ymax * h), y0 + 1), max(round(xmax * w), x0 + 1)  # never empty
    return frame[y0:min(y1, h), x0:min(x1, w)]


def resize(frame: npt.NDArray[Any], height: int, width: int) -> npt.NDArray[Any]:
    """Nearest-neighbour resize, sampling pixel centres (cheap; enough for small models)."""
    h, w = frame.shape[:2]
    if (h, w) == (height, width):
        return frame
    ys = np.minimum(((np.arange(height) + 0.5) * (h / height)).astype(np.intp), h - 1)
    xs = np.minimum(((np.arange(width) + 0.5) * (w / width)).astype(np.intp), w - 1)
    # Rows then columns with np.take: ~7x faster than one 2-D fancy index here.
    out: npt.NDArray[Any] = np.take(np.take(frame, ys, axis=0), xs, axis=1)
    return out


def prepare(frame: npt.NDArray[np.generic], height: int, width: int,
            roi: Roi | None = None) -> Image:
    """Frame -> model-sized RGB uint8 (crop to the ROI first)."""
    out: Image = resize(crop(as_rgb(frame), roi), height, width)
    return out

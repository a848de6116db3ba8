"""Pixels -> input tensor values, the way the model was trained.

A model expects its input normalised as in training: real = (pixel - mean) / std,
per channel, then quantised with the input tensor's scale and zero point when the
tensor is an integer type. Where mean and std come from, first found wins:

1. the configuration: `inference.preset`, or `inference.mean` and `inference.std`;
2. the model's TFLite metadata (NormalizationOptions of the input tensor);
3. the default for the input type:
   - float: mean = std = 127.5, pixels to -1..1. MobileNet v1/v2/v3, EfficientNet-Lite,
     Inception and the SSD MobileNet detectors (the float image models usually run
     as TFLite) are trained on -1..1, and the exports that expect something else
     (0..1, ImageNet mean/std) normally carry it in their metadata;
   - uint8: the raw pixels. A quantised model's input scale and zero point map
     0..255 onto the range it was trained on (the TFLite convention, and what its
     metadata means: "for uint8 the image data is scaled back to [0, 255]");
   - int8: pixel - 128, the same convention for a signed tensor (scale 1/255 and
     zero point -128 give 0..1; scale ~2/255 and zero point 0 give ~-1..1).

With mean and std known, integer inputs get round((pixel - mean) / std / scale + zp),
except a uint8 input for which that differs from the raw pixel by at most 1 (the
usual case): it gets the raw pixels, at no cost.

The conversion is a lookup table of the 256 pixel values per channel, applied to
the model-sized image after cropping and resizing (never to the whole camera frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

#: Named normalisations: (mean, std) per channel (one value: all channels).
PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mobilenet": ((127.5,), (127.5,)),  # -1..1 (MobileNet, EfficientNet-Lite, Inception)
    "unit": ((0.0,), (255.0,)),  # 0..1
    "imagenet": ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),  # torchvision, Keras "torch"
    "raw": ((0.0,), (1.0,)),  # 0..255 as floats (models that normalise inside the graph)
}


@dataclass(frozen=True, slots=True)
class Normalization:
    mean: tuple[float, ...]
    std: tuple[float, ...]
    #: Where it came from, for the log: "config", "preset mobilenet", "metadata", "default".
    source: str

    def describe(self) -> str:
        def fmt(v: tuple[float, ...]) -> str:
            return "/".join(f"{x:g}" for x in v)

        return f"(p-{fmt(self.mean)})/{fmt(self.std)} ({self.source})"


def normalization_problem(mean: list[float] | tuple[float, ...],
                          std: list[float] | tuple[float, ...], channels: int) -> str | None:
    """Why this mean/std cannot normalise a `channels`-channel input, or None."""
    for name, v in (("mean", mean), ("std", std)):
        if len(v) not in (1, channels):
            return f"{name} has {len(v)} values; the model input has {channels} channel(s)"
        if not all(np.isfinite(x) for x in v):
            return f"{name} must be finite numbers"
    if any(x <= 0 for x in std):
        return "std must be > 0"
    return None


def choose_normalization(dtype: Any, *, preset: str | None = None,
                         mean: list[float] | None = None, std: list[float] | None = None,
                         metadata: tuple[list[float], list[float]] | None = None
                         ) -> Normalization | None:
    """The normalisation to apply (see the module doc); None: the integer convention
    (raw pixels for uint8, pixel - 128 for int8)."""
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
        m, s = PRESETS[preset]
        return Normalization(m, s, f"preset {preset}")
    if mean is not None and std is not None:
        return Normalization(tuple(mean), tuple(std), "config")
    if metadata is not None:
        return Normalization(tuple(metadata[0]), tuple(metadata[1]), "metadata")
    if np.dtype(dtype).kind == "f":
        m, s = PRESETS["mobilenet"]
        return Normalization(m, s, "default for float input")
    return None


def _per_channel(v: tuple[float, ...], channels: int) -> npt.NDArray[np.float64]:
    return np.array(v * channels if len(v) == 1 else v, dtype=np.float64)[:channels]


def input_tables(detail: dict[str, Any], norm: Normalization | None,
                 channels: int) -> npt.NDArray[Any] | None:
    """Lookup tables [channels, 256] (or [256] when all channels agree) giving the input
    tensor's value for each pixel value; None when the pixels go in unchanged."""
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail.get("quantization", (0.0, 0))
    pixels = np.arange(256, dtype=np.float64)
    if norm is None:
        if dtype == np.uint8:
            return None
        if dtype == np.int8:
            return (pixels - 128).astype(np.int8)
        raise ValueError(f"input type {dtype.name} needs a normalisation")
    mean, std = _per_channel(norm.mean, channels), _per_channel(norm.std, channels)
    real = (pixels[None, :] - mean[:, None]) / std[:, None]  # [channels, 256]
    if dtype.kind == "f":
        tables = real.astype(dtype)
    elif dtype in (np.uint8, np.int8):
        if not scale:
            raise ValueError(f"{dtype.name} input without quantisation parameters")
        info = np.iinfo(dtype)
        q = np.clip(np.rint(real / float(scale) + float(zero_point)), info.min, info.max)
        if dtype == np.uint8 and np.max(np.abs(q - pixels[None, :])) <= 1:
            return None  # the quantisation already encodes this normalisation
        tables = q.astype(dtype)
    else:
        raise ValueError(f"unsupported input type {dtype.name}")
    if all(np.array_equal(tables[0], t) for t in tables[1:]):
        single: npt.NDArray[Any] = tables[0]
        return single
    return tables


def apply_tables(image: npt.NDArray[np.uint8], tables: npt.NDArray[Any] | None
                 ) -> npt.NDArray[Any]:
    """The input tensor values of a model-sized H x W x C uint8 image."""
    if tables is None:
        return image
    if tables.ndim == 1:
        out: npt.NDArray[Any] = np.take(tables, image)
        return out
    result = np.empty(image.shape, dtype=tables.dtype)
    for c in range(image.shape[2]):
        result[:, :, c] = np.take(tables[c], image[:, :, c])
    return result


def to_grey(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """RGB -> luma (ITU-R BT.601 weights 0.299, 0.587, 0.114 in 8-bit fixed point), H x W x 1."""
    rgb = image.astype(np.uint16)
    y = rgb[:, :, 0] * 77 + rgb[:, :, 1] * 150 + rgb[:, :, 2] * 29 + 128
    return (y >> 8).astype(np.uint8)[:, :, None]

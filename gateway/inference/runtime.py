"""The TFLite interpreter class, chosen once at import.

`ai-edge-litert` (LiteRT, the successor package) is preferred: it supports
numpy 2, newer Pythons, and runs int8 models much faster (XNNPACK).
`tflite-runtime` is the fallback for 32-bit ARM, where LiteRT has no wheels.
Neither is imported anywhere else, so the choice lives in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.inference.extra import missing_extra

Interpreter: Any
RUNTIME: str | None
try:
    from ai_edge_litert.interpreter import Interpreter as _LiteRT

    Interpreter, RUNTIME = _LiteRT, "ai-edge-litert"
except ImportError:
    try:
        from tflite_runtime.interpreter import Interpreter as _TfliteRuntime

        Interpreter, RUNTIME = _TfliteRuntime, "tflite-runtime"
    except ImportError:
        Interpreter, RUNTIME = None, None


class RuntimeMissing(RuntimeError):
    pass


def make_interpreter(model: Path, num_threads: int = 1) -> Any:
    """A ready (tensors allocated) interpreter for `model`.

    Raises RuntimeMissing without a runtime, OSError for an unreadable file and
    ValueError for a file that is not a valid model.
    """
    if Interpreter is None:
        raise RuntimeMissing(missing_extra("no TFLite runtime: ai-edge-litert, or tflite-runtime "
                                           "on 32-bit ARM"))
    path = Path(model)
    with path.open("rb"):  # a clear OSError (ENOENT/EACCES) with the file name
        pass
    try:
        interp = Interpreter(model_path=str(path), num_threads=num_threads)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"{path}: not a usable TFLite model: {exc}") from exc
    return interp

"""The inference worker: a spawned process that owns the camera and the interpreter.

Frames are captured inside this process and never cross the process boundary;
only small messages go back to the supervisor over a Pipe:

    ("ready", description)                      model and camera are open
    ("result", ts, inference_ms, values, stats) one per inferred frame
    ("hb", stats)                               alive while waiting between frames
    ("bad", message, stats)                     a frame was skipped (undecodable file,
                                                not an image, non-finite model output)
    ("error", where, message)                   then the process exits non-zero

`stats` counts frames, dropped slots, bad frames and, for an image folder, the
position of the next file (so a replacement worker goes on from there).

The supervisor sends "stop" to end it. The loop paces itself on the monotonic
clock at the target fps; when a frame takes longer than the frame period the
missed slots are skipped and counted (frames are dropped, never queued), and
the next frame is captured and prepared in a second thread while the model
runs, so a busy worker infers back to back. The wait between frames is a
blocking `poll` on the pipe, so the process sleeps.
If the parent disappears the pipe breaks and the worker exits.
"""

from __future__ import annotations

import signal
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from gateway.readers.base import describe

#: Exit codes, so the supervisor's log says why a worker ended.
EXIT_MODEL = 3
EXIT_CAMERA = 4
EXIT_PARENT_GONE = 5


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """Everything the worker needs (pickled once, at spawn)."""

    model: str
    labels: str | None = None
    task: str = "auto"
    num_threads: int = 1
    score_threshold: float = 0.5
    top_k: int = 3
    roi: tuple[float, float, float, float] | None = None
    camera: str = "sim"
    fps: float = 2.0
    seed: int = 0
    #: Where an image folder starts (the last worker's position, after a restart).
    camera_start: int = 0
    preset: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    resize: str = "bilinear"
    #: Send a heartbeat at least this often while idle between frames.
    heartbeat_interval: float = 1.0


def _describe(exc: BaseException) -> str:
    return describe(exc)


def worker_main(conn: Connection, settings: WorkerSettings) -> None:
    """Process entry point (spawn start method)."""
    # Ctrl-C in a terminal signals the whole process group; the supervisor decides
    # when the worker stops (it sends "stop"), so the worker ignores SIGINT.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        code = _run(conn, settings)
    except (BrokenPipeError, EOFError, ConnectionResetError):
        code = EXIT_PARENT_GONE
    finally:
        conn.close()
    sys.exit(code)


def _run(conn: Connection, s: WorkerSettings) -> int:
    try:
        # Here, in the worker process: the camera and the model load numpy and the
        # interpreter, which the daemon's process never needs. A missing extra (no numpy,
        # no runtime) is one error message to the supervisor, not a traceback per restart.
        from gateway.inference.camera import CameraError, open_camera
        from gateway.inference.model import Model
    except ImportError as exc:
        from gateway.inference.extra import missing_extra

        conn.send(("error", "model", missing_extra(f"no module {exc.name or exc}")))
        return EXIT_MODEL
    try:
        model = Model(Path(s.model), labels=Path(s.labels) if s.labels else None, task=s.task,
                      num_threads=s.num_threads, score_threshold=s.score_threshold,
                      top_k=s.top_k, roi=s.roi, preset=s.preset,
                      mean=list(s.mean) if s.mean is not None else None,
                      std=list(s.std) if s.std is not None else None,
                      resize=s.resize)  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001 - any load failure is reported, the supervisor retries
        conn.send(("error", "model", f"cannot load model {s.model}: {_describe(exc)}"))
        return EXIT_MODEL
    try:
        camera = open_camera(s.camera, seed=s.seed, start=s.camera_start)
    except (CameraError, OSError, ValueError) as exc:
        conn.send(("error", "camera", f"{_describe(exc)}"))
        return EXIT_CAMERA
    try:
        conn.send(("ready", f"{model.describe()}; camera {s.camera}"))
        return _loop(conn, s, model, camera)
    finally:
        camera.close()


def _loop(conn: Connection, s: WorkerSettings, model: Any, camera: Any) -> int:
    from gateway.inference.camera import CameraError
    from gateway.inference.model import BadFrame

    period = 1.0 / s.fps
    stats = {"frames": 0, "dropped": 0, "bad": 0}
    due = time.monotonic()
    last_sent = due
    missed = 0  # frame slots that passed while the model was busy
    bad = 0  # frames skipped in this loop (a source may count its own too)
    reported = 0  # the source's bad frames already reported
    busy = 0.0  # how long the last invoke() took
    ahead: Future[tuple[float, Any]] | None = None  # the next frame, captured meanwhile

    def capture() -> tuple[float, Any]:
        frame = camera.read()
        return time.time(), model.prepare(frame)

    def update() -> dict[str, int]:
        stats["dropped"] = missed + int(getattr(camera, "skipped", 0))
        stats["bad"] = bad + int(getattr(camera, "bad_frames", 0))
        if hasattr(camera, "position"):
            stats["position"] = int(camera.position)
        return dict(stats)

    # When the model is the bottleneck (the next slot is due before this inference
    # ends), the next frame is read and prepared in this thread while invoke() runs:
    # invoke() releases the GIL, so capture and preprocessing cost no inference time.
    # A capture error comes back out of the Future; leaving the block stops the thread.
    # A bad frame (BadFrame: not an image, or a non-finite model output) is skipped and
    # counted, and its slot is given up; the camera failing (CameraError) ends the worker.
    with ThreadPoolExecutor(1, thread_name_prefix="inference-capture") as capturer:
        while True:
            if ahead is None:
                sent = _sleep_until(due, conn, s, stats, last_sent)
                if sent is None:
                    return 0
                last_sent = sent
            elif conn.poll(0) and conn.recv() == "stop":
                return 0
            try:
                if ahead is None:
                    ts, tensor = capture()
                else:
                    pending, ahead = ahead, None
                    ts, tensor = pending.result()
                if due + period <= time.monotonic() + busy:
                    ahead = capturer.submit(capture)
                result = model.infer(tensor)
            except BadFrame as exc:
                bad += 1
                conn.send(("bad", _describe(exc), update()))
                last_sent = time.monotonic()
            except (CameraError, OSError, ValueError) as exc:
                conn.send(("error", "camera", _describe(exc)))
                return EXIT_CAMERA
            else:
                busy = result.inference_ms / 1000.0
                stats["frames"] += 1
                conn.send(("result", ts, result.inference_ms, result.values, update()))
                last_sent = time.monotonic()
            skipped_files = int(getattr(camera, "bad_frames", 0))
            if skipped_files > reported:
                # The source skipped a bad file on its way to a frame: say why (counted
                # in the stats already).
                reported = skipped_files
                conn.send(("bad", str(getattr(camera, "last_bad", "bad frame")), update()))
            # Next slot on the fixed grid; slots that already passed are dropped, not
            # queued (a frame captured ahead stands for the first slot still to come).
            due += period
            now = time.monotonic()
            if now > due:
                late = int((now - due) / period) + 1
                missed += late
                due += late * period


def _sleep_until(due: float, conn: Connection, s: WorkerSettings, stats: dict[str, int],
                 last_sent: float) -> float | None:
    """Sleep until the frame slot `due`, answering to "stop" and beating meanwhile.

    Returns when the worker last sent something, or None when told to stop.
    """
    while True:
        now = time.monotonic()
        wait = due - now
        if wait <= 0:
            return None if conn.poll(0) and conn.recv() == "stop" else last_sent
        timeout = min(wait, max(0.0, last_sent + s.heartbeat_interval - now))
        if conn.poll(timeout):
            if conn.recv() == "stop":
                return None
        elif time.monotonic() - last_sent >= s.heartbeat_interval:
            conn.send(("hb", dict(stats)))
            last_sent = time.monotonic()

"""The inference supervisor: a thread in the daemon that keeps one worker process alive.

It spawns the worker (spawn start method: never fork a threaded process),
turns its results into readings for the outbox, and replaces it when it

- dies (any exit, SIGKILL included),
- hangs: no message for `inference.heartbeat_timeout` (a worker that is still
  loading gets `startup_grace` instead, as imports are slow on a Pi),
- grows past `inference.max_rss` (VmRSS from /proc/<pid>/status),

with capped exponential backoff between attempts, so a missing model or an
unplugged camera costs one log line per state change and a retry now and then,
never the daemon. Results are published when they change (the set of labels)
or every `publish_interval`, so a static scene does not flood the broker.

The thread blocks in `multiprocessing.connection.wait` on the worker's pipe,
its process sentinel and a wake-up pipe used by `stop()`: it never polls.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import signal
import threading
import time
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from gateway.config.model import InferenceSection
from gateway.inference.worker import EXIT_CAMERA, EXIT_MODEL, WorkerSettings, worker_main
from gateway.metrics import observe_inference
from gateway.readers.base import Backoff, ReaderContext

log = logging.getLogger("gateway.inference")

_EXIT_REASONS = {EXIT_MODEL: "model failed to load", EXIT_CAMERA: "camera failed"}


def rss_bytes(pid: int) -> int | None:
    """Resident set size of `pid` (VmRSS in /proc/<pid>/status), None if unknown."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError):
        return None
    return None


def settings_for(cfg: InferenceSection, seed: int = 0) -> WorkerSettings:
    if cfg.model is None:
        raise ValueError("inference.model is required when inference is enabled")
    return WorkerSettings(
        model=str(Path(cfg.model).resolve()),
        labels=str(Path(cfg.labels).resolve()) if cfg.labels is not None else None,
        task=cfg.task, num_threads=cfg.num_threads, score_threshold=cfg.score_threshold,
        top_k=cfg.top_k, roi=cfg.roi, camera=cfg.camera, fps=cfg.fps, seed=seed,
        heartbeat_interval=min(1.0, cfg.heartbeat_timeout / 4),
        preset=cfg.preset, mean=tuple(cfg.mean) if cfg.mean is not None else None,
        std=tuple(cfg.std) if cfg.std is not None else None, resize=cfg.resize,
    )


def change_key(values: dict[str, Any]) -> tuple[str, ...]:
    """What counts as a change: the labels seen (scores and boxes jitter every frame)."""
    items = values.get("labels", values.get("detections", []))
    return tuple(sorted(str(item["label"]) for item in items))


class InferenceSupervisor:
    """A daemon component (start/stop) running and guarding the inference worker."""

    def __init__(self, cfg: InferenceSection, ctx: ReaderContext, *, seed: int = 0,
                 settings: WorkerSettings | None = None, restart_base: float = 1.0,
                 restart_cap: float = 60.0, startup_grace: float = 60.0,
                 stable_after: float = 30.0) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.name = cfg.name
        self.settings = settings if settings is not None else settings_for(cfg, seed)
        self.backoff = Backoff(restart_base, restart_cap)
        self.startup_grace = startup_grace
        self.stable_after = stable_after
        self._mp = multiprocessing.get_context("spawn")
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = self._mp.Pipe(duplex=False)
        self.proc: BaseProcess | None = None
        self.conn: Connection | None = None
        self.error: BaseException | None = None
        # Counters (written by the supervisor thread only; read by anyone).
        self.starts = 0
        self.restarts = 0
        self.results = 0
        self.published = 0
        self.worker_errors = 0
        self.frames_dropped = 0
        self.bad_frames = 0
        self.last_bad: str | None = None
        self.last_error: str | None = None
        self.last_result: dict[str, Any] | None = None
        self.heartbeat = time.monotonic()  # of the supervisor thread itself
        self._last_msg = 0.0
        self._ready = False
        self._started_at = 0.0
        self._had_results = False
        self._last_key: tuple[str, ...] | None = None
        self._last_pub = 0.0
        self._base_dropped = 0
        self._base_bad = 0
        #: Where an image folder source was (the next worker starts there).
        self._camera_position: int | None = None
        self._restart_reason: str | None = None

    # -- component API --------------------------------------------------------------
    def start(self) -> None:
        if self._wake_r.closed:  # started again after stop()
            self._wake_r, self._wake_w = self._mp.Pipe(duplex=False)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._main, name=f"inference-{self.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        try:
            self._wake_w.send(b"stop")
        except OSError as exc:
            log.debug("inference: wake-up pipe: %s", exc)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("inference supervisor did not stop within %.1f s", timeout)
        self._wake_r.close()
        self._wake_w.close()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def worker_pid(self) -> int | None:
        p = self.proc
        return p.pid if p is not None else None

    def counters(self) -> dict[str, int]:
        return {"restarts": self.restarts, "results": self.results, "published": self.published,
                "worker_errors": self.worker_errors, "frames_dropped": self.frames_dropped,
                "bad_frames": self.bad_frames}

    # -- thread -------------------------------------------------------------------------
    def _main(self) -> None:
        from gateway.threadguard import run_guarded

        try:
            run_guarded(f"inference {self.name} supervisor", self._supervise,
                        wait=self._stopping.wait,
                        on_error=lambda exc: self._fail(f"supervisor error: {exc!r}"))
        except BaseException as exc:
            self.error = exc
            log.critical("inference supervisor died: %r", exc, exc_info=True)
            raise
        finally:
            self._stop_worker()
            self.ctx.health.state = "stopped"

    def _supervise(self) -> None:
        next_start = time.monotonic()
        while not self._stopping.is_set():
            self.heartbeat = time.monotonic()
            if self.proc is None:
                delay = next_start - time.monotonic()
                if delay > 0:
                    if wait([self._wake_r], timeout=delay):
                        return
                    continue
                try:
                    self._spawn()
                except (OSError, RuntimeError, ValueError) as exc:  # fds, memory, pickling
                    self._close_worker()
                    self._fail(f"cannot start the worker: {exc}")
                    next_start = time.monotonic() + self.backoff.next_delay()
                    continue
            proc, conn = self.proc, self.conn
            assert proc is not None and conn is not None
            ready = wait([conn, proc.sentinel, self._wake_r], timeout=self._timeout())
            if self._wake_r in ready:
                return
            if conn in ready and not self._drain(conn):
                ready.append(proc.sentinel)
            problem = self._check(proc, proc.sentinel in ready)
            if problem is not None:
                self._kill_worker(problem)
                next_start = time.monotonic() + self._restart_delay()

    def _silence_limit(self) -> float:
        hb = self.cfg.heartbeat_timeout
        return hb if self._ready else max(hb, self.startup_grace)

    def _timeout(self) -> float:
        limit = self._silence_limit()
        left = self._last_msg + limit - time.monotonic()
        return max(0.05, min(1.0, left))  # wake at least every second for the RSS check

    def _spawn(self) -> None:
        parent, child = self._mp.Pipe(duplex=True)
        settings = self.settings
        if self._camera_position is not None:  # an image folder goes on where it was
            settings = dataclasses.replace(settings, camera_start=self._camera_position)
        proc = self._mp.Process(target=worker_main, args=(child, settings),
                                name=f"inference-worker-{self.name}", daemon=True)
        proc.start()
        child.close()  # the worker holds its end; ours must go so EOF is seen if it dies
        self.proc, self.conn = proc, parent
        self.starts += 1
        if self.starts > 1:
            self.restarts += 1
        self._ready = False
        self._had_results = False
        self._started_at = self._last_msg = time.monotonic()
        self._base_dropped = self.frames_dropped
        self._base_bad = self.bad_frames
        log.debug("inference: worker started (pid %s)", proc.pid)

    def _drain(self, conn: Connection) -> bool:
        """Handle every pending message. False when the pipe closed (worker gone)."""
        try:
            while conn.poll():
                self._handle(conn.recv())
        except (EOFError, OSError):
            return False
        return True

    def _handle(self, msg: tuple[Any, ...]) -> None:
        self._last_msg = time.monotonic()
        kind = msg[0]
        if kind == "result":
            _, ts, ms, values, stats = msg
            self._on_result(ts, ms, values, stats)
        elif kind == "hb":
            self._stats(msg[1])
        elif kind == "bad":
            _, text, stats = msg
            self._stats(stats)
            if text != self.last_bad:  # once per change of reason, not once per frame
                log.warning("inference %s: frame skipped: %s (%d so far)", self.name, text,
                            self.bad_frames)
            self.last_bad = text
            self.ctx.health.counters.update(self.counters())
        elif kind == "ready":
            self._ready = True
            log.info("inference %s: worker ready (pid %s): %s", self.name, self.worker_pid,
                     msg[1])
        elif kind == "error":
            _, where, text = msg
            self.worker_errors += 1
            self._restart_reason = f"{where}: {text}"
            self._fail(f"{where}: {text}")
        else:
            log.warning("inference %s: unexpected message %r", self.name, kind)

    def _stats(self, stats: dict[str, int]) -> None:
        self.frames_dropped = self._base_dropped + int(stats.get("dropped", 0))
        self.bad_frames = self._base_bad + int(stats.get("bad", 0))
        if "position" in stats:
            self._camera_position = int(stats["position"])

    def _on_result(self, ts: float, ms: float, values: dict[str, Any],
                   stats: dict[str, int]) -> None:
        self.results += 1
        self._stats(stats)
        self.ctx.health.counters.update(self.counters())
        if not self._had_results:
            self._had_results = True
            self.last_error = None
            self.ctx.succeeded()
        payload = {"inference_ms": ms, **values}
        self.last_result = payload
        observe_inference(ms / 1000.0)  # metrics' latency histogram (no-op cost otherwise)
        key = change_key(values)
        now = time.monotonic()
        interval = self.cfg.publish_interval
        if (key != self._last_key or interval <= 0 or now - self._last_pub >= interval):
            self._last_key = key
            self._last_pub = now
            self.published += 1
            self.ctx.emit(payload, ts)
        self.ctx.health.heartbeat = now

    def _check(self, proc: BaseProcess, exited: bool) -> str | None:
        """Why the worker must be replaced now, or None."""
        if exited or not proc.is_alive():
            proc.join(1.0)
            code = proc.exitcode
            if code is not None and code < 0:
                why = f"killed by {signal.Signals(-code).name}"
            else:
                why = _EXIT_REASONS.get(code or 0, f"exited with code {code}")
            return f"worker {why}"
        limit = self._silence_limit()
        silent = time.monotonic() - self._last_msg
        if silent > limit:
            return f"worker silent for {silent:.0f} s (hung); killing it"
        assert proc.pid is not None
        rss = rss_bytes(proc.pid)
        if rss is not None and rss > self.cfg.max_rss:
            return (f"worker uses {rss / 2**20:.0f} MiB, over inference.max_rss "
                    f"{self.cfg.max_rss / 2**20:.0f} MiB; replacing it")
        return None

    def _restart_delay(self) -> float:
        ran = time.monotonic() - self._started_at
        if self._had_results and ran >= self.stable_after:
            self.backoff.reset()
        return self.backoff.next_delay()

    def _fail(self, text: str) -> None:
        if text != self.last_error:
            log.error("inference %s: %s (retrying with backoff)", self.name, text)
        else:
            log.debug("inference %s: again: %s (%d restarts)", self.name, text, self.restarts)
        self.last_error = text
        # The health record, without ctx.failed()'s own log line (logged above already).
        h = self.ctx.health
        h.total_errors += 1
        h.consecutive_errors += 1
        h.last_error = text
        h.last_error_at = time.time()
        if h.state != "failing":
            h.state = "failing"
            self.ctx.on_health_change()
        self.ctx.health.counters.update(self.counters())

    def _kill_worker(self, reason: str) -> None:
        proc = self.proc
        detail = self._restart_reason
        self._restart_reason = None
        if proc is not None and proc.is_alive():
            proc.kill()  # SIGKILL also ends a stopped (SIGSTOP) or wedged process
            proc.join(5.0)
        self._close_worker()
        if detail is None:  # an "error" message was already logged with its reason
            self._fail(reason)

    def _close_worker(self) -> None:
        if self.conn is not None:
            self.conn.close()
        if self.proc is not None and self.proc.exitcode is not None:
            self.proc.close()  # release its sentinel fd
        self.proc, self.conn = None, None

    def _stop_worker(self, timeout: float = 5.0) -> None:
        proc, conn = self.proc, self.conn
        if proc is None or conn is None:
            return
        try:
            conn.send("stop")
        except OSError as exc:
            log.debug("inference: worker pipe already closed: %s", exc)
        proc.join(timeout)
        if proc.is_alive():
            log.warning("inference %s: worker did not stop in %.0f s; killing it", self.name,
                        timeout)
            proc.kill()
            proc.join(5.0)
        self._close_worker()


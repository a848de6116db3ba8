"""A real headless Chromium for page tests, driven through chromedriver's W3C WebDriver API.

Debian's `chromium` and `chromium-driver` packages (installed by `make test`'s set-up as
root); nothing is downloaded. The WebDriver wire protocol is plain JSON over HTTP on
loopback, so urllib is the whole client: no selenium dependency.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.support import free_port, wait_port

#: Flags for a quiet headless browser on a machine without network (see the env notes).
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1100,1000",
]


def browser_binaries() -> tuple[str, str]:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    missing = [p for p in (chromium, driver) if not os.access(p, os.X_OK)]
    if missing:
        raise RuntimeError(
            f"{', '.join(missing)} not found: sudo apt-get install -y chromium chromium-driver "
            "(make test installs them when run as root)")
    return chromium, driver


class Browser:
    """One chromedriver process (stopped by PID) and one browser session."""

    def __init__(self, workdir: Path) -> None:
        chromium, driver = browser_binaries()
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "chromedriver.log"
        # The browser's scratch (a scoped_dir it may leave behind) goes into a directory
        # of ours, removed with the driver. Short, under /tmp: the browser puts a Unix
        # socket in it, and a socket's path may not exceed 107 bytes.
        self._tmp = tempfile.mkdtemp(prefix="eg-browser-")
        self.proc = subprocess.Popen(
            [driver, f"--port={self.port}", f"--log-path={self.log}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "TMPDIR": self._tmp},
        )
        try:
            wait_port(self.port, timeout=30)
            caps = {"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": [*CHROMIUM_ARGS, f"--user-data-dir={workdir / 'profile'}"],
                },
            }}}
            self.session = self._call("POST", "/session", caps)["sessionId"]
        except BaseException:
            self._kill()
            raise

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data,
                                     method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return json.loads(resp.read())["value"]
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"webdriver {method} {path}: {exc.read()[:500]!r}") from None

    def _s(self, path: str) -> str:
        return f"/session/{self.session}{path}"

    def get(self, url: str) -> None:
        self._call("POST", self._s("/url"), {"url": url})

    def run(self, script: str, *args: Any) -> Any:
        """Run `script` (a function body; `arguments` holds args) in the page."""
        return self._call("POST", self._s("/execute/sync"), {"script": script, "args": list(args)})

    def wait_for(self, script: str, timeout: float = 60.0) -> Any:
        """Re-run `script` until it returns something truthy; that value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.run(script)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"page never satisfied: {script}")
            time.sleep(0.2)

    def screenshot(self) -> bytes:
        return base64.b64decode(self._call("GET", self._s("/screenshot")))

    def set_window(self, width: int, height: int) -> None:
        self._call("POST", self._s("/window/rect"), {"width": width, "height": height})

    def close(self) -> None:
        try:
            self._call("DELETE", self._s(""))
        finally:
            self._kill()

    def _kill(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)

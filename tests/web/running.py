"""A real `edgecam run` with the web page on, as a child process on a free loopback port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.mosquitto import free_port
from tests.support.paths import REPO


class RunningEdgecam:
    """`edgecam run --config CONFIG` with [web] on; `stop()` sends SIGTERM and checks exit 0."""

    def __init__(self, config: Path, models: Path, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.config = config
        self.stderr_path = config.with_suffix(".stderr")
        env = {**os.environ, "PYTHONPATH": str(REPO), "EDGECAM_MODELS_DIR": str(models)}
        env.pop("NOTIFY_SOCKET", None)
        self._stderr = self.stderr_path.open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edgecam",
                "--log-level",
                "info",
                "run",
                "--config",
                str(config),
                "--set",
                f"web.port={self.port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            env=env,
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_healthy(self, timeout: float = 120.0) -> None:
        """Until /healthz answers 200 (model loaded, frames flowing)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"edgecam run exited {self.proc.returncode}: {self.log()}")
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"/healthz not 200 within {timeout} s: {self.log()}")

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.base + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def json(self, path: str) -> Any:
        status, body = self.get(path)
        assert status == 200, f"{path}: HTTP {status} {body[:200]!r}"
        return json.loads(body)

    def log(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, as systemd stops the service; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._stderr.close()


def write_config(path: Path, video: Path, *, extra: str = "") -> Path:
    """The asset video looped through the detector, events on, one zone, web on loopback."""
    path.write_text(
        f"[source]\nspec = '{video}'\nloop = true\n"
        "[output]\njsonl = ''\n"
        "[events]\nenabled = true\n"
        "[[zones]]\nname = 'doorway'\n"
        "points = [[0.55, 0.25], [0.98, 0.25], [0.98, 0.98], [0.55, 0.98]]\n"
        "labels = ['person']\n"
        "[web]\nenabled = true\nbind = '127.0.0.1'\n" + extra
    )
    return path

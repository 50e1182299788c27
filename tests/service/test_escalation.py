"""What systemd sees when the outbox's storage fails for good: `edgecam run` as a process, a
real Mosquitto, the outbox on a loop-mounted ext4 that the test shuts down (every read and
write then fails with EIO, like a dying SD card), a datagram socket as the notify socket.

Exchange checked: READY, then WATCHDOG=1 while frames flow; after the shutdown STATUS= says
`degraded: mqtt: outbox ... disk I/O error` while detections still reach the broker (held in
memory) and the watchdog is still fed; once the failure has lasted `outbox.give_up_s` the
process exits with status 1 and one error line, no traceback (Restart=on-failure restarts it;
a damaged file is then refused at start-up with advice). Starving the watchdog when the sink
fails while frames flow is checked in test_hooks.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.fullfs import FailingFs
from tests.support.mosquitto import Broker, Collector
from tests.support.notify_log import NotifyLog
from tests.support.paths import REPO

VIDEO = "one-by-one-person-detection.mp4"


@pytest.fixture
def notify_socket(tmp_path: Path) -> tuple[NotifyLog, str]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    return NotifyLog(sock), path


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_outbox_io_errors_degrade_then_exit_1_with_one_line(
    failing_fs: FailingFs,
    broker: Broker,
    collector_factory: Callable[..., Collector],
    notify_socket: tuple[NotifyLog, str],
    assets: Path,
) -> None:
    notify, path = notify_socket
    tmp_path = failing_fs.root.parent
    asset_models, asset_video = assets / "models", assets / "video" / VIDEO
    col = collector_factory(broker, "edgecam/cam1/detections")
    config = tmp_path / "edgecam.toml"
    config.write_text(
        f"[model]\nmodels_dir = '{asset_models}'\n"
        f"[source]\nspec = '{asset_video}'\nloop = true\n"
        "[output]\njsonl = ''\n"
        f"[mqtt]\nurl = '{broker.url}'\ndevice_id = 'cam1'\n"
        f"[outbox]\npath = '{failing_fs.root / 'outbox.sqlite3'}'\ngive_up_s = 10\n"
        "[pipeline]\nprogress_interval_s = 0.05\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "NOTIFY_SOCKET": path,
        "WATCHDOG_USEC": "2000000",
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgecam", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        notify.wait_for("READY", timeout=120)
        assert col.wait_for(lambda: len(col.messages) >= 20, 30)
        failing_fs.shut_down()
        before = len(col.messages)

        def degraded() -> dict[str, str]:
            while True:
                message = notify.wait_for("STATUS", timeout=30)
                if message["STATUS"].startswith("degraded: mqtt: outbox"):
                    return message

        status = degraded()["STATUS"]
        assert "I/O error" in status or "malformed" in status, status
        during = notify.collect(2.0)
        assert any("WATCHDOG" in m for m in during)  # degraded is alive: still fed
        assert col.wait_for(lambda: len(col.messages) >= before + 20, 15)  # live, from memory
        err = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    final = err.strip().splitlines()[-1]
    assert final.startswith("edgecam: error: outbox") and "outbox.give_up_s" in final, err
    payloads = [json.loads(m.payload) for m in col.messages]
    seqs = [p["seq"] for p in payloads]
    assert seqs == sorted(seqs)  # memory after the failure continues where the disk stopped

"""Service glue: READY after the first result, WATCHDOG from progress, STATUS, signals.

A real AF_UNIX datagram socket plays systemd's notify socket. The in-process test drives the
real pipeline (asset video, real detector) with the hooks; the end-to-end tests at the bottom
run `python -m edgecam run` as a process, the way systemd would.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgecam.config import load_config
from edgecam.config.service import ServiceSection
from edgecam.pipeline.engine import open_engine
from edgecam.pipeline.pipeline import Pipeline
from edgecam.service.hooks import ServiceHooks, install_signal_handlers, resolve_state_dir
from edgecam.service.notify import Notifier
from edgecam.sinks.base import SinkHealth
from edgecam.sources import open_source
from edgecam.types import Classification, Detections, Result
from tests.support.notify_log import NotifyLog
from tests.support.paths import REPO


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    yield sock, path
    sock.close()


def drain(sock: socket.socket) -> list[dict[str, str]]:
    """Waiting datagrams, each as {KEY: VALUE}."""
    out = []
    sock.setblocking(False)
    try:
        while True:
            text = sock.recv(4096).decode()
            out.append(dict(line.split("=", 1) for line in text.split("\n")))
    except BlockingIOError:
        return out


def detection_result(label: str, score: float, when: float) -> Result:
    dets = Detections(
        np.array([[0.1, 0.1, 0.5, 0.5], [0.2, 0.2, 0.3, 0.3]], np.float32),
        np.array([0, 2], np.int32),
        np.array([0.55, score], np.float32),
        ("car", label),
    )
    return Result(1, when, time.monotonic(), "ssd", 640, 480, dets)


def section(**values: object) -> ServiceSection:
    return ServiceSection.model_validate(values)


def test_real_pipeline_sends_ready_once_then_watchdog_and_status(
    listener: tuple[socket.socket, str], asset_models: Path, asset_video: Path
) -> None:
    sock, path = listener
    config = load_config(
        None, {"model.models_dir": str(asset_models), "pipeline.progress_interval_s": 0.001}
    )
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1"})  # ping on every progress
    hooks = ServiceHooks(notifier, config.service)
    engine = open_engine(config.model)
    source = open_source(str(asset_video), model_input=(300, 300))
    try:
        pipeline = Pipeline(
            source,
            engine,
            [],
            config=config.pipeline,
            on_result=hooks.on_result,
            on_progress=hooks.on_progress,
        )
        summary = pipeline.run(max_frames=25)
    finally:
        source.close()
    messages = drain(sock)
    kinds = [next(iter(m)) for m in messages]
    assert summary.processed == 25
    assert kinds.count("READY") == 1
    assert kinds[0] == "READY"  # nothing before readiness
    assert kinds.count("WATCHDOG") >= 2
    assert messages[0]["STATUS"].startswith("fps")
    statuses = [m["STATUS"] for m in messages if "STATUS" in m]
    assert any("fps" in s and "fps -" not in s for s in statuses)  # a measured rate
    assert hooks.ready


def test_status_line_names_rate_last_detection_and_broker() -> None:
    hooks = ServiceHooks(Notifier({}), section(), sink_health=lambda: SinkHealth("ok", "connected"))
    when = 1_700_000_000.0
    hooks.on_result(detection_result("person", 0.81, when))
    hooks.on_progress({"processed": 10, "uptime_s": 1.0})
    hooks.on_progress({"processed": 59, "uptime_s": 6.0})
    clock = time.strftime("%H:%M:%S", time.localtime(when))
    assert hooks.status_line() == f"fps 9.8 | last: person 0.81 {clock} | mqtt connected"


def test_status_keeps_the_last_detection_across_empty_frames() -> None:
    hooks = ServiceHooks(Notifier({}), section())
    hooks.on_result(detection_result("dog", 0.7, 1_700_000_000.0))
    hooks.on_result(Result(2, 1_700_000_001.0, 0.0, "ssd", 640, 480, Detections.empty()))
    hooks.on_progress({"fps_out": 4.25})  # a stats dict from Pipeline.stats()
    assert hooks.status_line().startswith("fps 4.2 | last: dog 0.70")


def test_classifier_top1_is_the_last_result() -> None:
    top = Classification(
        np.array([3, 7], np.int32), np.array([0.9, 0.05], np.float32), ("cat", "dog")
    )
    hooks = ServiceHooks(Notifier({}), section())
    hooks.on_result(Result(1, 1_700_000_000.0, 0.0, "mobilenet", 224, 224, top))
    assert "last: cat 0.90" in hooks.status_line()


def test_a_broken_health_callback_surfaces_instead_of_hiding_at_debug() -> None:
    """It is our own code: a bug there stops the run (the pipeline re-raises it)."""

    def broken() -> SinkHealth:
        raise RuntimeError("boom")

    hooks = ServiceHooks(Notifier({}), section(), sink_health=broken)
    with pytest.raises(RuntimeError, match="boom"):
        hooks.on_progress({"processed": 5, "uptime_s": 1.0})


def test_degraded_sink_shows_in_status_and_keeps_the_watchdog_fed(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    problem = "outbox /x: cannot store messages: database or disk is full; 3 in memory"
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1"})
    hooks = ServiceHooks(
        notifier, section(), sink_health=lambda: SinkHealth("degraded", "connected", problem)
    )
    hooks.on_progress({"processed": 5, "uptime_s": 1.0})
    messages = drain(sock)
    assert {"WATCHDOG": "1"} in messages
    assert {"STATUS": f"degraded: mqtt: {problem} | fps 5.0 | mqtt connected"} in messages


def test_failed_sink_stops_the_watchdog_and_says_why(
    listener: tuple[socket.socket, str], caplog: pytest.LogCaptureFixture
) -> None:
    sock, path = listener
    health = [SinkHealth("ok", "connected")]
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1"})
    hooks = ServiceHooks(notifier, section(), sink_health=lambda: health[0])
    hooks.on_progress({"processed": 5, "uptime_s": 1.0})
    assert {"WATCHDOG": "1"} in drain(sock)
    health[0] = SinkHealth("failed", "connected", "MQTT publisher stuck for 61 s")
    for n in range(3):
        hooks.on_progress({"processed": 10 + n, "uptime_s": 2.0 + n})
    messages = drain(sock)
    assert all("WATCHDOG" not in m for m in messages)  # systemd restarts us
    assert messages[0]["STATUS"].startswith("failed: mqtt: MQTT publisher stuck for 61 s |")
    assert caplog.text.count("not feeding the watchdog") == 1  # said once, not per frame
    health[0] = SinkHealth("ok", "connected")
    hooks.on_progress({"processed": 20, "uptime_s": 6.0})
    assert {"WATCHDOG": "1"} in drain(sock)


def test_degraded_note_shows_until_frames_flow_again(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    hooks = ServiceHooks(Notifier({"NOTIFY_SOCKET": path}), section())
    hooks.on_degraded("camera lost, reconnecting")
    assert drain(sock) == [{"STATUS": "degraded: camera lost, reconnecting | fps -"}]
    hooks.on_progress({"processed": 5, "uptime_s": 1.0})
    assert drain(sock) == [{"STATUS": "fps 5.0"}]


def test_watchdog_off_in_config_sends_no_pings(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1"})
    hooks = ServiceHooks(notifier, section(watchdog=False))
    hooks.on_progress({"processed": 5, "uptime_s": 1.0})
    assert all("WATCHDOG" not in m for m in drain(sock))


def test_stopping_is_sent_once_and_no_status_after_it(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    hooks = ServiceHooks(Notifier({"NOTIFY_SOCKET": path}), section(), hard_exit=lambda _c: None)
    hooks.on_stopping("SIGTERM")
    hooks.on_stopping("SIGINT")
    hooks.on_progress({"processed": 5, "uptime_s": 1.0})
    hooks.on_first_result()  # a result drained during the stop must not claim readiness
    hooks.stopped()
    assert drain(sock) == [{"STOPPING": "1", "STATUS": "stopping: SIGTERM"}]


def test_overrunning_the_stop_deadline_exits_1() -> None:
    exited: list[int] = []
    done = threading.Event()

    def fake_exit(code: int) -> None:
        exited.append(code)
        done.set()

    hooks = ServiceHooks(Notifier({}), section(stop_deadline_s=0.05), hard_exit=fake_exit)
    hooks.on_stopping()
    assert done.wait(10)
    assert exited == [1]


def test_a_finished_stop_disarms_the_deadline() -> None:
    exited: list[int] = []
    hooks = ServiceHooks(Notifier({}), section(stop_deadline_s=0.2), hard_exit=exited.append)
    hooks.on_stopping()
    hooks.stopped()
    time.sleep(0.4)
    assert exited == []


def test_signals_stop_then_force_and_hup_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    stop = threading.Event()
    stops: list[str] = []
    exits: list[int] = []
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    restore = install_signal_handlers(stop, on_stop=stops.append, hard_exit=exits.append)
    try:
        with caplog.at_level(logging.INFO, logger="edgecam.service.hooks"):
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.01)  # Python runs handlers between bytecodes of the main thread
            assert not stop.is_set()
            assert "does not reload" in caplog.text
            assert "restart" in caplog.text
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)
            assert stop.is_set()
            assert stops == ["SIGTERM"]
            assert exits == []
            os.kill(os.getpid(), signal.SIGINT)  # impatient second signal
            time.sleep(0.01)
            assert exits == [1]
    finally:
        restore()
    assert {s: signal.getsignal(s) for s in before} == before


@pytest.mark.parametrize(
    ("configured", "env", "expected"),
    [
        # explicit config wins over everything
        ("/srv/edgecam", {"STATE_DIRECTORY": "/var/lib/edgecam"}, "/srv/edgecam"),
        # systemd's StateDirectory=; several entries are ':'-joined, the first is ours
        (None, {"STATE_DIRECTORY": "/var/lib/edgecam:/var/lib/other"}, "/var/lib/edgecam"),
        # interactive use: the XDG state home
        (None, {"XDG_STATE_HOME": "/home/u/.state"}, "/home/u/.state/edgecam"),
        # a relative XDG_STATE_HOME is invalid per the spec and ignored
        (None, {"XDG_STATE_HOME": "rel", "HOME": "/home/u"}, "/home/u/.local/state/edgecam"),
    ],
)
def test_resolve_state_dir(configured: str | None, env: dict[str, str], expected: str) -> None:
    result = resolve_state_dir(section(state_dir=configured), env)
    assert result == Path(expected).expanduser()


# -- end to end: `python -m edgecam run` as systemd would run it ------------------------------


class MjpegCamera:
    """An IP camera on 127.0.0.1: MJPEG over HTTP (multipart/x-mixed-replace), ~20 fps, from
    the asset video. pause() stops sending with the connection open (a wedged camera)."""

    def __init__(self, video: Path, frames: int = 60) -> None:
        import cv2

        capture = cv2.VideoCapture(str(video))
        self.jpegs = []
        for _ in range(frames):
            ok, image = capture.read()
            assert ok
            self.jpegs.append(cv2.imencode(".jpg", image)[1].tobytes())
        capture.release()
        self.flowing = threading.Event()
        self.flowing.set()
        self.closing = threading.Event()
        self.sent = 0

    def __enter__(self) -> MjpegCamera:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    while not camera.closing.is_set():
                        if not camera.flowing.wait(0.1):
                            continue
                        jpeg = camera.jpegs[camera.sent % len(camera.jpegs)]
                        head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}"
                        self.wfile.write(head.encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                        camera.sent += 1
                        time.sleep(0.05)
                except OSError:  # the client went away
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/stream.mjpg"

    def __exit__(self, *exc: object) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_service_process_ready_watchdog_stall_and_sigterm(
    tmp_path: Path, listener: tuple[socket.socket, str], asset_models: Path, asset_video: Path
) -> None:
    sock, path = listener
    notify = NotifyLog(sock)
    config = tmp_path / "edgecam.toml"
    with MjpegCamera(asset_video) as camera:
        config.write_text(
            f"[model]\nmodels_dir = '{asset_models}'\n"
            f"[source]\nspec = '{camera.url.replace('://', '://cam:hunter2@')}'\n"
            # A hung read, not a dropped camera: the stall must outlast the checks below
            # (a read timeout would start a reconnect, whose heartbeats rightly ping).
            "read_timeout_s = 60\n"
            "[output]\njsonl = ''\n"
            "[pipeline]\nprogress_interval_s = 0.05\n"
            "[logging]\nlevel = 'debug'\n"
        )
        stderr_path = tmp_path / "stderr"
        with stderr_path.open("w") as stderr:
            info = os.fstat(stderr.fileno())
            env = {
                **os.environ,
                "PYTHONPATH": str(REPO),
                "NOTIFY_SOCKET": path,
                "WATCHDOG_USEC": "1000000",  # WatchdogSec=1s: pings every 0.25-0.5 s
                "JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}",
            }
            proc = subprocess.Popen(
                [sys.executable, "-m", "edgecam", "run", "--config", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=env,
            )
            try:
                ready = notify.wait_for("READY", timeout=120)
                assert notify.messages == [ready]  # nothing before READY
                assert ready["STATUS"].startswith("fps")
                flowing = notify.collect(2.0)
                assert sum("WATCHDOG" in m for m in flowing) >= 3

                camera.flowing.clear()  # the camera hangs, the connection stays open
                notify.wait_quiet("WATCHDOG", quiet_s=1.0, timeout=15)
                stalled = notify.collect(3.0)
                assert not any("WATCHDOG" in m for m in stalled)
                assert proc.poll() is None  # still running: systemd's watchdog decides

                camera.flowing.set()
                notify.wait_for("WATCHDOG", timeout=30)  # pings resume with the frames

                proc.send_signal(signal.SIGTERM)
                stopping = notify.wait_for("STOPPING", timeout=30)
                assert stopping["STOPPING"] == "1"
                assert proc.wait(timeout=60) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    log = stderr_path.read_text()
    assert "Traceback" not in log
    assert "<6>edgecam.service.hooks: ready: first result delivered" in log
    assert "<6>edgecam.service.hooks: SIGTERM received: stopping" in log
    assert not re.search(r"^\d{4}-\d\d-\d\d", log, re.M)  # no timestamps for the journal
    assert "hunter2" not in log  # the camera password never reaches the journal


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigterm_while_the_camera_hangs_still_stops_cleanly(
    tmp_path: Path, listener: tuple[socket.socket, str], asset_models: Path, asset_video: Path
) -> None:
    """The capture thread is stuck in a read: the pipeline closes the source after half its
    stop timeout, and the process still exits 0 well inside service.stop_deadline_s."""
    sock, path = listener
    notify = NotifyLog(sock)
    config = tmp_path / "edgecam.toml"
    with MjpegCamera(asset_video) as camera:
        config.write_text(
            f"[model]\nmodels_dir = '{asset_models}'\n[source]\nspec = '{camera.url}'\n"
            "[output]\njsonl = ''\n[pipeline]\nstop_timeout_s = 2\n"
        )
        env = {**os.environ, "PYTHONPATH": str(REPO), "NOTIFY_SOCKET": path}
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgecam", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            notify.wait_for("READY", timeout=120)
            camera.flowing.clear()
            notify.wait_quiet("WATCHDOG", quiet_s=1.0, timeout=15)
            proc.send_signal(signal.SIGTERM)
            notify.wait_for("STOPPING", timeout=30)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_reconnect_heartbeat_feeds_the_watchdog_and_logs_once(
    listener: tuple[socket.socket, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A source reconnecting within give_up_s is alive: pings go on, the warning is not repeated."""
    sock, path = listener
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1"})
    hooks = ServiceHooks(notifier, section())
    caplog.set_level("WARNING")
    hooks.on_degraded("camera:0 lost (read failed); reconnecting, giving up in 290 s")
    time.sleep(0.01)
    hooks.on_degraded("camera:0 lost (read failed); reconnecting, giving up in 285 s")
    messages = drain(sock)
    assert sum("WATCHDOG" in m for m in messages) == 2
    assert messages[-1]["STATUS"].startswith("degraded: camera:0 lost (read failed); reconnecting")
    assert sum("degraded" in r.getMessage() for r in caplog.records) == 1

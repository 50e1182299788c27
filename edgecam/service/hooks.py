"""Glue between the pipeline and the service manager: readiness, watchdog, status, stop.

The watchdog is fed from the pipeline's progress callback, never from a timer thread, so a
wedged camera or a hung interpreter stops the pings and systemd restarts the service.
A signal sets a stop event (the pipeline drains within its deadline); a second signal, or a
stop that overruns `service.stop_deadline_s`, exits at once with status 1 so we never wait
for systemd's SIGKILL.

The MQTT sink's health shows in STATUS= ("degraded: ..." while it works around a full disk);
once it is `failed` the watchdog is no longer fed, whatever the pipeline does, so systemd
restarts a service whose publisher hangs; a publisher that stopped also fails the run (exit 1).

SIGHUP does not reload: rebuilding the model, source and sinks in place would duplicate the
start-up path for little gain over `systemctl restart edgecam` (a few seconds). It is logged
and otherwise ignored, so a stray HUP (e.g. from a closed terminal) does not kill the job.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from edgecam.config.service import ServiceSection
from edgecam.dirs import state_dir
from edgecam.errors import EXIT_FAILURE
from edgecam.service.notify import Notifier
from edgecam.sinks.base import SinkHealth
from edgecam.types import Result

log = logging.getLogger(__name__)

HardExit = Callable[[int], Any]


def resolve_state_dir(config: ServiceSection, environ: Mapping[str, str] | None = None) -> Path:
    """`service.state_dir`, else systemd's `$STATE_DIRECTORY`, else the XDG state home."""
    return state_dir(config.state_dir, environ)


def _flush_and_exit(code: int, hard_exit: HardExit) -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    hard_exit(code)


class ServiceHooks:
    """Callbacks for the run command: on_result / on_progress from the pipeline's output
    thread, on_stopping from a signal handler or the main thread.

    sink_health: the MQTT sink's health (None: no MQTT); called with every progress report,
    so it must be cheap. An exception from it is a bug and surfaces (the run stops).
    """

    def __init__(
        self,
        notifier: Notifier,
        config: ServiceSection,
        *,
        sink_health: Callable[[], SinkHealth] | None = None,
        clock: Callable[[], float] = time.monotonic,
        hard_exit: HardExit = os._exit,
    ) -> None:
        self.notifier = notifier
        self.config = config
        self.sink_health = sink_health
        self._clock = clock
        self._hard_exit = hard_exit
        self._lock = threading.Lock()
        self._ready = False
        self._stopping = False
        self._fps: float | None = None
        self._prev: tuple[int, float] | None = None  # (processed, uptime_s) at last progress
        self._last: tuple[str, float, float] | None = None  # (label, score, epoch time)
        self._note: str | None = None
        self._health: SinkHealth | None = None
        self._starved = False  # the watchdog is no longer fed: a sink failed
        self._deadline: threading.Timer | None = None

    @property
    def ready(self) -> bool:
        return self._ready

    def on_result(self, result: Result) -> None:
        """Remember the best entry of the latest non-empty result; the first result -> READY."""
        output = result.output
        if len(output.score):
            best = int(output.score.argmax())
            with self._lock:
                self._last = (output.label[best], float(output.score[best]), result.timestamp)
        if not self._ready:
            self.on_first_result()

    def on_first_result(self) -> None:
        """READY=1: model loaded, first frame through the sinks (a down broker is fine)."""
        with self._lock:
            if self._ready or self._stopping:
                return
            self._ready = True
        log.info("ready: first result delivered")
        self.notifier.ready(self.status_line())

    def on_progress(self, stats: Any) -> None:
        """Pipeline progress (PipelineStats or a stats dict): WATCHDOG=1 and a fresh STATUS.

        Not WATCHDOG=1 while the sink reports `failed`: frames flowing into a publisher that
        cannot deliver is not progress, and systemd should restart us."""
        self._update_fps(stats)
        health = self.sink_health() if self.sink_health is not None else None
        with self._lock:
            self._note = None  # frames flow again: whatever was degraded recovered
            self._health = health
            stopping = self._stopping
        failed = health is not None and health.state == "failed"
        if failed and not self._starved:
            log.error("not feeding the watchdog any more: %s", health.problem if health else "")
        self._starved = failed
        if self.config.watchdog and not failed:
            self.notifier.watchdog()
        if not stopping:
            self.notifier.status(self.status_line())

    def on_degraded(self, reason: str) -> None:
        """Show a problem (e.g. "camera lost, reconnecting") until frames flow again.

        Called as a heartbeat by a source that is actively reconnecting: that is progress of
        a kind (bounded by source.give_up_s), so it also feeds the watchdog. A read hung in a
        driver never calls this, so the watchdog still catches a wedged camera.
        """
        with self._lock:
            changed = reason.split(";", maxsplit=1)[0] != (self._note or "").split(";")[0]
            self._note = reason
            stopping = self._stopping
        if changed:
            log.warning("degraded: %s", reason)
        if self.config.watchdog and not stopping:
            self.notifier.watchdog()
        self.notifier.status(self.status_line())

    def on_stopping(self, reason: str = "stop requested") -> None:
        """STOPPING=1 and arm the hard deadline; idempotent."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        deadline = self.config.stop_deadline_s
        log.info("stopping (%s): draining within %.0f s", reason, deadline)
        self.notifier.stopping(f"stopping: {reason}")
        timer = threading.Timer(deadline, self._deadline_passed)
        timer.daemon = True
        timer.name = "edgecam-stop-deadline"
        self._deadline = timer
        timer.start()

    def stopped(self) -> None:
        """The graceful stop finished: disarm the deadline."""
        if self._deadline is not None:
            self._deadline.cancel()

    def _deadline_passed(self) -> None:
        log.error(
            "graceful stop exceeded service.stop_deadline_s=%.0f s; exiting now",
            self.config.stop_deadline_s,
        )
        _flush_and_exit(EXIT_FAILURE, self._hard_exit)

    def _update_fps(self, stats: Any) -> None:
        if isinstance(stats, Mapping):
            if "fps_out" in stats:
                self._fps = float(stats["fps_out"])
                return
            processed, uptime = stats.get("processed"), stats.get("uptime_s")
        else:
            processed, uptime = getattr(stats, "processed", None), getattr(stats, "uptime_s", None)
        if processed is None or uptime is None:
            return
        prev, self._prev = self._prev, (int(processed), float(uptime))
        if prev is not None and uptime > prev[1]:
            self._fps = (processed - prev[0]) / (uptime - prev[1])
        elif prev is None and uptime > 0:
            self._fps = processed / uptime

    def status_line(self) -> str:
        """`fps 9.8 | last: person 0.81 14:02:11 | mqtt connected` (parts as known), led by
        `failed: ...` or `degraded: ...` when something is wrong."""
        with self._lock:
            fps, last, note, health = self._fps, self._last, self._note, self._health
        if health is None and self.sink_health is not None:
            health = self.sink_health()
        parts = [f"degraded: {note}"] if note else []
        if health is not None and health.state != "ok":
            parts.insert(0, f"{health.state}: mqtt: {health.problem}")
        parts.append("fps -" if fps is None else f"fps {fps:.1f}")
        if last is not None:
            label, score, when = last
            parts.append(
                f"last: {label} {score:.2f} {time.strftime('%H:%M:%S', time.localtime(when))}"
            )
        if health is not None:
            parts.append(f"mqtt {health.summary}")
        return " | ".join(parts)


def install_signal_handlers(
    stop_event: threading.Event,
    *,
    on_stop: Callable[[str], None] | None = None,
    hard_exit: HardExit = os._exit,
) -> Callable[[], None]:
    """SIGTERM/SIGINT: set `stop_event` (and call on_stop); a second one exits 1 at once.
    SIGHUP: logged, not a reload. Main thread only. Returns a function restoring the old ones.
    """

    def on_term(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop_event.is_set():
            log.warning("%s again while stopping: exiting immediately", name)
            _flush_and_exit(EXIT_FAILURE, hard_exit)
            return
        log.info("%s received: stopping", name)
        stop_event.set()
        if on_stop is not None:
            on_stop(name)

    def on_hup(_signum: int, _frame: FrameType | None) -> None:
        log.warning(
            "SIGHUP received: edgecam does not reload its config; "
            "restart it to apply changes (systemctl restart edgecam)"
        )

    previous = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, on_term),
        signal.SIGINT: signal.signal(signal.SIGINT, on_term),
        signal.SIGHUP: signal.signal(signal.SIGHUP, on_hup),
    }

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    return restore

"""Putting the page together for `edgecam run`: one call, one sink back, stopped by the stack.

`open_web` finds what it reads in the sinks `run` already opened (the events sink for tracks
and events, the MQTT sink for broker counters and the run's identity), starts the server and
registers its stop on the run's ExitStack. Registered after the sinks, it stops before they
flush: the page goes away first, then events are ended and MQTT drains.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any

from edgecam import __version__
from edgecam.config.root import EdgecamConfig
from edgecam.config.web import WebSection, is_loopback, parse_web_address
from edgecam.config.zones import ZoneSection
from edgecam.core.payload import new_run_id, sanitize_device_id
from edgecam.errors import UsageError
from edgecam.pipeline.engine import Engine
from edgecam.sinks.base import Sink
from edgecam.sinks.events import EventsSink
from edgecam.sinks.mqtt import MqttSink
from edgecam.web.auth import Authenticator, load_credentials
from edgecam.web.health import MqttLike, PipelineLike, RunInfo, RunView
from edgecam.web.metrics import WebMetrics
from edgecam.web.render import FrameEncoder
from edgecam.web.respond import WebApp
from edgecam.web.server import WebServer, tls_context
from edgecam.web.sink import TrackSource, WebSink
from edgecam.web.state import BestShots, EventLog, LiveSlot

log = logging.getLogger(__name__)


def web_overrides(address: str | None) -> dict[str, Any]:
    """`--web [HOST:]PORT` as config overrides (None: flag not given)."""
    if address is None:
        return {}
    try:
        host, port = parse_web_address(address)
    except ValueError as exc:
        raise UsageError(f"--web {exc}") from None
    return {"web.enabled": True, "web.bind": host, "web.port": port}


def _identity(config: EdgecamConfig, sinks: Sequence[Sink]) -> tuple[str, str]:
    """(device_id, run_id) the other outputs use, so the page's payloads match theirs."""
    for sink in sinks:
        if isinstance(sink, MqttSink | EventsSink):
            return sink.device_id, sink.run_id
    name = config.mqtt.device_id or config.output.device_id or socket.gethostname()
    return sanitize_device_id(name), new_run_id()


def open_web(
    config: EdgecamConfig,
    *,
    stack: ExitStack,
    sinks: Sequence[Sink],
    pipeline: Sequence[PipelineLike],
    source: object,
    engine: Engine,
) -> list[Sink]:
    """Start the page when `[web]` is enabled; the sink to append to the pipeline's sinks.

    `pipeline` is filled with the Pipeline once it exists (stats are read from it lazily).
    """
    section = config.web
    if not section.enabled:
        return []
    events_sink = next((s for s in sinks if isinstance(s, EventsSink)), None)
    mqtt = next((s for s in sinks if isinstance(s, MqttSink)), None)
    device_id, run_id = _identity(config, sinks)
    info = RunInfo(
        device_id=device_id,
        run_id=run_id,
        model=engine.name,
        task=engine.task,
        labels=tuple(engine.labels),
        runtime=str(engine.runner.runtime),
        runtime_version=str(engine.runner.runtime_version),
        threads=config.model.threads or os.cpu_count() or 1,
        source=str(getattr(source, "name", config.source.spec or "")),
        events=events_sink is not None,
        version=__version__,
    )
    server, sink = serve(
        section,
        config.zones,
        info,
        pipeline=lambda: pipeline[0] if pipeline else None,
        mqtt=mqtt,
        source=source,
        tracker=events_sink.engine if events_sink is not None else None,
    )
    stack.callback(server.stop)
    if events_sink is not None:
        events_sink.add_output(sink)
    _announce(section, server.port)
    return [sink]


def serve(
    section: WebSection,
    zones: Sequence[ZoneSection],
    info: RunInfo,
    *,
    pipeline: Callable[[], PipelineLike | None],
    mqtt: MqttLike | None,
    source: object,
    tracker: TrackSource | None,
) -> tuple[WebServer, WebSink]:
    """The sink and a listening, serving WebServer (SinkError if the port is taken,
    ConfigError if a credential or TLS file does not load)."""
    credentials = load_credentials(section)
    tls = (
        tls_context(section.tls_cert_file, section.tls_key_file)
        if section.tls_cert_file is not None and section.tls_key_file is not None
        else None
    )
    slot = LiveSlot()
    holder: list[WebSink] = []
    run = RunView(
        info,
        pipeline=pipeline,
        mqtt=mqtt,
        source=source,
        last_result=lambda: holder[0].last_result if holder else None,
        max_age_s=section.healthz_max_age_s,
    )
    metrics = WebMetrics(run)
    events = EventLog(
        section.events_kept, device_id=info.device_id, run_id=info.run_id, model=info.model
    )
    sink = WebSink(slot, events, BestShots(section.events_kept), metrics, tracker)
    holder.append(sink)
    encoder = FrameEncoder(
        slot,
        [z.to_zone() for z in zones],
        fps=section.fps,
        max_size=section.max_size,
        quality=section.jpeg_quality,
    )
    app = WebApp(
        config=section,
        auth=Authenticator(credentials, session_s=section.session_hours * 3600),
        slot=slot,
        encoder=encoder,
        events=events,
        shots=sink.shots,
        metrics=metrics,
        run=run,
        zones=tuple(zones),
    )
    server = WebServer(app, section.bind, section.port, max_clients=section.max_clients, tls=tls)

    def counters() -> dict[str, int]:
        return {"clients": server.clients, "rejected": server.rejected, "encoded": encoder.encoded}

    app.counters = counters
    metrics.collector.web_counters = counters
    server.start()
    return server, sink


def _announce(section: WebSection, port: int) -> None:
    where = section.model_copy(update={"port": port}).url()
    auth = "login required" if section.has_auth else "no login: loopback only"
    log.info("web page at %s (%s)", where, auth)
    if is_loopback(section.bind):
        log.info(
            "from another computer: ssh -L %d:127.0.0.1:%d USER@THIS-DEVICE, then open "
            "http://localhost:%d/",
            port,
            port,
            port,
        )

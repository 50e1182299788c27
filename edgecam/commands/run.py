"""`edgecam run`: the main job — frames from a source through the model to the sinks."""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from edgecam.commands.common import (
    add_config_flags,
    add_max_pixels_flag,
    add_model_flags,
    check_output_file,
    device_id,
    load_with_overrides,
    model_overrides,
)
from edgecam.config import EdgecamConfig
from edgecam.config.source import SourceSection, source_password
from edgecam.core.payload import new_run_id
from edgecam.dirs import state_dir
from edgecam.errors import EXIT_OK
from edgecam.logsetup import register_secret, setup_logging
from edgecam.pipeline.engine import Engine, open_engine
from edgecam.pipeline.execution import execution_for
from edgecam.pipeline.metrics import cpu_temperature_c, limit_malloc_arenas
from edgecam.pipeline.pipeline import Pipeline, PipelineSummary
from edgecam.runtime.cache import ChoiceCache
from edgecam.secrets import secret_values, url_passwords
from edgecam.service.hooks import ServiceHooks, install_signal_handlers
from edgecam.service.notify import Notifier
from edgecam.sinks.base import Sink
from edgecam.sinks.jsonl import JsonlSink
from edgecam.sources.base import ReconnectPolicy
from edgecam.sources.open import open_source

if TYPE_CHECKING:  # imported where used: a run without MQTT, events or web never loads them
    from edgecam.sinks.events import EventOutput, EventsSink
    from edgecam.sinks.mqtt_commands import Controls

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a model on a camera, video, frames directory or image; results as JSON lines",
        description="Capture -> preprocess -> infer -> postprocess; one JSON line per frame.",
    )
    add_config_flags(parser)
    add_model_flags(parser, default_help="(default: ssd_mobilenet_v1)")
    parser.add_argument(
        "--source",
        "-s",
        help="video file, frames dir, image, camera index, /dev/videoN, rtsp:// URL, picamera2[:N]",
    )
    parser.add_argument("--loop", action="store_true", default=None, help="replay sources forever")
    parser.add_argument("--max-frames", type=int, help="stop after N processed frames")
    add_max_pixels_flag(parser)
    parser.add_argument(
        "--sink",
        choices=["jsonl", "none"],
        default=None,
        help="JSON lines to stdout (default) or none",
    )
    parser.add_argument("--output", "-o", help="write JSON lines to this file instead of stdout")
    parser.add_argument(
        "--detections-only",
        action="store_true",
        default=None,
        help="skip JSON lines for frames without detections",
    )
    parser.add_argument("--device-id", help="device id in payloads (default: hostname)")
    parser.add_argument(
        "--mqtt",
        metavar="URL[,URL...]",
        help="publish to a broker, e.g. mqtt://host:1883 or mqtts://user@host, or to the nodes"
        " of a clustered one in a comma list (see docs/mqtt.md)",
    )
    parser.add_argument(
        "--events",
        action="store_true",
        default=None,
        help="track objects and publish new/update/end events and counts",
    )
    parser.add_argument(
        "--web",
        metavar="[HOST:]PORT",
        help="serve the live page and /metrics, e.g. 8080 (loopback) or 0.0.0.0:8080 (needs auth)",
    )
    parser.set_defaults(handler=run_command)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    jsonl = None
    if args.sink == "none":
        jsonl = ""
    elif args.output:
        jsonl = args.output
    return {
        **model_overrides(args),
        "source.spec": args.source,
        "source.loop": args.loop,
        "source.max_pixels": args.max_pixels,
        "output.max_frames": args.max_frames,
        "output.jsonl": jsonl,
        "output.every_frame": False if args.detections_only else None,
        "output.device_id": args.device_id,
        "mqtt.url": args.mqtt,
        "events.enabled": args.events,
        **_web_overrides(args.web),
    }


def _web_overrides(address: str | None) -> dict[str, Any]:
    if address is None:
        return {}
    from edgecam.web.app import web_overrides

    return web_overrides(address)


def run_command(args: argparse.Namespace) -> int:
    config = load_with_overrides(args, _overrides(args))
    check_output_file(config.output.jsonl)
    setup_logging(
        args.log_level or config.logging.level,
        config.logging.format,
        secrets=secret_values(config),
    )
    return run(config)


def run(config: EdgecamConfig, *, stop: threading.Event | None = None) -> int:
    """Run until the source ends, max_frames is reached, or SIGTERM/SIGINT (or `stop`).

    Under systemd (Type=notify): READY=1 after the first result went through the sinks,
    WATCHDOG=1 from pipeline progress, STOPPING=1 when the stop begins.
    """
    stop = stop or threading.Event()
    notifier = Notifier()
    hooks = ServiceHooks(notifier, config.service)
    restore = (
        install_signal_handlers(stop, on_stop=hooks.on_stopping)
        if threading.current_thread() is threading.main_thread()
        else None
    )
    try:
        summary = _run_pipeline(config, hooks, stop)
    finally:
        if restore is not None:
            restore()
        hooks.stopped()
        notifier.close()
    log.info(
        "processed %d frames in %.1f s (%s)", summary.processed, summary.elapsed_s, summary.reason
    )
    return EXIT_OK


def _source_password(section: SourceSection) -> str | None:
    """Read the stream password (file or env) and keep it out of every log line."""
    if url_passwords(section.spec or ""):
        log.warning(
            "source.spec carries a password in the config file: prefer source.password_file "
            "or source.password_env with USER@ in the URL"
        )
    password = source_password(section)
    if password:
        register_secret(password)
        register_secret(quote(password, safe=""))  # as it appears inside the URL
    return password


def _run_pipeline(
    config: EdgecamConfig, hooks: ServiceHooks, stop: threading.Event
) -> PipelineSummary:
    limit_malloc_arenas()
    state = state_dir(config.service.state_dir)
    engine = open_engine(config.model, state)  # loading invoked it once: warm already
    src = config.source
    with ExitStack() as stack:
        source = open_source(
            src.spec,
            width=src.width,
            height=src.height,
            fps=src.fps,
            loop=src.loop,
            model_input=(engine.input_spec.width, engine.input_spec.height),
            reconnect=ReconnectPolicy(src.reconnect_initial_s, src.reconnect_max_s, src.give_up_s),
            read_timeout_s=src.read_timeout_s,
            max_pixels=src.max_pixels,
            password=_source_password(src),
        )
        stack.callback(source.close)
        if hasattr(source, "on_reconnecting"):
            source.on_reconnecting = hooks.on_degraded
        holder: list[Pipeline] = []
        controls = _controls(config)
        sinks = _open_sinks(
            _with_hass_tracking(config, engine),
            engine=engine,
            stack=stack,
            hooks=hooks,
            pipeline=holder,
            controls=controls,
        )
        if config.web.enabled:
            from edgecam.web.app import open_web

            sinks += open_web(
                config, stack=stack, sinks=sinks, pipeline=holder, source=source, engine=engine
            )
        pipeline = Pipeline(
            source,
            engine,
            sinks,
            config=config.pipeline,
            on_result=hooks.on_result,
            on_progress=hooks.on_progress,
            admit=controls.admit if controls is not None else None,
            execution=execution_for(engine, config.pipeline, ChoiceCache(state)),
        )
        holder.append(pipeline)
        summary = pipeline.run(max_frames=config.output.max_frames, stop=stop)
        hooks.on_stopping(summary.reason)  # before the sinks flush (the stack unwinds)
    return summary


def _controls(config: EdgecamConfig) -> Controls | None:
    """The switches Home Assistant drives (None: no command topics)."""
    ha = config.homeassistant
    if not (ha.enabled and ha.controls and config.mqtt.enabled):
        return None
    from edgecam.sinks.mqtt_commands import Controls

    return Controls(snapshots=config.snapshots.enabled)


def _with_hass_tracking(config: EdgecamConfig, engine: Engine) -> EdgecamConfig:
    """Home Assistant's occupancy and counts come from tracked objects: turn the tracker on
    (as events.enabled does) for a detection model."""
    if not (config.homeassistant.enabled and config.mqtt.enabled) or config.events.enabled:
        return config
    if engine.task != "detection":
        return config
    log.info("homeassistant.enabled: tracking objects (events on) for occupancy and counts")
    return config.model_copy(update={"events": config.events.model_copy(update={"enabled": True})})


def _stats(pipeline: list[Pipeline], engine: Engine) -> dict[str, Any]:
    """The pipeline's stats plus what Home Assistant's diagnostics show from the host."""
    stats = pipeline[0].stats() if pipeline else {}
    stats["runtime"] = f"{engine.runner.runtime} {engine.runner.runtime_version}"
    stats["cpu_temp_c"] = cpu_temperature_c()
    return stats


def _open_sinks(
    config: EdgecamConfig,
    *,
    engine: Engine,
    stack: ExitStack,
    hooks: ServiceHooks,
    pipeline: list[Pipeline],
    controls: Controls | None = None,
) -> list[Sink]:
    """JSON lines, MQTT and events, each closed by `stack` in the right order.

    Closing runs in reverse: the events sink (flushing `end` for open tracks) closes before the
    outputs it feeds, and MQTT closes last, with what is left of the stop deadline, so its
    outbox keeps whatever the broker did not acknowledge.
    """
    run_id = new_run_id()
    model, labels = engine.name, engine.labels
    dev = device_id(config.mqtt.device_id or config.output.device_id)
    sinks: list[Sink] = []
    event_outputs: list[EventOutput] = []
    mqtt = None
    if config.mqtt.enabled:
        from edgecam.sinks.mqtt import open_mqtt_sink
        from edgecam.sinks.mqtt_hass import plan_hass

        # With events on, count/<label> carries the tracker's confirmed objects; per-frame
        # raw counts on the same retained topic would contradict it.
        mqtt_cfg = (
            config.mqtt.model_copy(update={"publish_counts": False})
            if config.events.enabled
            else config.mqtt
        )
        mqtt = open_mqtt_sink(
            mqtt_cfg,
            config.outbox,
            device_id=dev,
            model=model,
            stats_provider=lambda: _stats(pipeline, engine),
            stats_interval_s=config.stats.interval_s,
            homeassistant=plan_hass(
                config,
                device_id=dev,
                model=model,
                model_labels=labels,
                detector=engine.task == "detection",
                controls=controls,
            ),
            run_id=run_id,
            state_dir=state_dir(config.service.state_dir),
        )
        stack.callback(mqtt.close, max(1.0, config.service.stop_deadline_s / 2))
        hooks.sink_health = mqtt.health
        sinks.append(mqtt)
        event_outputs.append(mqtt)
    if config.output.jsonl:
        jsonl = JsonlSink(
            config.output.jsonl,
            device_id=dev,
            every_frame=config.output.every_frame,
            run_id=run_id,
        )
        stack.callback(jsonl.close)
        sinks.append(jsonl)
        event_outputs.append(jsonl)
    if config.events.enabled:
        sinks.append(
            _open_events(
                config,
                model=model,
                labels=labels,
                dev=dev,
                run_id=run_id,
                outputs=event_outputs,
                stack=stack,
                controls=controls,
            )
        )
    if controls is not None and mqtt is not None and mqtt.hass is not None:
        topics = mqtt.hass.topics
        snaps = config.snapshots.options() if config.snapshots.enabled else None
        from edgecam.sinks.mqtt_commands import ControlSink

        sinks.append(ControlSink(controls, topics, mqtt.publish_now, snaps))  # last: see its doc
    return sinks


def _open_events(
    config: EdgecamConfig,
    *,
    model: str,
    labels: Sequence[str],
    dev: str,
    run_id: str,
    outputs: Sequence[EventOutput],
    stack: ExitStack,
    controls: Controls | None = None,
) -> EventsSink:
    from edgecam.sinks.events import EventsSink, build_event_engine, check_config_labels
    from edgecam.sinks.snapshots import SnapshotStore

    check_config_labels(config.objects, config.zones, labels)
    snaps = config.snapshots
    store = (
        SnapshotStore(snaps.dir, max_files=snaps.max_files, max_bytes=snaps.max_bytes)
        if snaps.enabled and snaps.dir
        else None
    )
    sink = EventsSink(
        build_event_engine(
            config.tracking,
            config.objects,
            config.zones,
            config.events,
            id_prefix=run_id,
            keep_frames=snaps.enabled,
        ),
        outputs,
        device_id=dev,
        run_id=run_id,
        model=model,
        snapshots=snaps.options() if snaps.enabled else None,
        store=store,
        switches=controls,
    )
    stack.callback(sink.close)
    return sink

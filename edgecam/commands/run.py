"""`edgecam run`: the main job — frames from a source through the model to the sinks."""

from __future__ import annotations

import argparse
import logging
import threading
from contextlib import ExitStack
from typing import Any

from edgecam.commands.common import (
    add_config_flags,
    add_model_flags,
    device_id,
    load_with_overrides,
    model_overrides,
)
from edgecam.config import EdgecamConfig, secret_values
from edgecam.engine import open_engine
from edgecam.errors import EXIT_OK
from edgecam.logsetup import setup_logging
from edgecam.notify import Notifier
from edgecam.pipeline import Pipeline, PipelineSummary
from edgecam.service import ServiceHooks, install_signal_handlers
from edgecam.sinks import Sink
from edgecam.sinks.jsonl import JsonlSink
from edgecam.sources import ReconnectPolicy, open_source

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
        "output.max_frames": args.max_frames,
        "output.jsonl": jsonl,
        "output.every_frame": False if args.detections_only else None,
        "output.device_id": args.device_id,
    }


def run_command(args: argparse.Namespace) -> int:
    config = load_with_overrides(args, _overrides(args))
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


def _run_pipeline(
    config: EdgecamConfig, hooks: ServiceHooks, stop: threading.Event
) -> PipelineSummary:
    engine = open_engine(config.model)
    engine.warm_up()
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
        )
        stack.callback(source.close)
        if hasattr(source, "on_reconnecting"):
            source.on_reconnecting = hooks.on_degraded
        sinks: list[Sink] = []
        if config.output.jsonl:
            sink = JsonlSink(
                config.output.jsonl,
                device_id=device_id(config.output.device_id),
                every_frame=config.output.every_frame,
            )
            stack.callback(sink.close)
            sinks.append(sink)
        # MQTT (when configured): open the sink here, add it to `sinks`, register its close on
        # the stack, and set hooks.broker_state = lambda: sink.state.
        pipeline = Pipeline(
            source,
            engine,
            sinks,
            config=config.pipeline,
            on_result=hooks.on_result,
            on_progress=hooks.on_progress,
        )
        summary = pipeline.run(max_frames=config.output.max_frames, stop=stop)
        hooks.on_stopping(summary.reason)  # before the sinks flush (the stack unwinds)
    return summary

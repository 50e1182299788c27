"""`edgecam doctor [--json]`: a checklist of this machine for running edgecam, with fixes.

Exit status 0 when a working path exists (no check failed), 1 otherwise. The runtime probes
load and invoke the configured model in child processes, so a runtime that crashes shows up
as a line in the report instead of killing the doctor.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any

from edgecam.config import DEFAULT_CONFIG_PATH, EdgecamConfig, load_config
from edgecam.doctor.checks import (
    Check,
    check_cpu,
    check_invoke,
    check_platform,
    check_runtimes,
    check_state_dir,
    check_systemd,
    check_xnnpack,
    platform_facts,
    read_os_release,
    render,
    working_path,
)
from edgecam.doctor.devices import (
    check_mqtt,
    check_picamera2,
    check_source,
    check_v4l2,
    check_video_group,
)
from edgecam.doctor.execution import cached_choices, check_execution
from edgecam.errors import EXIT_FAILURE, EXIT_OK, ConfigError, EdgecamError, UsageError
from edgecam.models.files import resolve_model
from edgecam.runtime.interpreter import AUTO_ORDER, available_runtimes
from edgecam.runtime.select import Attempt, probe_runtimes, record_choice
from edgecam.service.hooks import resolve_state_dir
from edgecam.sources.platform import board_model, is_raspberry_pi

PROBE_RUNS = 4  # first invoke + 3 for a steady-state median


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check this machine: platform, runtimes, model, camera, broker, service",
        description="Check everything edgecam needs on this machine and say how to fix what "
        "is missing. Exit 0 when a working path exists, 1 otherwise.",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable report")
    parser.add_argument("--model", "-m", help="manifest name or .tflite path (default: config)")
    parser.add_argument("--models-dir", type=Path, help="directory searched first for models")
    parser.add_argument(
        "--config",
        "-c",
        type=Path,
        help=f"TOML config (default: {DEFAULT_CONFIG_PATH} if it exists)",
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, metavar="S", help="per runtime probe (default 120)"
    )
    parser.set_defaults(handler=doctor_command)


def doctor_command(args: argparse.Namespace) -> int:
    if not 0 < args.timeout < math.inf:  # also refuses nan
        raise UsageError(f"--timeout {args.timeout}: expected a positive number of seconds")
    checks, chosen = gather(args)
    ok = working_path(checks)
    if args.json:
        report = {"ok": ok, "runtime": chosen, "checks": [c.as_dict() for c in checks]}
        print(json.dumps(report, indent=2))
    else:
        print(render(checks))
    return EXIT_OK if ok else EXIT_FAILURE


def _load(args: argparse.Namespace) -> tuple[EdgecamConfig, Check]:
    path = args.config or (DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file() else None)
    overrides = {"model.name": args.model, "model.models_dir": args.models_dir}
    try:
        config = load_config(path, overrides)
    except ConfigError as exc:
        fallback = load_config(None, overrides)
        return fallback, Check("config", "fail", exc.message.replace("\n", "; "), exc.hint)
    shown = str(path) if path else "no config file, defaults"
    return config, Check("config", "ok", f"{shown} (valid)", None, {"path": str(path or "")})


def gather(args: argparse.Namespace) -> tuple[list[Check], str | None]:
    """Every check, in report order, and the runtime `auto` would pick (None: none works)."""
    config, config_check = _load(args)
    facts = platform_facts()
    cpu = check_cpu(str(facts["machine"]), _read(Path("/proc/cpuinfo")))
    checks = [check_platform(facts, read_os_release(), board_model()), cpu, config_check]
    runtime_checks, chosen = _model_and_runtimes(config, args.timeout, bool(cpu.data["emulated"]))
    checks += runtime_checks
    on_pi = is_raspberry_pi()
    source, need, target = check_source(config.source.spec, on_pi)
    checks += [source, check_picamera2(need, target, on_pi), check_v4l2(need, target)]
    checks += [check_video_group(), check_mqtt(config.mqtt)]
    checks.append(
        check_state_dir(
            resolve_state_dir(config.service),
            config.outbox.max_bytes,
            required=config.mqtt.enabled,
        )
    )
    checks.append(check_systemd())
    return checks, chosen.runtime if chosen else None


def _model_and_runtimes(
    config: EdgecamConfig, timeout: float, emulated: bool
) -> tuple[list[Check], Attempt | None]:
    section = config.model
    try:
        resolved = resolve_model(
            section.name, models_dir=section.models_dir, labels_file=section.labels_file
        )
    except EdgecamError as exc:
        fix = exc.hint or f"edgecam models fetch {section.name}"
        installed = available_runtimes()
        names = ", ".join(f"{n} {v}" for n, v in installed.items()) or "none"
        runtimes = Check("runtimes", "ok" if installed else "fail", f"installed: {names}")
        return [Check("model", "fail", exc.message, fix), runtimes], None
    verified = "sha256 verified" if resolved.verified else "not in the manifest: unverified"
    model_check = Check(
        "model",
        "ok",
        f"{resolved.spec.name}: {resolved.model_path} ({verified})",
        None,
        {"name": resolved.spec.name, "path": str(resolved.model_path)},
    )
    attempts = probe_runtimes(
        resolved.model_path,
        AUTO_ORDER,
        num_threads=section.threads or os.cpu_count() or 1,
        timeout=timeout,
        runs=PROBE_RUNS,
        stop_at_first_ok=False,
    )
    runtime_checks = check_runtimes(attempts, section.runtime)
    order = AUTO_ORDER if section.runtime == "auto" else (section.runtime,)
    chosen = next((a for b in order for a in attempts if a.runtime == b and a.status == "ok"), None)
    if section.runtime == "auto":
        # Where open_runner(runtime="auto") looks, so the next start needs no probe.
        record_choice(resolved.model_path, attempts, state_dir=resolve_state_dir(config.service))
    cached = cached_choices(resolve_state_dir(config.service), resolved.model_path)
    return [
        model_check,
        *runtime_checks,
        check_xnnpack(chosen),
        check_invoke(chosen, resolved.spec.name, emulated),
        check_execution(cached, config.pipeline.mode, section.threads),
    ], chosen


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""

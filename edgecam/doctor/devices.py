"""`edgecam doctor` checks of what is outside the box: cameras and the MQTT broker.

Split from :mod:`edgecam.doctor.checks` because these talk to hardware and the network: picamera2 /
libcamera, /dev/video* nodes and their permissions, and one bounded MQTT connection attempt
that tells "unreachable" from "refused" (bad password, ACL, TLS) exactly as the sink does.
"""

from __future__ import annotations

import grp
import logging
import os
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edgecam.config.mqtt import MqttSection
from edgecam.doctor.checks import Check, Status
from edgecam.errors import ConfigError, SinkError, SourceError
from edgecam.sources import parse_spec
from edgecam.sources.platform import picamera2_import_error

log = logging.getLogger(__name__)

CameraNeed = Literal["picamera2", "v4l2", "none"]
PICAMERA2_FIX = (
    "sudo apt install python3-picamera2, and create the venv with --system-site-packages"
)


def camera_need(spec: str | None, on_pi: bool) -> tuple[CameraNeed, str | None]:
    """Which camera stack the configured source needs, and its target (number or device).

    No spec means the Pi camera on a Raspberry Pi and nothing elsewhere (files, URLs).
    Raises SourceError for a spec `edgecam run` would reject too.
    """
    if not spec:
        return ("picamera2", "0") if on_pi else ("none", None)
    kind, target = parse_spec(spec)
    if kind == "picamera2":
        return "picamera2", target
    if kind == "camera":
        return "v4l2", target if target.startswith("/dev/") else f"/dev/video{target}"
    return "none", None


def check_source(spec: str | None, on_pi: bool) -> tuple[Check, CameraNeed, str | None]:
    try:
        need, target = camera_need(spec, on_pi)
    except SourceError as exc:
        return Check("source", "fail", exc.message, exc.hint), "none", None
    shown = spec or ("(default) picamera2:0" if on_pi else "(none configured)")
    data = {"spec": spec, "needs": need, "target": target}
    if need == "none" and not spec:
        return (
            Check(
                "source",
                "warn",
                f"{shown}: not a Raspberry Pi, so there is no default camera",
                "set source.spec (or pass --source FILE|URL|N)",
                data,
            ),
            need,
            None,
        )
    return Check("source", "ok", f"{shown} -> {need}", None, data), need, target


def list_libcamera_cameras(module: str = "picamera2") -> list[dict[str, Any]]:
    """picamera2's view of libcamera: one dict per camera (Model, Location, Id, Num)."""
    import importlib

    picamera2 = importlib.import_module(module)
    info = picamera2.Picamera2.global_camera_info()
    return [dict(item) for item in info]


def check_picamera2(
    need: CameraNeed, target: str | None, on_pi: bool, module: str = "picamera2"
) -> Check:
    """Importable (with its apt-only libcamera bindings), and the camera we need is listed."""
    needed = need == "picamera2"
    error = picamera2_import_error(module)
    if error is not None:
        status: Status = "fail" if needed else ("warn" if on_pi else "ok")
        detail = f"cannot import picamera2 ({error})"
        if not on_pi and not needed:
            detail = "not importable (only needed for the Raspberry Pi camera)"
        return Check("picamera2", status, detail, PICAMERA2_FIX if status != "ok" else None)
    try:
        cameras = list_libcamera_cameras(module)
    except Exception as exc:  # libcamera errors surface as anything
        return Check(
            "picamera2",
            "fail" if needed else "warn",
            f"picamera2 imports but listing cameras failed: {exc}",
            "check the ribbon cable and `rpicam-hello --list-cameras`",
        )
    names = ", ".join(str(c.get("Model", "?")) for c in cameras) or "none"
    data = {"cameras": [{k: str(v) for k, v in c.items()} for c in cameras]}
    index = int(target) if needed and target is not None else 0
    if needed and index >= len(cameras):
        return Check(
            "picamera2",
            "fail",
            f"libcamera lists {len(cameras)} camera(s) ({names}), camera {index} is not there",
            "check the ribbon cable, then `rpicam-hello --list-cameras`",
            data,
        )
    return Check("picamera2", "ok", f"libcamera cameras: {names}", None, data)


def video_nodes(dev_dir: Path = Path("/dev")) -> list[Path]:
    return sorted(dev_dir.glob("video[0-9]*"), key=lambda p: (len(p.name), p.name))


def check_v4l2(need: CameraNeed, target: str | None, dev_dir: Path = Path("/dev")) -> Check:
    """/dev/video* nodes this user can open; the configured one must exist and be usable."""
    nodes = video_nodes(dev_dir)
    usable = [n for n in nodes if os.access(n, os.R_OK | os.W_OK)]
    blocked = [n for n in nodes if n not in usable]
    data = {"nodes": [str(n) for n in nodes], "usable": [str(n) for n in usable]}
    listing = ", ".join(n.name for n in nodes) or "no /dev/video* nodes"
    group_fix = "sudo usermod -aG video $USER, then log in again"
    if need == "v4l2" and target is not None:
        node = Path(target)
        if not node.exists():
            return Check(
                "v4l2",
                "fail",
                f"{target} does not exist ({listing})",
                "plug the camera in, or set source.spec to an existing node",
                data,
            )
        if not os.access(node, os.R_OK | os.W_OK):
            return Check(
                "v4l2", "fail", f"{target}: permission denied for this user", group_fix, data
            )
    if blocked:
        names = ", ".join(n.name for n in blocked)
        return Check("v4l2", "warn", f"{listing}; not accessible: {names}", group_fix, data)
    return Check("v4l2", "ok", listing, None, data)


def check_video_group(groups: Sequence[int] | None = None, uid: int | None = None) -> Check:
    """Camera nodes belong to group `video` on Raspberry Pi OS and Debian."""
    uid = os.geteuid() if uid is None else uid
    try:
        video = grp.getgrnam("video").gr_gid
    except KeyError:
        return Check("video group", "warn", "no group named video on this system")
    member = uid == 0 or video in (os.getgroups() if groups is None else groups)
    if member:
        return Check("video group", "ok", "this user can open camera nodes (group video)")
    return Check(
        "video group",
        "warn",
        "this user is not in group video (the systemd unit adds it; interactive runs need it)",
        "sudo usermod -aG video $USER, then log in again",
    )


# ---- MQTT ---------------------------------------------------------------------------------


def check_mqtt(cfg: MqttSection, timeout_s: float = 5.0) -> Check:
    """One bounded connection to each configured node (in parallel), with the configured
    address, TLS, credentials and protocol; a cluster with some nodes down is a warning (the
    devices move to the others), with none up a failure."""
    if not cfg.enabled:
        return Check("mqtt", "ok", "not configured (mqtt.url / mqtt.host unset)")
    bounded = cfg.model_copy(update={"connect_timeout_s": min(cfg.connect_timeout_s, timeout_s)})
    urls = bounded.urls()
    nodes = (
        [bounded.model_copy(update={"url": url}) for url in urls] if len(urls) > 1 else [bounded]
    )
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        results = list(pool.map(_check_node, nodes))
    endpoint = bounded.endpoints()[0]
    data: dict[str, Any] = {
        "broker": ", ".join(r.where for r in results),
        "username": endpoint.username,
        "tls": endpoint.tls,
        "nodes": [r.as_dict() for r in results],
    }
    up = [r for r in results if r.error is None]
    down = [r for r in results if r.error is not None]
    who = f"as {endpoint.username}" if endpoint.username else "anonymously"
    if len(results) == 1:
        one = results[0]
        if one.error is not None:
            return Check("mqtt", "fail", one.error.message, _node_fix(one.error), data)
        return Check("mqtt", "ok", f"{one.where}: connected {who}, {one.protocol_note}", None, data)
    if not up:
        errors = [r.error for r in down if r.error is not None]
        lines = "; ".join(e.message for e in errors)
        first = next((e for e in errors if e.hint), errors[0])
        detail = f"none of the {len(results)} broker nodes accepted the connection: {lines}"
        return Check("mqtt", "fail", detail, _node_fix(first), data)
    detail = f"{len(up)} of {len(results)} nodes connected {who}, {up[0].protocol_note}"
    if not down:
        return Check("mqtt", "ok", f"{detail}: {', '.join(r.where for r in up)}", None, data)
    lines = "; ".join(r.error.message for r in down if r.error is not None)
    fix = (
        "start those nodes or take them out of mqtt.url; meanwhile edgecam uses the others"
        " (it moves to the next node when one fails)"
    )
    return Check("mqtt", "warn", f"{detail}; {lines}", fix, data)


@dataclass(frozen=True)
class _NodeResult:
    where: str
    protocol_note: str = ""
    error: SinkError | ConfigError | None = None

    def as_dict(self) -> dict[str, Any]:
        problem = self.error.message if self.error is not None else None
        return {
            "url": self.where,
            "ok": self.error is None,
            "detail": problem or self.protocol_note,
        }


def _check_node(cfg: MqttSection) -> _NodeResult:
    from edgecam.sinks.mqtt_client import describe
    from edgecam.sinks.mqtt_nodes import NodeLink

    where = describe(cfg.endpoints()[0])
    link = None
    try:
        link = NodeLink(
            cfg,
            client_id=f"edgecam-doctor-{uuid.uuid4().hex[:8]}",
            status_topic=None,
            persistent=False,
        )
        link.start(unreachable_ok=False)
    except (SinkError, ConfigError) as exc:
        return _NodeResult(where, error=exc)
    finally:
        if link is not None:
            link.stop()
    note = f"MQTT {link.protocol}"
    if link.v5_refusal:
        note += f" (no MQTT 5 there: {link.v5_refusal})"
    return _NodeResult(where, note)


def _node_fix(error: SinkError | ConfigError) -> str:
    return error.hint or _mqtt_fix(error.message)


def _mqtt_fix(message: str) -> str:
    if "cannot reach" in message or "no answer" in message:
        return "check mqtt.url / mqtt.host and that the broker is running and reachable"
    if "TLS" in message:
        return "set mqtt.ca_file to the CA that signed the broker certificate"
    return "check mqtt.username, the password file/env and the broker's ACL"

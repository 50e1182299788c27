"""JSON documents of the page's API (built here so the handler only routes and sends).

Boxes are normalized ``[xmin, ymin, xmax, ymax]`` like every edgecam payload; track ids are
given whole (``track_id``, as in the `events` payloads) and short (``track``, as drawn).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgecam.config.zones import ZoneSection
from edgecam.core.payload import iso_utc
from edgecam.types import Classification, Detections
from edgecam.web.health import RunInfo
from edgecam.web.render import match_tracks, short_id
from edgecam.web.state import LiveView

#: What label files put in unused class slots (COCO's gaps): never a choice for a zone.
PLACEHOLDER_LABELS = frozenset({"", "???", "n/a", "background"})


def zone_dict(zone: ZoneSection) -> dict[str, Any]:
    return {
        "name": zone.name,
        "points": [list(p) for p in zone.points],
        "inertia": zone.inertia,
        "labels": list(zone.labels),
    }


def info_document(
    info: RunInfo,
    zones: Sequence[ZoneSection],
    *,
    fps: float,
    auth_required: bool,
) -> dict[str, Any]:
    """What the page needs once: identity, the model's labels, zones, the live rate."""
    return {
        "device_id": info.device_id,
        "run_id": info.run_id,
        "version": info.version,
        "model": info.model,
        "task": info.task,
        "labels": sorted(set(info.labels) - PLACEHOLDER_LABELS),
        "events": info.events,
        "live_fps": fps,
        "auth_required": auth_required,
        "zones": [zone_dict(z) for z in zones],
    }


def live_document(view: LiveView | None) -> dict[str, Any]:
    """The latest frame's objects (as drawn on the live picture) and the zones occupied."""
    if view is None:
        return {"seq": None, "objects": [], "classification": [], "occupied": {}}
    result = view.result
    doc: dict[str, Any] = {
        "seq": result.seq,
        "captured_at": iso_utc(result.timestamp),
        "width": result.width,
        "height": result.height,
        "objects": [],
        "classification": [],
        "occupied": {},
    }
    output = result.output
    if isinstance(output, Detections):
        boxes = np.round(output.xyxy.astype(np.float64), 4).tolist()
        scores = np.round(output.score.astype(np.float64), 4).tolist()
        for i, track in enumerate(match_tracks(output, view.tracks)):
            confirmed = track is not None and track.confirmed
            doc["objects"].append(
                {
                    "label": output.label[i],
                    "score": scores[i],
                    "box": boxes[i],
                    "track_id": track.track_id if confirmed and track else None,
                    "track": short_id(track.track_id) if confirmed and track else None,
                    "zones": list(track.zones) if confirmed and track else [],
                }
            )
    elif isinstance(output, Classification):
        doc["classification"] = [
            {"label": output.label[i], "score": round(float(output.score[i]), 4)}
            for i in range(len(output))
        ]
    occupied: dict[str, list[str]] = {}
    for track in view.tracks:
        if track.confirmed and track.observed:
            for zone in track.zones:
                occupied.setdefault(zone, []).append(short_id(track.track_id))
    doc["occupied"] = occupied
    return doc

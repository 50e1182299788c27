"""Who is where (pure): per-label and per-zone occupancy from the tracker's lifecycle events.

Counts come from confirmed tracks only (a track exists here from its ``new`` event to its
``end``), never from per-frame detections, so a flickering box never reaches Home Assistant's
history and a one-frame false positive never counts. Zone membership is the event's current
``zones`` list (the tracker already applies each zone's inertia), so a replayed or missed
``update`` cannot leave a zone count drifting: every event restates where the object is.

:meth:`Occupancy.apply` returns only what changed, so the caller publishes a retained value
when it changes and nothing otherwise.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["new", "end"]


@dataclass(frozen=True, slots=True)
class ZoneEvent:
    """An object's presence in a zone began (``new``) or ended (``end``)."""

    kind: Kind
    zone: str


@dataclass(frozen=True, slots=True)
class OccupancyStep:
    """What one event changed: new counts per label and per (zone, label), zone transitions."""

    counts: dict[str, int] = field(default_factory=dict)
    zone_counts: dict[tuple[str, str], int] = field(default_factory=dict)
    zone_events: tuple[ZoneEvent, ...] = ()


class Occupancy:
    """Live confirmed tracks: track id -> (label, zones it is in)."""

    def __init__(self) -> None:
        self._tracks: dict[str, tuple[str, frozenset[str]]] = {}

    def count(self, label: str) -> int:
        return sum(1 for lab, _ in self._tracks.values() if lab == label)

    def zone_count(self, zone: str, label: str) -> int:
        return sum(1 for lab, zs in self._tracks.values() if lab == label and zone in zs)

    def labels(self) -> set[str]:
        """Labels with at least one live track."""
        return {lab for lab, _ in self._tracks.values()}

    def zone_labels(self) -> set[tuple[str, str]]:
        """(zone, label) pairs with at least one live track."""
        return {(z, lab) for lab, zs in self._tracks.values() for z in zs}

    def apply(self, event: str, track_id: str, label: str, zones: Iterable[str]) -> OccupancyStep:
        """One lifecycle event (``new`` / ``update`` / ``end``; anything else changes nothing)."""
        if event not in ("new", "update", "end"):
            return OccupancyStep()
        before = self._tracks.get(track_id)
        old_label, old_zones = before if before is not None else (label, frozenset())
        if event == "end":
            self._tracks.pop(track_id, None)
            new_zones: frozenset[str] = frozenset()
        else:
            new_zones = frozenset(zones)
            self._tracks[track_id] = (label, new_zones)
        labels = {old_label, label}
        pairs = {(z, old_label) for z in old_zones} | {(z, label) for z in new_zones}
        counts_before = self._counts_for(labels, pairs, exclude=track_id, extra=before)
        counts_after = self._counts_for(labels, pairs)
        entered = sorted(new_zones - old_zones)
        left = sorted(old_zones - new_zones)
        return OccupancyStep(
            counts={
                lab: counts_after[0][lab]
                for lab in sorted(labels)
                if counts_after[0][lab] != counts_before[0][lab]
            },
            zone_counts={
                pair: counts_after[1][pair]
                for pair in sorted(pairs)
                if counts_after[1][pair] != counts_before[1][pair]
            },
            zone_events=(
                *(ZoneEvent("new", z) for z in entered),
                *(ZoneEvent("end", z) for z in left),
            ),
        )

    def _counts_for(
        self,
        labels: set[str],
        pairs: set[tuple[str, str]],
        *,
        exclude: str | None = None,
        extra: tuple[str, frozenset[str]] | None = None,
    ) -> tuple[Counter[str], Counter[tuple[str, str]]]:
        """Counts of `labels` and `pairs`; with `exclude`/`extra`: as they were before the
        track `exclude` changed from `extra` (None: it did not exist)."""
        entries = [v for k, v in self._tracks.items() if k != exclude]
        if extra is not None:
            entries.append(extra)
        by_label: Counter[str] = Counter()
        by_pair: Counter[tuple[str, str]] = Counter()
        for lab, zones in entries:
            if lab in labels:
                by_label[lab] += 1
            for z in zones:
                if (z, lab) in pairs:
                    by_pair[(z, lab)] += 1
        return by_label, by_pair

"""What edgecam learned about this machine by trying things, kept across starts.

One JSON file in the state directory (``runtime-choice.json``), one section per kind of
finding: ``choice`` (the runtime ``runtime = "auto"`` picked for a model), ``loadable`` (a
model that tflite-runtime loaded in a probe child without crashing). Each entry is keyed by
everything that would change the answer (model sha256, runtime versions, machine), bounded in
number, and written by atomic replace. Anything unreadable counts as empty: the only cost of a
lost cache is probing again, so a read-only or full state directory is logged, never fatal.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from edgecam import dirs

log = logging.getLogger(__name__)

CACHE_NAME = "runtime-choice.json"
SCHEMA = 2
MAX_ENTRIES = 64  # per section; the oldest are dropped past this


class ChoiceCache:
    """Sections of keyed JSON entries in one file; every write replaces the file atomically."""

    def __init__(self, state_dir: Path | None = None) -> None:
        self.path = (state_dir or dirs.state_dir()) / CACHE_NAME

    def _read(self) -> dict[str, dict[str, dict[str, Any]]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            return {}
        sections = data.get("sections")
        if not isinstance(sections, dict):
            return {}
        return {k: v for k, v in sections.items() if isinstance(v, dict)}

    def entries(self, section: str) -> dict[str, dict[str, Any]]:
        found = self._read().get(section, {})
        return {k: v for k, v in found.items() if isinstance(v, dict)}

    def get(self, section: str, key: str) -> dict[str, Any] | None:
        return self.entries(section).get(key)

    def put(self, section: str, key: str, entry: dict[str, Any]) -> None:
        sections = self._read()
        entries = sections.setdefault(section, {})
        entries[key] = {**entry, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        newest = sorted(entries.items(), key=lambda kv: str(kv[1].get("saved_at", "")))
        sections[section] = dict(newest[-MAX_ENTRIES:])
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    json.dump({"schema": SCHEMA, "sections": sections}, handle, indent=1)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            log.info("cannot write %s (the next start probes again): %s", self.path, exc)

"""JSON lines to stdout or a file: the default sink, needing no broker."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from edgecam.core.payload import build_event_payload, build_result_payload, encode_json
from edgecam.errors import SinkError
from edgecam.types import Detections, Result


class JsonlSink:
    """One line per result; flushed per line so a `tail -f` or a pipe sees frames as they happen."""

    #: Lines carry no pixels: the pipeline may drop a frame's image once it is preprocessed.
    needs_pixels = False

    def __init__(
        self,
        target: str = "-",
        *,
        device_id: str,
        every_frame: bool = True,
        run_id: str | None = None,
    ) -> None:
        self.device_id = device_id
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.every_frame = every_frame
        self._seq = 0
        self._event_seq = 0
        self._owned = target != "-"
        self._name = "standard output" if target == "-" else target
        self._failed = False
        if self._owned:
            path = Path(target)
            try:
                self._out: IO[bytes] = path.open("ab")
            except OSError as exc:
                raise SinkError(f"{path}: cannot open JSON-lines output: {exc.strerror}") from exc
        else:
            sys.stdout.flush()  # anything printed before goes first; lines are bytes from here
            self._out = sys.stdout.buffer

    def handle(self, result: Result) -> None:
        if (
            not self.every_frame
            and isinstance(result.output, Detections)
            and not len(result.output)
        ):
            return
        end_to_end = (time.monotonic() - result.monotonic) * 1000
        payload = build_result_payload(
            result,
            device_id=self.device_id,
            run_id=self.run_id,
            seq=self._seq,
            end_to_end_ms=end_to_end,
        )
        self._seq += 1
        self._write(payload)

    def publish_event(self, event: Mapping[str, Any]) -> None:
        """A tracked-object event as its own line (`"type": "event"`), numbered per stream."""
        payload = build_event_payload(
            event,
            device_id=self.device_id,
            run_id=self.run_id,
            seq=self._event_seq,
            model=str(event.get("model", "")),
        )
        self._event_seq += 1
        self._write(payload)

    def _write(self, payload: Mapping[str, Any]) -> None:
        """One line, flushed: one write() syscall per message, no text-layer copy.

        A failed write ends the run naming the output: a full disk or a vanished mount must
        not look like a crash of edgecam. A closed pipe (`| head`) is the reader's choice and
        goes up as it is, for the CLI to end quietly.
        """
        try:
            self._out.write(encode_json(payload) + b"\n")
            self._out.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            self._failed = True
            raise SinkError(
                f"{self._name}: cannot write JSON lines: {exc.strerror or exc}"
                " (free space, or choose another -o / output.jsonl); the lines written before"
                " this one are complete"
            ) from exc

    def publish_count(self, label: str, count: int) -> None:
        """Counts are a retained-topic idea; in a line stream they are implied by the events."""

    def publish_snapshot(self, label: str, jpeg: bytes) -> bool:
        """Snapshots go to MQTT or the snapshot directory, never into a text stream."""
        return False

    def close(self, timeout: float = 0.0) -> None:
        if self._owned and not self._out.closed:
            try:
                self._out.close()
            except OSError as exc:  # lines are flushed one by one: only a failed one is pending
                if self._failed:
                    return  # already reported by the write that failed
                raise SinkError(f"{self._name}: cannot close: {exc.strerror or exc}") from exc

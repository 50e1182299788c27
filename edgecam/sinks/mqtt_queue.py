"""Every message between `handle()` and its PUBACK: in the SQLite outbox, or in memory when
the outbox cannot store it.

A full disk must not stop live delivery. When the outbox cannot write (disk full, I/O error,
damaged file), a message is held in a bounded memory queue instead and still goes to a
connected broker with the configured QoS, kept until its PUBACK. What memory cannot hold
while the broker is away is lost: counted (stats `messages_dropped`, and the outbox's
lifetime total once it can write again) and logged with totals. Memory is sent before the
disk backlog because it is what a stop would lose; subscribers order by `seq`. Every RETRY_S
the publisher tries the disk again; when it works, what waits in memory moves to the outbox
in one transaction and durability is back.

Health: `degraded` while the outbox fails. `failed` when it has failed for another reason
than a full disk for `outbox.give_up_s`: a restart reopens the file, and a damaged one is
then refused with advice. A full disk never fails the run: a restart cannot free space, it
would only add a gap in delivery.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgecam.config.outbox import OutboxSection
from edgecam.errors import SinkError
from edgecam.sinks.base import HealthState
from edgecam.sinks.outbox import Outbox, open_outbox, outbox_path
from edgecam.sinks.outbox_files import OutboxError

log = logging.getLogger(__name__)

RETRY_S = 5.0  # how often a failing outbox is tried again
REPORT_S = 60.0  # how often a lasting failure is summarised in the log
LOSS_LOG_S = 10.0  # at most one "lost" line per this interval (the first one at once)


@dataclass(slots=True)
class Pending:
    """One message on its way; `row` is its outbox row id, None while held in memory."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    row: int | None = None
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = len(self.payload) + len(self.topic.encode())


class MessageQueue:
    """Thread-safe: producers call put(); the publisher thread everything else."""

    def __init__(
        self,
        outbox: Outbox | None,
        cfg: OutboxSection,
        *,
        reopen: Callable[[], Outbox] | None = None,
        failure: OutboxError | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self._outbox = outbox
        self._reopen = reopen
        self._clock = clock
        self._lock = threading.Lock()
        self._memory: deque[Pending] = deque()  # not handed to the network yet
        self._memory_bytes = 0
        self._held = 0  # memory messages handed over, waiting for their PUBACK
        self._cursor = 0  # highest outbox row handed over
        self._rows_out: set[int] = set()  # outbox rows handed over, waiting for their PUBACK
        self._problem: OutboxError | None = None
        self._since = 0.0
        self._retry_at = 0.0
        self._report_at = 0.0
        self._lost_unlogged = 0
        self._loss_log_at = 0.0
        self.lost = 0  # this run: held in memory, never acknowledged, now gone
        self.from_memory = 0  # this run: acknowledged while held in memory
        if failure is not None:
            self._fail(failure)

    # -- producer side ---------------------------------------------------------------------

    def put(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        with self._lock:
            if self._outbox is not None and self._problem is None:
                try:
                    self._outbox.append(topic, payload, qos, retain)
                    return
                except OutboxError as exc:
                    self._fail(exc)
            self._hold(Pending(topic, payload, qos, retain))

    def _hold(self, message: Pending) -> None:
        self._memory.append(message)
        self._memory_bytes += message.size
        lost = 0
        while len(self._memory) > 1 and (
            len(self._memory) > self.cfg.memory_max_messages
            or self._memory_bytes > self.cfg.memory_max_bytes
        ):
            self._memory_bytes -= self._memory.popleft().size
            lost += 1
        if lost:
            self._count_lost(lost)

    def _count_lost(self, count: int) -> None:
        self.lost += count
        self._lost_unlogged += count
        if self._outbox is not None:
            self._outbox.note_lost(count)
        now = self._clock()
        if now < self._loss_log_at:
            return
        self._loss_log_at = now + LOSS_LOG_S
        reason = self._problem.detail if self._problem else "outbox unavailable"
        log.warning(
            "MQTT: lost %d message(s): the outbox cannot store them (%s) and the broker has"
            " not taken them; memory holds %d (cap outbox.memory_max_messages=%d);"
            " lost this run: %d",
            self._lost_unlogged,
            reason,
            len(self._memory),
            self.cfg.memory_max_messages,
            self.lost,
        )
        self._lost_unlogged = 0

    # -- publisher side --------------------------------------------------------------------

    def take(self, limit: int) -> list[Pending]:
        """Up to `limit` messages to hand to the network: memory first, then the outbox."""
        with self._lock:
            out: list[Pending] = []
            while self._memory and len(out) < limit:
                message = self._memory.popleft()
                self._memory_bytes -= message.size
                self._held += 1
                out.append(message)
            room = limit - len(out)
            if room <= 0 or self._outbox is None or self._cannot_read():
                return out
            try:
                rows = self._outbox.peek(self._cursor, room, skip=self._rows_out)
            except OutboxError as exc:
                self._fail(exc)
                return out
            for row in rows:
                out.append(Pending(row.topic, row.payload, row.qos, row.retain, row.id))
                self._rows_out.add(row.id)
                self._cursor = max(self._cursor, row.id)
            return out

    def _cannot_read(self) -> bool:
        return self._problem is not None and self._problem.doing in ("read messages", "open it")

    def settle(self, done: list[Pending]) -> None:
        """These were acknowledged (or refused for good) by the broker: forget them."""
        rows = [m.row for m in done if m.row is not None]
        with self._lock:
            held = len(done) - len(rows)
            self._held -= held
            self.from_memory += held
            self._rows_out.difference_update(rows)
            if not rows or self._outbox is None:
                return
            try:
                self._outbox.delete(rows)
            except OutboxError as exc:  # the rows stay done: see Outbox.delete
                self._fail(exc)

    def requeue(self, lost: list[Pending]) -> None:
        """QoS 0 messages that died with the connection: hand them over again, in order."""
        with self._lock:
            for message in reversed(lost):
                if message.row is None:
                    self._held -= 1
                    self._memory.appendleft(message)
                    self._memory_bytes += message.size
                else:
                    self._rows_out.discard(message.row)
                    self._cursor = min(self._cursor, message.row - 1)

    def maintain(self) -> None:
        """Called by the publisher every tick: retry a failing outbox, report a lasting one.

        The disk is probed without the lock (a failing card can take seconds per call, and
        producers must not wait for that); only moving memory into the outbox holds it, so
        no message put meanwhile is left behind or overtaken."""
        now = self._clock()
        with self._lock:
            if self._problem is None or now < self._retry_at:
                return
            self._retry_at = now + RETRY_S
            if now >= self._report_at:
                self._report_at = now + REPORT_S
                self._report(now)
            outbox, cursor = self._outbox, self._cursor
        try:
            if outbox is None:
                if self._reopen is None:
                    return
                outbox = self._reopen()
                with self._lock:
                    self._outbox = outbox
                    outbox.note_lost(self.lost)
            outbox.flush_deletes()
            outbox.peek(cursor, 1)
            with self._lock:
                self._move_memory_to(outbox)
        except OutboxError as exc:
            with self._lock:
                self._fail(exc)

    def _move_memory_to(self, outbox: Outbox) -> None:
        """The outbox works again: what waits in memory goes into it (caller holds the lock)."""
        waiting = list(self._memory)
        if waiting:
            outbox.append_many([(m.topic, m.payload, m.qos, m.retain) for m in waiting])
        else:
            outbox.probe()
        self._memory.clear()
        self._memory_bytes = 0
        self._recovered(len(waiting))

    def _fail(self, exc: OutboxError) -> None:
        now = self._clock()
        if self._problem is None:
            self._since = now
            self._retry_at = now + RETRY_S
            self._report_at = now + REPORT_S
            log.error(
                "%s: %s. Messages go to the broker from memory meanwhile (up to"
                " outbox.memory_max_messages=%d waiting); tried again every %g s",
                exc,
                exc.advice,
                self.cfg.memory_max_messages,
                RETRY_S,
            )
        self._problem = exc

    def _report(self, now: float) -> None:
        assert self._problem is not None
        log.warning(
            "%s (for %.0f s): %d message(s) delivered from memory, %d lost, %d in memory",
            self._problem,
            now - self._since,
            self.from_memory,
            self.lost,
            len(self._memory) + self._held,
        )

    def _recovered(self, moved: int) -> None:
        assert self._problem is not None and self._outbox is not None
        log.warning(
            "outbox %s works again after %.0f s: %d message(s) delivered from memory, %d lost,"
            " %d moved from memory to the outbox",
            self._outbox.path,
            self._clock() - self._since,
            self.from_memory,
            self.lost,
            moved,
        )
        self._problem = None

    # -- state -----------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Messages not acknowledged yet (on disk, in memory, in flight)."""
        with self._lock:
            on_disk = self._outbox.depth if self._outbox is not None else 0
            return on_disk + len(self._memory) + self._held

    @property
    def in_memory(self) -> int:
        with self._lock:
            return len(self._memory) + self._held

    def health(self) -> tuple[HealthState, str | None]:
        """("ok", None), ("degraded", why) or ("failed", why); no I/O, cheap."""
        with self._lock:
            problem, held = self._problem, len(self._memory) + self._held
            failing = self._clock() - self._since
        if problem is None:
            return "ok", None
        why = f"{problem}; {held} message(s) in memory"
        if problem.kind != "full" and failing >= self.cfg.give_up_s:
            return "failed", f"{problem} for {failing:.0f} s (outbox.give_up_s): {problem.advice}"
        return "degraded", why

    def counters(self) -> dict[str, int]:
        with self._lock:
            box = self._outbox
            memory = len(self._memory) + self._held
        dropped = box.dropped if box is not None else 0
        return {
            "outbox_depth": (box.depth if box is not None else 0) + memory,
            "outbox_bytes": box.bytes if box is not None else 0,
            "memory_depth": memory,
            "messages_dropped": dropped + self.lost,
            "messages_dropped_total": box.dropped_total if box is not None else self.lost,
        }

    def close(self, unacknowledged: Sequence[Pending] = ()) -> int:
        """Close the outbox. What only memory holds (waiting, and `unacknowledged`: handed to
        the network but never acknowledged) goes into the outbox if it can take it now;
        returns how many could not be kept (lost, logged with the run's total)."""
        with self._lock:
            keep = [m for m in unacknowledged if m.row is None] + list(self._memory)
            self._memory.clear()
            self._held = 0
            box, self._outbox = self._outbox, None
            if keep and box is not None:
                try:
                    box.append_many([(m.topic, m.payload, m.qos, m.retain) for m in keep])
                    log.info("%d message(s) held in memory stored in the outbox", len(keep))
                    keep = []
                except OutboxError as exc:
                    log.warning("%s: %d message(s) held in memory are lost", exc, len(keep))
            left = len(keep)
            if left:
                self.lost += left
                if box is not None:
                    box.note_lost(left)
        if box is not None:
            box.close()
        if self.lost:
            log.error(
                "MQTT: %d message(s) lost this run (%d at this stop): the outbox could not"
                " store them and the broker did not acknowledge them",
                self.lost,
                left,
            )
        return left


def open_queue(cfg: OutboxSection, state_dir: Path | None = None) -> MessageQueue:
    """The outbox, or, when it cannot be opened for now (disk full, I/O error), memory with
    retries: live delivery must not wait for the disk. SinkError for a damaged or read-only
    outbox (its advice keeps the queued messages)."""

    path = outbox_path(cfg.path, state_dir)

    def reopen() -> Outbox:
        """While running, every failure to open is an OutboxError (retried, escalated by
        give_up_s); only start-up turns a damaged file into a refusal."""
        try:
            return Outbox(path, max_messages=cfg.max_messages, max_bytes=cfg.max_bytes)
        except SinkError as exc:  # the lock: taken by another process, or not creatable
            raise OutboxError(path, "open it", "busy", exc.message) from exc

    try:
        outbox = open_outbox(path, max_messages=cfg.max_messages, max_bytes=cfg.max_bytes)
    except OutboxError as exc:
        log.info("outbox %s not opened; starting from memory", path)
        return MessageQueue(None, cfg, reopen=reopen, failure=exc)
    return MessageQueue(outbox, cfg, reopen=reopen)

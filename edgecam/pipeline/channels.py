"""Channels between pipeline threads: a FIFO with back-pressure for replays, a latest-item slot
for live sources (stale frames are dropped and counted, so latency stays bounded)."""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:  # protocols only: the pipeline never names a concrete adapter
    pass


T = TypeVar("T")


class BoundedQueue(Generic[T]):
    """FIFO with back-pressure: put() blocks while full; close() wakes every waiter.

    After close(), get() still returns what is queued (unless discarded), then None.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self.dropped = 0  # never drops; here so both channels count the same way
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, item: T) -> bool:
        """Wait for room; False (item not queued) if the queue is or gets closed."""
        with self._cond:
            while len(self._items) >= self.maxsize and not self._closed:
                self._cond.wait()
            if self._closed:
                return False
            self._items.append(item)
            self._cond.notify_all()
            return True

    def get(self) -> T | None:
        """Next item, waiting if empty; None once closed and empty."""
        with self._cond:
            while not self._items and not self._closed:
                self._cond.wait()
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def close(self, *, discard: bool = False) -> int:
        """Refuse new items; with discard, also forget queued ones (returns how many)."""
        with self._cond:
            self._closed = True
            dropped = len(self._items) if discard else 0
            if discard:
                self._items.clear()
            self._cond.notify_all()
            return dropped

    @property
    def depth(self) -> int:
        return len(self._items)


class LatestSlot(BoundedQueue[T]):
    """One-item channel where put() never blocks: a newer item replaces (drops) a waiting one."""

    def __init__(self) -> None:
        super().__init__(1)

    def put(self, item: T) -> bool:
        with self._cond:
            if self._closed:
                return False
            if self._items:
                self._items.clear()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify_all()
            return True

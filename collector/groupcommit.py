"""Group commit: requests that arrive while a transaction is running share the next one.

A fleet sends many small requests (one per node and export interval). Giving each its own
transaction makes the collector wait on round trips and on the database's flush to disk once per
request, far below what the database can write. Here the callers of :meth:`GroupCommit.run` queue
their jobs; one of them at a time, the *leader*, takes every queued job (up to a bound) and
writes them in one transaction, then hands leadership to the next queued caller. A lone request
is written at once, as before; under load, a transaction carries every request that arrived
during the one before it.

Each caller still gets its own outcome. If a shared transaction fails, it is rolled back whole
and every job in it is retried alone, so one request's bad point or exceeded limit is reported to
that request only and never costs the others their data. A failure that says nothing about the
jobs (the database is down, locked or slow) is not retried: every job of the group gets it at
once, rather than each waiting out the same outage again.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

Job = TypeVar("Job")


@dataclass(eq=False)
class _Ticket(Generic[Job]):
    job: Job
    size: int
    wake: threading.Event = field(default_factory=threading.Event)
    done: bool = False
    error: BaseException | None = None


class GroupCommit(Generic[Job]):
    """Runs ``write(jobs)`` for queued jobs, several per call when they arrive together.

    ``write`` stores every job it is given in one transaction or raises; ``max_size`` bounds the
    summed ``size`` of the jobs one call takes (a single larger job still goes alone).
    ``shared_failure(exc)`` says whether an error is the store's rather than a job's: such an
    error fails the whole group without retrying its jobs one by one.
    """

    def __init__(
        self,
        write: Callable[[Sequence[Job]], None],
        *,
        max_size: int,
        shared_failure: Callable[[Exception], bool] = lambda _exc: False,
    ) -> None:
        self._write = write
        self._max_size = max_size
        self._shared_failure = shared_failure
        self._lock = threading.Lock()
        self._queue: deque[_Ticket[Job]] = deque()
        self._leading = False
        self.groups = 0
        self.jobs = 0

    def run(self, job: Job, size: int) -> None:
        """Store ``job`` (alone or with others); returns once it is committed, or raises."""
        ticket = _Ticket(job, size)
        with self._lock:
            self._queue.append(ticket)
            lead = not self._leading
            self._leading = True

        if not lead:
            ticket.wake.wait()
        if not ticket.done:
            self._lead()
        if ticket.error is not None:
            raise ticket.error

    def _lead(self) -> None:
        group = self._take()
        try:
            self._write_group(group)
        finally:
            for ticket in group:
                if not ticket.done:
                    ticket.error = ticket.error or RuntimeError("the shared transaction stopped")
                    ticket.done = True
            with self._lock:
                if self._queue:
                    # The next caller in line becomes the leader: woken, it finds itself not done.
                    self._queue[0].wake.set()
                else:
                    self._leading = False
            for ticket in group:
                ticket.wake.set()

    def _take(self) -> list[_Ticket[Job]]:
        with self._lock:
            group = [self._queue.popleft()]
            size = group[0].size
            while self._queue and size + self._queue[0].size <= self._max_size:
                ticket = self._queue.popleft()
                size += ticket.size
                group.append(ticket)
        self.groups += 1
        self.jobs += len(group)
        return group

    def _write_group(self, group: list[_Ticket[Job]]) -> None:
        try:
            self._write([ticket.job for ticket in group])
        except Exception as exc:
            if len(group) == 1 or self._shared_failure(exc):
                for ticket in group:
                    ticket.error = exc
                    ticket.done = True
                return
            logger.debug(
                "a shared transaction of %d jobs failed (%s); retrying each", len(group), exc
            )
            for ticket in group:
                try:
                    self._write([ticket.job])
                except Exception as alone:
                    ticket.error = alone
                ticket.done = True
            return
        for ticket in group:
            ticket.done = True

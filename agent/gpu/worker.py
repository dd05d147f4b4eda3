"""Run NVML work on a worker thread, and give up on a step that does not return in time.

An NVML call can hang for good (a wedged driver, a GPU that fell off the bus); a hung call must
cost the agent one timeout, not its sampling loop. Starting a thread per call would cost more than
the call itself, so a whole sampling cycle is handed to one long-lived daemon thread as a list of
steps (one step per GPU) and the caller waits for it with a per-step deadline.

When a step overruns, the caller stops waiting, marks that step ``HUNG`` and the steps after it
``SKIPPED``, retires the stuck thread (it exits by itself if the call ever returns) and starts a
fresh one for the next cycle. A poll therefore never waits longer than one step timeout past its
normal work, and at most one thread is left behind per hang.

Limitation: a thread stuck in a call that never returns stays for the life of the process (Python
cannot stop a thread inside a C call); the monitor never asks a stuck GPU again while its call is
out, so there is at most one such thread per GPU.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

logger = logging.getLogger(__name__)


class _Marker:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


HUNG = _Marker("HUNG")  # the step did not return within the timeout
SKIPPED = _Marker("SKIPPED")  # the step was not run because an earlier one hung


class StepFailed:
    """A step raised instead of returning; the exception is kept for the caller."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Job:
    __slots__ = ("steps", "results", "lock", "done", "abandoned", "step_started")

    def __init__(self, steps: Sequence[Callable[[], Any]]) -> None:
        self.steps = steps
        self.results: list[Any] = []
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.abandoned = False
        self.step_started = time.monotonic()


class _WorkerThread:
    """One daemon thread working through the jobs put in its inbox."""

    def __init__(self, name: str) -> None:
        self.inbox: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            job = self.inbox.get()
            if job is None or not self._work(job):
                return

    @staticmethod
    def _work(job: _Job) -> bool:
        """Run the job's steps; False when the caller gave up on it (this thread is retired)."""
        for step in job.steps:
            with job.lock:
                if job.abandoned:
                    return False
                job.step_started = time.monotonic()
            try:
                result = step()
            except Exception as exc:  # kept for the caller, who decides what it means
                result = StepFailed(exc)
            with job.lock:
                if job.abandoned:
                    return False
                job.results.append(result)
        job.done.set()
        return True


class CallWorker:
    """Runs lists of steps with a per-step timeout; ``timeout_s=None`` runs them inline."""

    def __init__(self, timeout_s: float | None = 2.0, *, name: str = "wattledger-nvml") -> None:
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError(f"NVML call timeout must be positive, got {timeout_s}")
        self.timeout_s = timeout_s
        self._name = name
        self._thread: _WorkerThread | None = None
        self._retired = 0
        self._lock = threading.Lock()  # one caller at a time: a queued job would eat its timeout

    @property
    def retired_threads(self) -> int:
        """How many threads were left behind in a hung call since this worker started."""
        return self._retired

    def run(self, steps: Sequence[Callable[[], Any]]) -> list[Any]:
        """Run ``steps`` in order; one result per step: a value, StepFailed, HUNG or SKIPPED."""
        if not steps:
            return []
        with self._lock:
            if self.timeout_s is None:
                return [_run_inline(step) for step in steps]
            return self._run_on_thread(steps)

    def _run_on_thread(self, steps: Sequence[Callable[[], Any]]) -> list[Any]:
        job = _Job(steps)
        thread = self._current_thread()
        thread.inbox.put(job)
        hung_at = self._wait(job)
        if hung_at is None:
            return job.results

        self._retire()
        results = job.results[:hung_at]
        results.append(HUNG)
        results.extend(SKIPPED for _ in steps[hung_at + 1 :])
        return results

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run one function under the timeout; raise what it raised, or TimeoutError if it hung."""
        (result,) = self.run([lambda: function(*args)])
        if result is HUNG:
            name = getattr(function, "__name__", repr(function))
            raise TimeoutError(f"{name} did not return within {self.timeout_s} s")
        if isinstance(result, StepFailed):
            raise result.error
        return result

    def close(self) -> None:
        """Let the current thread finish its work and exit; safe to call twice."""
        with self._lock:
            if self._thread is not None:
                self._thread.inbox.put(None)
                self._thread = None

    def _current_thread(self) -> _WorkerThread:
        if self._thread is None or not self._thread.thread.is_alive():
            self._thread = _WorkerThread(f"{self._name}-{self._retired}")
        return self._thread

    def _retire(self) -> None:
        self._retired += 1
        self._thread = None
        logger.debug("retired a worker thread stuck in an NVML call (%d so far)", self._retired)

    def _wait(self, job: _Job) -> int | None:
        """Wait for the job; return the index of the step that overran, or None when done."""
        assert self.timeout_s is not None
        while True:
            with job.lock:
                started = job.step_started
            remaining = started + self.timeout_s - time.monotonic()
            if remaining > 0 and job.done.wait(remaining):
                return None
            with job.lock:
                if len(job.results) == len(job.steps):
                    return None
                if job.step_started != started:
                    continue  # the worker moved on to the next step meanwhile
                job.abandoned = True
                return len(job.results)


def _run_inline(step: Callable[[], Any]) -> Any:
    try:
        return step()
    except Exception as exc:
        return StepFailed(exc)

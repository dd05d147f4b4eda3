"""The worker thread that runs NVML calls under a timeout."""

import threading
import time

import pytest

from wattledger.agent.gpu.worker import HUNG, SKIPPED, CallWorker, StepFailed


@pytest.fixture
def worker():
    made = CallWorker(0.2)
    yield made
    made.close()


def test_steps_run_in_order_on_one_thread(worker):
    names = []

    def step(value):
        def run():
            names.append(threading.current_thread().name)
            return value

        return run

    results = worker.run([step(1), step(2), step(3)])

    assert results == [1, 2, 3]
    assert len(set(names)) == 1 and names[0] != threading.current_thread().name


def test_a_failing_step_is_returned_not_raised(worker):
    def boom():
        raise ValueError("bad reading")

    results = worker.run([boom, lambda: 7])

    assert isinstance(results[0], StepFailed) and str(results[0].error) == "bad reading"
    assert results[1] == 7


def test_a_hung_step_is_cut_off_after_the_timeout(worker):
    release = threading.Event()

    started = time.monotonic()
    results = worker.run([lambda: 1, lambda: release.wait(10), lambda: 3])
    waited = time.monotonic() - started

    assert results == [1, HUNG, SKIPPED]
    assert 0.2 <= waited < 0.5
    assert worker.retired_threads == 1

    assert worker.run([lambda: 4]) == [4]  # a fresh thread takes over at once
    release.set()


def test_slow_steps_within_the_timeout_each_are_not_cut_off(worker):
    results = worker.run([lambda: time.sleep(0.12) or 1, lambda: time.sleep(0.12) or 2])

    assert results == [1, 2]


def test_call_raises_what_the_function_raised_or_timeout(worker):
    with pytest.raises(KeyError):
        worker.call(dict().__getitem__, "missing")
    release = threading.Event()
    with pytest.raises(TimeoutError, match="did not return within 0.2 s"):
        worker.call(release.wait, 10)
    release.set()


def test_retired_thread_exits_when_its_call_returns(worker):
    release = threading.Event()
    worker.run([lambda: release.wait(10), lambda: 2])
    stuck = [t for t in threading.enumerate() if t.name == "wattledger-nvml-0"]

    release.set()
    stuck[0].join(2)

    assert not stuck[0].is_alive()


def test_inline_mode_has_no_thread():
    inline = CallWorker(None)

    assert inline.run([threading.current_thread]) == [threading.current_thread()]


def test_timeout_must_be_positive():
    with pytest.raises(ValueError, match="must be positive"):
        CallWorker(0)

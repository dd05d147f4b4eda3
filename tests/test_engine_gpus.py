"""Finding an endpoint's GPUs from the process listening on its port (real sockets, fake NVML)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from wattledger.agent.engines.gpus import gpus_for_port, listening_pids

LISTEN_AND_WAIT = (
    "import socket, sys, time\n"
    "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
    "print(s.getsockname()[1], flush=True)\n"
    "time.sleep(60)\n"
)


@pytest.fixture
def listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def spawn():
    children = []

    def start(code: str = "import time; time.sleep(60)") -> subprocess.Popen:
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        children.append(child)
        return child

    yield start
    for child in children:
        child.kill()
        child.wait()


def test_the_listening_process_is_found(listener):
    assert os.getpid() in listening_pids(listener)


def test_gpus_of_the_listener_and_its_children(listener, spawn):
    worker = spawn()
    gpu_pids = {
        "GPU-bbbb": {worker.pid},  # a child process, as vLLM's engine core is
        "GPU-aaaa": {os.getpid()},
        "GPU-cccc": {2**22 + 17},  # someone else's process
    }

    assert gpus_for_port(listener, gpu_pids) == ("GPU-aaaa", "GPU-bbbb")


def test_a_port_nobody_listens_on_has_no_gpus():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    free_port = sock.getsockname()[1]
    sock.close()

    assert gpus_for_port(free_port, {"GPU-aaaa": {os.getpid()}}) == ()


def test_siblings_are_included_only_when_asked(spawn):
    router = spawn(LISTEN_AND_WAIT)  # like TGI's router: a sibling of the GPU shard
    port = int(router.stdout.readline())
    shard = spawn()
    gpu_pids = {"GPU-shard": {shard.pid}}
    deadline = time.monotonic() + 5
    while router.pid not in listening_pids(port) and time.monotonic() < deadline:
        time.sleep(0.05)

    assert gpus_for_port(port, gpu_pids) == ()
    assert gpus_for_port(port, gpu_pids, include_siblings=True) == ("GPU-shard",)

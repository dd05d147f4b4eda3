"""Which GPUs an engine endpoint runs on, from the port it listens on.

NVML reports the processes using each GPU; the endpoint is known by its port. The process
listening on the port is found with psutil, and with it its descendants: vLLM and SGLang serve
HTTP from a parent process whose children hold the GPUs. TGI's router is a *sibling* of its GPU
shards (both children of the launcher), so for TGI the search widens to the listener's parent's
descendants when asked to.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import psutil

logger = logging.getLogger(__name__)

PSUTIL_GONE = (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess)


def listening_pids(port: int) -> set[int]:
    """Ids of the processes listening on TCP ``port`` (any local address)."""
    try:
        pids = {
            conn.pid
            for conn in psutil.net_connections(kind="inet")
            if _is_listener(conn, port) and conn.pid is not None
        }
    except psutil.AccessDenied:
        pids = set()
    if pids:
        return pids

    # Without privileges the system-wide table may hide the owner; ask process by process.
    found = set()
    for process in psutil.process_iter():
        try:
            if any(_is_listener(conn, port) for conn in process.net_connections(kind="inet")):
                found.add(process.pid)
        except PSUTIL_GONE:
            continue
    return found


def gpus_for_port(
    port: int,
    gpu_pids: Mapping[str, Iterable[int]],
    *,
    include_siblings: bool = False,
) -> tuple[str, ...]:
    """UUIDs of the GPUs used by the process tree serving ``port``, sorted.

    ``gpu_pids`` maps each GPU UUID to the process ids NVML reports on it.
    ``include_siblings`` widens the tree to the listener's parent (TGI's launcher).
    """
    listeners = listening_pids(port)
    if not listeners:
        logger.info("no process listens on port %d; its GPUs are unknown", port)
        return ()

    # Limitation: engines whose GPU workers are not descendants of the listener (Ray actors in
    # multi-node vLLM) and agents in another PID namespace than NVML's pids find no GPUs here;
    # give the endpoint's GPUs in its configuration instead.
    tree = _with_descendants(listeners)
    if include_siblings:
        parents = {_parent_pid(pid) for pid in listeners} - {None, 0, 1}
        tree |= _with_descendants(parents)

    return tuple(sorted(uuid for uuid, pids in gpu_pids.items() if tree & set(pids)))


def _is_listener(conn, port: int) -> bool:
    return bool(conn.laddr) and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN


def _with_descendants(pids: Iterable[int | None]) -> set[int]:
    tree: set[int] = set()
    for pid in pids:
        if pid is None:
            continue
        tree.add(pid)
        try:
            tree.update(child.pid for child in psutil.Process(pid).children(recursive=True))
        except PSUTIL_GONE:
            continue
    return tree


def _parent_pid(pid: int) -> int | None:
    try:
        return psutil.Process(pid).ppid()
    except PSUTIL_GONE:
        return None

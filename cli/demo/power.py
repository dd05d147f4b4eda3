"""What each simulated GPU draws: the hour's load on the node's board figures, held for the hour.

The fake NVML takes any object with ``watts(t)`` and ``joules(start, end)`` as a GPU's power;
the one here holds each UTC hour at one level (the day curve's load for a GPU that serves, idle
for a spare), so a GPU's energy over whole hours is plain arithmetic: seconds x watts.
"""

from __future__ import annotations

import logging

from wattledger.agent.gpu.fake import FakeNvml
from wattledger.cli.demo.figures import BoardFigures
from wattledger.cli.demo.fleet import Node, load_pct

logger = logging.getLogger(__name__)

HOUR_S = 3600


# Limitation: load, and so power, changes only on the hour; a real GPU's draw moves with every
# batch. Totals per hour are what the report reads, so the shape inside an hour does not matter.
class HourlyPower:
    """Watts constant within each UTC hour; a spare GPU stays at idle all day."""

    def __init__(self, board: BoardFigures, *, serving: bool) -> None:
        self.board = board
        self.serving = serving

    def watts(self, t: float) -> float:
        if not self.serving:
            return self.board.idle_w.value
        return self.board.watts(load_pct(int(t // 1)))

    def joules(self, start_s: float, end_s: float) -> float:
        """Exact energy between two times, hour by hour (negative if ``end_s`` comes first)."""
        if end_s < start_s:
            return -self.joules(end_s, start_s)
        total = 0.0
        t = start_s
        while t < end_s:
            hour_end = (t // HOUR_S + 1) * HOUR_S
            segment_end = min(hour_end, end_s)
            total += (segment_end - t) * self.watts(t)
            t = segment_end
        return total


# Limitation: fake_from_spec numbers GPUs the same way on every fake node, so the demo re-stamps
# the UUIDs of the fake's GPUs itself.
def unique_uuids(fake: FakeNvml, node_number: int) -> None:
    """Give the node's GPUs UUIDs no other simulated node has.

    Every fake node numbers its GPUs from zero, so without this two nodes would report the same
    UUIDs and the store would take them for one GPU.
    """
    for index, gpu in enumerate(fake.gpus):
        gpu.uuid = f"GPU-{node_number:08x}-de30-0000-0000-{index:012x}"


def power_the_node(fake: FakeNvml, node: Node, board: BoardFigures) -> None:
    """Serving GPUs follow the day curve; spares stay idle."""
    assigned = node.assigned()
    for index, gpu in enumerate(fake.gpus):
        gpu.power = HourlyPower(board, serving=index in assigned)

"""How a MIG parent's energy is shared between its instances.

NVML has no power or energy per MIG instance: both exist only on the parent GPU, which the agent
reads once. Each instance gets a share of the parent:

* ``activity``: in proportion to how busy each GPU instance was over the last cycle (GPM graphics
  utilization, from ``nvmlGpmMigSampleGet``) times its size in slices, so a busy 3g instance
  outweighs a busy 1g one;
* ``slices``: in proportion to its size, when activity is not measured or nothing was busy.

Several compute instances inside one GPU instance split that instance's share by their compute
slices. Shares sum to 1 over the instances that exist.

Limitation: the whole parent energy is shared, idle floor included; an instance that was idle all
cycle gets nothing under ``activity``, so busy neighbours carry the idle power of the GPU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

SHARE_ACTIVITY = "activity"
SHARE_SLICES = "slices"


@dataclass(frozen=True)
class MigSlot:
    """What the share needs to know about one MIG device."""

    uuid: str
    gpu_instance_id: int
    gpu_slices: int
    compute_slices: int


def slice_weights(slots: Sequence[MigSlot]) -> dict[str, float]:
    """Each device's size in GPU slices, its GPU instance's slices split by compute slices."""
    compute_per_instance: dict[int, int] = {}
    for slot in slots:
        compute_per_instance[slot.gpu_instance_id] = compute_per_instance.get(
            slot.gpu_instance_id, 0
        ) + max(slot.compute_slices, 1)
    return {
        slot.uuid: slot.gpu_slices
        * max(slot.compute_slices, 1)
        / compute_per_instance[slot.gpu_instance_id]
        for slot in slots
    }


def mig_shares(
    slots: Sequence[MigSlot], activity_pct: Mapping[int, float] | None = None
) -> tuple[dict[str, float], str]:
    """Share per MIG device UUID, and the method used (``activity`` or ``slices``).

    ``activity_pct`` maps a GPU instance id to its activity (0-100 %) over the last cycle; it is
    used only when every GPU instance has a figure and at least one was busy.
    """
    if not slots:
        return {}, SHARE_SLICES
    sizes = slice_weights(slots)

    if activity_pct and all(slot.gpu_instance_id in activity_pct for slot in slots):
        weights = {
            slot.uuid: sizes[slot.uuid] * max(activity_pct[slot.gpu_instance_id], 0.0)
            for slot in slots
        }
        total = sum(weights.values())
        if total > 0:
            return {uuid: weight / total for uuid, weight in weights.items()}, SHARE_ACTIVITY

    total_size = sum(sizes.values())
    if total_size <= 0:
        even = 1 / len(slots)
        return {slot.uuid: even for slot in slots}, SHARE_SLICES
    return {uuid: size / total_size for uuid, size in sizes.items()}, SHARE_SLICES

"""Idle GPU cost: kept apart, or shared out across the rows that served tokens.

Idle cost is what GPUs cost while no tokens were served on them: whole GPUs no endpoint ran on,
and the hours an endpoint's GPUs waited. ``none`` keeps it in each row's ``idle_usd``. ``even``
and ``proportional`` move the whole pool into the rows that served tokens, equally or in
proportion to their serving cost, so the rows' costs add up to the fleet's.
"""

from __future__ import annotations

IDLE_MODES = ("none", "even", "proportional")


def share_idle(rows: list[dict], mode: str) -> None:
    """Move the idle pool of ``rows`` as ``mode`` says.

    Each row needs ``serving_usd``, ``idle_usd``, ``cost_usd``, ``attributed_energy_j``,
    ``idle_energy_j`` and token counts. A receiving row gets ``idle_shared_usd`` (its part of
    the pool) added to ``cost_usd``; every row's own ``idle_usd`` becomes zero. With no row that
    served tokens there is nobody to share with, and idle stays where it is.
    """
    for row in rows:
        row["idle_shared_usd"] = 0.0
    if mode == "none":
        return
    receivers = [row for row in rows if row["input_tokens"] + row["output_tokens"] > 0]
    if not receivers:
        return

    pool_usd = sum(row["idle_usd"] for row in rows)
    pool_j = sum(row["idle_energy_j"] for row in rows)
    serving_total = sum(row["serving_usd"] for row in receivers)
    for row in rows:
        row["idle_usd"] = 0.0
        row["idle_energy_j"] = 0.0
    for row in receivers:
        if mode == "proportional" and serving_total > 0:
            weight = row["serving_usd"] / serving_total
        else:
            weight = 1.0 / len(receivers)
        row["idle_shared_usd"] = pool_usd * weight
        row["cost_usd"] = row["serving_usd"] + pool_usd * weight
        row["attributed_energy_j"] += pool_j * weight


def idle_note(mode: str) -> str:
    if mode == "none":
        return (
            "Idle: GPU time in which no tokens were served is in idle_usd, apart from cost_usd; "
            "USD per million tokens uses cost_usd."
        )
    how = "equally" if mode == "even" else "in proportion to serving cost"
    return f"Idle: all idle GPU cost is shared {how} across the rows that served tokens."

"""The prefill/decode split: what reading prompts and what writing answers cost, per endpoint.

Three methods, chosen hour by hour, and every row says which produced it:

* **disaggregated**: an endpoint whose role is ``prefill`` is all prefill and one whose role is
  ``decode`` all decode, priced directly from its own GPUs. Prompt tokens count on the prefill
  pool and output tokens on the decode pool, so grouping by model joins the two pools of a
  model into one row.
* **phase time**: an aggregated endpoint's serving time is split in proportion to the prefill
  and decode seconds its engine measured in that hour.
* **default ratio** (an estimate): without phase time, by tokens, an output token weighing
  ``default_output_token_weight`` input tokens (``[report]`` in the config).

A row that mixes methods over the window names each with its share of serving GPU time. USD per
million input tokens is the prefill cost over input tokens; per million output tokens, the
decode cost over output tokens; neither is given where some of those tokens are unmapped (see
``cost``). Idle time is kept apart or shared out as in the cost report; a
row's shared idle cost is split in the same proportion as its serving cost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import Engine

from wattledger.cli.reports.cost import check_idle_mode, problems
from wattledger.cli.reports.idle import idle_note, share_idle
from wattledger.cli.reports.prices import PriceBook
from wattledger.cli.reports.report import (
    J_PER_KWH,
    USD_PLACES,
    Report,
    check_window,
    is_unpriced,
    per_million,
    unmapped_notes,
    unpriced_notes,
    window_note,
)
from wattledger.cli.reports.usage_query import (
    Group,
    ReportError,
    aggregate,
    check_dimensions,
)

METHOD_DISAGGREGATED = "disaggregated"
METHOD_PHASE_TIME = "phase time"
METHOD_DEFAULT_RATIO = "default ratio"
ESTIMATE = " (estimate)"
SHARE_SHOWN = 0.0005  # method shares below this are left out of a row's label

ADDITIVE = (
    "prefill_gpu_seconds",
    "decode_gpu_seconds",
    "idle_gpu_seconds",
    "prefill_kwh",
    "decode_kwh",
    "idle_kwh",
    "input_tokens",
    "output_tokens",
    "unmapped_input_tokens",
    "unmapped_output_tokens",
    "unmapped_tokens",
    "unpriced_gpu_hours",
)
ADDITIVE_USD = ("prefill_usd", "decode_usd", "idle_usd", "idle_shared_usd", "cost_usd")


def split_report(
    engine: Engine,
    since: int,
    until: int,
    by: Sequence[str] = ("endpoint", "model"),
    *,
    output_token_weight: float = 3.0,
    idle: str = "none",
    where: Mapping[str, str | Sequence[str]] | None = None,
) -> Report:
    by = check_dimensions(by)
    check_idle_mode(idle)
    check_window(since, until)
    if not output_token_weight > 0:
        raise ReportError(
            f"the default output token weight must be above zero (got {output_token_weight}); "
            "set [report] default_output_token_weight in the config"
        )

    prices = PriceBook.load(engine)
    with engine.connect() as conn:
        groups = aggregate(
            conn,
            prices,
            since,
            until,
            by,
            where=where,
            split_weight=output_token_weight,
            measures=("input_tokens", "output_tokens"),
        )
        unpriced, unmapped = problems(conn, prices, since, until, groups, where)

    rows = [_split_row(by, group) for group in sorted(groups, key=lambda grp: grp.key)]
    share_idle(rows, idle)
    for row in rows:
        _finish(row)

    notes = [
        window_note(since, until),
        _idle_note(idle),
        "Methods: disaggregated = a prefill or decode pool priced from its own GPUs; phase time = "
        "split by the engine's measured prefill and decode seconds; default ratio = split by "
        f"tokens, an output token weighing {output_token_weight:g} input tokens (an estimate).",
    ]
    if any(row["estimate"] for row in rows):
        notes.append(
            "ESTIMATE: rows marked '(estimate)' had hours without measured phase time; change the "
            "ratio with [report] default_output_token_weight."
        )
    notes += unpriced_notes(unpriced, no_prices=prices.empty)
    notes += unmapped_notes(unmapped)
    return Report(rows, _total(rows, by), notes, unpriced)


def _idle_note(idle: str) -> str:
    if idle == "none":
        return "Idle: GPU time without tokens served is in idle_usd, apart from prefill and decode."
    return (
        idle_note(idle)
        + " A row's share is split between prefill and decode like its serving cost."
    )


def _split_row(by: Sequence[str], group: Group) -> dict:
    d = group.sums
    serving_s = d["serving_seconds"]
    serving_j = d["serving_energy_j"]
    serving_usd = d["serving_time_usd"] + d["serving_energy_usd"]
    prefill_s = _within(d["prefill_serving_seconds"], serving_s)
    prefill_j = _within(d["prefill_serving_energy_j"], serving_j)
    prefill_usd = _within(d["prefill_serving_usd"], serving_usd)

    shares = _method_shares(d)
    row = dict(zip(by, group.key, strict=False))
    row.update(
        method=_method_label(shares),
        estimate=shares[METHOD_DEFAULT_RATIO] > SHARE_SHOWN,
        disaggregated_share=shares[METHOD_DISAGGREGATED],
        phase_time_share=shares[METHOD_PHASE_TIME],
        default_ratio_share=shares[METHOD_DEFAULT_RATIO],
        prefill_gpu_seconds=prefill_s,
        decode_gpu_seconds=serving_s - prefill_s,
        idle_gpu_seconds=max(0.0, d["gpu_seconds"] - serving_s),
        prefill_kwh=prefill_j / J_PER_KWH,
        decode_kwh=(serving_j - prefill_j) / J_PER_KWH,
        idle_kwh=max(0.0, d["energy_j"] - serving_j) / J_PER_KWH,
        input_tokens=d["input_tokens"],
        output_tokens=d["output_tokens"],
        serving_usd=serving_usd,
        prefill_serving_usd=prefill_usd,
        idle_usd=max(0.0, d["time_usd"] + d["energy_usd"] - serving_usd),
        cost_usd=serving_usd,
        attributed_energy_j=serving_j,
        idle_energy_j=max(0.0, d["energy_j"] - serving_j),
        unpriced_gpu_hours=d["unpriced_seconds"] / 3600.0,
        unmapped_input_tokens=d["unmapped_input_tokens"],
        unmapped_output_tokens=d["unmapped_output_tokens"],
        unmapped_tokens=d["unmapped_input_tokens"] + d["unmapped_output_tokens"],
    )
    return row


def _within(part: float, whole: float) -> float:
    """``part`` clamped to ``[0, whole]``: sums of shares may stray by a rounding error."""
    return min(max(part, 0.0), whole)


def _method_shares(d: dict) -> dict[str, float]:
    serving = d["serving_seconds"]
    if serving <= 0:
        return {METHOD_DISAGGREGATED: 0.0, METHOD_PHASE_TIME: 0.0, METHOD_DEFAULT_RATIO: 0.0}
    disaggregated = _within(d["disaggregated_serving_seconds"], serving) / serving
    measured = _within(d["measured_serving_seconds"], serving) / serving
    return {
        METHOD_DISAGGREGATED: disaggregated,
        METHOD_PHASE_TIME: measured,
        METHOD_DEFAULT_RATIO: max(0.0, 1.0 - disaggregated - measured),
    }


def _method_label(shares: dict[str, float]) -> str:
    used = [(name, share) for name, share in shares.items() if share > SHARE_SHOWN]
    if not used:
        return "idle"
    if len(used) == 1:
        name = used[0][0]
        return name + (ESTIMATE if name == METHOD_DEFAULT_RATIO else "")
    label = " + ".join(f"{name} {share:.0%}" for name, share in used)
    return label + (ESTIMATE if shares[METHOD_DEFAULT_RATIO] > SHARE_SHOWN else "")


def _finish(row: dict) -> None:
    """Add the shared idle cost in the row's own prefill/decode proportion; price per token."""
    serving = row["serving_usd"]
    if serving > 0:
        prefill_share = row["prefill_serving_usd"] / serving
    else:
        serving_s = row["prefill_gpu_seconds"] + row["decode_gpu_seconds"]
        prefill_share = row["prefill_gpu_seconds"] / serving_s if serving_s else 0.0
    shared = row["idle_shared_usd"]
    prefill_usd = row["prefill_serving_usd"] + shared * prefill_share
    decode_usd = (serving - row["prefill_serving_usd"]) + shared * (1.0 - prefill_share)

    row["prefill_usd"] = round(prefill_usd, USD_PLACES)
    row["decode_usd"] = round(decode_usd, USD_PLACES)
    row["cost_usd"] = round(row["prefill_usd"] + row["decode_usd"], USD_PLACES)
    row["idle_usd"] = round(row["idle_usd"], USD_PLACES)
    row["idle_shared_usd"] = round(shared, USD_PLACES)
    _per_token(row)


def _per_token(row: dict) -> None:
    """USD per million input tokens (prefill cost) and output tokens (decode cost).

    None where GPU time was unpriced, where the phase had no GPU time, or where some of the
    tokens were unmapped (served on GPUs nobody knows, so they carry no cost).
    """
    unpriced = is_unpriced(row)
    has_prefill = row["prefill_gpu_seconds"] > 0 and not row["unmapped_input_tokens"] > 0
    has_decode = row["decode_gpu_seconds"] > 0 and not row["unmapped_output_tokens"] > 0
    row["usd_per_m_input"] = (
        None
        if unpriced or not has_prefill
        else per_million(row["prefill_usd"], row["input_tokens"])
    )
    row["usd_per_m_output"] = (
        None if unpriced or not has_decode else per_million(row["decode_usd"], row["output_tokens"])
    )


def _total(rows: list[dict], by: Sequence[str]) -> dict:
    total = {name: "TOTAL" if i == 0 else "" for i, name in enumerate(by)}
    for name in ADDITIVE:
        total[name] = sum(row[name] for row in rows)
    for name in ADDITIVE_USD:
        total[name] = round(sum(row[name] for row in rows), USD_PLACES)
    serving_s = sum(row["prefill_gpu_seconds"] + row["decode_gpu_seconds"] for row in rows)
    shares = {
        name: (
            sum(row[key] * (row["prefill_gpu_seconds"] + row["decode_gpu_seconds"]) for row in rows)
            / serving_s
        )
        if serving_s
        else 0.0
        for name, key in (
            (METHOD_DISAGGREGATED, "disaggregated_share"),
            (METHOD_PHASE_TIME, "phase_time_share"),
            (METHOD_DEFAULT_RATIO, "default_ratio_share"),
        )
    }
    total["method"] = _method_label(shares)
    total["estimate"] = any(row["estimate"] for row in rows)
    _per_token(total)
    return total

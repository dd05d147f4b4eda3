"""Two groups side by side (Hopper versus Blackwell by default), per model, and why they differ.

For each side: USD per million tokens (idle included), tokens per GPU-second while serving, the
share of GPU time spent serving, NVML utilisation, USD per GPU-hour, watts and joules per token.

Cost per token of one side is ``(P + E) / (3600 * thr * S)``, with ``P`` the GPU price per
GPU-hour, ``E`` the energy cost per GPU-hour, ``thr`` tokens per GPU-second while serving and
``S`` the share of GPU time serving. So the ratio of side A to side B factors exactly into

    (P_A / P_B) * [(1 + E_A / P_A) / (1 + E_B / P_B)] * (thr_B / thr_A) * (S_B / S_A)

= price x energy x throughput x serving share, which tells an analyst why one side is cheaper
on their own traffic. The first two together are the GPU-hour cost factor (energy included),
``(P_A + E_A) / (P_B + E_B)``, always given; where a GPU-hour price is zero it is the only one.
Each factor reads as A's cost per token over B's, so a throughput factor is B's throughput over
A's: a side that serves more tokens per GPU-second makes the other side dearer. Where a side is
unpriced, holds unmapped tokens or served no tokens there is no ratio, and a note says why.
The notes say in words which factor drives the ratio and which ones offset it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from sqlalchemy import Engine

from wattledger.cli.reports.cost import problems, unmapped_tokens
from wattledger.cli.reports.prices import PriceBook
from wattledger.cli.reports.report import (
    UNPRICED_EPSILON_H,
    Report,
    check_window,
    unmapped_notes,
    unpriced_notes,
    window_note,
)
from wattledger.cli.reports.usage_query import (
    UNASSIGNED_LABEL,
    ReportError,
    aggregate,
    check_dimensions,
)

ALONG = ("architecture", "engine", "engine_version", "sku", "node")
DEFAULT_PAIRS = {"architecture": ("hopper", "blackwell")}
SIDE_FIELDS = (
    "usd_per_mtok",
    "tokens_per_gpu_s",
    "serving_share",
    "utilization",
    "usd_per_gpu_hour",
    "energy_usd_per_gpu_hour",
    "watts",
    "j_per_token",
    "gpu_hours",
    "tokens",
    "unmapped_tokens",
)
COMPARE_MEASURES = ("input_tokens", "output_tokens", "util_busy_seconds", "util_known_seconds")
FACTORS = (
    "factor_price",
    "factor_energy",
    "factor_gpu_hour_cost",
    "factor_throughput",
    "factor_serving_share",
)


def compare_report(
    engine: Engine,
    since: int,
    until: int,
    *,
    along: str = "architecture",
    a: str | None = None,
    b: str | None = None,
    by: Sequence[str] = ("model",),
    where: Mapping[str, str | Sequence[str]] | None = None,
) -> Report:
    if along not in ALONG:
        raise ReportError(f"cannot compare along {along!r}; choose from {', '.join(ALONG)}")
    by = check_dimensions(by)
    if along in by:
        raise ReportError(
            f"--by {along} is what is compared; group rows by another dimension, e.g. model"
        )
    check_window(since, until)

    prices = PriceBook.load(engine)
    with engine.connect() as conn:
        groups = aggregate(
            conn, prices, since, until, [along, *by], where=where, measures=COMPARE_MEASURES
        )
        present = sorted(
            {g.key[0] for g in groups if g.sums["gpu_seconds"] > 0 or _tokens(g.sums) > 0}
        )
        a, b = _pick_pair(along, a, b, present, _scope(where))
        unpriced, unmapped = problems(conn, prices, since, until, groups, where)

    sums = {a: {}, b: {}}
    for group in groups:
        if group.key[0] in sums:
            sums[group.key[0]][group.key[1:]] = group.sums

    notes = [
        window_note(since, until),
        f"Comparing {along} {a!r} (A) with {b!r} (B). Cost per token includes idle GPU time; "
        "cost per token A/B = GPU-hour cost A/B (price x energy) x throughput B/A x serving "
        "share B/A: a side that serves more tokens per GPU-second, or serves a larger share of "
        "its time, makes the other side dearer.",
    ]
    rows = []
    for key in sorted(set(sums[a]) | set(sums[b])):
        if key[0] == UNASSIGNED_LABEL:
            continue
        row = dict(zip(by, key, strict=True))
        row.update(_pair(a, b, sums[a].get(key), sums[b].get(key)))
        rows.append(row)
        notes += _row_notes(" / ".join(key), row)

    total = {name: "ALL" if i == 0 else "" for i, name in enumerate(by)}
    total.update(_pair(a, b, _sum_all(sums[a].values()), _sum_all(sums[b].values())))
    notes += _row_notes("all models" if by == ["model"] else "all", total)
    notes += _unassigned_notes(by, a, b, sums)
    notes += unpriced_notes(unpriced, no_prices=prices.empty)
    notes += unmapped_notes(unmapped)
    return Report(rows, total, notes, unpriced)


def _scope(where: Mapping[str, str | Sequence[str]] | None) -> str:
    """Where values were looked for: the window, narrowed by --where when given."""
    if not where:
        return "in this window"
    given = " ".join(
        f"--where {name}={value}"
        for name, values in where.items()
        for value in ((values,) if isinstance(values, str) else values)
    )
    return f"in this window with {given}"


def _pick_pair(
    along: str, a: str | None, b: str | None, present: list[str], scope: str = "in this window"
) -> tuple[str, str]:
    listed = ", ".join(present) if present else "none"
    if a is None or b is None:
        default = DEFAULT_PAIRS.get(along) or (tuple(present) if len(present) == 2 else None)
        if default is None:
            raise ReportError(
                f"give --a and --b to pick two values of {along}; present {scope}: {listed}"
            )
        if a is None and b is None:
            a, b = default
        elif a is None:
            a = default[0] if default[0] != b else default[1]
        else:
            b = default[1] if default[1] != a else default[0]
    if a == b:
        raise ReportError(f"--a and --b are both {a!r}; pick two different values of {along}")
    for value, flag in ((a, "--a"), (b, "--b")):
        if value not in present:
            raise ReportError(f"no {along} {value!r} ({flag}) {scope}; present: {listed}")
    return a, b


def _tokens(sums: Mapping[str, float]) -> float:
    return sums["input_tokens"] + sums["output_tokens"]


def _sum_all(many) -> dict[str, float] | None:
    many = list(many)
    if not many:
        return None
    return {name: sum(s[name] for s in many) for name in many[0]}


def side_figures(sums: Mapping[str, float] | None) -> dict:
    """The per-side figures; cost figures are None where any GPU time had no price."""
    if sums is None:
        return dict.fromkeys((*SIDE_FIELDS, "unpriced")) | {"unpriced": False}
    gpu_s, serving_s, tokens = sums["gpu_seconds"], sums["serving_seconds"], _tokens(sums)
    gpu_h = gpu_s / 3600.0
    unpriced = sums["unpriced_seconds"] / 3600.0 > UNPRICED_EPSILON_H
    unmapped = unmapped_tokens(sums)
    mapped = tokens - unmapped
    cost = sums["time_usd"] + sums["energy_usd"]
    per_token = tokens and not unmapped
    return {
        "usd_per_mtok": cost / tokens * 1e6 if per_token and not unpriced else None,
        # Throughput counts the tokens whose GPUs are known, over those GPUs' serving time.
        "tokens_per_gpu_s": mapped / serving_s if serving_s else None,
        "serving_share": serving_s / gpu_s if gpu_s else None,
        "utilization": sums["util_busy_seconds"] / sums["util_known_seconds"]
        if sums["util_known_seconds"]
        else None,
        "usd_per_gpu_hour": sums["time_usd"] / gpu_h if gpu_h and not unpriced else None,
        "energy_usd_per_gpu_hour": sums["energy_usd"] / gpu_h if gpu_h else None,
        "watts": sums["energy_j"] / gpu_s if gpu_s else None,
        "j_per_token": sums["energy_j"] / tokens if per_token else None,
        "gpu_hours": gpu_h,
        "tokens": tokens,
        "unmapped_tokens": unmapped,
        "unpriced": unpriced,
    }


def _pair(a: str, b: str, sums_a, sums_b) -> dict:
    side_a, side_b = side_figures(sums_a), side_figures(sums_b)
    row = {"a": a, "b": b}
    row.update({f"a_{name}": value for name, value in side_a.items()})
    row.update({f"b_{name}": value for name, value in side_b.items()})
    row["watts_ratio"] = _ratio(side_a["watts"], side_b["watts"])
    row["j_per_token_ratio"] = _ratio(side_a["j_per_token"], side_b["j_per_token"])
    row.update(decompose(side_a, side_b, a, b))
    return row


def _ratio(x: float | None, y: float | None) -> float | None:
    return x / y if x is not None and y else None


def decompose(side_a: dict, side_b: dict, a: str = "A", b: str = "B") -> dict:
    """``ratio`` = A's cost per token over B's, and the factors that multiply back to it.

    Returns ``ratio``, the ``FACTORS`` (None where not used), ``factor_product`` and ``why``:
    empty when the decomposition holds, else the reason there is none.
    """
    out: dict = dict.fromkeys(("ratio", *FACTORS, "factor_product")) | {"why": ""}
    for side, name in ((side_a, a), (side_b, b)):
        if side["tokens"] is None:
            out["why"] = f"{name} does not run this"
            return out
        if side["unpriced"]:
            out["why"] = f"{name} has unpriced GPU time"
            return out
        if side["unmapped_tokens"]:
            out["why"] = f"{name} has tokens from endpoints whose GPUs are not mapped"
            return out
        if not side["tokens"] or not side["tokens_per_gpu_s"]:
            out["why"] = f"{name} served no tokens"
            return out
    if not side_b["usd_per_mtok"]:
        out["why"] = f"{b} costs nothing per token (zero prices)"
        return out

    out["ratio"] = side_a["usd_per_mtok"] / side_b["usd_per_mtok"]
    p_a, p_b = side_a["usd_per_gpu_hour"], side_b["usd_per_gpu_hour"]
    e_a, e_b = side_a["energy_usd_per_gpu_hour"], side_b["energy_usd_per_gpu_hour"]
    if p_a > 0 and p_b > 0:
        out["factor_price"] = p_a / p_b
        out["factor_energy"] = (1.0 + e_a / p_a) / (1.0 + e_b / p_b)
        hour_cost = out["factor_price"] * out["factor_energy"]
    else:
        # A zero GPU-hour price leaves no price ratio; price and energy go as one factor.
        # B's cost per token is above zero, so B's GPU-hour costs something.
        hour_cost = (p_a + e_a) / (p_b + e_b)
    out["factor_gpu_hour_cost"] = hour_cost
    out["factor_throughput"] = side_b["tokens_per_gpu_s"] / side_a["tokens_per_gpu_s"]
    out["factor_serving_share"] = side_b["serving_share"] / side_a["serving_share"]
    out["factor_product"] = hour_cost * out["factor_throughput"] * out["factor_serving_share"]
    return out


def _row_notes(label: str, row: dict) -> list[str]:
    if row["ratio"] is None:
        return [f"{label}: no ratio, {row['why']}."]
    return [f"{label}: {explain(row)}"]


# Factors within this of 1 make no difference worth a word.
NEGLIGIBLE = 0.01


def explain(row: dict) -> str:
    """The ratio in words: which factor drives it, which others push the same way or offset it.

    Every factor is A's cost per token over B's; above one it makes A dearer, below one B.
    """
    a, b, ratio = row["a"], row["b"], row["ratio"]
    if math.isclose(ratio, 1.0, rel_tol=NEGLIGIBLE):
        return f"{a} and {b} cost the same per token (within 1%)."
    dear, cheap = (a, b) if ratio > 1 else (b, a)
    head = f"{dear} costs {max(ratio, 1 / ratio):.3g}x {cheap} per token"

    phrases = []  # (log of the factor toward the dearer side, phrase)
    for key in ("factor_gpu_hour_cost", "factor_throughput", "factor_serving_share"):
        factor = row[key]
        if factor is None or math.isclose(factor, 1.0, rel_tol=NEGLIGIBLE):
            continue
        toward_dear = math.log(factor) if ratio > 1 else -math.log(factor)
        phrases.append((toward_dear, _phrase(key, factor, a, b)))
    drivers = sorted((p for p in phrases if p[0] > 0), reverse=True)
    offsets = sorted(p for p in phrases if p[0] < 0)

    sentence = head
    if drivers:
        sentence += f", mostly because {drivers[0][1]}"
        if len(drivers) > 1:
            sentence += ", and also because " + " and ".join(p for _, p in drivers[1:])
    if offsets:
        sentence += "; offsetting part of that, " + " and ".join(p for _, p in offsets)
    return sentence + "."


def _phrase(key: str, factor: float, a: str, b: str) -> str:
    """What a factor says, in words, with the larger side first and a multiple above one."""
    if key == "factor_gpu_hour_cost":
        more, less = (a, b) if factor > 1 else (b, a)
        return f"{more}'s GPU-hours cost {max(factor, 1 / factor):.3g}x {less}'s (energy included)"
    if key == "factor_throughput":  # B's tokens per GPU-second over A's
        more, less = (b, a) if factor > 1 else (a, b)
        return (
            f"{more} serves {max(factor, 1 / factor):.3g}x the tokens per GPU-second that "
            f"{less} does"
        )
    more, less = (b, a) if factor > 1 else (a, b)  # B's serving share over A's
    return (
        f"{more}'s GPUs spend {max(factor, 1 / factor):.3g}x the share of their time serving "
        f"that {less}'s do"
    )


def _unassigned_notes(by, a: str, b: str, sums: dict) -> list[str]:
    notes = []
    for side in (a, b):
        idle = [s for key, s in sums[side].items() if key[0] == UNASSIGNED_LABEL]
        hours = sum(s["gpu_seconds"] for s in idle) / 3600.0
        if hours > 0:
            notes.append(
                f"{side}: {hours:.2f} GPU-hours ran no endpoint; they count in the all-models "
                f"line only, not in any {by[0]}'s row."
            )
    return notes

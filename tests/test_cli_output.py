"""Rendering rows: clean numbers for machines, whole tables for pipes, fitting tables for people."""

import io
import json

from click.testing import CliRunner
from rich.console import Console

from wattledger.cli.commands.report import COST_COLUMNS_LEAD, COST_PLACES
from wattledger.cli.output import Column, emit, fixed, machine_value
from wattledger.cli.reports.table_view import table_view

NOISY = {
    "model": "m",
    "gpu_hours": 144.0,
    "energy_kwh": 84.38265600000001,
    "input_tokens": 3890202120.0,
    "output_tokens": 3890201.9999999995,
    "requests": 2.0000000001,
    "cost_usd": 255.920757,
    "usd_per_mtok": 0.032892990123456789,
    "j_per_token": -0.0,
}
COLUMNS = [Column("model", "Model", justify="left")] + [
    Column(key, key) for key in NOISY if key != "model"
]


def render(fmt, rows, total=None, footer=()):
    runner = CliRunner()

    def command():
        emit(rows, COLUMNS, fmt, total=total, footer=footer)

    import click

    return runner.invoke(click.command()(command), [])


def test_json_counts_are_integers_and_other_numbers_lose_their_float_noise():
    result = render("json", [NOISY])

    [row] = json.loads(result.stdout)["rows"]
    assert row == {
        "model": "m",
        "gpu_hours": 144.0,
        "energy_kwh": 84.382656,
        "input_tokens": 3890202120,
        "output_tokens": 3890202,
        "requests": 2,
        "cost_usd": 255.920757,
        "usd_per_mtok": 0.03289299,
        "j_per_token": 0.0,
    }
    assert '"input_tokens": 3890202120,' in result.stdout
    assert '"j_per_token": 0.0' in result.stdout


def test_csv_has_the_same_clean_numbers():
    result = render("csv", [NOISY])

    assert result.stdout.splitlines()[1] == (
        "m,144.0,84.382656,3890202120,3890202,2,255.920757,0.03289299,0.0"
    )


def test_a_count_that_is_not_whole_stays_a_number():
    assert machine_value("input_tokens", 2.5) == 2.5
    assert machine_value("gpu_hours", 12.0) == 12.0 and isinstance(
        machine_value("gpu_hours", 12.0), float
    )


def test_numbers_that_are_not_finite_are_null_with_a_note_never_infinity():
    row = dict(NOISY, usd_per_mtok=float("inf"), j_per_token=float("nan"))

    as_json = render("json", [row], total=row)
    as_csv = render("csv", [row], total=row)

    assert "Infinity" not in as_json.stdout and "NaN" not in as_json.stdout
    document = json.loads(as_json.stdout)
    assert document["rows"][0]["usd_per_mtok"] is None
    assert document["total"]["j_per_token"] is None
    assert document["notes"] == [
        "Some figures were not finite numbers (a price or a reading out of range) and are "
        "written as null; check the prices with 'wattledger price list'."
    ]
    assert as_csv.stdout.splitlines()[1].endswith(",255.920757,,")
    assert "written as empty cells" in as_csv.stderr


def test_a_table_with_an_infinite_cell_does_not_crash():
    row = dict(NOISY, cost_usd=float("inf"))
    columns = [Column("model", "Model")] + COST_COLUMNS_LEAD

    rows, total, columns = table_view([row, NOISY], row, columns, COST_PLACES)
    console = Console(file=io.StringIO(), width=200)
    emit(rows, columns, "table", total=total, console=console)

    assert "n/a" in console.file.getvalue()


def test_a_piped_table_is_drawn_whole_however_wide(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    wide = [Column(f"c{i}", f"heading {i}", fixed(0)) for i in range(30)]
    row = {f"c{i}": 1_234_567_890 for i in range(30)}

    import click

    result = CliRunner().invoke(
        click.command()(lambda: emit([row], wide, "table", footer=["a note " * 60])), []
    )

    assert "…" not in result.stdout
    assert result.stdout.count("1,234,567,890") == 30
    assert ("a note " * 60).strip() in result.stdout  # notes are not wrapped either


def demo_like_rows():
    """The simulated day's figures, as the demo's cost table shows them."""
    rows = []
    for arch, model, hours, kwh, tokens, cost, idle, per_mtok, j in [
        ("blackwell", "(no endpoint)", 48.0, 9.39264, 0.0, 0.0, 94.78723, None, None),
        (
            "blackwell",
            "deepseek-ai/DeepSeek-R1",
            96,
            64.5578,
            383_040_000,
            193.55,
            26.77,
            0.25,
            0.29,
        ),
        ("blackwell", "openai/gpt-oss-120b", 144, 84.38, 3_890_202_120, 255.92, 35.55, 0.03, 0.04),
        ("hopper", "(no endpoint)", 48.0, 3.3528, 0.0, 0.0, 62.82, None, None),
        ("hopper", "deepseek-ai/DeepSeek-R1", 192, 73.39, 17_236_800, 245.92, 34.08, 7.13, 7.47),
        ("hopper", "openai/gpt-oss-120b", 144, 54.71, 172_798_920, 170.56, 23.56, 0.49, 0.56),
    ]:
        rows.append(
            dict(
                architecture=arch,
                model=model,
                gpu_hours=hours,
                energy_kwh=kwh,
                input_tokens=tokens,
                output_tokens=tokens,
                cost_usd=cost,
                idle_usd=idle,
                usd_per_mtok=per_mtok,
                j_per_token=j,
                unpriced_gpu_hours=0.0,
            )
        )
    total = {
        k: sum(r[k] or 0.0 for r in rows) for k in rows[0] if k not in ("architecture", "model")
    }
    total.update(architecture="TOTAL", model="", usd_per_mtok=0.097, j_per_token=0.108)
    return rows, total


def test_the_demo_table_fits_a_120_column_terminal_with_tokens_in_millions():
    rows, total = demo_like_rows()
    columns = [Column("architecture", "Architecture"), Column("model", "Model")]
    rows, total, columns = table_view(rows, total, columns + COST_COLUMNS_LEAD, COST_PLACES)
    console = Console(file=io.StringIO(), width=120, force_terminal=True, color_system=None)

    emit(rows, columns, "table", total=total, console=console)

    text = console.file.getvalue()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 120
    assert "Mtok in" in text and "Mtok out" in text
    assert "3,890.20" in text and "4,463.28" in text  # millions, rows adding up to the total


def test_tokens_stay_whole_below_a_million():
    rows = [{"input_tokens": 2_700.0, "output_tokens": 900.0}]
    columns = [Column("input_tokens", "Tok in", fixed(0)), Column("output_tokens", "Tok out")]

    shown, _total, shown_columns = table_view(rows, None, columns, {"input_tokens": 0})

    assert [c.heading for c in shown_columns] == ["Tok in", "Tok out"]
    assert shown[0]["input_tokens"] == 2_700.0

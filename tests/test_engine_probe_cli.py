"""The probe and discover commands on saved pages: formats, overrides, absent values, errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import click
from click.testing import CliRunner
from conftest import corpus_file

from wattledger.cli.probe import discover_command, probe_command

FIXTURES = Path(__file__).parent / "fixtures" / "engines"


@click.group()
def agent() -> None:
    """A stand-in for the 'wattledger agent' group."""


agent.add_command(probe_command)
agent.add_command(discover_command)


def run(*args: str):
    return CliRunner(env={"COLUMNS": "200"}).invoke(agent, list(args))


def test_table_shows_absent_values_as_dashes_and_prints_the_reasons():
    path = corpus_file("engines", "llamacpp-b10380-after-one-request.prom")

    result = run("probe", "--file", str(path))

    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "unknown" in line)
    cells = [cell.strip() for cell in row.strip("│ ").split("│")]
    assert cells[3:] == ["25", "-", "200", "-", "3.680", "39.800"]
    assert "absent: finished requests: llama.cpp exports no request counter" in result.output
    assert "source: input tokens from counter llamacpp:prompt_tokens_total" in result.output


def test_json_shows_absent_values_as_null():
    path = corpus_file("engines", "sglang-v0.3-pr1853-name-label-excerpt.prom")

    result = run("probe", "--file", str(path), "--format", "json")

    document = json.loads(result.output)
    assert document["rows"][0]["input_tokens"] == 230794.0
    assert document["rows"][0]["output_tokens"] is None
    assert document["title"].startswith("sglang")
    assert any(line.startswith("absent: output tokens") for line in document["notes"])


def test_csv_rows_with_notes_on_stderr():
    path = FIXTURES / "vllm-constructed-data-parallel-engines.prom"

    result = CliRunner().invoke(agent, ["probe", "--file", str(path), "--format", "csv"])

    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows == [
        {
            "engine": "vllm",
            "role": "aggregated",
            "model": "deepseek-ai/DeepSeek-V2-Lite",
            "input_tokens": "68000",
            "input_cached_tokens": "10500",
            "output_tokens": "23000",
            "requests": "305",
            "prefill_seconds": "78.75",
            "decode_seconds": "1200.5",
        }
    ]
    assert "note: input = prompt tokens computed here" in result.stderr


def test_role_override_applies_the_counting_rule():
    path = FIXTURES / "dynamo-constructed-disagg-prefill-worker.prom"

    result = run("probe", "--file", str(path), "--role", "decode", "--format", "json")

    row = json.loads(result.output)["rows"][0]
    assert (row["role"], row["input_tokens"], row["output_tokens"]) == ("decode", None, 40.0)


def test_engine_override_and_model_name():
    path = FIXTURES / "tgi-constructed-method-label-double-count.prom"

    result = run(
        "probe", "--file", str(path), "--engine", "tgi", "--model", "zephyr", "--format", "json"
    )

    row = json.loads(result.output)["rows"][0]
    assert (row["engine"], row["model"], row["requests"]) == ("tgi", "zephyr", 3.0)


def test_a_page_with_no_model_prints_one_row_of_absent_values():
    path = corpus_file("engines", "vllm-v0.5-help-type-only-no-samples.prom")

    result = run("probe", "--file", str(path), "--format", "json")

    rows = json.loads(result.output)["rows"]
    assert rows == [
        {
            "engine": "vllm",
            "role": "aggregated",
            "model": None,
            "input_tokens": None,
            "input_cached_tokens": None,
            "output_tokens": None,
            "requests": None,
            "prefill_seconds": None,
            "decode_seconds": None,
        }
    ]


def test_errors_are_one_line(tmp_path):
    empty = tmp_path / "empty.prom"
    empty.write_text("")

    missing = run("probe", "--file", str(tmp_path / "nope.prom"))
    blank = run("probe", "--file", str(empty))
    neither = run("probe")
    both = run("probe", "--file", str(empty), "--url", "http://127.0.0.1:9/metrics")
    folder = run("probe", "--file", str(tmp_path))

    assert (
        missing.output
        == f"Error: payload file {tmp_path / 'nope.prom'} not found; check the path\n"
    )
    assert blank.output == f"Error: {empty} is empty; give a saved metrics page\n"
    assert neither.output == "Error: give exactly one of --file PAYLOAD or --url URL\n"
    assert both.output == neither.output
    assert folder.output.startswith("Error: ") and folder.output.count("\n") == 1
    assert {r.exit_code for r in (missing, blank, neither, both, folder)} == {1}


def test_discover_needs_somewhere_to_look():
    result = run("discover")

    assert result.output == "Error: give --url URL (repeatable) or --local\n"

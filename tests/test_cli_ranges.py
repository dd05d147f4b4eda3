"""Numbers on the command line: non-finite and absurd values are usage errors, never used."""

import pytest
from click.testing import CliRunner

from wattledger.cli.main import cli


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["demo", "--pue", "1e300"], "Invalid value for '--pue': 1e+300 is not in the range"),
        (["demo", "--pue", "nan"], "Invalid value for '--pue': 'nan' is not a finite number"),
        (["demo", "--pue", "inf"], "Invalid value for '--pue': inf is not in the range"),
        (["demo", "--usd-per-kwh", "inf"], "Invalid value for '--usd-per-kwh': inf is not in"),
        (["demo", "--usd-per-kwh", "nan"], "'--usd-per-kwh': 'nan' is not a finite number"),
        (["demo", "--usd-per-kwh", "5000"], "'--usd-per-kwh': 5000.0 is not in the range"),
        (
            ["agent", "probe", "--url", "http://127.0.0.1:9/metrics", "--timeout", "nan"],
            "Invalid value for '--timeout': 'nan' is not a finite number",
        ),
        (
            ["agent", "discover", "--local", "--timeout", "-1"],
            "Invalid value for '--timeout': -1.0 is not in the range",
        ),
    ],
)
def test_out_of_range_numbers_are_usage_errors(tmp_path, args, message):
    result = CliRunner().invoke(
        cli, [*args, *(["--db", str(tmp_path / "d.db")] * (args[0] == "demo"))]
    )

    assert result.exit_code == 2
    assert message in result.stderr
    assert not (tmp_path / "d.db").exists()

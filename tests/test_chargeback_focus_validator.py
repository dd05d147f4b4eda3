"""The FinOps Foundation's focus-validator on CSV and Parquet exports of the test fleet.

The validator is reached through ``../shared/tools/focus-validate`` (FOCUS 1.2, focus-validator
2.2.1); these tests skip when that tool is absent or cannot run here (see the ``validator``
fixture), and fail on any failed rule but one.

That one is a defect of the validator's 1.2 rule model, not of the file: InvoiceId-C-004-C ("MUST
be null when the charge is not associated with an invoice") and InvoiceId-C-005-C ("MUST NOT be
null when it is") carry no condition, so whenever the InvoiceId column is present one of the two
fails on every row, and when it is absent the RECOMMENDED-presence rule and six rules depending
on it fail instead. Their parent, InvoiceId-C-003-C, is an OR of the two and passes. A chargeback
is not invoiced, so InvoiceId is null and InvoiceId-C-005-C is the one reported. The test accepts
exactly that failure, and only while InvoiceId-C-003-C passes.

The files cover 1 November to 2 December 2026 (the test fleet's four-hour pattern, sampled every
five minutes): 2,418 hourly or 124 daily rows. Besides the default run, the files are checked
with the applicability criteria that describe a GPU fleet's chargeback honestly (accounts are
named, resources are typed and billed by use, regions and sub-accounts and tags exist), which
turns on the rules for those columns too.

The validator does not check ListCost = ListUnitPrice x PricingQuantity on these files: the rule
is conditioned on "ChargeClass is not Correction", and the validator's SQL for that condition is
false when ChargeClass is null, as it is on every ordinary row. test_chargeback_export checks the
identity itself.
"""

import csv
import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
from test_chargeback_fleet import CHARGEBACK, build_fleet

from wattledger.cli.chargeback.export import export_chargeback
from wattledger.cli.chargeback.settings import parse_chargeback
from wattledger.cli.reports.cost import cost_report

TOOL = Path(__file__).resolve().parent.parent.parent / "shared" / "tools" / "focus-validate"
CRITERIA = ",".join(
    [
        "ACCOUNT_NAMING_SUPPORTED",
        "BILLING_BASED_ON_PROVISIONED_RESOURCES_SUPPORTED",
        "REGION_SUPPORTED",
        "RESOURCE_TYPE_ASSIGNMENT_SUPPORTED",
        "SUB_ACCOUNT_SUPPORTED",
        "TAGGING_SUPPORTED",
    ]
)
VALIDATOR_DEFECTS = {
    "InvoiceId-C-005-C": "InvoiceId-C-003-C"
}  # failing rule: parent that must pass
SUMMARY = re.compile(
    r"^Total: (\d+) \| Pass: (\d+) \| Fail: (\d+) \| Skipped: (\d+)$", re.MULTILINE
)
MONTH_START = 1_793_491_200  # 2026-11-01T00:00:00Z
MONTH_END = MONTH_START + 31 * 86_400  # 2026-12-02: the files cross a billing period
RESULT = re.compile(r"^\S+ ([A-Za-z]+-[A-Z]-\d{3}-[A-Z]): (PASS|FAIL|SKIPPED)", re.MULTILINE)


@pytest.fixture(scope="module")
def validator(tmp_path_factory):
    """The tool, once it has shown it runs here: on a trivial file it must print its summary.

    A tool that is absent, or cannot set itself up (no Python 3.12, no package index), skips
    these tests with its reason; once it has run, any later output without a summary fails.
    """
    if not TOOL.is_file():
        pytest.skip(f"focus-validate not found at {TOOL}")
    if shutil.which("bash") is None:
        pytest.skip("focus-validate needs bash")
    probe = tmp_path_factory.mktemp("probe") / "probe.csv"
    probe.write_text("BilledCost\n1\n")
    done = subprocess.run([str(TOOL), str(probe)], capture_output=True, text=True, timeout=900)
    output = (done.stdout + done.stderr).strip()
    if not SUMMARY.search(output):
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        reason = f"{lines[0]} ... {lines[-1]}" if lines else f"exit status {done.returncode}"
        pytest.skip(f"focus-validate cannot run here (exit {done.returncode}): {reason}")
    return TOOL


def validate(tool: Path, path: Path, *options: str) -> dict:
    """Run the validator on ``path``: its summary line and each rule's status."""
    done = subprocess.run(
        [str(tool), str(path), *options], capture_output=True, text=True, timeout=600
    )
    output = done.stdout + done.stderr
    summary = SUMMARY.search(output)
    assert summary, f"no summary from focus-validate (exit {done.returncode}):\n{output[-3000:]}"
    total, passed, failed, skipped = (int(n) for n in summary.groups())
    statuses = dict(RESULT.findall(output))
    return {
        "total": total,
        "passed": passed,
        "failed": failed,
        "skipped": skipped,
        "statuses": statuses,
        "output": output,
        "line": summary.group(0),
    }


def assert_valid(report: dict) -> None:
    failures = sorted(rule for rule, status in report["statuses"].items() if status == "FAIL")
    assert len(failures) == report["failed"], report["output"][-3000:]
    unexpected = [rule for rule in failures if rule not in VALIDATOR_DEFECTS]
    assert not unexpected, f"{report['line']}; failed: {unexpected}\n{report['output'][-6000:]}"
    for rule in failures:
        parent = VALIDATOR_DEFECTS[rule]
        assert report["statuses"].get(parent) == "PASS", (
            f"{rule} failed and so did its parent {parent}"
        )
    assert report["passed"] > 100


def export(engine, path: Path, fmt: str, granularity: str):
    settings = parse_chargeback(CHARGEBACK)
    return export_chargeback(
        engine,
        settings,
        MONTH_START,
        MONTH_END,
        path=path,
        fmt=fmt,
        granularity=granularity,
        now=MONTH_END + 3600,
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Hourly and daily exports of the fleet over 1 Nov to 2 Dec 2026, in both formats."""
    from wattledger.collector.db import open_engine
    from wattledger.migrations import runner

    directory = tmp_path_factory.mktemp("focus")
    engine = open_engine(f"sqlite:///{directory / 'store.db'}")
    runner.upgrade(engine)
    build_fleet(engine, MONTH_START, (MONTH_END - MONTH_START) // 3600, step_s=300)
    made = {}
    for fmt in ("csv", "parquet"):
        for granularity in ("hour", "day"):
            result = export(engine, directory / f"{granularity}.{fmt}", fmt, granularity)
            # 186 four-hour blocks of 49.20 USD, as the cost report says too.
            assert result.total_usd == Decimal("9151.20")
            assert result.rows == {"hour": 2418, "day": 124}[granularity]
            made[fmt, granularity] = result.path
    assert cost_report(engine, MONTH_START, MONTH_END, ["model"]).total[
        "total_usd"
    ] == pytest.approx(9151.20)
    engine.dispose()
    return made


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_hourly_export_passes_the_validator(validator, files, fmt):
    report = validate(validator, files[fmt, "hour"])

    print(report["line"])
    assert_valid(report)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_daily_export_passes_with_the_fleets_applicability_criteria(validator, files, fmt):
    report = validate(validator, files[fmt, "day"], "--applicability-criteria", CRITERIA)

    print(report["line"])
    assert_valid(report)
    for rule in (
        "SubAccountName-C-005-C",
        "ResourceType-C-005-C",
        "RegionName-C-005-C",
        "Tags-C-001-M",
        "ChargePeriodEnd-C-002-M",
        "BillingCurrency-C-003-M",
    ):
        assert report["statuses"][rule] == "PASS", rule


@pytest.mark.slow
def test_the_validator_rejects_a_broken_file(validator, files, tmp_path):
    """The harness can fail: a cost written with its unit, and a service in two subcategories."""
    with files["csv", "hour"].open(newline="") as stream:
        rows = list(csv.reader(stream))
    rows[1][rows[0].index("ServiceSubcategory")] = "GenAI"
    rows[2][rows[0].index("BilledCost")] = "12 USD"
    broken = tmp_path / "broken.csv"
    with broken.open("w", newline="") as stream:
        csv.writer(stream, lineterminator="\n").writerows(rows)

    report = validate(validator, broken)

    assert report["statuses"]["BilledCost-C-002-M"] == "FAIL"
    assert report["statuses"]["ServiceName-C-008-C"] == "FAIL"
    with pytest.raises(AssertionError):
        assert_valid(report)

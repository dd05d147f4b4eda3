"""``wattledger schedule run`` as a service runs it: it exports, then stops on SIGTERM."""

import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from wattledger.cli.main import cli
from wattledger.collector import schema as s
from wattledger.collector.db import open_engine
from wattledger.migrations import runner

JOB = """
[[schedule.exports]]
name = "hourly"
cron = "{cron}"
period = "hour"
path = "{path}"
"""


def config(tmp_path, cron="* * * * * *", path=None):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    target = path or str(tmp_path / "out" / "{job}-{period}.csv")
    text = f'db = "{url}"\n' + JOB.format(cron=cron, path=target)
    (tmp_path / "wattledger.toml").write_text(text)
    return tmp_path / "wattledger.toml", url


@pytest.mark.slow
def test_the_scheduler_process_exports_and_stops_cleanly_on_sigterm(tmp_path):
    path, url = config(tmp_path)
    engine = open_engine(url)
    runner.upgrade(engine)
    command = [
        sys.executable,
        "-c",
        "from wattledger.cli.main import main; main()",
        "--config",
        str(path),
        "schedule",
        "run",
    ]

    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ})
    deadline = time.monotonic() + 30
    done = []
    while time.monotonic() < deadline and not done:
        time.sleep(0.2)
        with engine.connect() as conn:
            done = conn.execute(
                select(s.export_runs.c.path).where(s.export_runs.c.status == "done")
            ).all()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    engine.dispose()

    assert process.returncode == 0, stderr
    assert stderr.startswith("scheduled hourly: next run ")
    assert stderr.rstrip().endswith("scheduler stopped")
    assert len(done) == 1  # the latest hour that has ended, with no usage in it: a header-only file
    exported = tmp_path / "out" / os.path.basename(done[0][0])
    assert exported.read_text().startswith("BilledCost,BillingAccountId,")


@pytest.mark.parametrize(
    ("cron", "path", "message"),
    [
        (
            "61 * * * *",
            None,
            "schedule.exports[0] (hourly).cron '61 * * * *' is not a valid cron expression: Error "
            "validating "
            "expression '61': the last value (61) is higher than the maximum value (59)",
        ),
        (
            "5 * * * *",
            "BLOCKER/exports/{period}.csv",
            "schedule.exports[0] (hourly).path: BLOCKER is not a writable directory for this user; "
            "create it with the right owner or choose another path",
        ),
    ],
)
def test_bad_schedule_config_is_one_clear_error_at_start(tmp_path, cron, path, message):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    path = path and path.replace("BLOCKER", str(blocker))
    message = message.replace("BLOCKER", str(blocker))
    config_path, _ = config(tmp_path, cron=cron, path=path)

    result = CliRunner().invoke(cli, ["--config", str(config_path), "schedule", "run"])

    assert result.exit_code == 2
    assert result.output == f"error: {config_path}: {message}\n"


def test_no_scheduled_exports_is_an_error(tmp_path):
    (tmp_path / "wattledger.toml").write_text("[chargeback]\n")

    result = CliRunner().invoke(
        cli, ["--config", str(tmp_path / "wattledger.toml"), "schedule", "run"]
    )

    assert result.exit_code == 2
    assert (
        result.output
        == "error: no exports are scheduled; add a [[schedule.exports]] table to the config file\n"
    )


def test_status_lists_the_jobs_and_their_runs(tmp_path):
    path, url = config(tmp_path, cron="5 * * * *")
    engine = open_engine(url)
    runner.upgrade(engine)
    engine.dispose()

    result = CliRunner().invoke(
        cli, ["--config", str(path), "schedule", "status", "--format", "csv"]
    )

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:2] == [
        "name,cron,period,format,path,next_run",
        f"hourly,5 * * * *,hour,csv,{tmp_path / 'out' / '{job}-{period}.csv'},",
    ]

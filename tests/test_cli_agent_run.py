"""``wattledger agent run --once`` through click: its exit status says whether the export landed."""

import logging
import socket

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from wattledger.cli.main import cli
from wattledger.collector import schema as s
from wattledger.collector.db import open_engine


@pytest.fixture
def agent_env(tmp_path, monkeypatch):
    monkeypatch.setenv("WATTLEDGER_AGENT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("WATTLEDGER_AGENT_EXPORT_INTERVAL_S", "2")  # a 1 s export timeout
    monkeypatch.setenv("WATTLEDGER_AGENT_SPOOL_MAX_MB", "0")
    return tmp_path


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_once_exits_1_with_the_reason_when_the_export_fails(agent_env):
    url = f"http://127.0.0.1:{closed_port()}/v1/metrics"

    result = CliRunner().invoke(
        cli, ["agent", "run", "--fake-gpus", "2xH100", "--collector", url, "--once"]
    )

    assert result.exit_code == 1
    assert result.stderr.splitlines()[-2:] == [
        "exported once: 0 ok, 1 failed",
        f"error: the export to {url} failed: collector at {url} did not take the batch",
    ]


def test_once_exits_0_when_the_export_lands(agent_env):
    path = agent_env / "node.db"

    result = CliRunner().invoke(
        cli, ["agent", "run", "--fake-gpus", "2xH100", "--db", str(path), "--once"]
    )

    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[-1] == "exported once: 1 ok, 0 failed"
    engine = open_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(s.gpus)).scalar() == 2
    engine.dispose()


def test_the_start_line_says_the_gpus_are_simulated(agent_env, monkeypatch, caplog):
    from wattledger.agent.runner import Agent

    monkeypatch.setattr(Agent, "run", lambda self, stop, on_tick=None: None)
    monkeypatch.setattr("signal.signal", lambda *_args: None)  # leave pytest's handlers be
    monkeypatch.setattr("wattledger.cli.commands.agent._notifier", lambda: lambda _state: None)
    caplog.set_level(logging.INFO, logger="wattledger.cli.commands.agent")

    result = CliRunner().invoke(
        cli, ["agent", "run", "--fake-gpus", "2xH100", "--db", str(agent_env / "n.db")]
    )

    assert result.exit_code == 0, result.output
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("agent on node")]
    assert line.endswith(
        f": simulated GPUs, 0 endpoint(s), exporting every 2s to {agent_env / 'n.db'}"
    )
